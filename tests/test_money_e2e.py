"""The money end to end: orders against payments, refunds, disputes and payouts, through the
sandbox (real stripe-python client, real HTTP) and a real SQLite backend database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import stripe

import opskit
from opskit.backend.db import create_reference_tables
from opskit.core import frames
from opskit.sandbox import Sandbox, money
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

DAY = 86_400
MAPPING = opskit.Schema.reference(orders_table="orders")
OK_CARD = "4242424242424242"
DECLINE_CARD = "4000000000000341"  # attaches, then every charge is declined
DISPUTE_CARD = "4000000000000259"  # charged, then disputed as fraudulent


@dataclass
class World:
    sandbox: Sandbox
    ops: opskit.Ops
    keys: dict[str, str]
    orders: pd.DataFrame
    t0: int
    pis: dict[str, str] = field(default_factory=dict)  # label -> payment intent id
    manual_payout: str | None = None


def _pay(
    client: stripe.StripeClient,
    customer: str,
    amount: int,
    currency: str,
    card: str = OK_CARD,
    metadata: dict[str, str] | None = None,
) -> str:
    pm = client.v1.payment_methods.create(
        {"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(pm.id, {"customer": customer})
    params: dict[str, Any] = {
        "amount": amount, "currency": currency, "customer": customer,
        "payment_method": pm.id, "confirm": True, "metadata": metadata or {},
    }  # fmt: skip
    try:
        return client.v1.payment_intents.create(params).id  # type: ignore[arg-type]
    except stripe.CardError as exc:  # declined: the intent stays, with its failed charge
        pi = ((exc.json_body or {}).get("error") or {}).get("payment_intent")
        if pi:
            return str(pi["id"])
        return client.v1.payment_intents.list({"customer": customer, "limit": 1}).data[0].id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    keys = {"A": make_key("moneyA"), "B": make_key("moneyB"), "E": make_key("moneyE")}
    sb = Sandbox(keys=[keys["A"], keys["B"]])  # E's key is refused: that shop fails
    sb.start()
    try:
        yield _build(sb, keys, tmp_path_factory.mktemp("money"))
    finally:
        sb.stop()


def _build(sb: Sandbox, keys: dict[str, str], tmp: Path) -> World:
    url = fresh_sqlite_url(tmp)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    a = stripe.StripeClient(keys["A"], base_addresses={"api": sb.url})
    b = stripe.StripeClient(keys["B"], base_addresses={"api": sb.url})
    cus = {n: a.v1.customers.create({"email": f"{n}@example.com"}).id for n in range(1, 10)}
    guest = a.v1.customers.create({"email": "guest@example.com"}).id  # linked by no account
    bcus = b.v1.customers.create({"email": "b1@example.com"}).id
    insert(
        url,
        shops=[
            {"id": 1, "name": "Euro Shop", "stripe_secret_key": keys["A"]},
            {"id": 2, "name": "Manual Payouts", "stripe_secret_key": keys["B"]},
            {"id": 3, "name": "No Key", "stripe_secret_key": None},
            {"id": 4, "name": "Refused Key", "stripe_secret_key": keys["E"]},
            {"id": 5, "name": "Live Shop", "stripe_secret_key": "sk_live_" + "x" * 24},
        ],
        accounts=[
            *[
                {
                    "id": 100 + n,
                    "shop_id": 1,
                    "email": f"{n}@example.com",
                    "details": {"stripe_customer_id": c},
                }  # fmt: skip
                for n, c in cus.items()
            ],
            {
                "id": 201,
                "shop_id": 2,
                "email": "b1@example.com",
                "details": {"stripe_customer_id": bcus},
            },  # fmt: skip
        ],
    )
    p: dict[str, str] = {}
    p["match"] = _pay(a, cus[1], 1000, "eur")
    p["metadata"] = _pay(a, cus[2], 2500, "eur", metadata={"order_id": "o2"})
    p["amount_mismatch"] = _pay(a, cus[3], 2000, "eur")
    p["currency_mismatch"] = _pay(a, cus[4], 1000, "usd")
    p["refunded"] = _pay(a, cus[5], 3000, "eur")
    p["partially_refunded"] = _pay(a, cus[6], 4000, "eur")
    p["disputed"] = _pay(a, cus[7], 5000, "eur", card=DISPUTE_CARD)
    p["tie1"] = _pay(a, cus[8], 1500, "eur")
    p["tie2"] = _pay(a, cus[8], 1500, "eur")
    p["paid_no_order"] = _pay(a, guest, 777, "eur")
    p["failed"] = _pay(a, cus[9], 1200, "eur", card=DECLINE_CARD)
    p["b_match"] = _pay(b, bcus, 5000, "eur")
    t0 = int(time.time()) - 5 * DAY
    for label, pi in p.items():
        key = keys["B"] if label.startswith("b_") else keys["A"]
        sb.with_store(key, lambda st, pi=pi: money.backdate(st, pi, t0))
    # Refunds a day after the payments (so they are swept by a later payout).
    r1 = a.v1.refunds.create({"payment_intent": p["refunded"]})
    r2 = a.v1.refunds.create({"payment_intent": p["partially_refunded"], "amount": 1000})
    for r in (r1, r2):
        sb.with_store(keys["A"], lambda st, r=r: money.backdate(st, r.id, t0 + DAY))
    # Shop B pays out by hand: everything available.
    sb.with_store(keys["B"], lambda st: money.set_payout_schedule(st, "manual"))
    avail = b.v1.balance.retrieve().available[0].amount
    manual = b.v1.payouts.create({"amount": avail, "currency": "eur"}).id
    at = pd.Timestamp(t0 + 60, unit="s", tz="UTC")
    orders = pd.DataFrame(
        [
            ("o1", "1", "101", "complete", 1000, "eur", at),
            ("o2", "1", "102", "complete", 2500, "eur", at),
            ("o3", "1", "103", "complete", 1999, "eur", at),
            ("o4", "1", "104", "complete", 1000, "eur", at),
            ("o5", "1", "105", "complete", 3000, "eur", at),
            ("o6", "1", "106", "complete", 4000, "eur", at),
            ("o7", "1", "107", "complete", 5000, "eur", at),
            ("o8", "1", "108", "complete", 1500, "eur", at),
            ("o9", "1", "108", "complete", 1500, "eur", at),
            ("o10", "1", "109", "complete", 1200, "eur", at),
            ("o11", "1", "101", "pending", 900, "eur", at),  # open, unpaid: no finding
            ("b1", "2", "201", "complete", 5000, "eur", at),
            ("c1", "3", None, "complete", 100, "eur", at),
            ("e1", "4", None, "complete", 100, "eur", at),
        ],
        columns=["order_id", "shop_id", "account_id", "status", "amount", "currency", "created_at"],
    )
    _store_orders(url, orders)
    # opskit's reference schema (integer ids) plus the backend's orders table.
    ops = opskit.connect(url, schema=MAPPING, stripe_api_base=sb.url)
    return World(sb, ops, keys, orders, t0, p, manual)


def _store_orders(url: str, orders: pd.DataFrame) -> None:
    """The same orders in the backend's own shape: float euro totals, zone-less UTC times."""
    engine = sa.create_engine(url)
    md = sa.MetaData()
    table = sa.Table(
        "orders", md,
        sa.Column("id", sa.String(36), primary_key=True), sa.Column("shop_id", sa.String(36)),
        sa.Column("account_id", sa.String(36), nullable=True), sa.Column("total", sa.Float),
        sa.Column("status", sa.Text), sa.Column("created_at", sa.DateTime),
        sa.Column("completed_at", sa.DateTime, nullable=True),
    )  # fmt: skip
    md.create_all(engine)
    rows = [
        {"id": o, "shop_id": s, "account_id": a, "total": amount / 100, "status": st,
         "created_at": at.tz_convert(None).to_pydatetime(), "completed_at": None}
        for o, s, a, st, amount, at in zip(
            orders["order_id"], orders["shop_id"], orders["account_id"], orders["status"],
            orders["amount"], orders["created_at"], strict=True,
        )
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
    engine.dispose()


def _since(w: World) -> pd.Timestamp:
    return pd.Timestamp(w.t0 - DAY, unit="s", tz="UTC")


@pytest.fixture(scope="module")
def report(world: World) -> pd.DataFrame:
    return world.ops.reconcile_payments(since=_since(world), orders=world.orders, progress=False)


def _row(report: pd.DataFrame, **where: Any) -> pd.Series:
    mask = pd.Series(True, index=report.index)
    for k, v in where.items():
        mask &= report[k] == v
    rows = report[mask.fillna(False)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_every_payment_status_end_to_end(world: World, report: pd.DataFrame) -> None:
    assert set(report["status"].astype(str)) == set(frames.PAYMENT_STATUSES)
    pd.testing.assert_frame_equal(report.iloc[:0], frames.empty(frames.PAYMENT_REPORT))
    p = world.pis
    expect = {
        "o1": ("match", p["match"]),
        "o2": ("match", p["metadata"]),
        "o3": ("amount_mismatch", p["amount_mismatch"]),
        "o4": ("currency_mismatch", p["currency_mismatch"]),
        "o5": ("refunded", p["refunded"]),
        "o6": ("partially_refunded", p["partially_refunded"]),
        "o7": ("disputed", p["disputed"]),
        "b1": ("match", p["b_match"]),
    }
    for order, (status, pi) in expect.items():
        row = _row(report, order_id=order)
        assert (row["status"], row["stripe_payment_intent_id"]) == (status, pi), order
    assert _row(report, order_id="o2")["match_method"] == "metadata"
    assert _row(report, order_id="o2")["score"] == 1.0
    assert _row(report, order_id="o1")["match_method"] == "scored"
    o3 = _row(report, order_id="o3")
    assert (o3["order_amount"], o3["paid_amount"]) == (1999, 2000)
    o6 = _row(report, order_id="o6")
    assert (o6["paid_amount"], o6["refunded_amount"]) == (4000, 1000)
    assert _row(report, order_id="o7")["dispute_status"] == "needs_response"
    # The tie: both orders ambiguous, each naming both candidates; nobody got a payment.
    for order in ("o8", "o9"):
        row = _row(report, order_id=order)
        assert row["status"] == "ambiguous"
        named = {row["stripe_payment_intent_id"], row["runner_up_payment_intent_id"]}
        assert named == {p["tie1"], p["tie2"]}
        assert row["score"] == row["runner_up_score"]
    assert _row(report, stripe_payment_intent_id=p["paid_no_order"])["status"] == "paid_no_order"
    assert _row(report, order_id="o10")["status"] == "order_unpaid"
    assert "o11" not in set(report["order_id"].dropna())
    assert _row(report, order_id="c1")["status"] == "shop_not_configured"
    e1 = _row(report, order_id="e1")
    assert e1["status"] == "shop_error" and "401" in e1["detail"]
    # One payment pays at most one order.
    paid = report.loc[report["match_method"].notna(), "stripe_payment_intent_id"]
    assert paid.is_unique
    # Fees: Stripe's EEA card price, 1.5% + 25 cents.
    o1 = _row(report, order_id="o1")
    assert (o1["fee"], o1["net"]) == (40, 960)
    assert not any(k in report.to_csv() for k in world.keys.values())


def test_orders_from_the_database_give_the_same_report(world: World, report: pd.DataFrame) -> None:
    from_db = world.ops.reconcile_payments(since=_since(world), progress=False)
    failed = report["status"] == "shop_error"  # their details name each run's request id
    pd.testing.assert_frame_equal(from_db[~failed], report[~failed])
    assert list(from_db.loc[failed, "order_id"]) == list(report.loc[failed, "order_id"])


def test_payments_frame_has_fee_refunds_disputes_and_accounts(world: World) -> None:
    pays = world.ops.payments(1, since=_since(world), progress=False)
    pd.testing.assert_frame_equal(pays.iloc[:0], frames.empty(frames.PAYMENTS))
    by = pays.set_index("stripe_payment_intent_id")
    p = world.pis
    assert by.loc[p["match"], "account_id"] == "101"
    assert pd.isna(by.loc[p["paid_no_order"], "account_id"])
    assert by.loc[p["partially_refunded"], "amount_refunded"] == 1000
    assert by.loc[p["disputed"], "dispute_status"] == "needs_response"
    failed = by.loc[p["failed"]]
    assert failed["status"] == "requires_payment_method" and failed["amount_received"] == 0
    assert failed["failure_code"] == "card_declined"
    assert by.loc[p["currency_mismatch"], "fee"] == 59  # USD: 2.9% of 1000 + 30
    assert (by["fee"] + by["net"] == by["amount_received"]).dropna().all()


def test_payouts_itemized_sums_and_manual_payouts(world: World) -> None:
    payouts = world.ops.payouts(since=_since(world), progress=False)
    auto = payouts[payouts["automatic"].fillna(False)]
    assert len(auto) >= 1 and set(auto["shop_id"]) == {"1"}
    # A payout's itemized net equals its amount.
    assert (auto["check"] == "itemized_ok").all()
    assert (auto["itemized_net"] == auto["amount"]).all()
    assert (auto["itemized_gross"] - auto["itemized_fee"] == auto["itemized_net"]).all()
    manual = payouts[payouts["payout_id"] == world.manual_payout].iloc[0]
    assert not manual["automatic"] and manual["check"] == "manual_not_itemizable"
    assert pd.isna(manual["itemized_net"])
    # Stripe itself refuses to itemize a manual payout.
    b = stripe.StripeClient(world.keys["B"], base_addresses={"api": world.sandbox.url})
    with pytest.raises(stripe.InvalidRequestError, match="not manual"):
        b.v1.balance_transactions.list({"payout": str(manual["payout_id"])})


def test_payout_report_categories_manual_and_unpaid_balance(world: World) -> None:
    now = pd.Timestamp.now(tz="UTC")
    rep = world.ops.payout_report(since=_since(world), until=now, progress=False)
    pd.testing.assert_frame_equal(rep.iloc[:0], frames.empty(frames.PAYOUT_REPORT))
    cats = rep[rep["line"] == "category"]
    payouts = world.ops.payouts(since=_since(world), progress=False)
    for po, lines in cats.groupby("payout_id"):
        amount = int(payouts.loc[payouts["payout_id"] == po, "amount"].iloc[0])
        assert int(lines["net"].sum()) == amount
    assert {"charge"} <= set(cats["reporting_category"])
    manual = rep[rep["line"] == "manual_payout"]
    assert list(manual["payout_id"]) == [world.manual_payout]
    unpaid = rep[rep["line"] == "unpaid_balance"].set_index(["shop_id", "currency"])
    a = stripe.StripeClient(world.keys["A"], base_addresses={"api": world.sandbox.url})
    bal = a.v1.balance.retrieve()
    for part in bal.available:
        pend = next(x.amount for x in bal.pending if x.currency == part.currency)
        assert unpaid.loc[("1", part.currency), "net"] == part.amount + pend
    assert unpaid.loc[("2", "eur"), "net"] == 0  # shop B paid out everything by hand
    po = str(cats["payout_id"].iloc[0])
    one = world.ops.payout_report(po, progress=False)
    assert set(one["line"]) == {"category"}
    items = world.ops.payout_items(po, progress=False)
    pd.testing.assert_frame_equal(items.iloc[:0], frames.empty(frames.BALANCE_TRANSACTIONS))
    charges = items[items["reporting_category"] == "charge"]
    assert len(charges) and set(charges["stripe_payment_intent_id"]) <= set(world.pis.values())
    assert int(items["net"].sum()) == int(payouts.loc[payouts["payout_id"] == po, "amount"].iloc[0])


def test_daily_overview_per_shop_and_currency(world: World) -> None:
    daily = world.ops.daily_overview(since=_since(world), progress=False)
    pd.testing.assert_frame_equal(daily.iloc[:0], frames.empty(frames.DAILY_OVERVIEW))
    a = daily[daily["shop_id"] == "1"]
    eur = a[a["currency"] == "eur"]
    assert int(eur["sales"].sum()) == 1000 + 2500 + 2000 + 3000 + 4000 + 5000 + 1500 + 1500 + 777
    assert int(eur["refunds"].sum()) == -(3000 + 1000)
    assert int(eur["disputes"].sum()) == -5000
    assert int(eur["failed_charge_count"].sum()) == 1
    assert int(eur["failed_charge_amount"].sum()) == 1200
    # Each day's end balance follows from the previous one and the day's movements.
    eur = eur.sort_values("day")
    moved = eur["net"] - eur["payouts"]
    assert (eur["end_balance"].diff().dropna() == moved.iloc[1:]).all()
    client = stripe.StripeClient(world.keys["A"], base_addresses={"api": world.sandbox.url})
    bal = client.v1.balance.retrieve()
    total = sum(x.amount for x in [*bal.available, *bal.pending] if x.currency == "eur")
    assert int(eur["end_balance"].iloc[-1]) == total
    across = world.ops.daily_overview(since=_since(world), by="currency", progress=False)
    assert across["shop_id"].isna().all()
    for cur, g in daily.groupby("currency"):
        assert int(across.loc[across["currency"] == cur, "sales"].sum()) == int(g["sales"].sum())


def test_metadata_plan_dry_run_then_idempotent_audited_writes(world: World) -> None:
    rep = world.ops.reconcile_payments(since=_since(world), orders=world.orders, progress=False)
    plan = world.ops.payment_metadata_plan(rep)
    pd.testing.assert_frame_equal(plan.iloc[:0], frames.empty(frames.METADATA_PLAN))
    scored = rep[(rep["match_method"] == "scored") & (rep["status"] != "ambiguous")]
    assert set(plan["new_value"]) == set(scored["order_id"])
    assert not set(plan["new_value"]) & {"o2", "o8", "o9"}  # exact already / ambiguous
    a = stripe.StripeClient(world.keys["A"], base_addresses={"api": world.sandbox.url})
    assert "order_id" not in a.v1.payment_intents.retrieve(world.pis["match"]).metadata.to_dict()
    first = world.ops.apply_payment_metadata(plan, actor="test.money")
    assert set(first["outcome"]) == {"written"}
    again = world.ops.apply_payment_metadata(plan, actor="test.money")
    assert set(again["outcome"]) == {"already"}
    assert a.v1.payment_intents.retrieve(world.pis["match"]).metadata["order_id"] == "o1"
    log = world.ops.audit_log(action="payment_intent.set_order_id")
    assert len(log) == 2 * len(plan) and set(log["outcome"]) == {"ok"}
    after = world.ops.reconcile_payments(since=_since(world), orders=world.orders, progress=False)
    moved = after[after["order_id"].isin(plan["new_value"])]
    assert set(moved["match_method"]) == {"metadata"}
    assert list(after["status"]) == list(rep["status"])
    conflict = plan.head(1).assign(new_value="o-other")
    out = world.ops.apply_payment_metadata(conflict, actor="test.money")
    assert list(out["outcome"]) == ["conflict"]
    live = plan.head(1).assign(shop_id="5")  # a live key: nothing sent without confirmation
    out = world.ops.apply_payment_metadata(live, actor="test.money")
    assert list(out["outcome"]) == ["refused"] and "live" in out["detail"].iloc[0]
    refused = world.ops.audit_log(action="payment_intent.set_order_id", outcome="refused")
    assert len(refused) == 2  # the conflict and the live refusal


def test_cli_money_writes_one_sheet_per_report_and_html_sections(
    world: World, tmp_path: Path
) -> None:
    from openpyxl import load_workbook
    from typer.testing import CliRunner

    from opskit.faces.cli import app

    since = _since(world).strftime("%Y-%m-%dT%H:%M:%S")
    mapping = tmp_path / "schema.json"
    mapping.write_text('{"profile": "reference", "orders_table": "orders"}')
    base = ["money", "--schema", str(mapping), "--since", since,
            "--database-url", world.ops.ctx.db.url,
            "--stripe-api-base", world.sandbox.url, "--quiet"]  # fmt: skip
    xlsx = tmp_path / "month.xlsx"
    res = CliRunner().invoke(app, [*base, "--out", str(xlsx)])
    assert res.exit_code == 2, res.output  # shop 4's key is refused: a shop failed
    sheets = load_workbook(xlsx, read_only=True).sheetnames
    assert sheets == ["Summary", "Payments", "Payouts", "Payout_report", "Daily_overview",
                      "Daily_by_currency", "Ledger"]  # fmt: skip
    html = tmp_path / "month.html"
    res = CliRunner().invoke(app, [*base, "--out", str(html), "--shop", "1"])
    assert res.exit_code == 1, res.output  # findings, no failed shop
    page = html.read_text()
    for section in ("report-payments", "report-payouts", "report-payout-report",
                    "report-daily-overview", "paid_no_order", "order_unpaid"):  # fmt: skip
        assert section in page
    assert not any(k in page for k in world.keys.values())
    both = tmp_path / "all.html"
    month = pd.Timestamp(world.t0, unit="s").strftime("%Y-%m")
    res = CliRunner().invoke(app, ["reconcile", "--money-period", month, "--out", str(both),
                                   *base[1:3], *base[5:]])  # fmt: skip
    assert res.exit_code == 2, res.output
    page = both.read_text()
    assert "report-customers" in page and "report-payments" in page and "report-payouts" in page
    bad = CliRunner().invoke(app, ["money", "--period", "November", "--database-url",
                                   world.ops.ctx.db.url])  # fmt: skip
    assert bad.exit_code == 3 and "period" in bad.output


def test_money_panel_runs_charts_each_shop_and_exports_excel(world: World, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from opskit.faces.widgets import money_panel

    panel = money_panel(world.ops, export_dir=tmp_path)
    panel.period.value = pd.Timestamp(world.t0, unit="s").strftime("%Y-%m")
    panel.run_button.click()
    assert panel.frames is not None, panel.message.value
    assert "shop_error" in panel.summary.value and "paid_no_order" in panel.tables["payments"].value
    assert len(panel.charts.children) == panel.frames["daily_overview"]["shop_id"].nunique() >= 2
    panel.export_button.click()
    (path,) = panel.exported
    assert "Payments" in load_workbook(path, read_only=True).sheetnames
    panel.period.value = "last month"
    panel.run_button.click()
    assert "period" in panel.message.value and panel.frames is None
