"""opskit on shop-backend's own tables, out of the box: UUID ids, the email in
``accounts.name``, details that may be SQL NULL or JSON null, float euro orders.

PostgreSQL with the backend's real column types (uuid, json, timestamp without
time zone) and SQLite; Stripe is the local sandbox through stripe-python.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import stripe
from typer.testing import CliRunner

import opskit
from opskit.core import frames
from tests import shopbackend
from tests.fixtures_sandbox import make_key

S1 = uuid.UUID("11111111-1111-4111-8111-111111111111")
S2 = uuid.UUID("22222222-2222-4222-8222-222222222222")
A = [uuid.UUID(f"aaaaaaaa-0000-4000-8000-00000000000{i}") for i in range(8)]


@pytest.fixture
def sb_url(empty_db_url: str) -> str:
    shopbackend.create(empty_db_url)
    return empty_db_url


def _plain(url: str, key: str | None = None) -> None:
    shopbackend.insert(
        url,
        shops=[
            {"id": S1, "name": "Alpha", "stripe_secret_key": key},
            {"id": S2, "name": "Beta", "stripe_secret_key": None},
        ],
        accounts=[
            {"id": A[0], "shop_id": S1, "name": "ann@example.com",
             "details": {"stripe_customer_id": "cus_1", "note": "vip"}},
            {"id": A[1], "shop_id": S1, "name": "bob@example.com", "details": "sql-null"},
            {"id": A[2], "shop_id": S1, "name": "cy@example.com", "details": None},  # JSON null
            {"id": A[3], "shop_id": S1, "name": "di@example.com", "details": {}},
            {"id": A[4], "shop_id": S1, "name": "ed@example.com", "details": [1, 2]},
            {"id": A[5], "shop_id": S2, "name": "fa@example.com", "details": {"x": 1}},
        ],
    )  # fmt: skip


def test_connect_detects_the_shop_backend_mapping_and_says_so(sb_url: str) -> None:
    _plain(sb_url)
    ops = opskit.connect(sb_url)
    assert ops.schema.profile == "shop-backend"
    assert "shop-backend mapping" in ops.mapping and "accounts.name" in ops.mapping
    assert "detected" in ops.mapping and "shop-backend" in repr(ops)


def test_accounts_have_text_ids_the_email_from_name_and_one_empty_details_rule(
    sb_url: str,
) -> None:
    _plain(sb_url)
    accounts = opskit.connect(sb_url).accounts()
    pd.testing.assert_frame_equal(accounts.iloc[:0], frames.empty(frames.ACCOUNTS))
    a = accounts.set_index("account_id")
    assert list(a.index) == [str(x) for x in A[:6]]
    assert a.loc[str(A[0]), "email"] == "ann@example.com" and pd.isna(a.loc[str(A[0]), "name"])
    assert a.loc[str(A[0]), "shop_id"] == str(S1)
    assert a.loc[str(A[0]), "stripe_customer_id"] == "cus_1"
    for empty in A[1:4]:  # SQL NULL, JSON null, {}: empty details, not broken ones
        assert pd.isna(a.loc[str(empty), "details_error"]), empty
        assert pd.isna(a.loc[str(empty), "stripe_customer_id"])
    assert "not an object" in a.loc[str(A[4]), "details_error"]


@pytest.mark.parametrize("form", ["uuid", "str", "upper"])
def test_every_id_form_names_the_same_shop_and_account(sb_url: str, form: str) -> None:
    _plain(sb_url)
    ops = opskit.connect(sb_url)
    shop: Any = {"uuid": S1, "str": str(S1), "upper": str(S1).upper()}[form]
    assert list(ops.shops(shop)["shop_id"]) == [str(S1)]
    assert set(ops.accounts([shop])["shop_id"]) == {str(S1)}
    account: Any = {"uuid": A[0], "str": str(A[0]), "upper": str(A[0]).upper()}[form]
    got, _ = ops.ctx.db.account(account)
    assert got.id == str(A[0]) and got.shop_id == str(S1) and got.email == "ann@example.com"
    with pytest.raises(opskit.UnknownAccount, match="not-a-uuid"):
        ops.ctx.db.account("not-a-uuid")
    with pytest.raises(opskit.UnknownShop, match="unknown shop id"):
        ops.shops([S1, uuid.UUID(int=5)])


def test_orders_in_cents_half_up_with_utc_times(sb_url: str) -> None:
    _plain(sb_url)
    o = [uuid.UUID(int=100 + i) for i in range(5)]
    shopbackend.insert(
        sb_url,
        orders=[
            {"id": o[0], "shop_id": S1, "account_id": A[0], "total": 19.995, "status": "complete",
             "created_at": datetime(2026, 3, 1, 12, 0),
             "completed_at": datetime(2026, 3, 1, 12, 5)},
            {"id": o[1], "shop_id": S1, "account_id": A[0], "total": 0.285, "status": "pending",
             "created_at": datetime(2026, 3, 2, 8, 30)},
            {"id": o[2], "shop_id": S1, "account_id": None, "total": 10.0, "status": "complete",
             "created_at": datetime(2026, 3, 3)},
            {"id": o[3], "shop_id": S1, "account_id": A[1], "total": None, "status": "pending",
             "created_at": datetime(2026, 3, 4)},
            {"id": o[4], "shop_id": S2, "account_id": A[5], "total": 1.005, "status": "complete",
             "created_at": datetime(2026, 3, 5)},
        ],
    )  # fmt: skip
    ops = opskit.connect(sb_url)
    orders = ops.orders()
    pd.testing.assert_frame_equal(orders.iloc[:0], frames.empty(frames.ORDERS))
    by_id = orders.set_index("order_id")
    # half-up through Decimal: a float total is never truncated (int(19.995 * 100) is 1999)
    assert by_id.loc[str(o[0]), "amount"] == 2000
    assert by_id.loc[str(o[1]), "amount"] == 29
    assert by_id.loc[str(o[2]), "amount"] == 1000 and pd.isna(by_id.loc[str(o[2]), "account_id"])
    assert pd.isna(by_id.loc[str(o[3]), "amount"])
    assert by_id.loc[str(o[4]), "amount"] == 101
    assert set(orders["currency"]) == {"eur"}
    assert by_id.loc[str(o[0]), "created_at"] == pd.Timestamp("2026-03-01 12:00", tz="UTC")
    assert by_id.loc[str(o[0]), "completed_at"] == pd.Timestamp("2026-03-01 12:05", tz="UTC")
    assert by_id.loc[str(o[0]), "account_id"] == str(A[0])
    assert list(ops.orders(S2)["order_id"]) == [str(o[4])]
    empty = ops.orders(str(S2).upper())
    assert len(empty) == 1


def test_a_reference_backend_has_no_orders(db_url: str) -> None:
    ops = opskit.connect(db_url)
    assert ops.schema.profile == "reference"
    pd.testing.assert_frame_equal(ops.orders(), frames.empty(frames.ORDERS))
    mapped = opskit.connect(db_url, schema=opskit.Schema.reference(orders_table="orders"))
    with pytest.raises(opskit.SchemaMismatch, match="table 'orders' not found"):
        mapped.orders()


def test_create_customer_sends_the_email_only_and_writes_json_null_details(
    sb_url: str, sandbox: Any
) -> None:
    key = make_key("sbcreate")
    _plain(sb_url, key)
    ops = opskit.connect(sb_url, stripe_api_base=sandbox.url)
    for account in (A[2], A[1]):  # JSON null, then SQL NULL details
        cus = ops.create_customer(account, actor="ana")
        assert cus["email"] == ops.ctx.db.account(account)[0].email
        assert cus["name"] is None  # the backend's checkout sends the email only
        got, _ = ops.ctx.db.account(account)
        assert got.details == {"stripe_customer_id": cus["id"]}
    live = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    assert live.v1.customers.retrieve(cus["id"]).email == "bob@example.com"
    log = ops.audit_log(action="customer.create")
    assert set(log["shop_id"]) == {str(S1)} and str(log["shop_id"].dtype) == "string"
    with pytest.raises(opskit.DetailsUnreadable):
        ops.create_customer(A[4], actor="ana")
    if ops.ctx.db.dialect == "postgresql":
        names = sa.inspect(ops.ctx.db.engine).get_table_names(schema="public")
        assert "opskit_audit" not in names  # never in the backend's migration-managed schema


def test_cli_reconciles_a_shop_backend_postgresql_with_no_mapping(
    pg_base_url: str, sandbox: Any, tmp_path: Path
) -> None:
    from opskit.faces.cli import app
    from tests.conftest import fresh_postgres_url

    url = fresh_postgres_url(pg_base_url)
    shopbackend.create(url)
    key = make_key("sbcli")
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    good = client.v1.customers.create(params={"email": "ann@example.com"})
    drifted = client.v1.customers.create(params={"email": "old@example.com"})
    shopbackend.insert(
        url,
        shops=[{"id": S1, "name": "Alpha", "stripe_secret_key": key}],
        accounts=[
            {"id": A[0], "shop_id": S1, "name": "ann@example.com",
             "details": {"stripe_customer_id": good.id}},
            {"id": A[1], "shop_id": S1, "name": "bob@example.com",
             "details": {"stripe_customer_id": drifted.id}},
            {"id": A[2], "shop_id": S1, "name": "cy@example.com", "details": None},
            {"id": A[3], "shop_id": S1, "name": "di@example.com", "details": "sql-null"},
        ],
    )  # fmt: skip
    out = tmp_path / "report.csv"
    result = CliRunner().invoke(
        app,
        ["reconcile", "--database-url", url, "--stripe-api-base", sandbox.url,
         "--report", "customers", "--out", str(out), "--shop", str(S1).upper()],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "shop-backend mapping" in result.output
    report = pd.read_csv(tmp_path / "report.csv", dtype={"account_id": "string"})
    by_account = dict(zip(report["account_id"], report["status"], strict=False))
    assert by_account == {
        str(A[0]): "match",
        str(A[1]): "mismatch",
        str(A[2]): "no_customer_id",
        str(A[3]): "no_customer_id",
    }
    assert report.loc[report["account_id"] == str(A[2]), "detail"].iloc[0] == (
        "account details have no stripe_customer_id"
    )


def test_create_subscription_the_backends_way(sb_url: str, sandbox: Any) -> None:
    key = make_key("sbsub")
    _plain(sb_url, key)
    p1, p2 = uuid.UUID(int=501), uuid.UUID(int=502)
    shopbackend.insert(
        sb_url,
        products=[
            {"id": p1, "shop_id": S1, "price": 9.99, "recurring_price_monthly": 9.99},
            {"id": p2, "shop_id": S1, "price": 4.5, "recurring_price_monthly": 4.5},
        ],
    )
    m1, m2 = sandbox.seed(
        key,
        "prices",
        [
            {"unit_amount": 999, "currency": "eur", "recurring": {"interval": "month"},
             "lookup_key": f"monthly-{p1}"},
            {"unit_amount": 450, "currency": "eur", "recurring": {"interval": "month"},
             "lookup_key": f"monthly-{p2}"},
        ],
    )  # fmt: skip
    ops = opskit.connect(sb_url, stripe_api_base=sandbox.url)
    ops.create_customer(A[3], actor="ana")
    before, _ = ops.ctx.db.account(A[3])
    # products plus interval, resolved by lookup key, started incomplete as at checkout
    sub = ops.create_subscription(
        A[3], products=[p1, str(p2).upper()], payment_behavior="default_incomplete", actor="ana"
    )
    assert sub["status"] == "incomplete"
    assert sorted(i["price"]["id"] for i in sub["items"]["data"]) == sorted([m1, m2])
    after, _ = ops.ctx.db.account(A[3])
    assert after.details == before.details  # shop-backend records no subscription locally
    # several prices at once, as one subscription with one item each (the customer has a card)
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    pm = client.v1.payment_methods.create(params={"type": "card", "card": card})
    cid = after.details["stripe_customer_id"]
    client.v1.payment_methods.attach(pm.id, params={"customer": cid})
    client.v1.customers.update(cid, params={"invoice_settings": {"default_payment_method": pm.id}})
    two = ops.create_subscription(A[3], [m1, m2], actor="ana", nonce="second", force=True)
    assert len(two["items"]["data"]) == 2
    subs = ops.subscriptions(S1, progress=False).set_index("stripe_subscription_id")
    assert subs.loc[two["id"], "stripe_price_ids"] == ",".join(sorted([m1, m2]))
    assert subs.loc[two["id"], "lookup_keys"] == ",".join(
        sorted([f"monthly-{p1}", f"monthly-{p2}"])
    )
    with pytest.raises(opskit.InputError, match=f"yearly-{p1}"):
        ops.create_subscription(A[3], products=p1, interval="year", actor="ana")
    with pytest.raises(opskit.InputError, match="not both"):
        ops.create_subscription(A[3], m1, products=p1, actor="ana")
    report = ops.reconcile_subscriptions(S1, progress=False)
    mine = report[report["stripe_subscription_id"].isin([sub["id"], two["id"]])]
    assert set(mine["account_id"]) == {str(A[3])}
    assert (
        set(mine["status"]) == {"match", "multiple_active"} - {"multiple_active"} or len(mine) == 2
    )


def test_a_mapping_file_maps_other_names_and_a_bad_guess_names_what_exists(
    empty_db_url: str, tmp_path: Path
) -> None:
    from opskit.faces.cli import app

    engine = sa.create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE stores (id text primary key, name text, sk text)"))
        conn.execute(sa.text("CREATE TABLE members (id text primary key, store text, "
                             "email_address text, meta text)"))  # fmt: skip
        conn.execute(sa.text(f"INSERT INTO stores VALUES ('{S1}', 'Alpha', NULL)"))
        conn.execute(sa.text(f"INSERT INTO members VALUES ('{A[0]}', '{S1}', 'a@x.io', NULL)"))
    engine.dispose()
    with pytest.raises(opskit.SchemaMismatch, match="found: members, stores"):
        opskit.connect(empty_db_url)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        'shops_table = "stores"\nshop_secret_key = "sk"\nshop_public_key = ""\n'
        'accounts_table = "members"\naccount_shop_id = "store"\n'
        'account_email = "email_address"\naccount_details = "meta"\n'
        "orders_table = false\nproducts_table = false\n"
    )
    with pytest.raises(opskit.ConfigurationError, match="orders_table"):
        opskit.Schema.from_file(mapping)  # false is not a table name, nor None
    mapping.write_text(
        'shops_table = "stores"\nshop_secret_key = "sk"\n'
        'accounts_table = "members"\naccount_shop_id = "store"\n'
        'account_email = "email_address"\naccount_details = "meta"\n'
    )
    schema = opskit.Schema.from_file(mapping)
    with pytest.raises(opskit.SchemaMismatch, match="no column 'stripe_public_key'"):
        opskit.connect(empty_db_url, schema=schema)
    schema = dataclasses.replace(schema, shop_public_key=None)
    ops = opskit.connect(empty_db_url, schema=schema)
    accounts = ops.accounts()
    assert list(accounts["email"]) == ["a@x.io"] and pd.isna(accounts["details_error"].iloc[0])
    assert "given" in ops.mapping
    mapping.write_text(mapping.read_text() + 'shop_public_key = ""\n')
    result = CliRunner().invoke(
        app, ["shops", "--database-url", empty_db_url, "--schema", str(mapping)]
    )
    assert result.exit_code == 0, result.output
    assert str(S1) in result.output and "Alpha" in result.output


def test_writes_refuse_unreadable_details_before_any_request(sb_url: str, sandbox: Any) -> None:
    """Invalid JSON text and a Stripe id that is not text are refused up front.

    Found by a new user: both used to create a Stripe customer opskit then could not
    link (or crashed with a raw JSONDecodeError on SQLite's JSON column).
    """
    key = make_key("sbunreadable")
    shopbackend.insert(
        sb_url,
        shops=[{"id": S1, "name": "Alpha", "stripe_secret_key": key}],
        accounts=[
            {"id": A[0], "shop_id": S1, "name": "ann@example.com",
             "details": {"stripe_customer_id": {"nested": 1}, "note": "vip"}},
            {"id": A[1], "shop_id": S1, "name": "bob@example.com", "details": {}},
        ],
    )  # fmt: skip
    ops = opskit.connect(sb_url, stripe_api_base=sandbox.url)
    targets = [A[0]]
    if ops.ctx.db.dialect == "sqlite":  # PostgreSQL's json type refuses invalid text itself
        engine = sa.create_engine(sb_url)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE accounts SET details = '{not json' WHERE id = :id"),
                {"id": str(A[1]) if isinstance(A[1], uuid.UUID) else A[1]},
            )
        engine.dispose()
        targets.append(A[1])
    for account in targets:
        with pytest.raises(opskit.DetailsUnreadable):
            ops.create_customer(account, actor="ana")
        with pytest.raises(opskit.DetailsUnreadable):
            ops.create_payment_intent(account, 1999, "eur", actor="ana")
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    assert client.v1.customers.list().data == []  # nothing was created in Stripe


def test_create_customer_trims_the_email_and_refuses_an_account_without_one(
    sb_url: str, sandbox: Any
) -> None:
    key = make_key("sbtrim")
    shopbackend.insert(
        sb_url,
        shops=[{"id": S1, "name": "Alpha", "stripe_secret_key": key}],
        accounts=[
            {"id": A[0], "shop_id": S1, "name": "  Bob@X.IO\u00a0", "details": {}},
            {"id": A[1], "shop_id": S1, "name": None, "details": {}},
        ],
    )  # fmt: skip
    ops = opskit.connect(sb_url, stripe_api_base=sandbox.url)
    assert ops.create_customer(A[0], actor="ana")["email"] == "Bob@X.IO"
    with pytest.raises(opskit.InputError, match="no email"):
        ops.create_customer(A[1], actor="ana")
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    assert [c.email for c in client.v1.customers.list().data] == ["Bob@X.IO"]
    refused = ops.audit_log(action="customer.create")
    assert "refused" in set(refused["outcome"])
