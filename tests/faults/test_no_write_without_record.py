"""No Stripe write without its record: when the audit intent cannot be written, nothing
is sent; when the outcome cannot be recorded, the intent stays open and `recover`
resolves it; PartialWrite names only audit rows that exist.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import opskit
from opskit.backend import audit
from opskit.backend.db import Database, create_reference_tables
from opskit.backend.schema import Schema
from opskit.common.context import Context
from opskit.common.exceptions import AuditUnavailable, PartialWrite
from opskit.sandbox import Sandbox
from opskit.writes import actions
from tests.conftest import fresh_sqlite_url
from tests.faults.conftest import Tally
from tests.faults.world import World, make_world


def _sqlite_world(tmp_path: Path, sandbox: Sandbox, query: str = "") -> World:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    w = make_world(url, sandbox)
    if query:
        url2 = url + query
        w.ctx = Context(db=Database(url2), settings=w.ctx.settings)
    return w


def _no_write(w: World, why: str) -> tuple[str, str]:
    if w.posts():
        return "wrong", f"{w.posts()} POSTs reached Stripe although {why}"
    if w.customers():
        return "wrong", "a customer exists"
    return "right", f"refused before sending: {why}"


def test_a_sqlite_lock_held_past_the_timeout_refuses_the_write(
    tmp_path: Path, sandbox: Sandbox, tally: Tally
) -> None:
    w = _sqlite_world(tmp_path, sandbox, "?timeout=0.3")
    audit.ensure_table(w.ctx.db)
    path = w.url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock; readers go on

    def scenario() -> tuple[str, str]:
        try:
            actions.create_customer(w.ctx, 10, actor="t")
        except AuditUnavailable as exc:
            if "nothing was sent" not in exc.message or "locked" not in exc.message:
                return "wrong", exc.message
            return _no_write(w, "the audit table is locked")
        return "wrong", "the write went ahead"

    try:
        assert tally.run("sqlite lock", scenario) == "right"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Lock released: the same call goes through, recorded.
    cus = actions.create_customer(w.ctx, 10, actor="t")
    assert w.log(action="customer.create").iloc[0]["result"] == cus["id"]


@pytest.fixture
def pg_url(pg_base_url: str) -> str:
    from tests.conftest import fresh_postgres_url

    url = fresh_postgres_url(pg_base_url)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    return url


def _role_url(url: str, role: str, grants: list[str]) -> str:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        for grant in grants:
            conn.execute(sa.text(grant.format(role=role)))
    engine.dispose()
    return sa.make_url(url).set(username=role).render_as_string(hide_password=False)


@pytest.mark.parametrize("audit_exists", [True, False])
def test_a_read_only_postgresql_role_refuses_the_write(
    pg_url: str, sandbox: Sandbox, tally: Tally, audit_exists: bool
) -> None:
    w = make_world(pg_url, sandbox)
    if audit_exists:
        audit.ensure_table(w.ctx.db)
    role = f"ro_{'a' if audit_exists else 'b'}{abs(hash(pg_url)) % 10**6}"
    ro = _role_url(
        pg_url,
        role,
        [
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        ],
    )
    w.ctx = Context(db=Database(ro), settings=w.ctx.settings)

    def scenario() -> tuple[str, str]:
        try:
            actions.create_customer(w.ctx, 10, actor="t")
        except AuditUnavailable as exc:
            if "permission denied" not in exc.message:
                return "wrong", exc.message
            return _no_write(w, "the role cannot write the audit table")
        return "wrong", "the write went ahead"

    assert tally.run(f"read-only role (audit table exists: {audit_exists})", scenario) == "right"


def test_an_audit_table_name_postgresql_would_truncate_refuses_the_write(
    pg_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    w = make_world(pg_url, sandbox)
    name = "opskit_audit_" + "x" * 60  # 73 bytes; PostgreSQL keeps 63
    w.ctx = Context(db=Database(pg_url, Schema(audit_table=name)), settings=w.ctx.settings)

    def scenario() -> tuple[str, str]:
        try:
            actions.create_customer(w.ctx, 10, actor="t")
        except AuditUnavailable as exc:
            if "63" not in exc.message:
                return "wrong", exc.message
            return _no_write(w, "the audit table name would be truncated")
        return "wrong", "the write went ahead"

    assert tally.run("audit table name over 63 bytes", scenario) == "right"
    engine = sa.create_engine(pg_url)
    assert not any(len(t) >= 63 for t in sa.inspect(engine).get_table_names())
    engine.dispose()


@pytest.fixture
def sqlite_world(tmp_path: Path, sandbox: Sandbox) -> Iterator[World]:
    w = _sqlite_world(tmp_path, sandbox)
    yield w
    w.ctx.db.engine.dispose()


def test_an_outcome_that_cannot_be_recorded_stays_open_and_recover_links_it(
    sqlite_world: World, tally: Tally
) -> None:
    w = sqlite_world
    audit.ensure_table(w.ctx.db)
    with w.ctx.db.engine.begin() as conn:  # the audit table takes new rows, no updates
        conn.execute(
            sa.text(
                "CREATE TRIGGER frozen BEFORE UPDATE ON opskit_audit "
                "BEGIN SELECT RAISE(ABORT, 'audit frozen'); END"
            )
        )

    def scenario() -> tuple[str, str]:
        with pytest.raises(PartialWrite) as info:
            actions.create_customer(w.ctx, 10, actor="t")
        [cus] = w.customers()
        text = str(info.value)
        log = w.log()
        claimed = [int(x) for x in re.findall(r"audit_id (\d+)", text)]
        for audit_id in claimed:  # every row the message names exists and holds the id
            row = log[log["audit_id"] == audit_id]
            if row.empty or row.iloc[0]["result"] != cus["id"]:
                return "wrong", f"PartialWrite names audit_id {audit_id}, which does not hold it"
        if "audit_log()" in info.value.guidance:
            return "wrong", "the guidance claims the audit log has it"
        intent = log[log["action"] == "customer.create"].iloc[0]
        if intent["outcome"] != "pending":
            return "wrong", f"the intent is {intent['outcome']}"
        with w.ctx.db.engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER frozen"))
        ops = opskit.connect(w.url, stripe_api_base=w.sandbox.url)
        [row] = ops.recover(older_than=0).to_dict("records")
        if row["outcome"] != "ok" or row["result"] != cus["id"] or "linked" not in row["detail"]:
            return "wrong", f"recover said {row}"
        if w.details(10) != {"k": 10, "stripe_customer_id": cus["id"]}:
            return "wrong", f"details after recover: {w.details(10)}"
        if not audit.open_intents(w.ctx.db).empty:
            return "wrong", "an intent is still open"
        return "right", "intent left open, recover found and linked the customer"

    assert tally.run("outcome unrecordable", scenario) == "right"


def test_recover_says_not_written_for_an_intent_stripe_never_saw(
    sqlite_world: World, tally: Tally
) -> None:
    w = sqlite_world
    w.link(11)
    write = actions._Write(
        w.ctx, actor="t", shop=w.ctx.db.shop(1), action="payment_intent.create",
        target="account:11", params={"amount": 500, "currency": "eur",
                                     "customer": w.details(11)["stripe_customer_id"]},
        idempotency_key="opskit-v1-never-sent",
    )  # fmt: skip
    write.begin("opskit-v1-never-sent")  # the process died right after this

    def scenario() -> tuple[str, str]:
        from typer.testing import CliRunner

        from opskit.faces.cli import app

        # The default (the write deadline) leaves a young intent alone, says so rather
        # than "0 open", and exits 2 (still open: run again later), not 0.
        cli = CliRunner().invoke(
            app, ["recover", "--database-url", w.url, "--stripe-api-base", w.sandbox.url]
        )
        said = " ".join(cli.output.split())
        if cli.exit_code != 2 or "1 left alone (younger than the write deadline" not in said:
            return "wrong", f"recover was silent about the young intent: {cli.output!r}"
        ops = opskit.connect(w.url, stripe_api_base=w.sandbox.url)
        dry = ops.recover(older_than=0, dry_run=True)
        if list(dry["outcome"]) != ["error"] or audit.open_intents(w.ctx.db).empty:
            return "wrong", "a dry run recorded something"
        [row] = ops.recover(older_than=0).to_dict("records")
        rec = w.log(outcome="error").iloc[0]
        if row["outcome"] != "error" or "did not happen" not in rec["resolution"]:
            return "wrong", f"recover said {row}; audit {rec.to_dict()}"
        if not ops.recover(older_than=0).empty:
            return "wrong", "resolved twice"
        return "right", "not written"

    assert tally.run("intent never sent", scenario) == "right"


def test_a_live_refusal_that_cannot_be_audited_is_still_refused(
    sqlite_world: World, tally: Tally
) -> None:
    from opskit.common.exceptions import LiveWriteRefused

    w = sqlite_world
    t = w.ctx.db.shops_table
    live = "sk_live_" + "Z" * 24
    with w.ctx.db.engine.begin() as conn:
        conn.execute(t.update().values(stripe_secret_key=live))
    audit.ensure_table(w.ctx.db)
    with w.ctx.db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TRIGGER noinsert BEFORE INSERT ON opskit_audit "
                "BEGIN SELECT RAISE(ABORT, 'audit full'); END"
            )
        )

    def scenario() -> tuple[str, str]:
        try:
            actions.create_customer(w.ctx, 10, actor="t")
        except LiveWriteRefused as exc:
            return ("wrong", "key shown") if live in str(exc) else ("right", "refused")
        return "wrong", "the write went ahead"

    assert tally.run("live refusal, audit failing", scenario) == "right"
