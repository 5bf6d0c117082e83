"""The data layer against real SQLite and PostgreSQL: loading, masking, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import opskit
from opskit.core import frames
from tests.conftest import fresh_postgres_url, fresh_sqlite_url
from tests.dbutil import insert

SK = "sk_test_" + "A1b2C3d4E5f6G7h8I9j0K1l2"
SK_LIVE = "sk_live_" + "Z9y8X7w6V5u4T3s2R1q0P9o8"
PK = "pk_test_" + "P1p2P3p4P5p6P7p8P9p0Q1q2"


def _shops() -> list[dict]:
    return [
        {"id": 1, "name": "Good", "stripe_secret_key": SK, "stripe_public_key": PK},
        {"id": 2, "name": "Live", "stripe_secret_key": SK_LIVE, "stripe_public_key": None},
        {"id": 3, "name": "NoKey", "stripe_secret_key": None, "stripe_public_key": None},
        {"id": 4, "name": "Blank", "stripe_secret_key": "   ", "stripe_public_key": ""},
        {"id": 5, "name": "Publishable", "stripe_secret_key": PK, "stripe_public_key": PK},
        {"id": 6, "name": "Spaces", "stripe_secret_key": f"  {SK}\n", "stripe_public_key": None},
        {"id": 7, "name": "Garbage", "stripe_secret_key": "hunter2", "stripe_public_key": SK},
    ]


def test_shops_are_typed_masked_and_moded(db_url: str) -> None:
    insert(db_url, shops=_shops())
    shops = opskit.connect(db_url).shops()
    pd.testing.assert_frame_equal(shops.iloc[:0], frames.empty(frames.SHOPS))
    by_name = shops.set_index("shop_name")
    assert by_name.loc["Good", "mode"] == "test"
    assert by_name.loc["Good", "secret_key"] == "sk_test_…K1l2"
    assert by_name.loc["Live", "mode"] == "live"
    assert by_name.loc["NoKey", "mode"] == "none"
    assert by_name.loc["Blank", "mode"] == "none"
    assert by_name.loc["Publishable", "mode"] == "invalid"
    assert "publishable" in by_name.loc["Publishable", "key_problem"]
    assert by_name.loc["Spaces", "mode"] == "test"  # whitespace around a key is tolerated
    assert by_name.loc["Garbage", "mode"] == "invalid"
    assert by_name.loc["Garbage", "public_key"] == "sk_test_…K1l2"  # misplaced secret masked
    text = shops.to_string() + repr(shops) + shops.to_csv()
    for raw in (SK, SK_LIVE, "hunter2"):
        assert raw not in text


def test_accounts_flatten_details_and_flag_bad_input(db_url: str) -> None:
    insert(db_url, shops=_shops()[:1])
    good = {
        "stripe_customer_id": "cus_1",
        "stripe_subscription_id": "sub_1",
        "subscription_status": "active",
        "stripe_price_id": "price_1",
        "loyalty": {"tier": "gold"},
    }
    insert(
        db_url,
        accounts=[
            {"id": 10, "shop_id": 1, "email": "a@x.com", "name": "A", "details": good},
            {"id": 11, "shop_id": 1, "email": "b@x.com", "name": "B", "details": None},
            {"id": 12, "shop_id": 1, "email": "c@x.com", "name": "C", "details": "[1, 2]"},
            {"id": 13, "shop_id": 1, "email": "d@x.com", "name": "D", "details": '"just text"'},
            {"id": 14, "shop_id": 1, "email": None, "name": None, "details": {}},
        ],
    )
    accounts = opskit.connect(db_url).accounts()
    pd.testing.assert_frame_equal(accounts.iloc[:0], frames.empty(frames.ACCOUNTS))
    assert list(accounts["account_id"]) == ["10", "11", "12", "13", "14"]  # nothing dropped
    a = accounts.set_index("account_id")
    assert a.loc["10", "stripe_customer_id"] == "cus_1"
    assert a.loc["10", "subscription_status"] == "active"
    assert '"tier": "gold"' in a.loc["10", "details"]  # unknown keys kept in the raw details
    assert pd.isna(a.loc["10", "details_error"])
    assert pd.isna(a.loc["11", "details_error"])  # SQL NULL: empty details, not broken
    assert "not an object" in a.loc["12", "details_error"]
    assert "not an object" in a.loc["13", "details_error"]
    assert pd.isna(a.loc["14", "stripe_customer_id"]) and pd.isna(a.loc["14", "details_error"])
    assert str(accounts["created_at"].dtype) == "datetime64[ns, UTC]"
    assert accounts["created_at"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql-text"])
def test_details_that_are_not_json_are_flagged(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A JSON column cannot hold invalid JSON; backends with a text column (SQLite, or
    # PostgreSQL with text) can, and opskit must flag it rather than crash or drop it.
    if kind == "sqlite":
        url = fresh_sqlite_url(tmp_path)
    else:
        url = fresh_postgres_url(request.getfixturevalue("pg_base_url"))
    engine = sa.create_engine(url)
    from opskit.backend.db import create_reference_tables

    create_reference_tables(engine, details_as_text=True)
    engine.dispose()
    insert(url, shops=_shops()[:1])
    insert(
        url,
        accounts=[
            {"id": 1, "shop_id": 1, "details": '{"stripe_customer_id": "cus_'},
            {"id": 2, "shop_id": 1, "details": ""},
            {"id": 3, "shop_id": 1, "details": '{"stripe_customer_id": "cus_ok"}'},
        ],
    )
    a = opskit.connect(url).accounts().set_index("account_id")
    assert "not valid JSON" in a.loc["1", "details_error"]
    assert "not valid JSON" in a.loc["2", "details_error"]
    assert a.loc["3", "stripe_customer_id"] == "cus_ok"
    assert a.loc["1", "details"] == '{"stripe_customer_id": "cus_'  # raw text kept for repair


def test_shop_filter_and_unknown_shop_ids(db_url: str) -> None:
    insert(db_url, shops=_shops()[:3])
    insert(db_url, accounts=[{"id": i, "shop_id": 1 + i % 3, "details": {}} for i in range(1, 10)])
    ops = opskit.connect(db_url)
    assert set(ops.accounts(shop_ids=[2])["shop_id"]) == {"2"}
    assert len(ops.accounts(shop_ids=2)) == 3
    assert len(ops.accounts(shop_ids="2")) == 3  # str and int name the same shop
    assert list(ops.shops([1, "3"])["shop_id"]) == ["1", "3"]
    with pytest.raises(opskit.UnknownShop, match=r"unknown shop id\(s\) 99; known: 1, 2, 3") as err:
        ops.accounts(shop_ids=[1, 99])
    assert isinstance(err.value, ValueError)
    assert "ops.shops()" in str(err.value)
    with pytest.raises(opskit.UnknownShop, match="north"):
        ops.accounts(shop_ids=["north"])


def test_empty_results_keep_every_column(db_url: str) -> None:
    insert(db_url, shops=_shops()[:1])
    ops = opskit.connect(db_url)
    pd.testing.assert_frame_equal(ops.accounts(), frames.empty(frames.ACCOUNTS))


def test_schema_mapping_for_a_backend_with_other_names(empty_db_url: str) -> None:
    schema = opskit.Schema.reference(
        shops_table="stores",
        shop_id="store_id",
        accounts_table="members",
        account_shop_id="store_id",
        account_details="meta",
        account_created_at=None,
        account_updated_at=None,
    )
    engine = sa.create_engine(empty_db_url)
    from opskit.backend.db import create_reference_tables

    create_reference_tables(engine, schema)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO stores (store_id, name, stripe_secret_key) VALUES (5, 'S', NULL)")
        )
        conn.execute(
            sa.text("INSERT INTO members (id, store_id, email, name) VALUES (1, 5, 'x@y.z', 'X')")
        )
    engine.dispose()
    ops = opskit.connect(empty_db_url, schema=schema)
    accounts = ops.accounts()
    assert list(accounts["shop_id"]) == ["5"]
    assert pd.isna(accounts["details_error"].iloc[0])  # NULL details are empty, not broken
    assert accounts["created_at"].isna().all()


def test_missing_table_or_column_names_it_and_lists_what_exists(empty_db_url: str) -> None:
    engine = sa.create_engine(empty_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE shops (id integer primary key, name text)"))
    engine.dispose()
    with pytest.raises(opskit.SchemaMismatch, match="no 'shops' and 'accounts' tables") as err:
        opskit.connect(empty_db_url)
    assert "found: shops" in str(err.value)
    assert "opskit.Schema" in str(err.value)
    with pytest.raises(opskit.SchemaMismatch, match="has no column 'stripe_secret_key'") as err:
        opskit.connect(empty_db_url, schema=opskit.Schema())
    assert "found: id, name" in str(err.value)
    with pytest.raises(opskit.SchemaMismatch, match="table 'vendors' not found.*found: shops"):
        opskit.connect(empty_db_url, schema=opskit.Schema(shops_table="vendors"))


def test_unreachable_or_malformed_database_urls(tmp_path: Path) -> None:
    with pytest.raises(opskit.DatabaseUnavailable, match="cannot connect") as err:
        opskit.connect("postgresql+psycopg://opskit:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in str(err.value)
    assert "OPSKIT_DATABASE_URL" in str(err.value)
    with pytest.raises(opskit.DatabaseUnavailable, match="cannot use database URL"):
        opskit.connect("not a url")
    with pytest.raises(opskit.DatabaseUnavailable, match="cannot use database URL"):
        opskit.connect("nosuchdb://x/y")
    with pytest.raises(opskit.DatabaseUnavailable, match="cannot connect"):
        opskit.connect(f"sqlite:///{tmp_path}/missing-dir/x.sqlite")


def test_default_connect_creates_the_embedded_demo_outside_the_repo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tmp_path / "userdata"
    monkeypatch.setenv("OPSKIT_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    ops = opskit.connect(demo="local")  # the database only: no sandbox for this test
    assert (data / "demo" / "demo.sqlite").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdata"]  # nothing in cwd
    shops = ops.shops()
    assert len(shops) == 7 and set(shops["mode"]) == {"test", "live", "none", "invalid"}
    assert len(ops.accounts()) >= 250


def test_env_var_selects_the_database(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    insert(db_url, shops=_shops()[:2])
    monkeypatch.setenv("OPSKIT_DATABASE_URL", db_url)
    assert list(opskit.connect().shops()["shop_name"]) == ["Good", "Live"]


def test_non_string_detail_values_read_the_same_on_both_databases(db_url: str) -> None:
    insert(db_url, shops=_shops()[:1])
    insert(
        db_url,
        accounts=[
            {"id": 1, "shop_id": 1, "details": {"subscription_status": True}},
            {"id": 2, "shop_id": 1, "details": {"subscription_status": "x", "stripe_price_id": 7}},
        ],
    )
    a, b = (row for _, row in opskit.connect(db_url).accounts().iterrows())
    assert a["subscription_status"] == "true"
    # A Stripe id that is not text is no id: unreadable details on both, never "7".
    assert pd.isna(b["stripe_price_id"]) and "not a Stripe id" in b["details_error"]


@pytest.mark.parametrize(
    "url",
    [
        # libpq/psycopg take the password from the query string too
        "postgresql+psycopg://opskit@127.0.0.1:1/nowhere?password=s3cret",
        "postgresql+psycopg://opskit@127.0.0.1:1/nowhere?sslpassword=s3cret&connect_timeout=2",
        # not parseable as a URL at all: nothing between ':' and '@' may be shown
        "postgresql+psycopg:/opskit:s3cret@127.0.0.1/db x",
        "not a url opskit:s3cret@host",
        "postgresql+psycopg://opskit:p@ss:s3cret@127.0.0.1:1/nowhere",
    ],
)
def test_database_errors_never_show_a_password(url: str) -> None:
    from opskit.common.urls import safe_url

    assert "s3cret" not in safe_url(url)
    with pytest.raises(opskit.DatabaseUnavailable) as err:
        opskit.connect(url)
    assert "s3cret" not in str(err.value)


def test_custom_settings_keep_the_environments_database_and_stripe_base(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    insert(db_url, shops=_shops()[:1])
    monkeypatch.setenv("OPSKIT_DATABASE_URL", db_url)
    monkeypatch.setenv("OPSKIT_STRIPE_API_BASE", "http://127.0.0.1:12111")
    ops = opskit.connect(settings=opskit.Settings(test_rate_limit=25.0))
    assert list(ops.shops()["shop_name"]) == ["Good"]
    assert ops.ctx.api_base == "http://127.0.0.1:12111"
    assert ops.ctx.settings.test_rate_limit == 25.0
