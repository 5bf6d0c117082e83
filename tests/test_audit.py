"""The opskit_audit table on SQLite and PostgreSQL: created on demand, append-only, no secrets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from opskit.backend import audit
from opskit.backend.db import Database, create_reference_tables
from opskit.backend.schema import Schema
from opskit.common.exceptions import InputError
from opskit.core import frames
from tests.conftest import fresh_postgres_url, fresh_sqlite_url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.engine.dispose()


def test_empty_log_has_every_column_and_creates_nothing(db: Database) -> None:
    log = audit.read_log(db)
    pd.testing.assert_frame_equal(log, frames.empty(frames.AUDIT))
    assert not sa.inspect(db.engine).has_table("opskit_audit")


def test_rows_round_trip_newest_first_with_audit_dtypes(db: Database) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = audit.append(
        db, actor="ana", shop_id=1, action="customer.create", target="account:5",
        params={"email": "a@example.com", "key": "sk_live_abcdefgh12345678"},
        idempotency_key="opskit-v1-x", outcome="ok", result="cus_1", stripe_request_id="req_1",
    )  # fmt: skip
    second = audit.append(
        db, actor="bo", shop_id=2, action="sync.set_detail", target="account:6",
        params={"key": "subscription_status"}, outcome="error",
        error="boom\nwith sk_test_abcdefgh12345678 inside",
    )  # fmt: skip
    assert second > first
    log = audit.read_log(db)
    assert list(log["audit_id"]) == [second, first]
    assert {c: str(t) for c, t in log.dtypes.items()} == {
        c: str(t) for c, t in frames.AUDIT.items()
    }
    assert (log["at"] >= before).all()
    row = log.iloc[1]
    assert row["params"] == '{"email": "a@example.com", "key": "sk_live_\u20265678"}'
    assert (row["result"], row["stripe_request_id"], row["outcome"]) == ("cus_1", "req_1", "ok")
    err = log.iloc[0]["error"]
    assert err == "boom with sk_test_\u20265678 inside"  # one line, masked


def test_filters(db: Database) -> None:
    for i, action in enumerate(["sync.set_detail", "customer.create", "sync.set_detail"]):
        audit.append(
            db, actor="ana" if i else "bo", shop_id=i, action=action, target=f"account:{i}",
            params={}, outcome="ok",
        )  # fmt: skip
    assert len(audit.read_log(db, action="sync.*")) == 2
    assert list(audit.read_log(db, actor="ana")["shop_id"]) == ["2", "1"]
    assert list(audit.read_log(db, shop_id=[0, "2"])["shop_id"]) == ["2", "0"]
    assert len(audit.read_log(db, limit=1)) == 1
    assert len(audit.read_log(db, since=datetime.now(UTC) + timedelta(hours=1))) == 0
    with pytest.raises(InputError, match="unknown audit filter"):
        audit.read_log(db, who="ana")


def test_rows_join_the_callers_transaction(db: Database) -> None:
    audit.ensure_table(db)
    with pytest.raises(RuntimeError), db.engine.begin() as conn:
        audit.append(
            db, actor="ana", shop_id=1, action="x", target=None, params=None, outcome="ok",
            conn=conn,
        )  # fmt: skip
        raise RuntimeError("roll back")
    assert audit.read_log(db).empty


def test_refuses_nameless_actor_and_unknown_outcome(db: Database) -> None:
    with pytest.raises(InputError):
        audit.append(db, actor=" ", shop_id=1, action="x", target=None, params={}, outcome="ok")
    with pytest.raises(ValueError):
        audit.append(db, actor="a", shop_id=1, action="x", target=None, params={}, outcome="meh")


def test_a_key_pasted_into_any_free_text_column_is_masked(db: Database) -> None:
    # e.g. ops.cancel_subscription(<clipboard holding a key>, shop_id=1): the target is input.
    secret = "sk_live_abcdefgh12345678"
    audit.append(
        db, actor=f"ana {secret}", shop_id=1, action="subscription.cancel",
        target=f"subscription:{secret}", params={}, idempotency_key=secret, outcome="error",
    )  # fmt: skip
    log = audit.read_log(db)
    assert secret not in log.to_string()
    assert log["target"][0] == "subscription:sk_live_\u20265678"


def test_uuid_shop_ids_are_stored_as_text(db: Database) -> None:
    shop = uuid.uuid4()
    audit.append(db, actor="ana", shop_id=shop, action="x", target=None, params={}, outcome="ok")
    log = audit.read_log(db, shop_id=shop)
    assert list(log["shop_id"]) == [str(shop)]
    assert str(log["shop_id"].dtype) == "string"
    assert list(audit.read_log(db, shop_id=str(shop).upper())["shop_id"]) == []  # text, exact


def test_on_postgresql_the_log_lives_in_the_opskit_schema_never_public(
    pg_base_url: str,
) -> None:
    url = fresh_postgres_url(pg_base_url)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    db = Database(url)
    audit.append(db, actor="ana", shop_id=1, action="x", target=None, params={}, outcome="ok")
    inspector = sa.inspect(db.engine)
    assert "opskit_audit" not in inspector.get_table_names(schema="public")
    assert "opskit_audit" in inspector.get_table_names(schema="opskit")
    assert len(audit.read_log(db)) == 1
    db.engine.dispose()


def test_the_log_can_live_in_another_database(pg_base_url: str, tmp_path: Path) -> None:
    url = fresh_postgres_url(pg_base_url)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    elsewhere = fresh_sqlite_url(tmp_path)
    db = Database(url, Schema.reference(own_database_url=elsewhere))
    audit.append(db, actor="ana", shop_id=7, action="x", target=None, params={}, outcome="ok")
    assert not sa.inspect(db.engine).get_table_names(schema="opskit")
    assert "opskit_audit" not in sa.inspect(db.engine).get_table_names()
    other = sa.create_engine(elsewhere)
    assert "opskit_audit" in sa.inspect(other).get_table_names()
    other.dispose()
    assert list(audit.read_log(db)["shop_id"]) == ["7"]
    db.engine.dispose()
