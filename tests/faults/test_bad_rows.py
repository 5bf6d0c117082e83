"""One bad row never stops a run: it becomes a flagged row naming it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key


def test_details_nested_ten_thousand_deep_are_a_flagged_row(
    tmp_path: Path, sandbox: Sandbox, tally: Tally
) -> None:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    deep = '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"
    insert(
        url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": make_key("deep")}],
        accounts=[
            {"id": 10, "shop_id": 1, "email": "a@x.io", "details": deep},
            {"id": 11, "shop_id": 1, "email": "b@x.io", "details": {}},
        ],
    )
    ops = opskit.connect(url, stripe_api_base=sandbox.url)

    def scenario() -> tuple[str, str]:
        accounts = ops.accounts()
        flagged = accounts[accounts["details_error"].notna()]
        if list(flagged["account_id"].astype(str)) != ["10"]:
            return "wrong", f"flagged {list(flagged['account_id'])}"
        if "nested too deep" not in flagged["details_error"].iloc[0]:
            return "wrong", str(flagged["details_error"].iloc[0])
        report = ops.reconcile_customers(progress=False)
        if set(report["account_id"].dropna().astype(str)) != {"10", "11"}:
            return "wrong", "an account is missing from the report"
        ops.sync_plan(progress=False)
        return "right", "flagged, the run went on"

    assert tally.run("details 10,000 deep", scenario) == "right"


# -- kind 3: bad timestamps, bad shop ids, non-text Stripe ids (SQLite and PostgreSQL) ------------

# (label, value stored in orders.created_at, what the reason must say). PostgreSQL's
# timestamp column refuses text that is not a time at write time: only its own
# infinities and NULL can be planted there (its 'yesterday' is stored as a real date).
ORDER_TIMES = [
    ("infinity", "infinity", "endless time"),
    ("-infinity", "-infinity", "endless time"),
    ("zero date", "0000-00-00 00:00:00", "zero date"),
    # SQLite's DateTime column (NUMERIC affinity) keeps this one as the number itself
    ("epoch text", "1700000000", "'1700000000'"),
    ("free text", "yesterday", "not a date: 'yesterday'"),
    ("NULL", None, "created_at is empty"),
]
PG_TIMES = {"infinity", "-infinity", "NULL"}
# details["stripe_synced_at"] values (JSON on both databases: anything can be planted)
SYNCED = [
    ("infinity", "infinity", "endless time"),
    ("zero date", "0000-00-00 00:00:00", "zero date"),
    ("epoch text", "1700000000", "as text, not a date"),
    ("epoch number", 1700000000, "not a date"),
    ("free text", "yesterday", "not a date: 'yesterday'"),
]
NON_TEXT_IDS = [("number", 12345), ("list", ["cus_x"]), ("object", {"id": "cus_x"})]


def _shop_backend_world(url: str, sandbox: Sandbox) -> dict[str, Any]:
    """Two shops in shop-backend's own tables (uuid ids, json details, timestamps without
    zone); shop A's rows carry every bad value, shop B's are all good."""
    from tests import shopbackend

    shopbackend.create(url)
    keys = {"A": make_key("badA"), "B": make_key("badB")}
    sizes = {"A": 12, "B": 3}
    shops = {n: uuid.uuid4() for n in keys}
    cus = {n: sandbox.seed(k, "customers", [{"email": f"{n}{i}@x.io"} for i in range(sizes[n])])
           for n, k in keys.items()}  # fmt: skip
    accounts: list[dict[str, Any]] = []
    ids: dict[str, uuid.UUID] = {}

    def account(name: str, shop: str, i: int, details: dict[str, Any]) -> None:
        ids[name] = uuid.uuid4()
        accounts.append(
            {"id": ids[name], "shop_id": shops[shop], "name": f"{shop}{i}@x.io", "details": details}
        )

    for i, (label, value, _) in enumerate(SYNCED):
        account(f"synced {label}", "A", i, {"stripe_customer_id": cus["A"][i],
                                             "stripe_synced_at": value})  # fmt: skip
    for j, (label, value) in enumerate(NON_TEXT_IDS):
        account(f"id {label}", "A", 6 + j, {"stripe_customer_id": value})
    account("good A", "A", 9, {"stripe_customer_id": cus["A"][9],
                               "stripe_synced_at": "2026-01-05T10:00:00+00:00"})  # fmt: skip
    for i in range(3):
        account(f"good B{i}", "B", i, {"stripe_customer_id": cus["B"][i]})
    orders: list[dict[str, Any]] = []
    order_ids: dict[str, uuid.UUID] = {}
    for label, _, _ in [*ORDER_TIMES, ("good", None, "")]:
        order_ids[label] = uuid.uuid4()
        orders.append({"id": order_ids[label], "shop_id": shops["A"], "account_id": ids["good A"],
                       "total": 12.5, "status": "complete",
                       "created_at": datetime(2026, 1, 5, 10, 0)})  # fmt: skip
    order_ids["B"] = uuid.uuid4()
    orders.append({"id": order_ids["B"], "shop_id": shops["B"], "account_id": ids["good B0"],
                   "total": 9.0, "status": "complete",
                   "created_at": datetime(2026, 1, 6)})  # fmt: skip
    shopbackend.insert(
        url,
        shops=[
            {"id": shops[n], "name": f"Shop {n}", "stripe_secret_key": k} for n, k in keys.items()
        ],  # fmt: skip
        accounts=accounts,
        orders=orders,
    )
    engine = sa.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    planted = []
    with engine.begin() as conn:
        for label, value, _ in ORDER_TIMES:
            if pg and label not in PG_TIMES:
                continue
            conn.execute(
                sa.text("UPDATE orders SET created_at = :v WHERE id = :i"),
                {"v": value, "i": order_ids[label] if pg else str(order_ids[label])},
            )
            planted.append(label)
    engine.dispose()
    return {"shops": {n: str(v) for n, v in shops.items()}, "accounts": ids,
            "orders": order_ids, "planted": planted, "pg": pg}  # fmt: skip


def test_bad_timestamps_are_flagged_rows_the_rest_unaffected(
    empty_db_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    w = _shop_backend_world(empty_db_url, sandbox)
    ops = opskit.connect(empty_db_url, stripe_api_base=sandbox.url)
    kind = "postgresql" if w["pg"] else "sqlite"
    box: dict[str, Any] = {}

    def whole_run() -> tuple[str, str]:
        box["orders"] = ops.orders()
        box["accounts"] = ops.accounts()
        box["customers"] = ops.reconcile(progress=False)["customers"]
        box["payments"] = ops.reconcile_payments(period="2026-01", progress=False)
        good = box["customers"][box["customers"]["shop_id"] == w["shops"]["B"]]
        if set(good["status"].astype(str)) != {"match"} or len(good) != 3:
            return "wrong", f"shop B: {good[['account_id', 'status']].to_dict('records')}"
        return "right", "the run went on"

    assert tally.run(f"bad times, whole run ({kind})", whole_run) == "right"

    for label, _, says in ORDER_TIMES:
        if label not in w["planted"]:
            continue

        def order_case(label: str = label, says: str = says) -> tuple[str, str]:
            oid = str(w["orders"][label])
            row = box["orders"][box["orders"]["order_id"] == oid]
            if len(row) != 1 or not pd.isna(row["created_at"].iloc[0]):
                return "wrong", f"order read as {row['created_at'].tolist()}"
            why = str(row["row_error"].iloc[0])
            if says not in why:
                return "wrong", f"row_error {why!r}"
            rep = box["payments"][box["payments"]["order_id"] == oid]
            if len(rep) != 1 or says not in str(rep["detail"].iloc[0]):
                return (
                    "wrong",
                    f"payment report rows {rep[['status', 'detail']].to_dict('records')}",
                )
            return "right", why

        assert tally.run(f"orders.created_at {label} ({kind})", order_case) == "right"

    for label, _, says in SYNCED:

        def synced_case(label: str = label, says: str = says) -> tuple[str, str]:
            aid = str(w["accounts"][f"synced {label}"])
            acc = box["accounts"][box["accounts"]["account_id"] == aid]
            if not pd.isna(acc["stripe_synced_at"].iloc[0]) or says not in str(
                acc["row_error"].iloc[0]
            ):
                return (
                    "wrong",
                    f"read as {acc[['stripe_synced_at', 'row_error']].to_dict('records')}",
                )
            rep = box["customers"][box["customers"]["account_id"] == aid]
            # The link itself is fine: the status is the link's; the reason is in the detail.
            if list(rep["status"].astype(str)) != ["match"] or says not in str(
                rep["detail"].iloc[0]
            ):
                return "wrong", f"report {rep[['status', 'detail']].to_dict('records')}"
            return "right", str(acc["row_error"].iloc[0])

        assert tally.run(f"stripe_synced_at {label} ({kind})", synced_case) == "right"

    # the good rows: read as they are
    good = box["orders"][box["orders"]["order_id"] == str(w["orders"]["good"])]
    assert good["created_at"].iloc[0] == pd.Timestamp("2026-01-05 10:00", tz="UTC")
    assert good["row_error"].isna().all()
    b = box["payments"][box["payments"]["shop_id"] == w["shops"]["B"]]
    assert b["detail"].fillna("").str.contains("not a date|empty").sum() == 0


def test_non_text_stripe_ids_are_unreadable_on_every_read_path(
    empty_db_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    """SQLite's fast path and PostgreSQL's ``->>`` extraction judge a Stripe id held as a
    number, list or object as parse_details does: unreadable details, never a link that
    reads ``missing_in_stripe``."""
    from opskit.common.models import parse_details

    w = _shop_backend_world(empty_db_url, sandbox)
    ops = opskit.connect(empty_db_url, stripe_api_base=sandbox.url)
    kind = "postgresql" if w["pg"] else "sqlite"
    accounts = ops.accounts()
    report = ops.reconcile(progress=False)["customers"]
    for label, value in NON_TEXT_IDS:

        def case(label: str = label, value: Any = value) -> tuple[str, str]:
            aid = str(w["accounts"][f"id {label}"])
            acc = accounts[accounts["account_id"] == aid]
            expected = parse_details(json.dumps({"stripe_customer_id": value}))[1]
            if acc["details_error"].iloc[0] != expected or not pd.isna(
                acc["stripe_customer_id"].iloc[0]
            ):
                return (
                    "wrong",
                    f"read as {acc[['stripe_customer_id', 'details_error']].to_dict('records')}",
                )
            rep = report[report["account_id"] == aid]
            if list(rep["status"].astype(str)) != ["no_customer_id"]:
                return "wrong", f"report status {list(rep['status'])}"
            if "details could not be read" not in str(rep["detail"].iloc[0]):
                return "wrong", str(rep["detail"].iloc[0])
            return "right", str(expected)

        assert tally.run(f"stripe_customer_id as JSON {label} ({kind})", case) == "right"


# -- shop ids: never coerced, never silently dropped -----------------------------------------------

STORE_SCHEMA = opskit.Schema.reference(
    shops_table="stores", shop_id="store_no", shop_name="title", shop_secret_key="sk",
    shop_public_key=None, accounts_table="members", account_shop_id="store_no",
    account_name=None, account_created_at="joined_at", account_updated_at=None,
    orders_table="purchases", order_shop_id="store_no", order_account_id="member_id",
    order_created_at="placed_at", order_completed_at=None,
)  # fmt: skip


def _stores_world(url: str, sandbox: Sandbox, bad: list[tuple[str, str]]) -> dict[str, str]:
    """``stores``/``members`` tables with no key constraints, mapped with opskit.Schema:
    good stores 1 and 2 (linked accounts), then ``bad``: (label, SQL literal of the id)."""
    engine = sa.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    id_type = "numeric" if pg else "INTEGER"  # an integer-id column that can hold a fraction
    keys: dict[str, str] = {}
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE stores (store_no {id_type}, title text, sk text)"))
        conn.execute(sa.text(f"CREATE TABLE members (id {id_type}, store_no {id_type}, "
                             "email text, details text, joined_at timestamp)"))  # fmt: skip
        conn.execute(sa.text(f"CREATE TABLE purchases (id {id_type}, store_no {id_type}, "
                             f"member_id {id_type}, total real, status text, "
                             "placed_at timestamp)"))  # fmt: skip
        purchase = "INSERT INTO purchases VALUES ({}, {}, {}, 12.5, 'complete', '2026-01-05')"
        for n in (1, 2):
            conn.execute(sa.text(purchase.format(200 + n, n, 10 * n)))
            keys[str(n)] = make_key(f"store{n}")
            [cid] = sandbox.seed(keys[str(n)], "customers", [{"email": f"{n}@x.io"}])
            conn.execute(sa.text("INSERT INTO stores VALUES (:n, :t, :k)"),
                         {"n": n, "t": f"Store {n}", "k": keys[str(n)]})  # fmt: skip
            conn.execute(
                sa.text("INSERT INTO members VALUES (:i, :n, :e, :d, NULL)"),
                {
                    "i": 10 * n,
                    "n": n,
                    "e": f"{n}@x.io",
                    "d": json.dumps({"stripe_customer_id": cid}),
                },
            )
        # a member of a good store whose time cannot be read: its row stays a match
        bad_time = "infinity" if pg else "0000-00-00 00:00:00"
        conn.execute(sa.text("UPDATE members SET joined_at = :t WHERE id = 20"), {"t": bad_time})
        for i, (label, literal) in enumerate(bad):
            keys[label] = make_key(f"bad{i}")
            for title in [f"{label} one", f"{label} two"] if label == "duplicate" else [label]:
                conn.execute(sa.text(f"INSERT INTO stores VALUES ({literal}, :t, :k)"),
                             {"t": title, "k": keys[label]})  # fmt: skip
            member = f"INSERT INTO members VALUES ({100 + i}, {literal}, :e, '{{}}', NULL)"
            conn.execute(sa.text(member), {"e": f"m{i}@x.io"})
            conn.execute(sa.text(purchase.format(300 + i, literal, 100 + i)))
    engine.dispose()
    return keys


def _bad_ids(pg: bool) -> list[tuple[str, str]]:
    bad = [("NULL", "NULL"), ("1.5", "1.5"), ("duplicate", "7")]
    return bad if pg else [("text", "'abc'"), *bad]


def test_bad_shop_ids_are_flagged_never_coerced_nor_dropped(
    empty_db_url: str, sandbox: Sandbox, tally: Tally, tmp_path: Path
) -> None:
    pg = empty_db_url.startswith("postgresql")
    bad = _bad_ids(pg)
    _stores_world(empty_db_url, sandbox, bad)
    ops = opskit.connect(empty_db_url, schema=STORE_SCHEMA, stripe_api_base=sandbox.url)
    kind = "postgresql" if pg else "sqlite"
    box: dict[str, Any] = {}

    def whole_run() -> tuple[str, str]:
        box["reports"] = dict(ops.reconcile(progress=False))
        box["reports"]["payments"] = ops.reconcile_payments(period="2026-01", progress=False)
        box["shops"] = ops.shops()
        good_orders = box["reports"]["payments"]
        good_orders = good_orders[good_orders["shop_id"].isin(["1", "2"])]
        if set(good_orders["order_id"]) != {"201", "202"}:
            return "wrong", f"good stores' orders: {list(good_orders['order_id'])}"
        cus = box["reports"]["customers"]
        good = cus[cus["shop_id"].isin(["1", "2"])]
        if set(good["status"].astype(str)) != {"match"} or set(good["account_id"]) != {"10", "20"}:
            return "wrong", f"good stores: {good[['shop_id', 'status']].to_dict('records')}"
        if set(box["shops"]["shop_id"]) != {"1", "2"}:  # only usable shops get a client
            return "wrong", f"usable shops {list(box['shops']['shop_id'])}"
        timed = good[good["account_id"] == "20"]["detail"].iloc[0]
        if "members.joined_at is" not in str(timed) or "not a date" not in str(timed):
            return "wrong", f"member 20's unreadable time is not in its row: {timed!r}"
        return "right", "the good stores reconciled"

    assert tally.run(f"bad shop ids, whole run ({kind})", whole_run) == "right"
    expected = {
        "text": ("abc", "'abc' is not an integer id"),
        "NULL": (None, "stores.store_no is empty"),
        "1.5": ("1.5", "'1.5' is not an integer id"),
        "duplicate": ("7", "'7' is on 2 rows"),
    }
    for i, (label, _) in enumerate(bad):

        def case(i: int = i, label: str = label) -> tuple[str, str]:
            sid, says = expected[label]
            for name, report in box["reports"].items():
                key = "order_id" if name == "payments" else "account_id"
                local = str(300 + i) if name == "payments" else str(100 + i)
                rows = report[report["status"].astype(str) == "shop_not_configured"]
                mine = rows[rows["shop_id"].isna()] if sid is None else rows[rows["shop_id"] == sid]
                shop_rows = mine[mine[key].isna()]
                n_rows = 2 if label == "duplicate" else 1
                if (
                    len(shop_rows) != n_rows
                    or not shop_rows["detail"].str.contains(says, regex=False).all()
                ):
                    found = shop_rows[["shop_name", "detail"]].to_dict("records")
                    return "wrong", f"{name}: shop rows {found}"
                if len(mine[mine[key] == local]) != 1:  # its member / its order
                    return "wrong", f"{name}: {key} {local} is {len(mine[mine[key] == local])} rows"
                in_one = report["shop_id"].eq("1").fillna(False) & report[key].eq(local).fillna(
                    False
                )
                if in_one.any():
                    return "wrong", "coerced into shop 1"
            return "right", str(shop_rows["detail"].iloc[0])

        assert tally.run(f"shop id {label} ({kind})", case) == "right"

    # a filter naming an unusable shop is refused with the reason, never another shop
    with pytest.raises(opskit.UnknownShop, match="is on 2 rows"):
        ops.reconcile_customers(7, progress=False)
    with pytest.raises(opskit.UnknownShop):
        ops.reconcile_customers("1.5", progress=False)


def test_the_cli_reports_bad_rows_as_rows_not_a_crash(
    tmp_path: Path, sandbox: Sandbox, tally: Tally
) -> None:
    from typer.testing import CliRunner

    from opskit.faces.cli import app

    url = fresh_sqlite_url(tmp_path)
    _stores_world(url, sandbox, _bad_ids(False))
    with sa.create_engine(url).begin() as conn:  # and a bad time in a member's details
        conn.execute(sa.text("UPDATE members SET details = :d WHERE id = 10"),
                     {"d": json.dumps({"stripe_customer_id": 1700000000})})  # fmt: skip
    mapping = tmp_path / "schema.json"
    mapping.write_text(json.dumps({k: v for k, v in vars(STORE_SCHEMA).items()
                                   if isinstance(v, str | type(None))}))  # fmt: skip
    out = tmp_path / "report.csv"

    def scenario() -> tuple[str, str]:
        res = CliRunner().invoke(
            app,
            ["reconcile", "-q", "--database-url", url, "--stripe-api-base", sandbox.url,
             "--schema", str(mapping), "--report", "customers", "--out", str(out)],
        )  # fmt: skip
        if res.exit_code != 1:  # drift: rows an analyst must fix; not 4 (a crash), not 2
            return "wrong", f"exit {res.exit_code}: {res.output[-300:]}"
        text = out.read_text()
        for says in ("'abc' is not an integer id", "is on 2 rows", "'1.5' is not an integer id",
                     "stores.store_no is empty", "not a Stripe id"):  # fmt: skip
            if says not in text:
                return "wrong", f"the report lacks {says!r}"
        return "right", "exit 1 with the flagged rows in the report"

    assert tally.run("CLI reconcile over bad rows", scenario) == "right"
