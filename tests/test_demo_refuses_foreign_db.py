"""opskit.demo.start(url) rebuilds only a database that is empty or that a demo built.

A shop-backend database with real rows and opskit's own tables (the tester's victim)
is refused before anything is dropped, the error naming the URL (password hidden)
and what to do; a demo's database is still re-seeded."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

import opskit
from opskit import demo
from opskit.backend import audit
from opskit.backend.tables import create_shop_backend_tables
from opskit.demo import shopbackend
from opskit.demo.marker import MARKER_TABLE, NotADemoDatabase


def _victim(url: str) -> None:
    """A shop-backend database opskit did not build: one shop, two accounts, an audit row."""
    engine = sa.create_engine(url)
    md = create_shop_backend_tables(engine)
    uid = (lambda u: u) if engine.dialect.name == "postgresql" else str
    shop = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(md.tables["shops"].insert().values(id=uid(shop), name="Real Shop"))
        for email in ("a@real.example", "b@real.example"):
            conn.execute(
                md.tables["accounts"]
                .insert()
                .values(id=uid(uuid.uuid4()), shop_id=uid(shop), name=email, details={})
            )
    engine.dispose()
    db = opskit.connect(url, demo="local").ctx.db
    audit.append(
        db, actor="ops", shop_id=str(shop), action="customer.create", target="account:x",
        params={}, outcome="ok", result="cus_RealCustomer",
    )  # fmt: skip
    db.engine.dispose()


def _counts(url: str) -> tuple[int, int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        schema = "opskit." if engine.dialect.name == "postgresql" else ""
        out = tuple(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("shops", "accounts", f"{schema}opskit_audit")
        )
        assert not sa.inspect(conn).has_table(MARKER_TABLE)
    engine.dispose()
    return out  # type: ignore[return-value]


def test_start_refuses_a_database_the_demo_did_not_build(empty_db_url: str) -> None:
    url = empty_db_url
    if url.startswith("postgresql"):  # a password in the URL must not show in the error
        url = sa.make_url(url).set(password="s3cret-pw").render_as_string(hide_password=False)
    _victim(url)
    before = _counts(url)
    assert before == (1, 2, 1)
    with pytest.raises(NotADemoDatabase) as info:
        demo.start(url)
    text = str(info.value)
    assert "not a demo database" in text and "nothing was changed" in text
    assert "accounts" in text and MARKER_TABLE in text  # says why
    assert "s3cret-pw" not in text and "s3cret-pw" not in (info.value.guidance or "")
    assert sa.make_url(url).render_as_string(hide_password=True) in text  # names the URL
    assert "new SQLite file" in (info.value.guidance or "")  # and what to do
    # The lower-level writer refuses too (before dropping anything).
    with pytest.raises(NotADemoDatabase):
        shopbackend.write_database(url, shopbackend.build_plan())
    assert _counts(url) == before  # untouched: rows, opskit's audit log, no marker
    if url.startswith("sqlite:///"):  # not even a lock file left beside it
        path = Path(url.removeprefix("sqlite:///"))
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_start_refuses_a_database_with_only_opskits_own_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'own.sqlite'}"
    _victim(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("accounts", "orders", "products", "shops"):
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
    engine.dispose()
    with pytest.raises(NotADemoDatabase, match="opskit_audit"):
        demo.start(url)


def test_a_demo_database_is_reseeded_on_postgresql(pg_base_url: str) -> None:
    from tests.conftest import fresh_postgres_url

    url = fresh_postgres_url(pg_base_url)  # empty: the demo builds it
    with demo.start(url) as first:
        first.ops.ctx.db.engine.dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # someone's change to the demo world
        conn.execute(sa.text("DELETE FROM accounts"))
    with demo.start(url) as second:  # marked as the demo's: rebuilt
        assert len(second.ops.accounts()) == len(shopbackend.build_plan().accounts)
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT shape, seed FROM {MARKER_TABLE}")).one()
    engine.dispose()
    assert tuple(row) == ("shop-backend", shopbackend.SEED)
