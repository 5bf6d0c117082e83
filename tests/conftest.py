"""The real components every test talks to: SQLite files, a PostgreSQL 16 from pgserver,
and (through tests.fixtures_sandbox) the local multi-tenant Stripe sandbox."""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from opskit.backend.db import create_reference_tables

pytest_plugins = [m for m in ("tests.fixtures_sandbox",) if importlib.util.find_spec(m) is not None]

_db_counter = itertools.count()


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads the developer's own configuration or writes into their data dir."""
    for name in ("OPSKIT_DATABASE_URL", "OPSKIT_STRIPE_API_BASE", "OPSKIT_ALLOW_LIVE_WRITES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPSKIT_DATA_DIR", str(tmp_path_factory.mktemp("opskit-data")))


@pytest.fixture(scope="session")
def pg_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL 16 for the whole session (pgserver ships the binaries)."""
    pgserver = pytest.importorskip("pgserver")
    srv = pgserver.get_server(str(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    try:
        yield srv.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        srv.cleanup()


def fresh_postgres_url(base_url: str) -> str:
    name = f"opskit_t{os.getpid()}_{next(_db_counter)}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = sa.make_url(base_url).set(database=name)
    return url.render_as_string(hide_password=False)


def fresh_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / f'backend{next(_db_counter)}.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind (no tables)."""
    if request.param == "sqlite":
        return fresh_sqlite_url(tmp_path)
    return fresh_postgres_url(request.getfixturevalue("pg_base_url"))


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A fresh database of each kind with the reference tables created."""
    engine = sa.create_engine(empty_db_url)
    create_reference_tables(engine)
    engine.dispose()
    return empty_db_url
