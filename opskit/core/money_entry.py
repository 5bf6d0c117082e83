"""Money as people type it: ``"19.99"`` in USD is 1999 minor units, exactly.

Everything a person types as an amount (the payment panel's Amount field, any
future amount field or option) goes through :func:`parse_amount`, which reads the
text with :class:`decimal.Decimal` (never a float), scales it by the currency's
exponent from Stripe's currency table (:mod:`opskit.core.currencies`, the one
table) and then applies the same checks as every Stripe write
(:func:`opskit.core.money.validate_amount`).

>>> parse_amount("19.99", "usd")
1999
>>> parse_amount("500", "jpy")
500
>>> parse_amount("1.230", "kwd")
1230
>>> parse_amount("5", "isk")        # two decimals in Stripe's API, whole krónur only
500
>>> describe_entry("19.99", "usd")
'USD 19.99 = 1999 minor units'

Refused, with a hint that says what to type instead (:class:`InvalidAmount`):
a comma anywhere (``"1.234,50"``, ``"19,99"``, ``"1,234.50"``: separators are
ambiguous between locales, so only a dot for decimals is read), more decimals than
the currency has (``"19.999"`` USD, ``"5.5"`` JPY), signs, exponents, spaces inside
the number, zero, and anything above Stripe's maximum.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from opskit.common.exceptions import InvalidAmount
from opskit.core import currencies
from opskit.core.money import (
    decimals,
    format_money,
    validate_amount,
    validate_stripe_currency,
)

__all__ = ["describe_entry", "parse_amount"]

_PLAIN = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_GUIDANCE = "Type the amount in {code} as digits with a dot for decimals, e.g. {example}."
_CURRENCY_GUIDANCE = (
    "Type the three-letter code of a currency Stripe charges in, e.g. usd, eur, gbp or jpy."
)


def _currency(currency: str) -> str:
    """The code of a currency Stripe charges in, or InvalidAmount saying what to type."""
    return validate_stripe_currency(currency, guidance=_CURRENCY_GUIDANCE)


def _example(code: str) -> str:
    if currencies.rule(code).charge_multiple == 100:
        return "500"  # whole units in a two-decimal API (ISK, UGX)
    return {0: "500", 1: "19.9", 2: "19.99", 3: "1.250"}.get(decimals(code), "19.99")


def _refuse(message: str, code: str) -> InvalidAmount:
    return InvalidAmount(message, guidance=_GUIDANCE.format(code=code, example=_example(code)))


def parse_amount(text: str, currency: str) -> int:
    """The integer minor units of ``text`` typed in major units of ``currency``.

    ``text`` is what a person typed (``"19.99"``, ``"20"``, ``" 5.5 "``); surrounding
    whitespace is ignored. The value is converted through the currency's exponent
    (2 for USD/EUR, 0 for JPY, 3 for KWD, as Stripe counts them) without rounding:
    more decimals than the currency has is refused rather than rounded.

    Raises :class:`~opskit.InvalidAmount` (an ``InputError``/``ValueError``) with a
    ``guidance`` line for every refused entry, for an unknown currency and for one
    Stripe does not charge in (``"cup"``: ISO, but not in Stripe's list).
    """
    code = _currency(currency)
    raw = "" if text is None else str(text)
    entry = raw.strip()
    if not entry:
        raise _refuse(f"no amount entered (in {code})", code)
    if "," in entry:
        hint = ""
        if re.fullmatch(r"\d+,\d{1,3}", entry):  # 19,99: a decimal comma
            hint = f"; did you mean {entry.replace(',', '.')}?"
        elif re.fullmatch(r"\d{1,3}(?:\.\d{3})+,\d+", entry):  # 1.234,50
            hint = f"; did you mean {entry.replace('.', '').replace(',', '.')}?"
        elif re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", entry):  # 1,234.50
            hint = f"; did you mean {entry.replace(',', '')}?"
        raise _refuse(
            f"amount {entry!r} has a comma: commas are not read (is it a decimal or a "
            f"thousands separator?){hint}",
            code,
        )
    if entry.startswith(("-", "+")):
        raise _refuse(f"amount {entry!r} has a sign: amounts are positive", code)
    if not _PLAIN.fullmatch(entry):
        raise _refuse(f"amount {entry!r} is not a plain number", code)
    try:
        value = Decimal(entry)
    except InvalidOperation:  # pragma: no cover - the pattern above admits only numbers
        raise _refuse(f"amount {entry!r} is not a number", code) from None
    places = decimals(code)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        if places == 0:
            what = f"{code} has no minor unit: whole {code} only"
        else:
            what = f"{code} has {places} decimals"
        raise _refuse(f"amount {entry!r} has more decimals than {code} allows ({what})", code)
    if minor <= 0:
        raise _refuse(f"amount {entry!r} is zero: amounts are more than 0", code)
    step = currencies.rule(code).charge_multiple
    if int(minor) % step:  # e.g. ISK/UGX: whole units; KWD: the third decimal is 0
        low = int(minor) - int(minor) % step
        near = [_typed(v, code) for v in (low, low + step) if v > 0]
        raise _refuse(
            f"amount {entry!r} cannot be charged in {code}: Stripe takes {code} in steps of "
            f"{_typed(step, code)}; type {' or '.join(near)}",
            code,
        )
    try:
        amount, _ = validate_amount(int(minor), code)
    except InvalidAmount as exc:  # Stripe's limits and rules of the currency, said per entry
        raise _refuse(f"amount {entry!r} {code}: {exc.message}", code) from None
    return amount


def _typed(minor: int, code: str) -> str:
    """Minor units as a person would type them: ``1230`` KWD -> ``1.230``."""
    return format_money(minor, code).split(" ", 1)[1]


def describe_entry(text: str, currency: str) -> str:
    """``"USD 19.99 = 1999 minor units"``: what :func:`parse_amount` makes of ``text``.

    Raises :class:`~opskit.InvalidAmount` as :func:`parse_amount` does.
    """
    amount = parse_amount(text, currency)
    code = _currency(currency)
    unit = "minor unit" if amount == 1 else "minor units"
    return f"{format_money(amount, code)} = {amount} {unit}"
