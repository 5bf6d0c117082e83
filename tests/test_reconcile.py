"""Reconciliation rules on small planted frames: statuses, precedence, dtypes, order."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from opskit.core import frames
from opskit.core.reconcile import (
    reconcile_customers,
    reconcile_subscriptions,
    summary,
)

NA = pd.NA


def shops_frame(*rows: tuple) -> pd.DataFrame:
    cols = ["shop_id", "shop_name", "mode", "key_problem"]
    return frames.conform(
        pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows]), frames.SHOPS
    )


def accounts_frame(rows: list[dict]) -> pd.DataFrame:
    return (
        frames.conform(pd.DataFrame(rows), frames.ACCOUNTS)
        if rows
        else frames.empty(frames.ACCOUNTS)
    )


def customers_frame(rows: list[dict]) -> pd.DataFrame:
    return (
        frames.conform(pd.DataFrame(rows), frames.CUSTOMERS)
        if rows
        else frames.empty(frames.CUSTOMERS)
    )


def subscriptions_frame(rows: list[dict]) -> pd.DataFrame:
    return (
        frames.conform(pd.DataFrame(rows), frames.SUBSCRIPTIONS)
        if rows
        else frames.empty(frames.SUBSCRIPTIONS)
    )


def acct(account_id, shop_id, email=None, name=None, cid=None, **extra) -> dict:
    return {
        "account_id": account_id,
        "shop_id": shop_id,
        "email": email,
        "name": name,
        "stripe_customer_id": cid,
        **extra,
    }


def cust(shop_id, cid, email=None, name=None, deleted=False) -> dict:
    return {
        "shop_id": shop_id,
        "stripe_customer_id": cid,
        "email": email,
        "name": name,
        "deleted": deleted,
    }


def by_account(report: pd.DataFrame) -> dict:
    rows = report[report["account_id"].notna()]
    return {int(a): row for a, (_, row) in zip(rows["account_id"], rows.iterrows(), strict=True)}


def assert_report_dtypes(report: pd.DataFrame, spec) -> None:
    assert list(report.columns) == list(spec)
    for col, dtype in spec.items():
        assert str(report[col].dtype) == str(dtype), col
        assert report[col].dtype != object, col
    assert report["status"].dtype == spec["status"]


SHOPS = shops_frame(
    (1, "Alpha", "test", None),
    (2, "Beta", "live", None),
    (3, "Gamma", "none", "no secret key"),
    (4, "Delta", "invalid", "a publishable pk_ key is in the secret-key column"),
    (5, "Epsilon", "test", None),  # failing shop
)
USABLE = SHOPS[SHOPS["shop_id"].isin(["1", "2"])]


# --------------------------------------------------------------------------- customers


@pytest.fixture
def customer_report() -> pd.DataFrame:
    accounts = accounts_frame(
        [
            acct(10, 1, "a@x.com", "Ann", "cus_a"),  # match
            acct(11, 1, "  B@X.COM ", " Bob ", "cus_b"),  # match after normalization
            acct(12, 1, "c@x.com", "Cid", "cus_c"),  # mismatch email
            acct(13, 1, "d@x.com", "Dee", "cus_d"),  # mismatch name
            acct(14, 1, "e@x.com", "Eve", "cus_e"),  # mismatch both
            acct(15, 1, "f@x.com", "Fay", None),  # no customer id
            acct(16, 1, "g@x.com", "Gus", "   "),  # blank id: no customer id
            acct(17, 1, None, None, None, details_error="invalid JSON at char 3"),
            acct(18, 1, "h@x.com", "Hal", "cus_gone"),  # deleted in Stripe
            acct(19, 1, "i@x.com", "Ivy", "cus_beta"),  # lives in shop 2
            acct(20, 1, "j@x.com", "Jo", "cus_nowhere"),  # missing
            acct(21, 1, "k@x.com", "Kim", "cus_dup"),  # duplicate with 22
            acct(22, 1, "k@x.com", "Kim", "cus_dup"),
            acct(23, 1, "orph1@x.com", "Or", None),  # candidate for orphan cus_o1
            acct(24, 1, "many@x.com", "M1", None),  # two candidates for cus_o2
            acct(25, 1, "MANY@x.com", "M2", None),
            acct(26, 1, None, "Nm", "cus_noemail"),  # None == "" on both sides
            acct(27, 1, "l@x.com", "Liv", "cus_live"),  # a live-mode customer, test key
            acct(30, 2, "z@x.com", "Zed", "cus_beta"),  # match in shop 2
            acct(40, 3, "q@x.com", "Q", "cus_q"),  # unconfigured shop
            acct(41, 3, "r@x.com", "R", None),
            acct(50, 5, "s@x.com", "S", "cus_s"),  # failing shop
        ]
    )
    customers = customers_frame(
        [
            cust(1, "cus_a", "a@x.com", "Ann"),
            cust(1, "cus_b", "b@x.com", "Bob"),
            cust(1, "cus_c", "c2@x.com", "Cid"),
            cust(1, "cus_d", "d@x.com", "Dora"),
            cust(1, "cus_e", "e2@x.com", "Eva"),
            cust(1, "cus_gone", None, None, deleted=True),
            cust(1, "cus_dup", "k@x.com", "Kim"),
            cust(1, "cus_o1", " Orph1@X.com", "Orphan One"),
            cust(1, "cus_o2", "many@x.com", "Orphan Two"),
            cust(1, "cus_o3", "nobody@x.com", "Orphan Three"),
            cust(1, "cus_o4", None, "No Email"),
            cust(1, "cus_deleted_orphan", None, None, deleted=True),  # never an orphan
            cust(1, "cus_noemail", "", "Nm"),
            cust(2, "cus_beta", "z@x.com", "Zed"),
            cust(5, "cus_s", "s@x.com", "S"),  # partial data of a failing shop: ignored
            cust(5, "cus_nowhere", "j@x.com", "Jo"),  # would make 20 wrong_shop: ignored
        ]
    )
    live_msg = (
        "No such customer: 'cus_live'; a similar object exists in live mode, "
        "but a test mode key was used to make this request."
    )
    return reconcile_customers(
        SHOPS,
        accounts,
        customers,
        shop_errors={5: "invalid API key (req_123)"},
        other_mode={1: {"cus_live": live_msg}},
    )


def test_customer_report_has_the_spec_columns_and_dtypes(customer_report):
    assert_report_dtypes(customer_report, frames.CUSTOMER_REPORT)
    assert_frame_equal(customer_report, frames.conform(customer_report, frames.CUSTOMER_REPORT))


def test_every_customer_status_is_found(customer_report):
    rows = by_account(customer_report)
    expected = {
        10: "match",
        11: "match",
        12: "mismatch",
        13: "mismatch",
        14: "mismatch",
        15: "no_customer_id",
        16: "no_customer_id",
        17: "no_customer_id",
        18: "deleted_in_stripe",
        19: "wrong_shop",
        20: "missing_in_stripe",
        21: "duplicate_link",
        22: "duplicate_link",
        23: "no_customer_id",
        24: "no_customer_id",
        25: "no_customer_id",
        26: "match",
        27: "mode_mismatch",
        30: "match",
        40: "shop_not_configured",
        41: "shop_not_configured",
        50: "shop_error",
    }
    assert {a: r["status"] for a, r in rows.items()} == expected
    assert set(customer_report["status"]) == set(frames.CUSTOMER_STATUSES)


def test_mismatch_fields_and_suggestions(customer_report):
    rows = by_account(customer_report)
    assert rows[12]["mismatch_fields"] == "email"
    assert rows[13]["mismatch_fields"] == "name"
    assert rows[14]["mismatch_fields"] == "email,name"
    assert rows[14]["stripe_email"] == "e2@x.com" and rows[14]["local_email"] == "e@x.com"
    assert "email and name" in rows[14]["suggested_action"]
    assert pd.isna(rows[10]["mismatch_fields"]) and pd.isna(rows[10]["suggested_action"])


def test_blank_customer_id_and_details_error(customer_report):
    rows = by_account(customer_report)
    assert pd.isna(rows[16]["stripe_customer_id"])
    assert "invalid JSON" in rows[17]["detail"]
    assert "details JSON" in rows[17]["suggested_action"]
    assert "no stripe_customer_id" in rows[15]["detail"]


def test_wrong_shop_names_the_owner(customer_report):
    rows = by_account(customer_report)
    assert rows[19]["detail"] == "customer belongs to shop 2 (Beta)"
    assert pd.isna(rows[19]["stripe_email"])


def test_failing_shop_rows_are_ignored_everywhere(customer_report):
    rows = by_account(customer_report)
    assert rows[20]["status"] == "missing_in_stripe"  # not wrong_shop via shop 5's partial rows
    assert rows[50]["detail"] == "invalid API key (req_123)"
    shop5 = customer_report[customer_report["shop_id"] == "5"]
    assert list(shop5["status"]) == ["shop_error"]


def test_unconfigured_shops(customer_report):
    rows = by_account(customer_report)
    assert rows[40]["detail"] == "no secret key"
    assert rows[40]["stripe_customer_id"] == "cus_q"
    # a shop with no accounts still gets one row, without an account
    delta = customer_report[customer_report["shop_id"] == "4"]
    assert len(delta) == 1
    assert delta["status"].iloc[0] == "shop_not_configured"
    assert pd.isna(delta["account_id"].iloc[0])
    assert "publishable" in delta["detail"].iloc[0]


def test_duplicate_link_names_the_other_accounts(customer_report):
    rows = by_account(customer_report)
    assert "22" in rows[21]["detail"] and "21" not in rows[21]["detail"]
    assert "21" in rows[22]["detail"]


def test_duplicate_link_beats_every_other_link_status():
    accounts = accounts_frame(
        [
            acct(1, 1, "a@x.com", "A", "cus_1"),
            acct(2, 1, "a@x.com", "A", "cus_1"),
            acct(3, 1, "a@x.com", "A", "cus_1"),
            acct(4, 1, "d@x.com", "D", "cus_del"),
            acct(5, 1, "d@x.com", "D", "cus_del"),
            acct(6, 1, "m@x.com", "M", "cus_missing"),
            acct(7, 1, "m@x.com", "M", "cus_missing"),
        ]
    )
    customers = customers_frame(
        [cust(1, "cus_1", "other@x.com", "Other"), cust(1, "cus_del", deleted=True)]
    )
    report = reconcile_customers(USABLE, accounts, customers)
    rows = by_account(report)
    assert {r["status"] for r in rows.values()} == {"duplicate_link"}
    assert "2, 3" in rows[1]["detail"]
    assert "1, 3" in rows[2]["detail"]
    assert "deleted" in rows[4]["detail"]
    assert "not in this shop" in rows[6]["detail"]
    # no orphan for the linked customer, even though the link is duplicated
    assert not (report["status"] == "orphan_in_stripe").any()


def test_same_id_in_two_shops_is_not_a_duplicate():
    accounts = accounts_frame(
        [acct(1, 1, "a@x.com", "A", "cus_1"), acct(2, 2, "a@x.com", "A", "cus_1")]
    )
    customers = customers_frame([cust(1, "cus_1", "a@x.com", "A")])
    rows = by_account(reconcile_customers(USABLE, accounts, customers))
    assert rows[1]["status"] == "match"
    assert rows[2]["status"] == "wrong_shop"
    assert rows[2]["detail"] == "customer belongs to shop 1 (Alpha)"


def test_orphans_and_their_suggestions(customer_report):
    orphans = customer_report[customer_report["status"] == "orphan_in_stripe"].set_index(
        "stripe_customer_id"
    )
    assert sorted(orphans.index) == ["cus_o1", "cus_o2", "cus_o3", "cus_o4"]
    assert orphans["account_id"].isna().all()
    assert orphans.loc["cus_o1", "suggested_action"] == "link to account 23"
    assert orphans.loc["cus_o2", "suggested_action"] == "link to one of accounts 24, 25"
    assert orphans.loc["cus_o3", "suggested_action"] == "review: no local account with this email"
    # no email on the customer: never paired with accounts that have no email either
    assert orphans.loc["cus_o4", "suggested_action"] == "review: no local account with this email"
    assert orphans.loc["cus_o1", "stripe_email"] == " Orph1@X.com"
    assert orphans.loc["cus_o1", "stripe_name"] == "Orphan One"
    assert orphans.loc["cus_o1", "shop_name"] == "Alpha"


def test_unlinked_accounts_get_the_reverse_suggestion(customer_report):
    rows = by_account(customer_report)
    assert rows[23]["suggested_action"] == "link to customer cus_o1"
    assert rows[24]["suggested_action"] == "link to customer cus_o2"
    assert rows[15]["suggested_action"] == "create a Stripe customer or link an existing one"


def test_orphan_with_linked_account_of_another_shop_is_still_an_orphan_there():
    accounts = accounts_frame([acct(1, 1, "a@x.com", "A", "cus_b")])
    customers = customers_frame([cust(2, "cus_b", "a@x.com", "A")])
    report = reconcile_customers(USABLE, accounts, customers)
    assert list(zip(report["shop_id"], report["status"], strict=True)) == [
        ("1", "wrong_shop"),
        ("2", "orphan_in_stripe"),
    ]


@pytest.mark.parametrize(
    ("local", "stripe", "status"),
    [
        ("A@B.com", "a@b.com", "match"),
        (" a@b.com\t", "a@b.com", "match"),
        ("a @b.com", "a@b.com", "match"),
        (None, "", "match"),
        ("", None, "match"),
        (None, None, "match"),
        ("a@b.com", "a@c.com", "mismatch"),
        ("a@b.com", None, "mismatch"),
    ],
)
def test_email_normalization(local, stripe, status):
    accounts = accounts_frame([acct(1, 1, local, "N", "cus_1")])
    customers = customers_frame([cust(1, "cus_1", stripe, "N")])
    report = reconcile_customers(USABLE, accounts, customers)
    assert report["status"].tolist() == [status]


@pytest.mark.parametrize(
    ("local", "stripe", "status"),
    [(" Ann ", "Ann", "match"), (None, "", "match"), ("ann", "Ann", "mismatch")],
)
def test_name_normalization(local, stripe, status):
    accounts = accounts_frame([acct(1, 1, "a@x.com", local, "cus_1")])
    customers = customers_frame([cust(1, "cus_1", "a@x.com", stripe)])
    assert reconcile_customers(USABLE, accounts, customers)["status"].tolist() == [status]


def test_customer_report_sort_order(customer_report):
    expected = customer_report.sort_values(
        ["shop_id", "account_id", "stripe_customer_id"], na_position="last"
    )
    assert_frame_equal(customer_report, expected.reset_index(drop=True))
    shop1 = customer_report[customer_report["shop_id"] == "1"]
    # orphans (no account) come last within their shop, by customer id
    assert shop1["status"].iloc[-4:].tolist() == ["orphan_in_stripe"] * 4
    assert shop1["stripe_customer_id"].iloc[-4:].tolist() == [
        "cus_o1",
        "cus_o2",
        "cus_o3",
        "cus_o4",
    ]
    assert customer_report.index.equals(pd.RangeIndex(len(customer_report)))


def test_customer_report_of_empty_inputs_is_typed():
    empty = reconcile_customers(
        frames.empty(frames.SHOPS), frames.empty(frames.ACCOUNTS), frames.empty(frames.CUSTOMERS)
    )
    assert_frame_equal(empty, frames.empty(frames.CUSTOMER_REPORT))
    # configured shops, nothing in them
    none_found = reconcile_customers(
        SHOPS[SHOPS["shop_id"].isin(["1", "2"])],
        frames.empty(frames.ACCOUNTS),
        frames.empty(frames.CUSTOMERS),
    )
    assert_frame_equal(none_found, frames.empty(frames.CUSTOMER_REPORT))


def test_inputs_with_plain_dtypes_and_missing_columns_are_accepted():
    shops = pd.DataFrame({"shop_id": [1], "shop_name": ["Alpha"], "mode": ["test"]})
    accounts = pd.DataFrame(
        {"account_id": [1], "shop_id": [1], "email": ["a@x.com"], "stripe_customer_id": ["cus_1"]}
    )
    customers = pd.DataFrame(
        {"shop_id": [1], "stripe_customer_id": ["cus_1"], "email": ["a@x.com"], "deleted": [False]}
    )
    report = reconcile_customers(shops, accounts, customers)
    assert report["status"].tolist() == ["match"]
    assert_report_dtypes(report, frames.CUSTOMER_REPORT)


def test_secrets_in_error_text_are_redacted():
    accounts = accounts_frame([acct(1, 1, "a@x.com", "A", "cus_1")])
    secret = "sk_test_" + "A1b2C3d4E5f6G7h8"
    report = reconcile_customers(
        SHOPS[SHOPS["shop_id"] == "1"],
        accounts,
        customers_frame([]),
        shop_errors={1: f"Invalid API Key provided: {secret} (req_9)"},
    )
    assert secret not in report["detail"].iloc[0]
    assert "req_9" in report["detail"].iloc[0]


# --------------------------------------------------------------------------- subscriptions


def sub(shop_id, sid, cid, status="active", price="price_1") -> dict:
    return {
        "shop_id": shop_id,
        "stripe_subscription_id": sid,
        "stripe_customer_id": cid,
        "status": status,
        "stripe_price_id": price,
    }


def sacct(account_id, shop_id, cid=None, sid=None, status=None, price=None) -> dict:
    return {
        "account_id": account_id,
        "shop_id": shop_id,
        "stripe_customer_id": cid,
        "stripe_subscription_id": sid,
        "subscription_status": status,
        "stripe_price_id": price,
    }


@pytest.fixture
def subscription_report() -> pd.DataFrame:
    accounts = accounts_frame(
        [
            sacct(10, 1, "cus_a", "sub_a", "active", "price_1"),  # match
            sacct(11, 1, "cus_b", "sub_b", "active", "price_1"),  # status drift
            sacct(12, 1, "cus_c", "sub_c", "active", "price_1"),  # price mismatch
            sacct(13, 1, "cus_d", "sub_d", "active", "price_1"),  # both: status_drift
            sacct(14, 1, "cus_e", "sub_e", "active", None),  # no local price: match
            sacct(15, 1, "cus_f", "sub_missing", "active", "price_1"),  # missing
            sacct(16, 1, "cus_g", "sub_g1", "active", "price_1"),  # multiple active
            sacct(17, 1, "cus_h", None),  # orphan sub_h is recorded nowhere
            sacct(18, 1, "cus_i", None),  # no subscription, nothing live: no row
            sacct(19, 1, None, None),  # nothing at all: no row
            sacct(20, 1, "cus_k", "sub_k", None, None),  # no local status: drift
            sacct(21, 1, "cus_w", "sub_w", "active", "price_1"),  # another customer's sub
            sacct(40, 3, "cus_q", "sub_q", "active", "price_1"),
            sacct(50, 5, "cus_s", "sub_s", "active", "price_1"),
        ]
    )
    subscriptions = subscriptions_frame(
        [
            sub(1, "sub_a", "cus_a"),
            sub(1, "sub_b", "cus_b", "past_due"),
            sub(1, "sub_c", "cus_c", "active", "price_2"),
            sub(1, "sub_d", "cus_d", "canceled", "price_2"),
            sub(1, "sub_e", "cus_e", "active", "price_9"),
            sub(1, "sub_g1", "cus_g", "active"),
            sub(1, "sub_g2", "cus_g", "trialing"),
            sub(1, "sub_g3", "cus_g", "canceled"),  # not part of the multiple
            sub(1, "sub_h", "cus_h", "active"),
            sub(1, "sub_i", "cus_i", "canceled"),  # not live: no orphan
            sub(1, "sub_k", "cus_k", "active"),
            sub(1, "sub_x", "cus_unknown", "unpaid"),  # orphan, no account links customer
            sub(1, "sub_m1", "cus_m", "active"),  # multiple active, no account at all
            sub(1, "sub_m2", "cus_m", "active"),
            sub(1, "sub_w", "cus_someone_else"),
            sub(5, "sub_s", "cus_s", "canceled"),  # failing shop: ignored
        ]
    )
    return reconcile_subscriptions(
        SHOPS, accounts, subscriptions, shop_errors={5: "timeout (req_5)"}
    )


def sub_rows(report: pd.DataFrame) -> dict:
    return {
        sid: row
        for sid, (_, row) in zip(report["stripe_subscription_id"], report.iterrows(), strict=True)
    }


def test_subscription_report_dtypes(subscription_report):
    assert_report_dtypes(subscription_report, frames.SUBSCRIPTION_REPORT)


def test_every_subscription_status_is_found(subscription_report):
    shop1 = subscription_report[subscription_report["shop_id"] == "1"]
    got = {s: str(r["status"]) for s, r in sub_rows(shop1).items()}
    assert got == {
        "sub_a": "match",
        "sub_b": "status_drift",
        "sub_c": "price_mismatch",
        "sub_d": "status_drift",
        "sub_e": "match",
        "sub_missing": "missing_in_stripe",
        "sub_g1": "multiple_active",
        "sub_g2": "multiple_active",
        "sub_h": "orphan_in_stripe",
        "sub_k": "status_drift",
        "sub_x": "orphan_in_stripe",
        "sub_m1": "multiple_active",
        "sub_m2": "multiple_active",
        "sub_w": "wrong_customer",
    }
    through_customer = {"abandoned_checkout", "payment_trouble", "unknown_product", "price_drift"}
    assert (
        set(subscription_report["status"]) == set(frames.SUBSCRIPTION_STATUSES) - through_customer
    )


def test_subscription_details(subscription_report):
    rows = sub_rows(subscription_report)
    assert (
        rows["sub_b"]["local_status"] == "active" and rows["sub_b"]["stripe_status"] == "past_due"
    )
    assert rows["sub_c"]["local_price_id"] == "price_1"
    assert rows["sub_c"]["stripe_price_id"] == "price_2"
    assert "status" in rows["sub_d"]["detail"] and "price" in rows["sub_d"]["detail"]
    assert "price" not in rows["sub_b"]["detail"]
    assert rows["sub_missing"]["account_id"] == "15"


def test_multiple_active_rows(subscription_report):
    rows = sub_rows(subscription_report)
    assert rows["sub_g1"]["account_id"] == "16"
    assert rows["sub_g1"]["local_status"] == "active"
    assert rows["sub_g2"]["account_id"] == "16"  # the account linking the customer
    assert pd.isna(rows["sub_g2"]["local_status"])
    assert "sub_g1, sub_g2" in rows["sub_g2"]["detail"]
    assert pd.isna(rows["sub_m1"]["account_id"])
    assert rows["sub_m1"]["stripe_customer_id"] == "cus_m"


def test_subscription_orphans(subscription_report):
    rows = sub_rows(subscription_report)
    assert rows["sub_h"]["account_id"] == "17"
    assert rows["sub_h"]["suggested_action"] == "record subscription on account 17"
    assert rows["sub_h"]["stripe_customer_id"] == "cus_h"
    assert pd.isna(rows["sub_x"]["account_id"])
    assert rows["sub_x"]["suggested_action"].startswith("review")


def test_accounts_without_findings_have_no_rows(subscription_report):
    assert not subscription_report["account_id"].isin(["18", "19"]).any()


def test_subscription_shop_rows(subscription_report):
    by_shop = subscription_report.groupby("shop_id")["status"].agg(lambda s: sorted(map(str, s)))
    assert by_shop["3"] == ["shop_not_configured"]
    assert by_shop["4"] == ["shop_not_configured"]  # no accounts: one row
    assert by_shop["5"] == ["shop_error"]
    row = subscription_report[subscription_report["shop_id"] == "3"].iloc[0]
    assert row["stripe_subscription_id"] == "sub_q" and row["account_id"] == "40"


def test_subscription_report_sort_order(subscription_report):
    expected = subscription_report.sort_values(
        ["shop_id", "account_id", "stripe_subscription_id"], na_position="last"
    )
    assert_frame_equal(subscription_report, expected.reset_index(drop=True))


def test_subscription_report_of_empty_inputs_is_typed():
    report = reconcile_subscriptions(
        frames.empty(frames.SHOPS),
        frames.empty(frames.ACCOUNTS),
        frames.empty(frames.SUBSCRIPTIONS),
    )
    assert_frame_equal(report, frames.empty(frames.SUBSCRIPTION_REPORT))
    report = reconcile_subscriptions(
        SHOPS[SHOPS["shop_id"] == "1"],
        accounts_frame([sacct(1, 1, "cus_1")]),
        frames.empty(frames.SUBSCRIPTIONS),
    )
    assert_frame_equal(report, frames.empty(frames.SUBSCRIPTION_REPORT))


# --------------------------------------------------------------------------- summary


def test_summary_counts_every_status_with_zeros(customer_report):
    s = summary(customer_report)
    assert list(s.columns) == [*frames.CUSTOMER_STATUSES, "total"]
    assert s.index.names == ["shop_id", "shop_name"]
    assert str(s.index.get_level_values(0).dtype) == "string"
    assert str(s.index.get_level_values(1).dtype) == "string"
    assert all(str(d) == "Int64" for d in s.dtypes)
    alpha = s.loc[("1", "Alpha")]
    assert alpha["match"] == 3
    assert alpha["mismatch"] == 3
    assert alpha["no_customer_id"] == 6
    assert alpha["orphan_in_stripe"] == 4
    assert alpha["shop_error"] == 0
    assert alpha["total"] == (customer_report["shop_id"] == "1").sum()
    assert s["total"].sum() == len(customer_report)
    assert s.loc[("4", "Delta"), "shop_not_configured"] == 1


def test_summary_of_subscription_report(subscription_report):
    s = summary(subscription_report)
    assert list(s.columns) == [*frames.SUBSCRIPTION_STATUSES, "total"]
    assert s.loc[("1", "Alpha"), "multiple_active"] == 4


def test_summary_of_empty_report():
    s = summary(frames.empty(frames.CUSTOMER_REPORT))
    assert len(s) == 0
    assert list(s.columns) == [*frames.CUSTOMER_STATUSES, "total"]
    assert all(str(d) == "Int64" for d in s.dtypes)
    assert str(s.index.get_level_values(0).dtype) == "string"


def test_shops_outside_the_report_only_name_the_owner_of_a_wrong_link():
    shops = shops_frame((1, "Alpha", "test", None))
    outside = shops_frame((2, "Beta", "test", None))
    accounts = accounts_frame([acct(1, 1, "a@x.com", "A", "cus_b"), acct(2, 1, cid="cus_gone")])
    customers = customers_frame([cust(2, "cus_b", "a@x.com", "A"), cust(2, "cus_other")])
    report = reconcile_customers(shops, accounts, customers, other_shops=outside)
    rows = by_account(report)
    assert rows[1]["status"] == "wrong_shop"
    assert rows[1]["detail"] == "customer belongs to shop 2 (Beta)"
    assert rows[2]["status"] == "missing_in_stripe"
    assert set(report["shop_id"]) == {"1"}  # Beta's customers are never orphans here
    without = by_account(reconcile_customers(shops, accounts, customers))
    assert without[1]["status"] == "missing_in_stripe"
