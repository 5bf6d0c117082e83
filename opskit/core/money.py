"""Money as Stripe wants it: integer minor units plus an ISO 4217 currency.

``1999, "usd"`` is 19.99 USD; ``500, "jpy"`` is 500 JPY (a zero-decimal currency:
its minor unit is the unit). Floats never represent money here.

>>> format_money(1999, "usd")
'USD 19.99'
>>> format_money(500, "jpy")
'JPY 500'
>>> format_money(1230, "kwd")
'KWD 1.230'
"""

from __future__ import annotations

import numbers
from typing import Any

from opskit.common.exceptions import InvalidAmount

__all__ = [
    "ISO_CURRENCIES",
    "MAX_AMOUNT",
    "THREE_DECIMAL",
    "ZERO_DECIMAL",
    "decimals",
    "format_money",
    "validate_amount",
    "validate_currency",
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

# Stripe's zero-decimal currencies: the amount is in the unit itself (500 = JPY 500).
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
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)

# Three-decimal currencies: Stripe requires the last digit to be 0 (1230 = KWD 1.230).
THREE_DECIMAL: frozenset[str] = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])

# Stripe's largest amount for a charge: eight digits of minor units, except IDR (twelve:
# IDR 9,999,999,999.99), where eight digits would stop at about 60 USD.
MAX_AMOUNT = 99_999_999
_MAX_BY_CURRENCY = {"IDR": 999_999_999_999}


def validate_currency(currency: Any) -> str:
    """The upper-case ISO code, or :class:`InvalidAmount`. Stripe wants it lower-cased."""
    if not isinstance(currency, str) or not currency.strip():
        raise InvalidAmount(f"currency {currency!r} is not a three-letter ISO 4217 code")
    code = currency.strip().upper()
    if code not in ISO_CURRENCIES:
        raise InvalidAmount(f"currency {currency!r} is not an ISO 4217 currency code")
    return code


def decimals(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit as Stripe counts them."""
    code = validate_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def validate_amount(amount: Any, currency: Any) -> tuple[int, str]:
    """``(amount, currency_lower)`` for Stripe, or :class:`InvalidAmount` before any request.

    Refused: floats (even ``19.0``), bools, Decimals, strings, zero, negatives,
    amounts above :data:`MAX_AMOUNT` (twelve digits for IDR), and three-decimal
    amounts not ending in 0.
    """
    code = validate_currency(currency)
    # bool is an int subclass, numpy integers are not: accept those, refuse the rest.
    if isinstance(amount, bool) or not isinstance(amount, numbers.Integral):
        hint = ""
        if isinstance(amount, float):
            hint = f" (floats are not money: pass {_minor_hint(amount, code)})"
        raise InvalidAmount(
            f"amount {amount!r} ({type(amount).__name__}) is not an integer number of "
            f"minor units{hint}"
        )
    value = int(amount)
    if value <= 0:
        raise InvalidAmount(f"amount {value} must be positive (minor units of {code})")
    limit = _MAX_BY_CURRENCY.get(code, MAX_AMOUNT)
    if value > limit:
        raise InvalidAmount(
            f"amount {value} ({format_money(value, code)}) is above Stripe's maximum "
            f"of {limit} minor units"
        )
    if code in THREE_DECIMAL and value % 10:
        raise InvalidAmount(
            f"amount {value} in {code} must end in 0: Stripe charges three-decimal "
            "currencies in multiples of 10 minor units"
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
    places = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    if amount != amount or amount in (float("inf"), float("-inf")):
        return "an int"
    return f"{round(amount * 10**places)} for {amount} {code}"
