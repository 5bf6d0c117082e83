"""Subscriptions through the customer (shop-backend) and Customer snapshots: the pure rules
on small planted frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from opskit.core import frames
from opskit.core.snapshots import annotate, compare_snapshots, snapshot_plan
from opskit.core.subscriptions import parse_lookup_keys, reconcile_customer_subscriptions

NOW = pd.Timestamp("2026-11-29 12:00", tz="UTC")
P1 = "aaaaaaaa-0000-4000-8000-000000000001"
P2 = "aaaaaaaa-0000-4000-8000-000000000002"


def conform(rows: list[dict], spec: frames.Spec) -> pd.DataFrame:
    return frames.conform(pd.DataFrame(rows), spec) if rows else frames.empty(spec)


SHOPS = conform(
    [
        {"shop_id": "s1", "shop_name": "One", "mode": "test"},
        {"shop_id": "s2", "shop_name": "Two", "mode": "none", "key_problem": "no key"},
    ],
    frames.SHOPS,
)
ACCOUNTS = conform(
    [
        {"account_id": "a1", "shop_id": "s1", "stripe_customer_id": "cus_1"},
        {"account_id": "a2", "shop_id": "s1", "stripe_customer_id": "cus_2"},
        {"account_id": "a0", "shop_id": "s1", "stripe_customer_id": "cus_2"},  # lower id wins
        {"account_id": "a3", "shop_id": "s1", "stripe_customer_id": None},
        {"account_id": "b1", "shop_id": "s2", "stripe_customer_id": "cus_9"},
    ],
    frames.ACCOUNTS,
)
PRODUCTS = conform(
    [
        {"product_id": P1, "shop_id": "s1", "monthly_amount": 999, "yearly_amount": 9900,
         "currency": "eur"},
        {"product_id": P2, "shop_id": "s1", "monthly_amount": 450, "yearly_amount": None,
         "currency": "eur"},
    ],
    frames.PRODUCTS,
)  # fmt: skip


def sub(sid: str, cus: str, status: str = "active", created: str = "2026-10-01", **kw) -> dict:
    return {"shop_id": "s1", "stripe_subscription_id": sid, "stripe_customer_id": cus,
            "status": status, "created_at": pd.Timestamp(created, tz="UTC"), **kw}  # fmt: skip


def item(sid: str, key: str | None, amount: int, interval: str = "month", cur: str = "eur") -> dict:
    return {"shop_id": "s1", "stripe_subscription_id": sid,
            "stripe_subscription_item_id": f"si_{sid}_{key}", "stripe_price_id": f"price_{key}",
            "lookup_key": key, "unit_amount": amount,
            "currency": cur, "interval": interval}  # fmt: skip


@pytest.fixture
def report() -> pd.DataFrame:
    subs = conform(
        [
            sub("sub_ok", "cus_1"),
            sub("sub_multi_item", "cus_2", cancel_at_period_end=True),
            sub("sub_fresh", "cus_1", "incomplete", "2026-11-29 09:00"),
            sub("sub_old", "cus_1", "incomplete", "2026-11-25"),
            sub("sub_expired", "cus_1", "incomplete_expired", "2026-11-01"),
            sub("sub_orphan", "cus_x"),
            sub("sub_dup1", "cus_3"),
            sub("sub_dup2", "cus_3", "trialing"),
            sub("sub_late", "cus_4", "past_due"),
            sub("sub_gone", "cus_2"),
            sub("sub_drift", "cus_5"),
            sub("sub_cancel", "cus_1", "canceled"),
            sub("sub_paused", "cus_5", "paused"),
        ],
        frames.SUBSCRIPTIONS,
    )
    accounts = pd.concat(
        [ACCOUNTS, conform([{"account_id": f"a{i}", "shop_id": "s1",
                             "stripe_customer_id": f"cus_{i}"} for i in (3, 4, 5)],
                           frames.ACCOUNTS)], ignore_index=True,
    )  # fmt: skip
    items = conform(
        [
            item("sub_ok", f"monthly-{P1}", 999),
            item("sub_multi_item", f"monthly-{P1}", 999),
            item("sub_multi_item", f"monthly-{P2}", 450),
            item("sub_fresh", f"monthly-{P1}", 999),
            item("sub_old", f"monthly-{P1}", 999),
            item("sub_expired", f"yearly-{P1}", 9900, "year"),
            item("sub_orphan", f"monthly-{P1}", 999),
            item("sub_dup1", f"monthly-{P1}", 999),
            item("sub_dup2", f"yearly-{P1}", 9900, "year"),
            item("sub_late", f"monthly-{P1}", 999),
            item("sub_gone", "monthly-bbbbbbbb-0000-4000-8000-000000000009", 1500),
            item("sub_drift", f"monthly-{P2}", 500),
            item("sub_cancel", f"monthly-{P1}", 999),
            item("sub_paused", f"monthly-{P1}", 999),
        ],
        frames.SUBSCRIPTION_ITEMS,
    )
    return reconcile_customer_subscriptions(SHOPS, accounts, subs, items, PRODUCTS, now=NOW)


def test_every_status_by_its_rule(report: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(report.iloc[:0], frames.empty(frames.SUBSCRIPTION_REPORT))
    got = dict(zip(report["stripe_subscription_id"].fillna("-"), report["status"], strict=True))
    assert got == {
        "sub_ok": "match",
        "sub_multi_item": "match",
        "sub_fresh": "match",  # a checkout an hour old is not abandoned yet
        "sub_old": "abandoned_checkout",
        "sub_expired": "abandoned_checkout",
        "sub_orphan": "orphan_in_stripe",
        "sub_dup1": "multiple_active",
        "sub_dup2": "multiple_active",
        "sub_late": "payment_trouble",
        "sub_gone": "unknown_product",
        "sub_drift": "price_drift",
        "sub_paused": "match",
        "-": "shop_not_configured",  # shop s2's account
    }  # sub_cancel: a canceled subscription is no finding
    rows = report.set_index(report["stripe_subscription_id"].fillna("-"))
    assert rows.loc["sub_multi_item", "account_id"] == "a0"  # the lowest linking account
    assert rows.loc["sub_multi_item", "stripe_price_id"] == f"price_monthly-{P1},price_monthly-{P2}"
    assert pd.isna(rows.loc["sub_orphan", "account_id"])
    assert rows.loc["sub_fresh", "stripe_status"] == "incomplete"
    assert "500 eur, product 450 eur" in rows.loc["sub_drift", "detail"]
    assert "names product bbbbbbbb" in rows.loc["sub_gone", "detail"]
    assert "2 subscriptions that will bill: sub_dup1, sub_dup2" in rows.loc["sub_dup1", "detail"]
    assert rows.loc["-", "account_id"] == "b1"


def test_a_subscription_ending_at_period_end_is_no_double_billing() -> None:
    subs = conform(
        [sub("sub_a", "cus_1"), sub("sub_b", "cus_1", cancel_at_period_end=True)],
        frames.SUBSCRIPTIONS,
    )
    report = reconcile_customer_subscriptions(SHOPS.iloc[:1], ACCOUNTS, subs, now=NOW)
    assert set(report["status"]) == {"match"}


def test_without_products_no_item_check_and_empty_inputs_are_typed() -> None:
    subs = conform([sub("sub_a", "cus_1")], frames.SUBSCRIPTIONS)
    report = reconcile_customer_subscriptions(SHOPS.iloc[:1], ACCOUNTS, subs, now=NOW)
    assert list(report["status"]) == ["match"]
    empty = reconcile_customer_subscriptions(
        frames.empty(frames.SHOPS), frames.empty(frames.ACCOUNTS),
        frames.empty(frames.SUBSCRIPTIONS), frames.empty(frames.SUBSCRIPTION_ITEMS),
        frames.empty(frames.PRODUCTS),
    )  # fmt: skip
    pd.testing.assert_frame_equal(empty, frames.empty(frames.SUBSCRIPTION_REPORT))


def test_lookup_keys_name_products_and_intervals() -> None:
    got = parse_lookup_keys(
        pd.Series([f"monthly-{P1.upper()}", f"yearly-{P2}", "monthly-", "gold", None])
    )
    assert list(got["interval"].fillna("-")) == ["month", "year", "-", "-", "-"]
    assert list(got["product_id"].fillna("-")) == [P1, P2, "-", "-", "-"]


# -- snapshots -----------------------------------------------------------------------------


LIVE = {"id": "cus_1", "object": "customer", "email": "ann@example.com", "name": None,
        "address": None, "invoice_settings": {"default_payment_method": "pm_1"},
        "metadata": {}, "balance": 0, "currency": "eur", "created": 1}  # fmt: skip


def _accounts(snapshots: dict[str, object]) -> pd.DataFrame:
    rows = []
    for n, (aid, snap) in enumerate(snapshots.items()):
        rows.append({"account_id": aid, "shop_id": "s1", "stripe_customer_id": "cus_1",
                     "stripe_customer": snap if snap is None or isinstance(snap, str)
                     else json.dumps(snap),
                     "stripe_synced_at": pd.Timestamp("2026-11-01", tz="UTC")
                     + pd.Timedelta(days=n)})  # fmt: skip
    return conform(rows, frames.ACCOUNTS)


def test_snapshots_fresh_stale_and_absent() -> None:
    customers = conform(
        [{"shop_id": "s1", "stripe_customer_id": "cus_1", "email": "ann@example.com",
          "deleted": False, "stripe_object": json.dumps(LIVE)}],
        frames.CUSTOMERS,
    )  # fmt: skip
    moved = {**LIVE, "email": "old@example.com", "address": {"city": "Delft"}}
    no_card = {**LIVE, "invoice_settings": {"default_payment_method": None}, "metadata": None}
    accounts = _accounts(
        {"a1": LIVE, "a2": moved, "a3": no_card, "a4": None, "a5": "[1, 2]",
         "a6": {**LIVE, "id": "cus_old"}, "a7": {**LIVE, "livemode": False, "updated": 5}}
    )  # fmt: skip
    snaps = compare_snapshots(accounts, customers).set_index("account_id")
    assert snaps.loc["a1", "snapshot_status"] == "fresh"
    assert snaps.loc["a2", "snapshot_status"] == "stale"
    assert snaps.loc["a2", "snapshot_fields"] == "email,address"
    assert snaps.loc["a3", "snapshot_fields"] == "default_payment_method"  # {} and null alike
    assert pd.isna(snaps.loc["a4", "snapshot_status"])
    assert snaps.loc["a5", "snapshot_fields"] == "unreadable"
    assert snaps.loc["a6", "snapshot_fields"] == "id"
    assert snaps.loc["a7", "snapshot_status"] == "fresh"  # fields nobody sees do not count
    assert snaps.loc["a2", "synced_at"] == pd.Timestamp("2026-11-02", tz="UTC")
    tomb = conform(
        [{"shop_id": "s1", "stripe_customer_id": "cus_1", "deleted": True,
          "stripe_object": json.dumps({"id": "cus_1", "deleted": True})}],
        frames.CUSTOMERS,
    )  # fmt: skip
    gone = compare_snapshots(_accounts({"a1": LIVE}), tomb)
    assert gone["snapshot_fields"].iloc[0] == "deleted"


def test_annotate_and_plan_the_backends_sync() -> None:
    customers = conform(
        [{"shop_id": "s1", "stripe_customer_id": "cus_1", "email": "ann@example.com",
          "deleted": False, "stripe_object": json.dumps(LIVE)}],
        frames.CUSTOMERS,
    )  # fmt: skip
    accounts = _accounts({"a1": LIVE, "a2": {**LIVE, "email": "x@y.z"}, "a3": None})
    report = conform(
        [{"shop_id": "s1", "account_id": a, "stripe_customer_id": "cus_1", "status": "match"}
         for a in ("a1", "a2", "a3")]
        + [{"shop_id": "s1", "stripe_customer_id": "cus_o", "status": "orphan_in_stripe"}],
        frames.CUSTOMER_REPORT,
    )  # fmt: skip
    annotated = annotate(report, compare_snapshots(accounts, customers))
    pd.testing.assert_frame_equal(annotated.iloc[:0], frames.empty(frames.CUSTOMER_REPORT))
    assert list(annotated["snapshot_status"].astype("string").fillna("-")) == [
        "fresh",
        "stale",
        "-",
        "-",
    ]
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    plan = snapshot_plan(annotated, accounts, customers, now=now)
    assert list(zip(plan["account_id"], plan["key"], plan["source_status"], strict=True)) == [
        ("a2", "stripe_customer", "snapshot_stale"),
        ("a2", "stripe_synced_at", "snapshot_stale"),
        ("a3", "stripe_customer", "snapshot_missing"),
        ("a3", "stripe_synced_at", "snapshot_missing"),
    ]
    assert json.loads(plan["new_value"].iloc[0]) == LIVE
    assert plan["new_value"].iloc[1] == "2026-11-29T12:00:00+00:00"
