"""Stripe's currency table: how many decimals its API counts, and which amounts it accepts.

Every amount rule in opskit comes from :func:`rule` (validation before a
request, display, parsing typed amounts), following Stripe's "Supported
currencies" page (docs.stripe.com/currencies: minor units, zero-decimal,
three-decimal and special cases). The classes:

=======================  ==========  ===============  ===============  ======================
class                    API digits  charge amounts   payout amounts   currencies
=======================  ==========  ===============  ===============  ======================
``two-decimal``          2           any              any              USD, EUR, ... (default)
``zero-decimal``         0           any              any              BIF CLP DJF GNF JPY KMF
                                                                       KRW MGA PYG RWF VND VUV
                                                                       XAF XOF XPF
``three-decimal``        3           multiple of 10   multiple of 10   BHD JOD KWD OMR TND
``two-decimal-whole``    2           multiple of 100  multiple of 100  ISK, UGX
``two-decimal-payout``   2           any              multiple of 100  HUF, TWD
=======================  ==========  ===============  ===============  ======================

- *zero-decimal*: the amount is in the unit itself: ``500`` is JPY 500.
- *three-decimal*: ``1230`` is KWD 1.230; Stripe's payment partners need the
  last digit to be 0, so 5.124 KWD must be sent as 5120 or 5130.
- *two-decimal-whole* (ISK, UGX): in practice zero-decimal, but Stripe keeps
  them two-decimal in its API for backwards compatibility, with the decimal
  part always ``00``: ``500`` is ISK 5.00 (5 krónur), ``5000`` is UGX 50.00;
  ``550`` ISK is refused by Stripe (``invalid_charge_amount_no_decimal_compatible``).
- *two-decimal-payout* (HUF, TWD): charged with two decimals, but Stripe treats
  them as zero-decimal for payouts: a payout amount must be evenly divisible by 100.

Amounts are at most eight digits of minor units (Stripe's maximum charge),
twelve for IDR.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CLASSES",
    "PAYOUT_WHOLE_UNITS",
    "NOT_CHARGED",
    "THREE_DECIMAL",
    "WHOLE_UNITS",
    "ZERO_DECIMAL",
    "CurrencyRule",
    "rule",
    "supported",
]

ZERO_DECIMAL: frozenset[str] = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL: frozenset[str] = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])
#: Two decimals in the API, whole units only: amounts are multiples of 100.
WHOLE_UNITS: frozenset[str] = frozenset({"ISK", "UGX"})
#: Two decimals for charges, whole units (multiples of 100) for payouts.
PAYOUT_WHOLE_UNITS: frozenset[str] = frozenset({"HUF", "TWD"})

#: The ISO 4217 currencies Stripe does not charge in: not among the "presentment
#: currencies" of Stripe's "Supported currencies" page (sanctioned, closed or not yet
#: offered: CUP, IRR, KPW, SYP, ...). Every other ISO code is one Stripe takes. An
#: amount in one of these is refused before any request, and no face shows what its
#: "minor units" would be.
NOT_CHARGED: frozenset[str] = frozenset(
    {
        "BTN", "CUP", "ERN", "GHS", "IQD", "IRR", "KPW", "LYD", "MRU",
        "SDG", "SSP", "STN", "SYP", "TMT", "VES", "ZWG", "ZWL",
    }
)  # fmt: skip

CLASSES = (
    "two-decimal",
    "zero-decimal",
    "three-decimal",
    "two-decimal-whole",
    "two-decimal-payout",
)

MAX_AMOUNT = 99_999_999
_MAX_BY_CURRENCY = {"IDR": 999_999_999_999}


@dataclass(frozen=True)
class CurrencyRule:
    """How Stripe counts and accepts amounts of one currency (upper-case ISO ``code``)."""

    code: str
    currency_class: str  # one of CLASSES
    decimals: int  # digits after the point in the API's minor unit
    charge_multiple: int  # a charge amount must be a multiple of this
    payout_multiple: int  # a payout amount must be a multiple of this
    max_amount: int  # the largest amount, in minor units

    def multiple(self, purpose: str = "charge") -> int:
        """The step amounts must keep for ``purpose`` (``"charge"`` or ``"payout"``)."""
        if purpose not in ("charge", "payout"):
            raise ValueError(f"purpose {purpose!r} is not 'charge' or 'payout'")
        return self.payout_multiple if purpose == "payout" else self.charge_multiple


def supported(code: str) -> bool:
    """Whether Stripe charges in the ISO code ``code`` (any case): not in :data:`NOT_CHARGED`.

    The ISO check itself is ``money.validate_currency``'s.
    """
    return code.upper() not in NOT_CHARGED


def rule(code: str) -> CurrencyRule:
    """The rule for an upper-case ISO code (not validated here: see ``money.validate_currency``)."""
    code = code.upper()
    top = _MAX_BY_CURRENCY.get(code, MAX_AMOUNT)
    if code in ZERO_DECIMAL:
        return CurrencyRule(code, "zero-decimal", 0, 1, 1, top)
    if code in THREE_DECIMAL:
        return CurrencyRule(code, "three-decimal", 3, 10, 10, top)
    if code in WHOLE_UNITS:
        return CurrencyRule(code, "two-decimal-whole", 2, 100, 100, top)
    if code in PAYOUT_WHOLE_UNITS:
        return CurrencyRule(code, "two-decimal-payout", 2, 1, 100, top)
    return CurrencyRule(code, "two-decimal", 2, 1, 1, top)
