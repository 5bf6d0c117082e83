"""A subscription is all its items, its customer and every Stripe status: the subscription
report and the sync plan on the sandbox, through stripe-python's real client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables
from opskit.core import frames
from opskit.core import subscription_status as ss
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

FAR = 4_102_444_800  # 2100-01-01: a cancel_at long after the current period


def _rec(cid: str, sid: str | None = None, status: str | None = None, price: str | None = None):
    details: dict[str, Any] = {"stripe_customer_id": cid}
    if sid:
        details.update(
            stripe_subscription_id=sid, subscription_status=status, stripe_price_id=price
        )
    return details


@pytest.fixture(scope="module")
def world(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    key = make_key("subs")
    names = ["two", "old_price", "one", "paused", "ending", "double", "far", "pastdue", "wrong",
             "other", "gone"] + [f"st_{s}" for s in ss.STATUSES]  # fmt: skip
    cus = dict(
        zip(names, sandbox.seed(key, "customers", [{"email": f"{n}@x.io"} for n in names]),
            strict=True)
    )  # fmt: skip
    plan = {"recurring": {"interval": "month"}, "currency": "eur"}
    sandbox.seed(
        key,
        "prices",
        [
            {"id": "price_base", "unit_amount": 900, **plan},
            {"id": "price_addon", "unit_amount": 300, **plan},
            {"id": "price_pro", "unit_amount": 2900, **plan},
        ],
    )
    specs: list[tuple[str, dict[str, Any]]] = [
        ("two", {"items": [{"price": "price_addon"}, {"price": "price_base"}]}),
        ("old_price", {"items": [{"price": "price_addon"}, {"price": "price_base"}]}),
        ("one", {"price": "price_pro"}),
        ("paused", {"price": "price_base", "status": "paused"}),
        ("ending", {"price": "price_base"}),
        ("ending", {"price": "price_pro", "cancel_at_period_end": True}),
        ("double", {"price": "price_base"}),
        ("double", {"price": "price_pro"}),
        ("far", {"price": "price_base"}),
        ("far", {"price": "price_pro", "cancel_at": FAR}),
        ("pastdue", {"price": "price_base"}),
        ("pastdue", {"price": "price_pro", "status": "past_due"}),
        ("other", {"price": "price_base"}),
        ("gone", {"price": "price_base", "status": "canceled", "ended_at": 1_790_000_000}),
    ] + [(f"st_{s}", {"price": "price_base", "status": s}) for s in ss.STATUSES]
    ids = sandbox.seed(key, "subscriptions", [{"customer": cus[c], **o} for c, o in specs])
    subs: dict[str, list[str]] = {}
    for (c, _), sid in zip(specs, ids, strict=True):
        subs.setdefault(c, []).append(sid)

    url = fresh_sqlite_url(tmp_path_factory.mktemp("subs"))
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    accounts = [
        # the account records the base price of its two-item subscription
        {"id": 1, "details": _rec(cus["two"], subs["two"][0], "active", "price_base")},
        # a price that is none of the items
        {"id": 2, "details": _rec(cus["old_price"], subs["old_price"][0], "active", "price_x")},
        {"id": 3, "details": _rec(cus["one"], subs["one"][0], "active", "price_base")},
        {"id": 4, "details": _rec(cus["paused"])},
        {"id": 5, "details": _rec(cus["ending"], subs["ending"][0], "active", "price_base")},
        {"id": 6, "details": _rec(cus["double"])},
        {"id": 7, "details": _rec(cus["far"])},
        {"id": 8, "details": _rec(cus["pastdue"])},
        # records the subscription of another customer
        {"id": 9, "details": _rec(cus["wrong"], subs["other"][0], "active", "price_base")},
        {"id": 12, "details": _rec(cus["gone"], subs["gone"][0], "canceled", "price_base")},
    ] + [{"id": 100 + n, "details": _rec(cus[f"st_{s}"])} for n, s in enumerate(ss.STATUSES)]
    insert(
        url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": key}],
        accounts=[{"shop_id": 1, "email": f"a{a['id']}@x.io", **a} for a in accounts],
    )
    ops = opskit.connect(url, stripe_api_base=sandbox.url)
    reports = ops.reconcile(progress=False)
    yield {
        "ops": ops,
        "cus": cus,
        "subs": subs,
        "report": reports["subscriptions"],
        "plan": ops.sync_plan(reports=reports),
        "stripe": ops.subscriptions(progress=False),
    }
    ops.ctx.db.engine.dispose()


def rows_of(report: pd.DataFrame, sid: str) -> pd.DataFrame:
    return report[report["stripe_subscription_id"] == sid]


def one(report: pd.DataFrame, sid: str) -> dict[str, Any]:
    rows = rows_of(report, sid)
    assert len(rows) == 1, f"{sid}: {len(rows)} rows"
    return rows.iloc[0].to_dict()


def planned(plan: pd.DataFrame, account_id: int) -> dict[str, str]:
    mine = plan[plan["account_id"].astype("string") == str(account_id)]
    return dict(zip(mine["key"], mine["new_value"], strict=True))


def test_report_frame_has_its_columns(world: dict[str, Any]) -> None:
    report = world["report"]
    pd.testing.assert_frame_equal(report.iloc[:0], frames.empty(frames.SUBSCRIPTION_REPORT))
    assert world["stripe"].set_index("stripe_subscription_id").loc[
        world["subs"]["two"][0], "stripe_price_ids"
    ] == ("price_addon,price_base")


def test_two_items_the_recorded_base_price_is_a_match(world: dict[str, Any]) -> None:
    row = one(world["report"], world["subs"]["two"][0])
    assert row["status"] == "match"
    assert (row["stripe_price_id"], row["stripe_price_ids"]) == (
        "price_base",
        "price_addon,price_base",
    )
    assert planned(world["plan"], 1) == {}


def test_a_price_none_of_the_items_have_is_flagged_and_never_overwritten(
    world: dict[str, Any],
) -> None:
    row = one(world["report"], world["subs"]["old_price"][0])
    assert row["status"] == "price_mismatch"
    assert pd.isna(row["stripe_price_id"])  # several items: no single price to record
    assert "price_addon,price_base" in row["detail"]
    assert row["suggested_action"].startswith("review")
    assert planned(world["plan"], 2) == {}  # never the add-on's price
    # one item: the plan may take Stripe's price
    single = one(world["report"], world["subs"]["one"][0])
    assert (single["status"], single["stripe_price_id"]) == ("price_mismatch", "price_pro")
    assert planned(world["plan"], 3) == {"stripe_price_id": "price_pro"}


def test_a_paused_subscription_nobody_records_appears(world: dict[str, Any]) -> None:
    row = one(world["report"], world["subs"]["paused"][0])
    assert (row["status"], row["stripe_status"], str(row["account_id"])) == (
        "orphan_in_stripe",
        "paused",
        "4",
    )
    assert planned(world["plan"], 4)["stripe_subscription_id"] == world["subs"]["paused"][0]


@pytest.mark.parametrize("status", ss.STATUSES)
def test_every_stripe_status_has_its_defined_effect(world: dict[str, Any], status: str) -> None:
    (sid,) = world["subs"][f"st_{status}"]
    rows = rows_of(world["report"], sid)
    if status in ("canceled", "incomplete_expired"):
        assert rows.empty  # ended and recorded nowhere: nothing to do
    else:
        assert list(rows["status"].astype(str)) == ["orphan_in_stripe"]
        assert f"({status})" in rows["detail"].iloc[0]


def test_ending_subscriptions_are_no_double_billing_and_show_when_they_end(
    world: dict[str, Any],
) -> None:
    report, subs = world["report"], world["subs"]
    kept, ending = subs["ending"]
    assert one(report, kept)["status"] == "match"
    row = one(report, ending)
    assert row["status"] == "orphan_in_stripe"  # live until it ends, recorded nowhere
    stripe = world["stripe"].set_index("stripe_subscription_id")
    assert row["ends_at"] == stripe.loc[ending, "current_period_end_at"]
    assert pd.isna(one(report, kept)["ends_at"])  # renews
    # a cancel_at long after the period end still bills again: a double-billing risk
    assert {one(report, s)["status"] for s in subs["far"]} == {"multiple_active"}
    assert one(report, subs["far"][1])["ends_at"] == pd.Timestamp(FAR, unit="s", tz="UTC")
    assert {one(report, s)["status"] for s in subs["double"]} == {"multiple_active"}
    # past_due still bills (Stripe retries the invoice)
    assert {one(report, s)["status"] for s in subs["pastdue"]} == {"multiple_active"}
    # an ended subscription shows when it ended
    gone = one(report, subs["gone"][0])
    assert gone["status"] == "match"
    assert gone["ends_at"] == pd.Timestamp(1_790_000_000, unit="s", tz="UTC")


def test_a_recorded_subscription_must_be_the_accounts_customers(world: dict[str, Any]) -> None:
    row = one(world["report"], world["subs"]["other"][0])
    assert (row["status"], str(row["account_id"])) == ("wrong_customer", "9")
    assert row["stripe_customer_id"] == world["cus"]["other"]
    assert f"belongs to customer {world['cus']['other']}" in row["detail"]
    assert world["cus"]["wrong"] in row["detail"]
    assert planned(world["plan"], 9) == {}


def test_reports_and_panels_explain_the_new_statuses() -> None:
    from opskit.reports.files import STATUS_HELP

    assert "wrong_customer" in frames.SUBSCRIPTION_STATUSES
    assert "mode_mismatch" in frames.CUSTOMER_STATUSES
    assert {"wrong_customer", "mode_mismatch"} <= set(STATUS_HELP)
