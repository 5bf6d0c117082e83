"""Writing backend rows the way the backend would, for tests."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def insert(
    url: str,
    shops: Iterable[Mapping[str, Any]] = (),
    accounts: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Insert shops and accounts through reflected tables.

    An account's ``details`` may be a dict or raw text. A JSON column (PostgreSQL)
    receives the parsed value, exactly as the backend's ORM would store it; a text
    column receives the text as is, so malformed text can be planted there.
    """
    engine = sa.create_engine(url)
    md = sa.MetaData()
    shops_t = sa.Table("shops", md, autoload_with=engine)
    accounts_t = sa.Table("accounts", md, autoload_with=engine)
    details_is_json = isinstance(accounts_t.c.details.type, sa.JSON)
    rows = []
    for a in accounts:
        row = {"email": None, "name": None, "created_at": T0, "updated_at": T0, **a}
        details = row.get("details")
        if details_is_json and isinstance(details, str):
            row["details"] = json.loads(details)
        elif not details_is_json and details is not None and not isinstance(details, str):
            row["details"] = json.dumps(details)
        if details_is_json and row["details"] is None:
            row["details"] = sa.null()  # SQL NULL, not JSON 'null'
        rows.append(row)
    with engine.begin() as conn:
        shop_rows = list(shops)
        if shop_rows:
            conn.execute(shops_t.insert(), shop_rows)
        for row in rows:  # one by one: rows may mix NULL and values
            conn.execute(accounts_t.insert(), row)
    engine.dispose()
