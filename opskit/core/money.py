"""Money as Stripe wants it: integer minor units plus an ISO 4217 currency.

``1999, "usd"`` is 19.99 USD; ``500, "jpy"`` is 500 JPY (a zero-decimal currency:
its minor unit is the unit). Floats never represent money here.

>>> format_money(1999, "usd")
'USD 19.99'
>>> format_money(500, "jpy")
'JPY 500'
>>> format_money(1230, "kwd")
'KWD 1.230'
>>> format_money(5000, "ugx")
'UGX 50.00'

Which currency has how many decimals, and which amounts Stripe accepts, comes
from one table: :mod:`opskit.core.currencies`.
"""

from __future__ import annotations

import numbers
from typing import Any

from opskit.common.exceptions import InvalidAmount
from opskit.core import currencies

__all__ = [
    "ISO_CURRENCIES",
    "MAX_AMOUNT",
    "PAYOUT_WHOLE_UNITS",
    "THREE_DECIMAL",
    "WHOLE_UNITS",
    "ZERO_DECIMAL",
    "decimals",
    "format_money",
    "validate_amount",
    "validate_currency",
    "validate_stripe_currency",
]

# Active ISO 4217 codes (2024 list; funds and precious-metal codes left out).
ISO_CURRENCIES: frozenset[str] = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XCG",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
        "ZWL",
    ]
)

# Stripe's currency classes, from the one table in opskit.core.currencies.
ZERO_DECIMAL = currencies.ZERO_DECIMAL
THREE_DECIMAL = currencies.THREE_DECIMAL
WHOLE_UNITS = currencies.WHOLE_UNITS
PAYOUT_WHOLE_UNITS = currencies.PAYOUT_WHOLE_UNITS

# Stripe's largest amount for a charge: eight digits of minor units, except IDR (twelve:
# IDR 9,999,999,999.99), where eight digits would stop at about 60 USD.
MAX_AMOUNT = currencies.MAX_AMOUNT


def validate_currency(currency: Any) -> str:
    """The upper-case ISO code, or :class:`InvalidAmount`. Stripe wants it lower-cased."""
    if not isinstance(currency, str) or not currency.strip():
        raise InvalidAmount(f"currency {currency!r} is not a three-letter ISO 4217 code")
    code = currency.strip().upper()
    if code not in ISO_CURRENCIES:
        raise InvalidAmount(f"currency {currency!r} is not an ISO 4217 currency code")
    return code


def validate_stripe_currency(currency: Any, *, guidance: str | None = None) -> str:
    """The upper-case ISO code of a currency Stripe charges in, or :class:`InvalidAmount`.

    First :func:`validate_currency` (an ISO 4217 code), then Stripe's presentment
    currencies (:data:`opskit.core.currencies.NOT_CHARGED` lists the ISO codes outside
    them): ``"cup"`` is ISO but Stripe does not take it, so it is refused here, before
    any request.
    ``guidance`` replaces the default hint (faces say it in their own terms).
    """
    try:
        code = validate_currency(currency)
    except InvalidAmount as exc:
        raise InvalidAmount(exc.message, guidance=guidance) from None
    if not currencies.supported(code):
        raise InvalidAmount(
            f"currency {code} is not one Stripe charges in (it is not in Stripe's list of "
            "supported currencies), so no amount in it can be charged",
            guidance=guidance
            or "Use a currency Stripe supports, e.g. usd, eur, gbp or jpy (lower-case ISO code).",
        )
    return code


def decimals(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit as Stripe counts them.

    From :func:`opskit.core.currencies.rule`: 0 for zero-decimal currencies, 3 for
    three-decimal ones, 2 for the rest (ISK, UGX, HUF and TWD included).
    """
    return currencies.rule(validate_currency(currency)).decimals


def validate_amount(amount: Any, currency: Any, *, purpose: str = "charge") -> tuple[int, str]:
    """``(amount, currency_lower)`` for Stripe, or :class:`InvalidAmount` before any request.

    Refused: floats (even ``19.0``), bools, Decimals, strings, zero, negatives,
    amounts above :data:`MAX_AMOUNT` (twelve digits for IDR), and amounts off the
    currency's step for ``purpose`` (``"charge"`` or ``"payout"``) in Stripe's
    table (:mod:`opskit.core.currencies`): three-decimal amounts must end in 0,
    ISK and UGX amounts be multiples of 100, HUF and TWD payouts multiples of 100;
    and currencies Stripe does not charge in (:func:`validate_stripe_currency`).
    """
    code = validate_stripe_currency(currency)
    the = currencies.rule(code)
    # bool is an int subclass, numpy integers are not: accept those, refuse the rest.
    if isinstance(amount, bool) or not isinstance(amount, numbers.Integral):
        hint = ""
        if isinstance(amount, float):
            hint = f" (floats are not money: {_minor_hint(amount, code)})"
        raise InvalidAmount(
            f"amount {amount!r} ({type(amount).__name__}) is not an integer number of "
            f"minor units{hint}"
        )
    value = int(amount)
    if value <= 0:
        raise InvalidAmount(f"amount {value} must be positive (minor units of {code})")
    limit = the.max_amount
    if value > limit:
        raise InvalidAmount(
            f"amount {value} ({format_money(value, code)}) is above Stripe's maximum "
            f"of {limit} minor units"
        )
    step = the.multiple(purpose)
    if value % step:
        lower, upper = value - value % step, value - value % step + step
        options = " or ".join(f"{v} ({format_money(v, code)})" for v in (lower, upper) if v > 0)
        why = {
            "three-decimal": f"{code} amounts must end in 0: Stripe takes three-decimal "
            "currencies in multiples of 10 minor units",
            "two-decimal-whole": f"Stripe takes {code} in whole units only: its API keeps two "
            "decimals, always 00, so amounts are multiples of 100",
            "two-decimal-payout": f"Stripe pays {code} out in whole units only: payout "
            "amounts are multiples of 100",
        }[the.currency_class]
        raise InvalidAmount(
            f"amount {value} in {code} ({format_money(value, code)}) is refused: {why}",
            guidance=f"Pass {options}.",
        )
    return value, code.lower()


def format_money(amount: Any, currency: str) -> str:
    """``"USD 19.99"`` from ``1999, "usd"``; for display only, never for arithmetic."""
    code = validate_currency(currency)
    if isinstance(amount, bool) or not isinstance(amount, numbers.Integral):
        raise InvalidAmount(f"amount {amount!r} is not an integer number of minor units")
    value = int(amount)
    places = decimals(code)
    sign = "-" if value < 0 else ""
    units, minor = divmod(abs(value), 10**places)
    if places == 0:
        return f"{code} {sign}{units}"
    return f"{code} {sign}{units}.{minor:0{places}d}"


def _minor_hint(amount: float, code: str) -> str:
    """The rule, with this currency's example; a guess only where the float allows one.

    ``19.99`` can only be major units (1999 minor units). A whole float such as
    ``1999.0`` is ambiguous (minor units typed as a float, or 1999 whole units), so it
    gets the rule and its minor-unit reading, never a hundredfold guess.
    """
    the = currencies.rule(code)
    places = the.decimals
    example = 50000 if the.charge_multiple == 100 else {0: 500, 3: 19990}.get(places, 1999)
    rule = f"pass an int of minor units, e.g. {format_money(example, code)} -> {example}"
    if amount != amount or amount in (float("inf"), float("-inf")):
        return rule
    if amount == int(amount):
        whole = int(amount)
        if whole <= 0:
            return rule
        shown = format_money(whole, code)
        return f"{rule}; if {amount!r} already counts minor units, pass {whole} ({shown})"
    return f"{rule}: {round(amount * 10**places)} for {amount} {code}"
