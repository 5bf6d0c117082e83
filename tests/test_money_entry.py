"""Money typed as people type it: major units, read as Decimal, scaled by the exponent."""

from __future__ import annotations

import pytest

from opskit import InvalidAmount
from opskit.core.currencies import rule
from opskit.core.money import decimals, format_money
from opskit.core.money_entry import describe_entry, parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("19.99", "usd", 1999),  # the reported case: not 19, not 0.19
        ("19.99", "USD", 1999),
        (" 19.99 ", "eur", 1999),
        ("19.9", "usd", 1990),
        ("19", "usd", 1900),
        ("0.01", "usd", 1),
        (".5", "gbp", 50),
        ("20.", "usd", 2000),
        ("500", "jpy", 500),  # zero-decimal: the unit is the minor unit
        ("1.230", "kwd", 1230),  # three-decimal
        ("0.29", "usd", 29),  # 0.29 * 100 is 28.999999999999996 as a float
        ("1.15", "eur", 115),  # 114.99999999999999 as a float
        ("999999.99", "usd", 99_999_999),  # Stripe's maximum, exactly
        ("5", "isk", 500),  # two decimals in Stripe's API, whole units only
        ("50", "ugx", 5000),
        ("10.50", "huf", 1050),  # whole units only for payouts, not for charges
    ],
)
def test_major_units_convert_exactly(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "says"),
    [
        ("1.234,50", "eur", "did you mean 1234.50"),
        ("19,99", "eur", "did you mean 19.99"),
        ("1,234.50", "usd", "did you mean 1234.50"),
        ("19.999", "usd", "USD has 2 decimals"),
        ("5.5", "jpy", "whole JPY only"),
        ("-5", "usd", "sign"),
        ("+5", "usd", "sign"),
        ("1e3", "usd", "not a plain number"),
        ("1 000", "usd", "not a plain number"),
        ("$5", "usd", "not a plain number"),
        ("NaN", "usd", "not a plain number"),
        ("", "usd", "no amount"),
        ("0", "usd", "zero"),
        ("0.00", "usd", "zero"),
        ("1000000", "usd", "maximum"),
        ("1.235", "kwd", "type 1.230 or 1.240"),
        ("5.50", "isk", "type 5.00 or 6.00"),
        ("5", "xyz", "currency"),
    ],
)
def test_refused_with_a_hint(text: str, currency: str, says: str) -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount(text, currency)
    assert says in info.value.message
    if currency != "xyz":
        assert "dot for decimals" in info.value.guidance  # what to type instead


@pytest.mark.parametrize(
    "currency", ["usd", "eur", "jpy", "kwd", "krw", "bhd", "chf", "isk", "ugx", "huf", "twd"]
)
def test_follows_the_currency_table(currency: str) -> None:
    """The smallest chargeable step typed in major units is that step, per Stripe's table."""
    the = rule(currency.upper())
    places = decimals(currency)
    step = the.charge_multiple
    typed = format_money(step, currency).split(" ", 1)[1]
    assert parse_amount(typed, currency) == step
    too_fine = "1." + "1" * (places + 1)
    with pytest.raises(InvalidAmount):
        parse_amount(too_fine, currency)


def test_describe_shows_the_minor_units() -> None:
    assert describe_entry("19.99", "usd") == "USD 19.99 = 1999 minor units"
    assert describe_entry("500", "jpy") == "JPY 500 = 500 minor units"
    assert describe_entry("0.01", "usd") == "USD 0.01 = 1 minor unit"
