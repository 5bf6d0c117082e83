"""Stripe's currency table: one rule per class for validation and display, and the
instances people hit (ISK 5.50, UGX 5000) through create_payment_intent on the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables
from opskit.common.exceptions import InvalidAmount
from opskit.core import currencies
from opskit.core.money import decimals, format_money, validate_amount
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

# class -> (a member, an accepted charge amount and its display, a refused charge amount)
CLASSES = {
    "two-decimal": ("usd", 1999, "USD 19.99", None),
    "zero-decimal": ("jpy", 500, "JPY 500", None),
    "three-decimal": ("kwd", 1230, "KWD 1.230", 1234),
    "two-decimal-whole": ("isk", 500, "ISK 5.00", 550),
    "two-decimal-payout": ("huf", 1999, "HUF 19.99", None),
}


def test_every_class_is_tested() -> None:
    assert set(CLASSES) == set(currencies.CLASSES)


@pytest.mark.parametrize("klass", list(CLASSES))
def test_one_rule_per_class_for_validation_and_display(klass: str) -> None:
    code, ok, shown, refused = CLASSES[klass]
    assert currencies.rule(code).currency_class == klass
    assert validate_amount(ok, code.upper()) == (ok, code)
    assert format_money(ok, code) == shown
    assert decimals(code) == {"zero-decimal": 0, "three-decimal": 3}.get(klass, 2)
    if refused is not None:
        with pytest.raises(InvalidAmount) as info:
            validate_amount(refused, code)
        assert info.value.guidance and "Pass " in info.value.guidance


@pytest.mark.parametrize(
    ("amount", "code", "shown"),
    [(5000, "ugx", "UGX 50.00"), (500, "isk", "ISK 5.00"), (100, "twd", "TWD 1.00")],
)
def test_special_cases_display_as_stripe_reads_them(amount: int, code: str, shown: str) -> None:
    assert format_money(amount, code) == shown


def test_whole_unit_currencies_refuse_fractions_with_guidance() -> None:
    with pytest.raises(InvalidAmount, match=r"550 in ISK \(ISK 5.50\)") as info:
        validate_amount(550, "isk")
    assert info.value.guidance == "Pass 500 (ISK 5.00) or 600 (ISK 6.00)."
    with pytest.raises(InvalidAmount, match="multiples of 100"):
        validate_amount(5050, "UGX")
    assert validate_amount(5000, "ugx") == (5000, "ugx")


def test_payout_only_rules_bind_payouts_not_charges() -> None:
    for code in ("huf", "twd"):
        assert validate_amount(1999, code) == (1999, code)  # charges keep two decimals
        with pytest.raises(InvalidAmount, match="payout amounts are multiples of 100"):
            validate_amount(1999, code, purpose="payout")
        assert validate_amount(2000, code, purpose="payout") == (2000, code)
    with pytest.raises(InvalidAmount, match="must end in 0"):
        validate_amount(1234, "bhd", purpose="payout")


def test_largest_amounts_follow_the_table() -> None:
    assert currencies.rule("IDR").max_amount == 999_999_999_999
    assert validate_amount(999_999_999_900, "idr") == (999_999_999_900, "idr")
    with pytest.raises(InvalidAmount, match="maximum"):
        validate_amount(100_000_000, "usd")


def test_create_payment_intent_refuses_isk_fractions_before_any_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    key = make_key("isk")
    (cid,) = sandbox.seed(key, "customers", [{"email": "kari@x.is"}])
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    insert(
        url,
        shops=[{"id": 1, "name": "Reykjavik", "stripe_secret_key": key}],
        accounts=[{"id": 10, "shop_id": 1, "email": "kari@x.is",
                   "details": {"stripe_customer_id": cid}}],
    )  # fmt: skip
    ops = opskit.connect(url, stripe_api_base=sandbox.url)
    try:
        before = sandbox.request_count(key)
        with pytest.raises(InvalidAmount, match="ISK 5.50") as info:
            ops.create_payment_intent(10, 550, "isk")
        assert "500 (ISK 5.00)" in (info.value.guidance or "")
        assert sandbox.request_count(key) == before  # nothing was sent
        log = ops.audit_log()  # refused before any request: one refused row, no intent
        assert log["outcome"].tolist() == ["refused"] and "ISK 5.50" in log["error"].iloc[0]
        intent = ops.create_payment_intent(10, 500, "isk", actor="test")
        assert (intent["amount"], intent["currency"]) == (500, "isk")
        ugx = ops.create_payment_intent(10, 5000, "ugx", actor="test")
        assert format_money(ugx["amount"], ugx["currency"]) == "UGX 50.00"
    finally:
        ops.ctx.db.engine.dispose()
