"""Which databases the demo may rebuild: an empty one, or one a demo built (its marker).

The demo's ``write_database`` drops the backend's tables and re-seeds them, and
``start()`` empties opskit's own tables (audit, intents, cursors, deliveries). That
is right only for a database the demo itself built, so the demo marks what it
builds: a one-row table :data:`MARKER_TABLE` (shape, seed, build time), written
*before* any backend table is created, so that a build that fails half-way is
still recognised as the demo's. Before anything is dropped, :func:`check_rebuildable`
accepts a database only when

* it has no tables at all (a new SQLite file, a fresh PostgreSQL database), or
* it holds the demo marker, or
* it is the SQLite file of a demo world in opskit's own data dir
  (``<data dir>/demo*/demo.sqlite``: the worlds opskit made before the marker existed);

anything else (a shop-backend database with real rows, opskit's own tables in use)
raises :class:`NotADemoDatabase` naming the URL (password hidden) and what to do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from opskit.common.config import data_dir
from opskit.common.exceptions import ConfigurationError
from opskit.common.urls import safe_url

__all__ = ["MARKER_TABLE", "NotADemoDatabase", "check_rebuildable", "write_marker"]

MARKER_TABLE = "opskit_demo_world"
_OWN_SCHEMA = "opskit"  # opskit's own tables on PostgreSQL (Schema.own_schema's default)


class NotADemoDatabase(ConfigurationError):
    """The demo was pointed at a database it did not build: nothing was dropped or written."""

    default_guidance = (
        "Point the demo at a new SQLite file (opskit.demo.start('sqlite:////tmp/new-demo.sqlite')) "
        "or an empty PostgreSQL database, or leave the URL out to use the demo's own world. "
        "To work on this database, use opskit.connect(url) (it never re-seeds)."
    )


def _marker(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        MARKER_TABLE,
        metadata,
        sa.Column("shape", sa.String(32), nullable=False),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
    )


def write_marker(engine: sa.Engine, shape: str, seed: int) -> None:
    """Mark the database at ``engine`` as built by the demo (one row; replaces any earlier)."""
    table = _marker(sa.MetaData())
    with engine.begin() as conn:
        table.create(conn, checkfirst=True)
        conn.execute(table.delete())
        conn.execute(table.insert().values(shape=shape, seed=seed, built_at=datetime.now(UTC)))


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def _in_opskit_data_dir(path: Path) -> bool:
    """A demo world's file in opskit's data dir (default or named world)."""
    try:
        folder = path.resolve().parent
        return (
            path.name == "demo.sqlite"
            and folder.parent == data_dir().resolve()
            and folder.name.startswith("demo")
        )
    except OSError:
        return False


def _tables(conn: sa.Connection) -> tuple[list[str], bool]:
    """The database's tables (default schema, then opskit's), and whether the marker has a row."""
    inspector = sa.inspect(conn)
    names = list(inspector.get_table_names())
    if conn.dialect.name == "postgresql" and inspector.has_schema(_OWN_SCHEMA):
        names += [f"{_OWN_SCHEMA}.{t}" for t in inspector.get_table_names(schema=_OWN_SCHEMA)]
    marked = False
    if MARKER_TABLE in names:
        table = _marker(sa.MetaData())
        marked = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() > 0
    return names, marked


def check_rebuildable(url: str) -> None:
    """Return when the demo may drop and re-seed the database at ``url``; raise otherwise.

    Reads only (a SQLite file that does not exist is not created). Raises
    :class:`NotADemoDatabase` (a :class:`~opskit.common.exceptions.ConfigurationError`)
    for a database with tables and no demo marker, naming the URL (password hidden)
    and a few of its tables.
    """
    path = _sqlite_path(url)
    if path is not None:
        if not path.exists() or path.stat().st_size == 0:
            return
        if _in_opskit_data_dir(path):
            return
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names, marked = _tables(conn)
    finally:
        engine.dispose()
    if marked or not names:
        return
    shown = ", ".join(sorted(names)[:6]) + (", ..." if len(names) > 6 else "")
    raise NotADemoDatabase(
        f"the demo will not rebuild {safe_url(url)}: it is not a demo database (it has "
        f"tables [{shown}] and no demo marker table {MARKER_TABLE}); re-seeding would drop "
        "its tables and empty opskit's audit log, so nothing was changed"
    )


def describe(url: str) -> dict[str, Any]:
    """The marker's row of the database at ``url`` (shape, seed, built_at), or {}."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(MARKER_TABLE):
                return {}
            row = conn.execute(sa.select(_marker(sa.MetaData()))).mappings().first()
            return dict(row) if row else {}
    finally:
        engine.dispose()
