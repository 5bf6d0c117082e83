"""The backend's orders as the money reads them: cents half-up, text ids, UTC times."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from opskit.backend.db import Database, create_reference_tables
from opskit.backend.money_orders import cents, load_orders
from opskit.core import frames


@pytest.mark.parametrize(
    ("total", "expected"),
    [(19.995, 2000), (0.285, 29), (1.005, 101), (29.95, 2995), (9.99, 999), (0.0, 0), (None, None)],
)
def test_float_euros_become_cents_half_up_never_truncated(total: float, expected: int) -> None:
    assert cents(total) == expected


def test_orders_table_is_read_with_text_ids_cents_and_utc(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orders.sqlite'}"
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    md = sa.MetaData()
    orders = sa.Table(
        "orders", md,
        sa.Column("id", sa.String(36), primary_key=True), sa.Column("shop_id", sa.String(36)),
        sa.Column("account_id", sa.String(36), nullable=True), sa.Column("total", sa.Float),
        sa.Column("status", sa.Text), sa.Column("created_at", sa.DateTime),
        sa.Column("completed_at", sa.DateTime, nullable=True),
    )  # fmt: skip
    md.create_all(engine)
    shop, other = str(uuid.uuid4()), str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(orders.insert(), [
            {"id": "o1", "shop_id": shop, "account_id": "a1", "total": 19.995,
             "status": "complete", "created_at": datetime(2026, 11, 3, 10, 0),
             "completed_at": datetime(2026, 11, 3, 11, 0)},
            {"id": "o2", "shop_id": other, "account_id": None, "total": 0.285,
             "status": "pending", "created_at": datetime(2026, 11, 4), "completed_at": None},
        ])  # fmt: skip
    db = Database(url)
    got = load_orders(db)
    pd.testing.assert_frame_equal(got.iloc[:0], frames.empty(frames.MONEY_ORDERS))
    one = got.set_index("order_id")
    assert one.loc["o1", "amount"] == 2000 and one.loc["o2", "amount"] == 29
    assert one.loc["o1", "created_at"] == pd.Timestamp("2026-11-03 10:00", tz="UTC")
    assert pd.isna(one.loc["o2", "account_id"]) and one.loc["o1", "currency"] == "eur"
    assert list(load_orders(db, [shop])["order_id"]) == ["o1"]
    engine.dispose()


def test_no_orders_table_is_no_orders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    got = load_orders(Database(url))
    pd.testing.assert_frame_equal(got, frames.empty(frames.MONEY_ORDERS))
