"""What opskit's own tables (the audit log, the event-following state) share.

Both live beside each other (``Database.own_engine``, schema ``Database.own_schema``)
and are created by opskit on first use, so they share three small things:

* :func:`serial_id`: an auto-numbered ``BIGINT`` key (``INTEGER`` on SQLite, where
  only ``INTEGER PRIMARY KEY`` is the rowid);
* :func:`add_missing_columns`: the additive upgrade of a table an older opskit
  created (``ALTER TABLE ... ADD COLUMN``; no data moved);
* :func:`reset_own_tables`: every row of them deleted, for a database that is
  rebuilt from scratch (the demo's re-seed): rows about a previous world's objects
  would otherwise outlive them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = ["add_missing_columns", "reset_own_tables", "serial_id"]


def serial_id(name: str) -> sa.Column[Any]:
    """An auto-numbered primary key: BIGINT, INTEGER on SQLite (the rowid)."""
    return sa.Column(
        name,
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def add_missing_columns(
    conn: sa.Connection, table: sa.Table, columns: Iterable[sa.Column[Any]]
) -> list[str]:
    """Add ``columns`` that ``table`` (as created by an older opskit) lacks; their names."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name, schema=table.schema)}
    added = []
    for col in columns:
        if col.name in have:
            continue
        kind = col.type.compile(dialect=conn.dialect)
        name = conn.dialect.identifier_preparer.format_table(table)
        conn.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {col.name} {kind}"))
        added.append(col.name)
    return added


def reset_own_tables(db: Database) -> list[str]:
    """Delete every row of opskit's own tables of ``db``; the names of the tables emptied.

    The audit log (open intents included), event cursors, local copies, events,
    webhook deliveries and signing secrets. Only for a database whose backend
    tables were just rebuilt (the demo's re-seed): everything in them is about
    objects that no longer exist, and ``opskit recover`` would resolve old
    intents against a new sandbox. Tables that do not exist are skipped; the
    tables themselves (and their cached definitions) stay.
    """
    from opskit.backend.audit import audit_table
    from opskit.backend.state import State

    engine = db.own_engine
    tables = [audit_table(db.schema.audit_table, db.own_schema), *State(db).metadata.sorted_tables]
    emptied = []
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        for table in tables:
            if inspector.has_table(table.name, schema=table.schema):
                conn.execute(table.delete())
                emptied.append(table.name)
    return emptied
