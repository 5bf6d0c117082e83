"""The ``opskit_audit`` table: one row per write opskit attempts, to Stripe or the database.

The table is created on first use (SQLite and PostgreSQL alike). A row says
who (``actor``), where (``shop_id``), what (``action``, ``target``, ``params``),
with which ``idempotency_key``, how it went (``outcome``: ok / error /
refused), what it produced (``result``: an object id) or why it failed
(``error``: one secret-free line), and Stripe's ``stripe_request_id``.

Database writes append their audit row on the same connection, inside the
same transaction, so a change and its trail commit or roll back together.
Stripe writes append after the call, in a transaction of their own.

Nothing secret is stored: every free-text column (``actor``, ``target``,
``params``, ``idempotency_key``, ``result``, ``error``) goes through
:func:`opskit.common.keys.redact`.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from opskit.common.exceptions import InputError
from opskit.common.keys import redact
from opskit.core import frames

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = ["OUTCOMES", "append", "audit_table", "ensure_table", "read_log"]

OUTCOMES = ("ok", "error", "refused")
_MAX_ERROR = 500

# One created-and-checked Table per engine (fresh databases in tests get their own).
_tables: weakref.WeakKeyDictionary[sa.Engine, sa.Table] = weakref.WeakKeyDictionary()


def audit_table(name: str = "opskit_audit") -> sa.Table:
    """The table's definition (not bound to any database)."""
    md = sa.MetaData()
    return sa.Table(
        name,
        md,
        sa.Column(
            "audit_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("shop_id", sa.Integer, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("params", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("stripe_request_id", sa.Text, nullable=True),
        sa.Index(f"ix_{name}_shop_at", "shop_id", "at"),
    )


def ensure_table(db: Database) -> sa.Table:
    """The audit table of ``db``, created if missing (in a transaction of its own)."""
    table = _tables.get(db.engine)
    if table is None:
        table = audit_table(db.schema.audit_table)
        with db.engine.begin() as conn:
            table.metadata.create_all(conn, checkfirst=True)
        _tables[db.engine] = table
    return table


def append(
    db: Database,
    *,
    actor: str,
    shop_id: int | None,
    action: str,
    target: str | None,
    params: Mapping[str, Any] | None,
    outcome: str,
    idempotency_key: str | None = None,
    result: str | None = None,
    error: str | BaseException | None = None,
    stripe_request_id: str | None = None,
    conn: sa.Connection | None = None,
) -> int:
    """Append one row and return its ``audit_id``.

    With ``conn`` the row joins that connection's transaction; without, it is
    committed on its own.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {outcome!r}")
    if not isinstance(actor, str) or not actor.strip():
        raise InputError(
            f"actor {actor!r} is not a name",
            guidance="Pass actor='your.name' so the audit log says who wrote.",
        )
    table = ensure_table(db)
    row = {
        "at": datetime.now(UTC),
        "actor": redact(actor.strip()),
        "shop_id": None if shop_id is None else int(shop_id),
        "action": action,
        "target": None if target is None else redact(target),  # ids typed by a user
        "params": None if params is None else _params_json(params),
        "idempotency_key": None if idempotency_key is None else redact(idempotency_key),
        "outcome": outcome,
        "result": None if result is None else redact(str(result)),
        "error": None if error is None else _one_line(error),
        "stripe_request_id": stripe_request_id,
    }
    stmt = table.insert().values(**row).returning(table.c.audit_id)
    if conn is not None:
        return int(conn.execute(stmt).scalar_one())
    with db.engine.begin() as own:
        return int(own.execute(stmt).scalar_one())


_FILTERS = ("actor", "shop_id", "action", "target", "outcome", "idempotency_key", "result")


def read_log(
    db: Database,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
    **filters: Any,
) -> pd.DataFrame:
    """The audit log as a frames.AUDIT DataFrame, newest first.

    Filters: ``actor``, ``shop_id``, ``action`` (a trailing ``*`` matches a
    prefix: ``action="sync.*"``), ``target``, ``outcome``, ``idempotency_key``,
    ``result`` (each a value or a list of values), ``since``/``until`` (UTC
    times, inclusive/exclusive) and ``limit``.
    """
    unknown = sorted(set(filters) - set(_FILTERS))
    if unknown:
        raise InputError(
            f"unknown audit filter(s) {', '.join(unknown)}",
            guidance=f"Filter on {', '.join(_FILTERS)}, since, until or limit.",
        )
    if not sa.inspect(db.engine).has_table(db.schema.audit_table):
        return frames.empty(frames.AUDIT)  # nothing written yet; reading creates nothing
    table = ensure_table(db)
    stmt = sa.select(table).order_by(table.c.audit_id.desc())
    for name, value in filters.items():
        if value is None:
            continue
        col = table.c[name]
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        if name == "action" and len(values) == 1 and str(values[0]).endswith("*"):
            stmt = stmt.where(col.startswith(str(values[0])[:-1], autoescape=True))
        else:
            stmt = stmt.where(col.in_(values))
    if since is not None:
        stmt = stmt.where(table.c.at >= _utc(since))
    if until is not None:
        stmt = stmt.where(table.c.at < _utc(until))
    if limit is not None:
        stmt = stmt.limit(int(limit))
    with db.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    if not rows:
        return frames.empty(frames.AUDIT)
    df = pd.DataFrame([dict(r) for r in rows])
    return frames.conform(df, frames.AUDIT)


def _utc(value: datetime | str) -> datetime:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    out: datetime = ts.to_pydatetime()
    return out


def _params_json(params: Mapping[str, Any]) -> str:
    return redact(json.dumps(dict(params), sort_keys=True, default=str))


def _one_line(error: str | BaseException) -> str:
    if isinstance(error, BaseException):
        from opskit.common.stripe_errors import describe_error

        text = describe_error(error)
    else:
        text = error
    text = redact(" ".join(str(text).split()))
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
