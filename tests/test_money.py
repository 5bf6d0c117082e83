"""Money validation and display: integer minor units, ISO codes, zero- and three-decimal."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from opskit.common.exceptions import InvalidAmount
from opskit.core.money import MAX_AMOUNT, ZERO_DECIMAL, format_money, validate_amount
from opskit.writes.idempotency import canonical_json, derive_key


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1999, "usd", "USD 19.99"),
        (5, "EUR", "EUR 0.05"),
        (500, "jpy", "JPY 500"),
        (12000, "krw", "KRW 12000"),
        (1230, "kwd", "KWD 1.230"),
        (-250, "gbp", "GBP -2.50"),
    ],
)
def test_format_money(amount: int, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


def test_zero_decimal_set_is_stripes() -> None:
    assert {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF"} <= ZERO_DECIMAL
    assert {"VND", "VUV", "XAF", "XOF", "XPF"} <= ZERO_DECIMAL
    # UGX and ISK are whole units in a two-decimal API (tests/test_currencies.py)
    assert not {"UGX", "ISK"} & ZERO_DECIMAL
    assert "USD" not in ZERO_DECIMAL


def test_validate_amount_lowercases_for_stripe() -> None:
    assert validate_amount(1999, "USD") == (1999, "usd")
    assert validate_amount(np.int64(500), " jpy ") == (500, "jpy")
    assert validate_amount(MAX_AMOUNT, "jpy") == (MAX_AMOUNT, "jpy")


@pytest.mark.parametrize(
    "amount",
    [19.99, 20.0, True, False, 0, -1, "1999", Decimal("19.99"), None, MAX_AMOUNT + 1],
)
def test_bad_amounts_are_refused(amount: object) -> None:
    with pytest.raises(InvalidAmount) as info:
        validate_amount(amount, "usd")
    assert isinstance(info.value, ValueError)  # an input error, catchable as ValueError
    assert info.value.guidance


def test_float_refusal_suggests_minor_units() -> None:
    with pytest.raises(InvalidAmount, match="1999 for 19.99 USD"):
        validate_amount(19.99, "usd")


@pytest.mark.parametrize("currency", ["US", "usdd", "xyz", "", None, 840, "BTC"])
def test_unknown_currencies_are_refused(currency: object) -> None:
    with pytest.raises(InvalidAmount, match="ISO 4217"):
        validate_amount(100, currency)


def test_three_decimal_amounts_end_in_zero() -> None:
    assert validate_amount(1230, "KWD") == (1230, "kwd")
    with pytest.raises(InvalidAmount, match="end in 0"):
        validate_amount(1234, "KWD")


def test_idempotency_key_is_canonical_and_distinct() -> None:
    a = derive_key("pi.create", 1, "account:5", {"amount": 100, "currency": "usd", "x": None})
    b = derive_key("pi.create", 1, "account:5", {"currency": "usd", "amount": 100})
    assert a == b and a.startswith("opskit-v1-") and len(a) < 255
    assert derive_key("pi.create", 2, "account:5", {"amount": 100, "currency": "usd"}) != a
    assert derive_key("pi.create", 1, "account:5", {"amount": 101, "currency": "usd"}) != a
    assert derive_key("pi.create", 1, "account:5", {"amount": 100, "currency": "usd"}, "n1") != a
    assert canonical_json({"b": 1, "a": [None, {"c": None}]}) == '{"a":[null,{}],"b":1}'


def test_idr_allows_twelve_digits() -> None:
    # IDR 1,500,000.00 (about 95 USD) is an ordinary payment, not over Stripe's limit.
    assert validate_amount(150_000_000, "IDR") == (150_000_000, "idr")
    assert validate_amount(999_999_999_999, "idr") == (999_999_999_999, "idr")
    with pytest.raises(InvalidAmount, match="maximum"):
        validate_amount(1_000_000_000_000, "idr")
    with pytest.raises(InvalidAmount, match="maximum"):
        validate_amount(150_000_000, "usd")
