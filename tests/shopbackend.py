"""Rows in shop-backend's own tables (uuid ids, json details, naive timestamps), for tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from opskit.backend.tables import create_shop_backend_tables

_MISSING = object()


def create(url: str) -> None:
    engine = sa.create_engine(url)
    create_shop_backend_tables(engine)
    engine.dispose()


def insert(
    url: str,
    shops: Iterable[Mapping[str, Any]] = (),
    accounts: Iterable[Mapping[str, Any]] = (),
    orders: Iterable[Mapping[str, Any]] = (),
    products: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Insert rows as the backend's ORM would.

    ``details``: a dict is stored as JSON; ``"sql-null"`` as SQL NULL; ``None`` as
    JSON ``null`` (what SQLAlchemy's JSON column writes for Python's None); any
    other string as raw text (only where the column can hold it).
    """
    engine = sa.create_engine(url)
    md = sa.MetaData()
    tables = {
        n: sa.Table(n, md, autoload_with=engine)
        for n in ("shops", "accounts", "orders", "products")
    }
    pg = engine.dialect.name == "postgresql"

    def ids(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for k, v in row.items():
            if isinstance(v, uuid.UUID) and not pg:
                out[k] = str(v)
        return out

    with engine.begin() as conn:
        for name, rows in (("shops", shops), ("accounts", accounts), ("orders", orders),
                           ("products", products)):  # fmt: skip
            for row in rows:
                row = ids(row)
                if name == "accounts" and "details" in row:
                    d = row["details"]
                    if d == "sql-null":
                        row["details"] = sa.null()
                    elif d is None:
                        row["details"] = sa.JSON.NULL  # JSON 'null'
                    elif isinstance(d, str):
                        conn.execute(tables[name].insert().values(**{**row, "details": sa.null()}))
                        col = "CAST(:d AS json)" if pg else ":d"
                        conn.execute(
                            sa.text(f"UPDATE accounts SET details = {col} WHERE id = :i"),
                            {"d": d, "i": row["id"]},
                        )
                        continue
                conn.execute(tables[name].insert().values(**row))
    engine.dispose()


def details_text(d: Any) -> str:
    return json.dumps(d)
