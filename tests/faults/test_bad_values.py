"""More bad rows, each one flagged row while the run goes on (issue 17 kind 3).

Found by a tester on shop-backend's real column types: a ``\\u0000`` in a json
details value (PostgreSQL's ``->>`` cannot decode it), products' and orders'
amounts that are no amount (NaN, Infinity, 1e20/1e300 beyond Int64, text), Stripe
ids that cannot be Stripe ids (1 MB, a wrong prefix, a ``/`` or ``?``), accounts
whose shop id names no shop, and an account id two rows share. Same mechanism as
test_bad_rows: the loaders' rules (opskit.common.rows, models.stripe_id_problem)
and row_error / details_error in the frames.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
import stripe

import opskit
from opskit.sandbox import Sandbox
from tests import shopbackend
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key

HUGE = "cus_" + "A" * 1_000_000
# (label, details text, what details_error must say); every one is a flagged row
BAD_IDS = [
    ("NUL", '{"stripe_customer_id": "cus_\\u0000bad"}', "not a Stripe id"),
    ("1 MB", json.dumps({"stripe_customer_id": HUGE}), "1,000,004 characters long"),
    ("wrong prefix", '{"stripe_customer_id": "sub_123"}', "must start with 'cus_'"),
    ("path", '{"stripe_customer_id": "cus_x/../../v1/customers?limit=100"}', "holds '/'"),
    ("query", '{"stripe_customer_id": "cus_x?expand[]=sources&"}', "holds '?'"),
]


def _world(url: str, sandbox: Sandbox) -> dict[str, Any]:
    """shop-backend's tables; shop A holds every bad value, shop B is all good."""
    engine = sa.create_engine(url)
    pg = engine.dialect.name == "postgresql"
    if not pg:  # an accounts table without a primary key (SQLite keeps what it is given)
        with engine.begin() as conn:
            columns = "id VARCHAR(36), shop_id VARCHAR(36), name VARCHAR(255), "
            columns += "hash_name VARCHAR(255), details JSON"
            conn.execute(sa.text(f"CREATE TABLE accounts ({columns})"))
    shopbackend.create(url)
    if pg:  # shop-backend's constraints dropped, as a hand-edited database may have them
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE accounts DROP CONSTRAINT accounts_pkey CASCADE"))
            conn.execute(sa.text("ALTER TABLE accounts DROP CONSTRAINT accounts_shop_id_fkey"))
    keys = {"A": make_key("valA"), "B": make_key("valB")}
    shops = {n: uuid.uuid4() for n in keys}
    sizes = {"A": 5, "B": 4}
    cus = {n: sandbox.seed(k, "customers", [{"email": f"{n}{i}@x.io"} for i in range(sizes[n])])
           for n, k in keys.items()}  # fmt: skip
    # the shared-id account's customer, deleted: a sync plan would clear the link
    [dup_cus] = sandbox.seed(keys["B"], "customers", [{"email": "dup1@x.io"}])
    stripe.StripeClient(keys["B"], base_addresses={"api": sandbox.url}).v1.customers.delete(dup_cus)
    ids: dict[str, uuid.UUID] = {}
    accounts: list[dict[str, Any]] = []

    def account(label: str, shop: Any, email: str, details: Any) -> None:
        ids[label] = uuid.uuid4()
        accounts.append({"id": ids[label], "shop_id": shop, "name": email, "details": details})

    for i, (label, text, _) in enumerate(BAD_IDS):
        account(label, shops["A"], f"bad{i}@x.io", text)
    # a NUL elsewhere in the details: the link itself is good and stays one
    nul = json.dumps({"note": "a\x00b", "stripe_customer_id": cus["A"][0]})  # '\\u0000'
    account("NUL elsewhere", shops["A"], "A0@x.io", nul)
    for i in (1, 2, 3, 4):
        account(f"good A{i}", shops["A"], f"A{i}@x.io", {"stripe_customer_id": cus["A"][i]})
    for i in range(4):
        account(f"good B{i}", shops["B"], f"B{i}@x.io", {"stripe_customer_id": cus["B"][i]})
    account("no shop", uuid.uuid4(), "orphan@x.io", {})
    account("duplicate", shops["B"], "dup1@x.io", {"stripe_customer_id": dup_cus})
    accounts.append({"id": ids["duplicate"], "shop_id": shops["B"], "name": "dup1@x.io",
                     "details": {"stripe_customer_id": dup_cus}})  # fmt: skip

    # products: a price that is no amount (NaN on PostgreSQL; SQLite stores NaN as NULL,
    # so text there), Infinity, 1e20 (beyond Int64 in cents); and a good one
    prices = {"no number": "NaN" if pg else "x", "Infinity": "inf", "1e20": "1e20", "good": "9.99"}
    products = {label: uuid.uuid4() for label in prices}
    # orders: the same kinds of totals, 1e300 for the too-large one
    totals = {"no number": "NaN" if pg else "x", "Infinity": "inf", "1e300": "1e300",
              "good": "12.5"}  # fmt: skip
    orders = {label: uuid.uuid4() for label in totals}
    orders["B"] = uuid.uuid4()
    shopbackend.insert(
        url,
        shops=[
            {"id": shops[n], "name": f"Shop {n}", "stripe_secret_key": k} for n, k in keys.items()
        ],  # fmt: skip
        accounts=accounts,
        products=[{"id": p, "shop_id": shops["A"]} for p in products.values()],
        orders=[
            {
                "id": o,
                "shop_id": shops["B" if label == "B" else "A"],
                "account_id": ids["good B0" if label == "B" else "good A1"],
                "total": 9.0,
                "status": "complete",
                "created_at": datetime(2026, 1, 5, 10),
            }
            for label, o in orders.items()
        ],  # fmt: skip
    )
    with engine.begin() as conn:  # the values as the column holds them (text on SQLite)
        for label, p in products.items():
            conn.execute(
                sa.text("UPDATE products SET recurring_price_monthly = "
                        + ("CAST(:v AS float)" if pg else ":v")
                        + " WHERE id = :i"),
                {"v": prices[label] if pg else _sqlite_value(prices[label]),
                 "i": p if pg else str(p)},
            )  # fmt: skip
        for label, value in totals.items():
            conn.execute(
                sa.text("UPDATE orders SET total = "
                        + ("CAST(:v AS float)" if pg else ":v") + " WHERE id = :i"),
                {"v": value if pg else _sqlite_value(value),
                 "i": orders[label] if pg else str(orders[label])},
            )  # fmt: skip
    engine.dispose()
    # a monthly subscription per product, each of a linked customer of shop A
    price_ids = sandbox.seed(keys["A"], "prices", [
        {"unit_amount": 999, "currency": "eur", "recurring": {"interval": "month"},
         "lookup_key": f"monthly-{p}"} for p in products.values()])  # fmt: skip
    subs = sandbox.seed(keys["A"], "subscriptions", [
        {"customer": cus["A"][i + 1], "price": price}
        for i, price in enumerate(price_ids)])  # fmt: skip
    # payments of the bad orders' account: one names the Infinity order in its metadata
    # (matched, but never a "match"), one has no order of its amount (never paired with
    # an order whose amount could not be read)
    at = int(datetime(2026, 1, 5, 10, 5, tzinfo=UTC).timestamp())
    sandbox.seed(keys["A"], "payment_intents", [
        {"amount": 500, "currency": "eur", "customer": cus["A"][1], "status": "succeeded",
         "created": at, "metadata": {"order_id": str(orders["Infinity"])}},
        {"amount": 777, "currency": "eur", "customer": cus["A"][1], "status": "succeeded",
         "created": at}])  # fmt: skip
    return {"pg": pg, "keys": keys, "shops": {n: str(v) for n, v in shops.items()},
            "accounts": {k: str(v) for k, v in ids.items()}, "cus": cus,
            "products": {k: str(v) for k, v in products.items()},
            "subs": dict(zip(products, subs, strict=True)),
            "orders": {k: str(v) for k, v in orders.items()}}  # fmt: skip


def _sqlite_value(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


PRODUCT_SAYS = {"no number": ("is NaN", "is not a number: 'x'"), "Infinity": ("endless",),
                "1e20": ("too large",)}  # fmt: skip
ORDER_SAYS = {"no number": ("is NaN", "is not a number: 'x'"), "Infinity": ("endless",),
              "1e300": ("too large",)}  # fmt: skip


def test_bad_values_are_flagged_rows_and_the_run_goes_on(
    empty_db_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    w = _world(empty_db_url, sandbox)
    kind = "postgresql" if w["pg"] else "sqlite"
    ops = opskit.connect(empty_db_url, stripe_api_base=sandbox.url)
    box: dict[str, Any] = {}
    sandbox.reset_log()

    def whole_run() -> tuple[str, str]:
        box["accounts"] = ops.accounts()
        box["orders"] = ops.orders()
        box["products"] = ops.products()
        box["reports"] = ops.reconcile(progress=False)
        box["payments"] = ops.reconcile_payments(period="2026-01", progress=False)
        cus = box["reports"]["customers"]
        if cus["status"].astype(str).eq("shop_error").any():
            return "wrong", f"shop_error: {cus[cus['status'] == 'shop_error']['detail'].tolist()}"
        good = cus[cus["shop_id"] == w["shops"]["B"]]
        good = good[good["account_id"].isin([w["accounts"][f"good B{i}"] for i in range(4)])]
        if list(good["status"].astype(str)) != ["match"] * 4:
            return "wrong", f"shop B: {good[['account_id', 'status']].to_dict('records')}"
        return "right", "the run went on"

    assert tally.run(f"bad values, whole run ({kind})", whole_run) == "right"
    cus, subs = box["reports"]["customers"], box["reports"]["subscriptions"]

    for label, _, says in BAD_IDS:

        def id_case(label: str = label, says: str = says) -> tuple[str, str]:
            aid = w["accounts"][label]
            acc = box["accounts"][box["accounts"]["account_id"] == aid]
            why = str(acc["details_error"].iloc[0])
            if says not in why or not pd.isna(acc["stripe_customer_id"].iloc[0]):
                return "wrong", f"read as {acc[['stripe_customer_id', 'details_error']].iloc[0]}"
            rep = cus[cus["account_id"] == aid]
            if list(rep["status"].astype(str)) != ["no_customer_id"] or says not in str(
                rep["detail"].iloc[0]
            ):
                return "wrong", f"report {rep[['status', 'detail']].to_dict('records')}"
            sent = [r.path for r in sandbox.requests(w["keys"]["A"]) if "cus_x" in r.path
                    or "AAAAAAAA" in r.path or "bad" in r.path]  # fmt: skip
            if sent:
                return "wrong", f"sent to Stripe: {[p[:80] for p in sent]}"
            return "right", why[:120]

        assert tally.run(f"stripe_customer_id {label} ({kind})", id_case) == "right"

    def nul_elsewhere() -> tuple[str, str]:
        rep = cus[cus["account_id"] == w["accounts"]["NUL elsewhere"]]
        if list(rep["status"].astype(str)) != ["match"]:
            return "wrong", f"report {rep[['status', 'detail']].to_dict('records')}"
        return "right", "the link beside a \\u0000 value reads as a link"

    assert tally.run(f"details with \\u0000 beside a good link ({kind})", nul_elsewhere) == "right"

    for label, says_any in PRODUCT_SAYS.items():

        def product_case(
            label: str = label, says_any: tuple[str, ...] = says_any
        ) -> tuple[str, str]:
            pid = w["products"][label]
            prod = box["products"][box["products"]["product_id"] == pid]
            why = str(prod["row_error"].iloc[0])
            if not any(s in why for s in says_any) or not pd.isna(prod["monthly_amount"].iloc[0]):
                return "wrong", f"product read as {prod.iloc[0].to_dict()}"
            rep = subs[subs["stripe_subscription_id"] == w["subs"][label]]
            if list(rep["status"].astype(str)) != ["unknown_product"] or why not in str(
                rep["detail"].iloc[0]
            ):
                return "wrong", f"subscription {rep[['status', 'detail']].to_dict('records')}"
            return "right", why

        assert tally.run(f"product price {label} ({kind})", product_case) == "right"
    good_sub = subs[subs["stripe_subscription_id"] == w["subs"]["good"]]
    assert list(good_sub["status"].astype(str)) == ["match"]

    for label, says_any in ORDER_SAYS.items():

        def order_case(label: str = label, says_any: tuple[str, ...] = says_any) -> tuple[str, str]:
            oid = w["orders"][label]
            row = box["orders"][box["orders"]["order_id"] == oid]
            why = str(row["row_error"].iloc[0])
            if not any(s in why for s in says_any) or not pd.isna(row["amount"].iloc[0]):
                return "wrong", f"order read as {row.iloc[0].to_dict()}"
            rep = box["payments"][box["payments"]["order_id"] == oid]
            # only the payment naming it matches it; never a "match" of an unknown amount
            status = "amount_mismatch" if label == "Infinity" else "order_unpaid"
            if (
                len(rep) != 1
                or why not in str(rep["detail"].iloc[0])
                or rep["status"].iloc[0] != status
            ):
                return "wrong", f"payment rows {rep[['status', 'detail']].to_dict('records')}"
            return "right", why

        assert tally.run(f"order total {label} ({kind})", order_case) == "right"
    good = box["orders"][box["orders"]["order_id"] == w["orders"]["good"]]
    assert good["amount"].tolist() == [1250] and good["row_error"].isna().all()

    def orphan() -> tuple[str, str]:
        rep = cus[cus["account_id"] == w["accounts"]["no shop"]]
        if list(rep["status"].astype(str)) != ["shop_not_configured"] or "names no shop" not in str(
            rep["detail"].iloc[0]
        ):
            return "wrong", f"report {rep[['status', 'detail']].to_dict('records')}"
        return "right", str(rep["detail"].iloc[0])

    assert tally.run(f"account of no shop ({kind})", orphan) == "right"

    def duplicate() -> tuple[str, str]:
        aid = w["accounts"]["duplicate"]
        acc = box["accounts"][box["accounts"]["account_id"] == aid]
        rep = cus[cus["account_id"] == aid]
        if len(acc) != 2 or not acc["row_error"].str.contains("is on 2 rows").all():
            return "wrong", f"accounts {acc[['email', 'row_error']].to_dict('records')}"
        if len(rep) != 2 or not rep["detail"].str.contains("is on 2 rows").all():
            return "wrong", f"report {rep[['status', 'detail']].to_dict('records')}"
        return "right", str(acc["row_error"].iloc[0])

    assert tally.run(f"account id on two rows ({kind})", duplicate) == "right"

    def link_refused() -> tuple[str, str]:
        # the writes keep the loaders' rule: refused before any request
        before = sandbox.request_count(w["keys"]["A"])
        try:
            ops.link_customer(w["accounts"]["good A1"], "cus_x/../../v1/customers?limit=100")
        except opskit.InputError as exc:
            if "holds '/'" not in exc.message or sandbox.request_count(w["keys"]["A"]) != before:
                return "wrong", exc.message
            return "right", exc.message
        return "wrong", "linked"

    assert tally.run(f"link_customer with a path as id ({kind})", link_refused) == "right"


def test_the_cli_runs_over_bad_values(empty_db_url: str, sandbox: Sandbox, tally: Tally) -> None:
    from typer.testing import CliRunner

    from opskit.faces.cli import app

    w = _world(empty_db_url, sandbox)
    kind = "postgresql" if w["pg"] else "sqlite"
    common = ["-q", "--database-url", empty_db_url, "--stripe-api-base", sandbox.url]
    for command in (["reconcile"], ["money", "--period", "2026-01"]):

        def scenario(command: list[str] = command) -> tuple[str, str]:
            res = CliRunner().invoke(app, [*command, *common])
            if res.exit_code != 1:  # rows to fix: not 4 (a crash), not 2 (a failed shop)
                return "wrong", f"exit {res.exit_code}: {res.output[-300:]}"
            return "right", "exit 1"

        assert tally.run(f"CLI {command[0]} over bad values ({kind})", scenario) == "right"


def test_a_shared_account_id_is_never_planned() -> None:
    """One UPDATE by an id two rows share would write both rows: no plan row for it."""
    from opskit.core import frames
    from opskit.writes.sync import build_plan

    linked = ['{"stripe_customer_id": "cus_a"}'] * 2 + ['{"stripe_customer_id": "cus_b"}']
    accounts = frames.conform(
        pd.DataFrame({"account_id": ["7", "7", "8"], "shop_id": ["1"] * 3,
                      "stripe_customer_id": ["cus_a", "cus_a", "cus_b"], "details": linked}),
        frames.ACCOUNTS,
    )  # fmt: skip
    report = frames.conform(
        pd.DataFrame({"shop_id": ["1"] * 3, "account_id": ["7", "7", "8"],
                      "status": ["deleted_in_stripe"] * 3,
                      "stripe_customer_id": ["cus_a", "cus_a", "cus_b"]}),
        frames.CUSTOMER_REPORT,
    )  # fmt: skip
    plan = build_plan(report, frames.empty(frames.SUBSCRIPTION_REPORT), accounts)
    assert list(plan["account_id"]) == ["8"]
