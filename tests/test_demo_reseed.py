"""A demo re-seed rebuilds the world, and opskit's own rows about the previous world go with
it (audit rows, open intents, refresh cursors, webhook deliveries): only in the demo's
own database, never in another one."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

import opskit
from opskit import demo
from opskit.backend import audit
from opskit.backend.db import Database, create_reference_tables
from opskit.backend.own_tables import reset_own_tables
from opskit.backend.state import state_for
from tests.dbutil import insert


def _leave_traces(db: Database, shop_id: str) -> None:
    """What a session leaves behind: an audit row, an open intent, a cursor, a delivery."""
    audit.append(
        db, actor="t", shop_id=shop_id, action="customer.create", target="account:1",
        params={}, outcome="ok", result="cus_previousworld",
    )  # fmt: skip
    audit.begin_intent(
        db, actor="t", shop_id=shop_id, action="customer.create", target="account:2",
        params={"email": "x@y.io"}, idempotency_key="opskit-v1-previous",
    )  # fmt: skip
    st = state_for(db)
    with st.begin() as conn:
        st.set_cursor(conn, shop_id, 1_700_000_000, full=True)
    st.record_delivery(shop_id=shop_id, path="/stripe/webhook/1", headers={}, body=b"{}",
                       outcome="processed")  # fmt: skip


def _traces(db: Database, shop_id: str) -> tuple[int, int, int, int]:
    st = state_for(db)
    return (
        len(audit.read_log(db)),
        len(audit.open_intents(db)),
        len(st.cursors_of([shop_id])),
        len(st.deliveries_frame()),
    )


def test_reseeding_the_demo_resets_its_own_tables_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'world' / 'demo.sqlite'}"
    user_url = f"sqlite:///{tmp_path / 'user.sqlite'}"  # someone's own database beside it
    engine = sa.create_engine(user_url)
    create_reference_tables(engine)
    engine.dispose()
    insert(user_url, shops=[{"id": 1, "name": "Mine", "stripe_secret_key": None}])
    user = opskit.connect(user_url).ctx.db
    _leave_traces(user, "1")
    with demo.start(url=url, shape="reference") as first:
        db = first.ops.ctx.db
        _leave_traces(db, "1")
        assert _traces(db, "1") >= (2, 1, 1, 1)
    with demo.start(url=url, shape="reference") as second:  # re-seeded: a new world
        db = second.ops.ctx.db
        assert audit.read_log(db, result="cus_previousworld").empty
        assert audit.open_intents(db).empty  # recover has nothing of the old world to chase
        st = state_for(db)
        assert st.cursors_of(["1"]) == {} and st.deliveries_frame().empty
        # The new world writes as before (the tables are there, only emptied).
        _leave_traces(db, "1")
        assert _traces(db, "1") >= (2, 1, 1, 1)
    assert _traces(user, "1") == (2, 1, 1, 1)  # never another database's
    user.engine.dispose()


def test_reset_empties_every_own_table_on_both_databases(db_url: str) -> None:
    insert(db_url, shops=[{"id": 1, "name": "One", "stripe_secret_key": None}])
    db = Database(db_url)
    assert reset_own_tables(db) == []  # nothing made yet: nothing created either
    _leave_traces(db, "1")
    emptied = reset_own_tables(db)
    assert {"opskit_audit", "opskit_event_cursors", "opskit_webhook_deliveries"} <= set(emptied)
    assert _traces(db, "1") == (0, 0, 0, 0)
    _leave_traces(db, "1")  # cached table definitions still hold
    assert _traces(db, "1") == (2, 1, 1, 1)
    db.engine.dispose()
