"""`opskit recover` never calls a write "not written" while its request may be in flight.

The tester's case: a create_customer in another process waits on a slow Stripe;
`recover --older-than 0` used to mark its intent "not written", then the write
succeeded and the audit held a false "did not happen". Each intent now records its
writer (host:pid:start) and deadline; a live writer within it is left alone whatever
--older-than says, a dead one is resolved at once; open intents left over make the
exit code 2 (incomplete: run again later); a negative age is refused (3); and a
writer completing after recovery closed its intent supersedes it, saying both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import opskit
from opskit.backend import audit
from opskit.common.exceptions import InputError
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests.faults.world import World, make_world

ROOT = Path(__file__).resolve().parents[1]
LATENCY = 2.0


@pytest.fixture
def world(tmp_path: Path, sandbox: Sandbox) -> World:
    import sqlalchemy as sa

    from opskit.backend.db import create_reference_tables
    from tests.conftest import fresh_sqlite_url

    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    return make_world(url, sandbox)


def _writer(w: World, account: int) -> subprocess.Popen[str]:
    code = (
        "import opskit, sys; "
        f"ops = opskit.connect({w.url!r}, stripe_api_base={w.sandbox.url!r}); "
        f"print(ops.create_customer({account}, actor='writer')['id'])"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _wait_pending(w: World, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        open_ = audit.open_intents(w.ctx.db)
        if not open_.empty:
            return int(open_["audit_id"].iloc[0])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the writer never committed its intent")


def _recover_cli(w: World, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        app, ["recover", "--database-url", w.url, "--stripe-api-base", w.sandbox.url, *args]
    )
    return res.exit_code, " ".join(res.output.split())


def test_recover_leaves_a_live_writers_intent_alone_even_with_older_than_0(world: World) -> None:
    w = world
    w.sandbox.configure(key=w.key, latency=LATENCY)
    try:
        proc = _writer(w, 10)
        audit_id = _wait_pending(w, proc)
        ops = opskit.connect(w.url, stripe_api_base=w.sandbox.url)
        assert ops.recover(older_than=0).empty  # in flight: no conclusion
        code, out = _recover_cli(w, "--older-than", "0")
        assert code == 2 and "1 left alone" in out and "waiting for Stripe" in out
        row = w.log().set_index("audit_id").loc[audit_id]
        assert row["outcome"] == "pending" and proc.poll() is None  # still its writer's
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        w.sandbox.configure(key=w.key, latency=0.0)
    assert proc.returncode == 0, stderr[-2000:]
    cid = stdout.strip()
    row = w.log().set_index("audit_id").loc[audit_id]
    assert row["outcome"] == "ok" and row["result"] == cid and pd_na(row["error"])
    assert w.details(10)["stripe_customer_id"] == cid
    assert not (w.log()["error"].astype(str) == "not written").any()  # no false "did not happen"
    assert _recover_cli(w, "--older-than", "0")[0] == 0  # nothing open: 0


def test_a_dead_writers_intent_is_resolved_at_once(world: World) -> None:
    w = world
    w.sandbox.configure(key=w.key, latency=LATENCY)
    try:
        proc = _writer(w, 11)
        audit_id = _wait_pending(w, proc)
        proc.kill()  # kill -9 while its request waits
        proc.communicate(timeout=30)
        time.sleep(LATENCY + 0.3)  # the sandbox finishes what it had received
    finally:
        w.sandbox.configure(key=w.key, latency=0.0)
    ops = opskit.connect(w.url, stripe_api_base=w.sandbox.url)
    [row] = ops.recover(older_than=0).to_dict("records")  # its writer is gone: resolved now
    assert row["audit_id"] == audit_id and row["outcome"] in ("ok", "error")
    if row["outcome"] == "ok":  # the request had reached Stripe: found and linked
        assert w.details(11)["stripe_customer_id"] == row["result"]
    else:
        assert w.customers() == []
    assert audit.open_intents(w.ctx.db).empty


def test_a_negative_age_is_refused(world: World) -> None:
    ops = opskit.connect(world.url, stripe_api_base=world.sandbox.url)
    with pytest.raises(InputError, match="older_than"):
        ops.recover(older_than=-5)
    code, out = _recover_cli(world, "--older-than", "-5")
    assert code == 3 and "not an age" in out


def test_the_default_age_follows_the_write_deadline(world: World) -> None:
    w = world
    for age in (40, 200):  # intents of a gone writer (an older opskit: no writer record)
        audit_id = audit.begin_intent(
            w.ctx.db, actor="old", shop_id=1, action="customer.create", target="account:12",
            params={"email": "12@x.io"}, idempotency_key=f"opskit-v1-old-{age}",
        )  # fmt: skip
        table = audit.ensure_table(w.ctx.db)
        with w.ctx.db.own_engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.audit_id == audit_id)
                .values(at=datetime.now(UTC) - timedelta(seconds=age))
            )
    ops = opskit.connect(w.url, stripe_api_base=w.sandbox.url)
    done = ops.recover()  # default: request_deadline (120 s) + margin: only the 200 s one
    assert list(done["idempotency_key"]) == ["opskit-v1-old-200"]
    assert _recover_cli(w)[0] == 2  # the 40 s one is still open


def test_a_writer_completing_after_recovery_supersedes_not_written(db_url: str) -> None:
    from opskit.backend.db import Database
    from tests.dbutil import insert

    insert(db_url, shops=[{"id": 1, "name": "One", "stripe_secret_key": None}])
    db = Database(db_url)
    audit_id = audit.begin_intent(
        db, actor="w", shop_id=1, action="customer.create", target="account:1",
        params={}, idempotency_key="opskit-v1-late", writer="otherhost:4242:1",
        in_flight_until=datetime.now(UTC) - timedelta(seconds=1),
    )  # fmt: skip
    # What recovery records when Stripe has nothing (yet) ...
    assert audit.complete(
        db, audit_id, outcome="error", error="not written",
        resolution="recover: not in Stripe: the write did not happen",
    )  # fmt: skip
    # ... and the writer, still there after all, gets Stripe's answer.
    assert audit.complete(db, audit_id, outcome="ok", result="cus_Late123")
    row = audit.read_log(db).set_index("audit_id").loc[audit_id]
    assert row["outcome"] == "ok" and row["result"] == "cus_Late123" and pd_na(row["error"])
    assert "recovered as not written" in row["resolution"]
    assert (
        "then completed by its writer" in row["resolution"] and "cus_Late123" in row["resolution"]
    )
    # An error from the writer does not reopen anything; a second ok changes nothing.
    assert not audit.complete(db, audit_id, outcome="ok", result="cus_Other")
    assert audit.read_log(db).set_index("audit_id").loc[audit_id]["result"] == "cus_Late123"
    db.engine.dispose()


def pd_na(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))
