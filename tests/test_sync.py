"""Sync plans (pure) and their audited, per-shop transactional apply on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from opskit.backend import audit
from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.exceptions import InputError
from opskit.core import frames
from opskit.writes import sync
from tests.dbutil import T0, insert

SHOPS = [{"id": 1, "name": "One"}, {"id": 2, "name": "Two"}]


def report(spec: frames.Spec, rows: list[dict[str, Any]]) -> pd.DataFrame:
    return frames.conform(pd.DataFrame(rows), spec) if rows else frames.empty(spec)


def accounts_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"details": "{}", "details_error": None}
    return frames.conform(pd.DataFrame([{**base, **r} for r in rows]), frames.ACCOUNTS)


# -- build_plan: pure ------------------------------------------------------------------------


def test_plan_from_both_reports() -> None:
    accounts = accounts_frame(
        [
            {"account_id": 1, "shop_id": 1, "email": "a@x.io", "stripe_customer_id": "cus_A",
             "stripe_subscription_id": "sub_A", "subscription_status": "active",
             "stripe_price_id": "price_old"},
            {"account_id": 2, "shop_id": 1, "email": " Bee@X.io "},  # unlinked
            {"account_id": 3, "shop_id": 1, "email": "c@x.io", "stripe_customer_id": "cus_gone"},
            {"account_id": 4, "shop_id": 2, "email": "d@x.io", "stripe_customer_id": "cus_D"},
            {"account_id": 5, "shop_id": 2, "email": "e@x.io"},  # two unlinked, same email
            {"account_id": 6, "shop_id": 2, "email": "e@x.io"},
            {"account_id": 7, "shop_id": 1, "email": "g@x.io", "stripe_customer_id": "cus_G",
             "stripe_subscription_id": "sub_G", "subscription_status": "active",
             "stripe_price_id": "p1"},
        ]
    )  # fmt: skip
    customers = report(
        frames.CUSTOMER_REPORT,
        [
            {"shop_id": 1, "stripe_customer_id": "cus_B", "status": "orphan_in_stripe",
             "stripe_email": "bee@x.io"},
            {"shop_id": 1, "account_id": 3, "stripe_customer_id": "cus_gone",
             "status": "deleted_in_stripe"},
            {"shop_id": 2, "stripe_customer_id": "cus_E", "status": "orphan_in_stripe",
             "stripe_email": "e@x.io"},
            {"shop_id": 2, "account_id": 4, "stripe_customer_id": "cus_D", "status": "wrong_shop"},
            {"shop_id": 1, "status": "shop_error", "detail": "APIError"},
        ],
    )  # fmt: skip
    subs = report(
        frames.SUBSCRIPTION_REPORT,
        [
            {"shop_id": 1, "account_id": 1, "stripe_subscription_id": "sub_A",
             "status": "status_drift", "local_status": "active", "stripe_status": "past_due"},
            {"shop_id": 1, "account_id": 1, "stripe_subscription_id": "sub_A",
             "status": "price_mismatch", "local_price_id": "price_old",
             "stripe_price_id": "price_new"},
            {"shop_id": 1, "account_id": 7, "stripe_subscription_id": "sub_G",
             "status": "status_drift", "local_status": "active", "stripe_status": "canceled",
             "local_price_id": "p1", "stripe_price_id": "p2"},
            {"shop_id": 2, "stripe_customer_id": "cus_D", "stripe_subscription_id": "sub_D",
             "status": "orphan_in_stripe", "stripe_status": "trialing",
             "stripe_price_id": "price_d"},
            {"shop_id": 2, "status": "multiple_active", "stripe_customer_id": "cus_D"},
        ],
    )  # fmt: skip
    plan = sync.build_plan(customers, subs, accounts)
    assert {c: str(t) for c, t in plan.dtypes.items()} == {
        c: str(t) for c, t in frames.SYNC_PLAN.items()
    }
    got = [
        (r.account_id, r.key, None if pd.isna(r.old_value) else r.old_value,
         None if pd.isna(r.new_value) else r.new_value, r.source_status)
        for r in plan.itertuples()
    ]  # fmt: skip
    assert got == [
        ("1", "stripe_price_id", "price_old", "price_new", "price_mismatch"),
        ("1", "subscription_status", "active", "past_due", "status_drift"),
        ("2", "stripe_customer_id", None, "cus_B", "orphan_in_stripe"),
        ("3", "stripe_customer_id", "cus_gone", None, "deleted_in_stripe"),
        ("7", "stripe_price_id", "p1", "p2", "status_drift"),
        ("7", "subscription_status", "active", "canceled", "status_drift"),
        ("4", "stripe_price_id", None, "price_d", "orphan_in_stripe"),
        ("4", "stripe_subscription_id", None, "sub_D", "orphan_in_stripe"),
        ("4", "subscription_status", None, "trialing", "orphan_in_stripe"),
    ]
    assert plan["reason"].notna().all()


def test_no_plan_for_uncertain_or_unreadable() -> None:
    accounts = accounts_frame(
        [
            {"account_id": 1, "shop_id": 1, "email": "a@x.io"},
            {
                "account_id": 2,
                "shop_id": 1,
                "email": "z@x.io",
                "details": "[1]",
                "details_error": "details is JSON list, not an object",
            },
        ]
    )
    customers = report(
        frames.CUSTOMER_REPORT,
        [  # two Stripe customers share the one unlinked account's email: not certain
            {"shop_id": 1, "stripe_customer_id": "cus_1", "status": "orphan_in_stripe",
             "stripe_email": "a@x.io"},
            {"shop_id": 1, "stripe_customer_id": "cus_2", "status": "orphan_in_stripe",
             "stripe_email": "A@x.io"},
            {"shop_id": 1, "stripe_customer_id": "cus_3", "status": "orphan_in_stripe",
             "stripe_email": "z@x.io"},
        ],
    )  # fmt: skip
    subs = report(frames.SUBSCRIPTION_REPORT, [])
    plan = sync.build_plan(customers, subs, accounts)
    pd.testing.assert_frame_equal(plan, frames.empty(frames.SYNC_PLAN))
    empty = sync.build_plan(report(frames.CUSTOMER_REPORT, []), subs, frames.empty(frames.ACCOUNTS))
    pd.testing.assert_frame_equal(empty, frames.empty(frames.SYNC_PLAN))


# -- apply_plan: both databases --------------------------------------------------------------


@pytest.fixture
def ctx(db_url: str) -> Iterator[Context]:
    insert(
        db_url,
        shops=SHOPS,
        accounts=[
            {"id": 1, "shop_id": 1, "email": "a@x.io",
             "details": {"stripe_customer_id": "cus_A", "subscription_status": "active",
                         "legacy": {"keep": [1, 2]}, "plan": "gold"}},
            {"id": 2, "shop_id": 1, "email": "b@x.io", "details": {"note": "vip"}},
            {"id": 3, "shop_id": 2, "email": "c@x.io", "details": {"stripe_customer_id": "cus_C"}},
            {"id": 4, "shop_id": 2, "email": "d@x.io", "details": '"just a string"'},
            {"id": 5, "shop_id": 2, "email": "e@x.io", "details": None},
        ],
    )  # fmt: skip
    context = Context(db=Database(db_url), settings=Settings(database_url=db_url))
    yield context
    context.db.engine.dispose()


def plan_of(rows: list[tuple[int, int, str, str | None, str | None]]) -> pd.DataFrame:
    return frames.conform(
        pd.DataFrame(
            [
                {"shop_id": s, "account_id": a, "key": k, "old_value": o, "new_value": n,
                 "reason": "test", "source_status": "status_drift"}
                for s, a, k, o, n in rows
            ]
        ),
        frames.SYNC_PLAN,
    )  # fmt: skip


def details_of(ctx: Context, account_id: int) -> Any:
    t = ctx.db.accounts_table
    with ctx.db.engine.connect() as conn:
        return conn.execute(sa.select(t.c.details).where(t.c.id == account_id)).scalar_one()


def updated_at(ctx: Context, account_id: int) -> pd.Timestamp:
    t = ctx.db.accounts_table
    with ctx.db.engine.connect() as conn:
        value = conn.execute(sa.select(t.c.updated_at).where(t.c.id == account_id)).scalar_one()
    return pd.Timestamp(value).tz_localize("UTC") if value.tzinfo is None else pd.Timestamp(value)


def test_apply_merges_keeps_unknown_keys_and_audits(ctx: Context) -> None:
    plan = plan_of(
        [
            (1, 1, "subscription_status", "active", "past_due"),
            (1, 2, "stripe_customer_id", None, "cus_B"),
            (2, 3, "stripe_customer_id", "cus_C", None),
            (2, 5, "stripe_price_id", None, "price_x"),  # NULL details count as {}
        ]
    )
    result = sync.apply_plan(ctx, plan, actor="ana")
    assert {c: str(t) for c, t in result.dtypes.items()} == {
        c: str(t) for c, t in frames.SYNC_RESULT.items()
    }
    assert list(result["outcome"]) == ["applied"] * 4
    raw = details_of(ctx, 1)
    # The column keeps its storage: JSON (a dict) on PostgreSQL, text on SQLite.
    assert isinstance(raw, dict if ctx.db.dialect == "postgresql" else str)
    value = raw if isinstance(raw, dict) else json.loads(raw)
    assert value == {
        "stripe_customer_id": "cus_A",
        "subscription_status": "past_due",
        "legacy": {"keep": [1, 2]},
        "plan": "gold",
    }
    accounts = ctx.db.load_accounts()
    by_id = accounts.set_index("account_id")
    assert by_id.loc["2", "stripe_customer_id"] == "cus_B"
    assert json.loads(by_id.loc["2", "details"])["note"] == "vip"
    assert pd.isna(by_id.loc["3", "stripe_customer_id"])
    assert by_id.loc["5", "stripe_price_id"] == "price_x"
    assert updated_at(ctx, 1) > pd.Timestamp(T0)
    log = audit.read_log(ctx.db, action="sync.set_detail")
    assert len(log) == 4 and set(log["outcome"]) == {"ok"} and set(log["actor"]) == {"ana"}
    assert set(result["audit_id"]) == set(log["audit_id"])
    row = log[log["target"] == "account:1"].iloc[0]
    assert json.loads(row["params"]) == {
        "key": "subscription_status", "old": "active", "new": "past_due"
    }  # fmt: skip
    # Applying the same plan again (say after a crash): every row is already done,
    # which is success; nothing is written again, and the audit says so.
    before = audit.read_log(ctx.db)
    again = sync.apply_plan(ctx, plan, actor="ana")
    assert list(again["outcome"]) == ["already_applied"] * 4
    redo = audit.read_log(ctx.db).iloc[: len(audit.read_log(ctx.db)) - len(before)]
    assert set(redo["outcome"]) == {"ok"}
    assert all(json.loads(p)["already_done"] is True for p in redo["params"])


def test_stale_and_unreadable_rows_are_refused_others_applied(ctx: Context) -> None:
    plan = plan_of(
        [
            (1, 1, "subscription_status", "trialing", "past_due"),  # stale: it is "active"
            (1, 2, "stripe_customer_id", None, "cus_B"),
            (2, 4, "stripe_customer_id", None, "cus_D"),  # details not an object
            (2, 99, "stripe_customer_id", None, "cus_Z"),  # no such account
            (2, 1, "stripe_price_id", None, "p"),  # account 1 is shop 1's
        ]
    )
    result = sync.apply_plan(ctx, plan, actor="ana")
    assert list(result["outcome"]) == ["stale", "applied", "error", "error", "error"]
    assert "'active'" in result["detail"][0]
    assert "not an object" in result["detail"][2]
    assert "no account" in result["detail"][3]
    assert "belongs to shop 1" in result["detail"][4]
    value = details_of(ctx, 1)
    value = value if isinstance(value, dict) else json.loads(value)
    assert value["subscription_status"] == "active" and "stripe_price_id" not in value
    raw4 = details_of(ctx, 4)
    assert raw4 == ("just a string" if ctx.db.dialect == "postgresql" else '"just a string"')
    log = audit.read_log(ctx.db)
    assert sorted(log["outcome"]) == ["error", "error", "error", "ok", "refused"]
    assert result["audit_id"].notna().all()


def _install_failing_trigger(ctx: Context, account_id: int) -> None:
    with ctx.db.engine.begin() as conn:
        if ctx.db.dialect == "sqlite":
            conn.execute(
                sa.text(
                    f"CREATE TRIGGER boom BEFORE UPDATE ON accounts WHEN NEW.id = {account_id} "
                    "BEGIN SELECT RAISE(ABORT, 'boom: injected failure'); END"
                )
            )
        else:
            conn.execute(
                sa.text(
                    "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'boom: injected failure'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                sa.text(
                    "CREATE TRIGGER boom BEFORE UPDATE ON accounts FOR EACH ROW "
                    f"WHEN (NEW.id = {account_id}) EXECUTE FUNCTION boom()"
                )
            )


def test_database_error_rolls_back_that_shop_only(ctx: Context) -> None:
    _install_failing_trigger(ctx, 2)
    plan = plan_of(
        [
            (1, 1, "subscription_status", "active", "past_due"),  # applied, then rolled back
            (1, 2, "stripe_customer_id", None, "cus_B"),  # the database refuses this one
            (2, 3, "stripe_customer_id", "cus_C", "cus_C2"),
        ]
    )
    result = sync.apply_plan(ctx, plan, actor="ana")
    assert list(result["outcome"]) == ["error", "error", "applied"]
    assert "rolled back" in result["detail"][0] and "boom" in result["detail"][1]
    by_id = ctx.db.load_accounts().set_index("account_id")
    assert by_id.loc["1", "subscription_status"] == "active"  # nothing half-written
    assert pd.isna(by_id.loc["2", "stripe_customer_id"])
    assert by_id.loc["3", "stripe_customer_id"] == "cus_C2"
    log = audit.read_log(ctx.db)
    assert sorted(log["outcome"]) == ["error", "error", "ok"]  # the failure is audited too


def test_empty_and_invalid_plans(ctx: Context) -> None:
    empty = sync.apply_plan(ctx, frames.empty(frames.SYNC_PLAN), actor="ana")
    pd.testing.assert_frame_equal(empty, frames.empty(frames.SYNC_RESULT))
    good = plan_of([(1, 1, "subscription_status", "active", "past_due")])
    with pytest.raises(InputError, match="no column 'old_value'"):
        sync.apply_plan(ctx, good.drop(columns=["old_value"]), actor="ana")
    with pytest.raises(InputError, match="'plan'"):
        sync.apply_plan(ctx, good.assign(key="plan"), actor="ana")
    with pytest.raises(InputError, match="more than once"):
        sync.apply_plan(ctx, pd.concat([good, good]), actor="ana")
    with pytest.raises(InputError, match="actor"):
        sync.apply_plan(ctx, good, actor="")
    # A filtered subset of a plan is a plan.
    subset = plan_of(
        [(1, 1, "subscription_status", "active", "x"), (1, 2, "stripe_price_id", None, "p")]
    )
    result = sync.apply_plan(ctx, subset[subset["account_id"] == "2"], actor="ana")
    assert list(result["outcome"]) == ["applied"]


# -- end to end: reports from the sandbox, plan, apply, reports again -----------------------


def test_sync_plan_and_apply_through_ops(db_url: str, sandbox: Any) -> None:
    import stripe

    import opskit
    from tests.fixtures_sandbox import make_key

    key = make_key("sync")
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    [price] = sandbox.seed(
        key, "prices", [{"unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}}]
    )
    cus_a, cus_orphan, cus_gone = sandbox.seed(
        key, "customers", [{"email": "a@x.io"}, {"email": "b@x.io"}, {"email": "c@x.io"}]
    )
    client.v1.customers.delete(cus_gone)
    [sub] = sandbox.seed(
        key, "subscriptions", [{"customer": cus_a, "price": price, "status": "past_due"}]
    )
    insert(
        db_url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": key}],
        accounts=[
            {"id": 1, "shop_id": 1, "email": "a@x.io",
             "details": {"stripe_customer_id": cus_a, "stripe_subscription_id": sub,
                         "subscription_status": "active", "stripe_price_id": price, "k": 1}},
            {"id": 2, "shop_id": 1, "email": "B@x.io", "details": {"k": 2}},
            {"id": 3, "shop_id": 1, "email": "c@x.io", "details": {"stripe_customer_id": cus_gone}},
        ],
    )  # fmt: skip
    ops = opskit.connect(db_url, stripe_api_base=sandbox.url)
    plan = ops.sync_plan(progress=False)
    assert plan[["account_id", "key", "new_value"]].astype(object).where(
        plan[["account_id", "key", "new_value"]].notna(), None
    ).values.tolist() == [
        ["1", "subscription_status", "past_due"],
        ["2", "stripe_customer_id", cus_orphan],
        ["3", "stripe_customer_id", None],
    ]
    assert audit.read_log(ops.ctx.db).empty  # a plan writes nothing
    result = ops.apply_sync(plan, actor="ana")
    assert list(result["outcome"]) == ["applied"] * 3
    assert ops.sync_plan(progress=False).empty  # converged
    customers = ops.reconcile_customers(progress=False)
    assert set(customers["status"].astype(str)) <= {"match", "no_customer_id"}
    assert json.loads(ops.accounts().set_index("account_id").loc["2", "details"])["k"] == 2
    assert len(ops.audit_log(action="sync.set_detail")) == 3
    ops.ctx.db.engine.dispose()


def test_account_with_null_details_gets_a_certain_link(ctx: Context) -> None:
    # Account 5's details are SQL NULL (a new account): apply treats that as {}, so the
    # plan must not skip it as unreadable.
    accounts = ctx.db.load_accounts()
    customers = report(
        frames.CUSTOMER_REPORT,
        [{"shop_id": 2, "stripe_customer_id": "cus_E", "status": "orphan_in_stripe",
          "stripe_email": "e@x.io"}],
    )  # fmt: skip
    plan = sync.build_plan(customers, report(frames.SUBSCRIPTION_REPORT, []), accounts)
    assert plan[["account_id", "key", "new_value"]].values.tolist() == [
        ["5", "stripe_customer_id", "cus_E"]
    ]
    assert list(sync.apply_plan(ctx, plan, actor="ana")["outcome"]) == ["applied"]
    assert ctx.db.load_accounts().set_index("account_id").loc["5", "stripe_customer_id"] == "cus_E"


def test_sqlite_json_column_written_by_another_serializer(tmp_path: Any) -> None:
    # A backend on SQLite declaring details as JSON (SQLAlchemy's JSON type): the driver
    # decodes it, and the stored text need not be what json.dumps would write.
    url = f"sqlite:///{tmp_path / 'json.sqlite'}"
    engine = sa.create_engine(url)
    md = sa.MetaData()
    sa.Table("shops", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("name", sa.Text), sa.Column("stripe_secret_key", sa.Text),
             sa.Column("stripe_public_key", sa.Text))  # fmt: skip
    sa.Table("accounts", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("shop_id", sa.Integer), sa.Column("email", sa.Text),
             sa.Column("name", sa.Text), sa.Column("details", sa.JSON),
             sa.Column("created_at", sa.DateTime),
             sa.Column("updated_at", sa.DateTime))  # fmt: skip
    md.create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO shops VALUES (1, 'One', NULL, NULL)")
        conn.exec_driver_sql(
            "INSERT INTO accounts (id, shop_id, details) VALUES "
            """(1, 1, '{"stripe_customer_id":"cus_A","plan":"gold"}'), (2, 1, 'null')"""
        )
    engine.dispose()
    context = Context(db=Database(url), settings=Settings(database_url=url))
    plan = plan_of(
        [(1, 1, "subscription_status", None, "active"), (1, 2, "stripe_price_id", None, "p")]
    )
    result = sync.apply_plan(context, plan, actor="ana")
    assert list(result["outcome"]) == ["applied", "applied"], list(result["detail"])
    by_id = context.db.load_accounts().set_index("account_id")
    assert json.loads(by_id.loc["1", "details"]) == {
        "stripe_customer_id": "cus_A", "plan": "gold", "subscription_status": "active"
    }  # fmt: skip
    assert by_id.loc["2", "stripe_price_id"] == "p"
    context.db.engine.dispose()
