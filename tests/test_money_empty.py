"""A period with no payouts, payments or ledger rows is an empty report, never a crash:
every money frame keeps every declared column (opskit/core/frames.py) in its dtype."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import opskit
from opskit.core import frames, ledger
from opskit.core.payments import money_summary, reconcile_payments
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests.cli_world import CliWorld, make_cli_world


def _same_columns(df: pd.DataFrame, spec: dict[str, Any]) -> None:
    pd.testing.assert_frame_equal(df.head(0), frames.empty(spec), check_index_type=False)


_NO_TXNS = ledger.balance_transactions_frame([])
_NO_PAYOUTS = ledger.payouts_frame([])
_NO_CHARGES = pd.DataFrame(columns=["shop_id", "status", "amount", "currency", "created_at"])
_BALANCE = pd.DataFrame(
    {"shop_id": ["1"], "currency": ["eur"], "balance": [1000], "pending": [1000],
     "available": [0]}  # fmt: skip
).astype({"shop_id": "string", "currency": "string", "balance": "Int64", "pending": "Int64",
          "available": "Int64"})  # fmt: skip
_SHOPS = pd.DataFrame({"shop_id": ["1"], "shop_name": ["A"], "mode": ["test"]}, dtype="string")
_END = pd.Timestamp("2020-01-31 23:59:59", tz="UTC")

CASES: dict[str, tuple[Callable[[], pd.DataFrame], dict[str, Any]]] = {
    "payments_frame": (lambda: ledger.payments_frame([], None), frames.PAYMENTS),
    "balance_transactions_frame": (lambda: _NO_TXNS, frames.BALANCE_TRANSACTIONS),
    "payouts_frame": (lambda: _NO_PAYOUTS, frames.PAYOUTS),
    "payout_report, nothing": (
        lambda: ledger.payout_report(_NO_PAYOUTS, _NO_TXNS),
        frames.PAYOUT_REPORT,
    ),
    "payout_report, only a balance": (  # the breaker's KeyError: 'arrival_at'
        lambda: ledger.payout_report(_NO_PAYOUTS, _NO_TXNS, _BALANCE, period_end=_END),
        frames.PAYOUT_REPORT,
    ),
    "end_balances": (
        lambda: ledger.end_balances([], _NO_TXNS, _END),
        {
            "shop_id": "string",
            "currency": "string",
            "balance": "Int64",
            "pending": "Int64",
            "available": "Int64",
        },
    ),  # fmt: skip
    "daily_overview": (
        lambda: ledger.daily_overview(_NO_TXNS, _NO_CHARGES, _BALANCE),
        frames.DAILY_OVERVIEW,
    ),
    "daily_overview by currency": (
        lambda: ledger.daily_overview(_NO_TXNS, _NO_CHARGES, _BALANCE, by="currency"),
        frames.DAILY_OVERVIEW,
    ),
    "reconcile_payments": (
        lambda: reconcile_payments(
            _SHOPS, frames.empty(frames.MONEY_ORDERS), frames.empty(frames.PAYMENTS)
        ),
        frames.PAYMENT_REPORT,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_money_frame_function_keeps_its_columns_when_empty(name: str) -> None:
    build, spec = CASES[name]
    _same_columns(build(), spec)


def test_unpaid_balance_alone_is_a_report_line() -> None:
    out = ledger.payout_report(_NO_PAYOUTS, _NO_TXNS, _BALANCE, period_end=_END)
    assert out["line"].tolist() == ["unpaid_balance"]
    assert out["net"].tolist() == [1000] and out["currency"].tolist() == ["eur"]
    assert money_summary(reconcile_payments(_SHOPS, frames.empty(frames.MONEY_ORDERS),
                                            frames.empty(frames.PAYMENTS))).empty  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Iterator[CliWorld]:
    yield make_cli_world(tmp_path_factory.mktemp("money-empty"), sandbox, pay=True)


@pytest.mark.parametrize(
    "when",
    [{"period": "2020-01"}, {"period": "2030"}, {"since": "2026-11-01", "until": "2026-11-01"}],
    ids=["2020-01", "2030", "since=until"],
)
def test_a_period_without_payouts_reads_as_empty(world: CliWorld, when: dict[str, str]) -> None:
    ops = opskit.connect(world.url, stripe_api_base=world.sandbox.url)
    report = ops.payout_report(shop_ids=["1"], progress=False, **when)
    _same_columns(report, frames.PAYOUT_REPORT)
    assert set(report["line"]) <= {"unpaid_balance"}
    money = ops.money_report(["1"], progress=False, **when)
    for name, spec in {
        "payments": frames.PAYMENT_REPORT, "payouts": frames.PAYOUTS,
        "payout_report": frames.PAYOUT_REPORT, "daily_overview": frames.DAILY_OVERVIEW,
        "daily_by_currency": frames.DAILY_OVERVIEW, "ledger": frames.BALANCE_TRANSACTIONS,
    }.items():  # fmt: skip
        _same_columns(money.frames()[name], spec)
    _same_columns(ops.payouts(["1"], progress=False, **when), frames.PAYOUTS)
    _same_columns(ops.payments(["1"], progress=False, **when), frames.PAYMENTS)
    _same_columns(ops.daily_overview(["1"], progress=False, **when), frames.DAILY_OVERVIEW)
    _same_columns(ops.reconcile_payments(["1"], progress=False, **when), frames.PAYMENT_REPORT)
    items = ops.payout_items(shop_ids=["1"], progress=False, **when)
    _same_columns(items, frames.BALANCE_TRANSACTIONS)


def test_cli_money_on_an_empty_period_exits_0(world: CliWorld, tmp_path: Path) -> None:
    for args in (["--period", "2020-01"], ["--since", "2026-11-01", "--until", "2026-11-01"]):
        out = tmp_path / "m.xlsx"
        result = CliRunner().invoke(
            app, ["money", *args, "--shop", "1", "--out", str(out)], env=world.env()
        )
        assert result.exit_code == 0, result.output
        assert "unexpected" not in result.output and out.is_file()
