"""The ``opskit_audit`` table: one row per write opskit attempts, to Stripe or the database.

The table is created on first use, where opskit keeps its own tables (never
in the backend's migration-managed ``public`` schema): on PostgreSQL in the
``opskit`` schema (``Schema.own_schema``), or in another database
(``Schema.own_database_url``); on SQLite in the same file. A row says
who (``actor``), where (``shop_id``, the shop's id as text), what
(``action``, ``target``, ``params``),
with which ``idempotency_key``, how it went (``outcome``: ok / error /
refused / pending / unknown), what it produced (``result``: an object id) or why it failed
(``error``: one secret-free line), and Stripe's ``stripe_request_id``.

Database writes append their audit row on the same connection, inside the
same transaction, so a change and its trail commit or roll back together
(when the audit lives in another database, right after, in its own).

Stripe writes cannot share a transaction with the database, so they are
recorded in two steps: :func:`begin_intent` commits a ``pending`` row (action,
shop, target, params, idempotency key) *before* the request is sent, and
:func:`complete` turns it into ``ok`` / ``error`` (or ``unknown``, when Stripe's
answer was lost) after, setting ``completed_at`` and, when the outcome was
found out rather than answered, ``resolution`` (how). A process killed between
the two leaves the ``pending`` row: :func:`open_intents` lists them and
:mod:`opskit.writes.recovery` resolves them against Stripe. When the intent
cannot be written, the caller must not send the request.

Nothing secret is stored: every free-text column (``actor``, ``target``,
``params``, ``idempotency_key``, ``result``, ``error``) goes through
:func:`opskit.common.keys.redact`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from opskit.backend.own_tables import add_missing_columns, serial_id
from opskit.common.exceptions import ConfigurationError, InputError
from opskit.common.ids import id_text
from opskit.common.keys import redact
from opskit.core import frames

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = [
    "OPEN_OUTCOMES",
    "OUTCOMES",
    "append",
    "audit_table",
    "begin_intent",
    "check_table_name",
    "complete",
    "ensure_table",
    "extend_intent",
    "intent_writers",
    "open_intents",
    "read_log",
]

# pending: an intent whose request may be in flight (or whose process died);
# unknown: the request was sent and its answer lost; recovery resolves both.
OUTCOMES = ("ok", "error", "refused", "pending", "unknown")
OPEN_OUTCOMES = ("pending", "unknown")
_MAX_ERROR = 500

# One created-and-checked Table per engine (fresh databases in tests get their own).
_tables: weakref.WeakKeyDictionary[sa.Engine, sa.Table] = weakref.WeakKeyDictionary()
_create_lock = threading.Lock()


def audit_table(name: str = "opskit_audit", schema: str | None = None) -> sa.Table:
    """The table's definition (not bound to any database); ids are text."""
    md = sa.MetaData(schema=schema)
    return sa.Table(
        name,
        md,
        serial_id("audit_id"),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("shop_id", sa.Text, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=True),
        sa.Column("params", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.Text, nullable=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("stripe_request_id", sa.Text, nullable=True),
        *_intent_columns(),
        sa.Index(_index_name(name), "shop_id", "at"),
    )


def _intent_columns() -> list[sa.Column[Any]]:
    """Columns added for intents; :func:`ensure_table` adds them to older tables."""
    return [
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text, nullable=True),
        # who sends the request (host:pid:start) and until when it may be in flight
        # (the writer's deadline): recovery never calls such an intent "not written".
        sa.Column("writer", sa.Text, nullable=True),
        sa.Column("in_flight_until", sa.DateTime(timezone=True), nullable=True),
    ]


def _index_name(name: str) -> str:
    """``ix_<table>_shop_at``, shortened with a hash so it fits any database's limit."""
    full = f"ix_{name}_shop_at"
    if len(full) <= 60:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{full[:51]}_{digest}"


def check_table_name(engine: sa.Engine, name: str) -> None:
    """Refuse a table name the database would silently truncate (PostgreSQL: 63 bytes).

    A truncated name means the rows go to a table of another name: the audit log
    opskit reads would not be the one it writes.
    """
    limit = getattr(engine.dialect, "max_identifier_length", None) or 0
    if limit and len(name.encode("utf-8")) > limit:
        raise ConfigurationError(
            f"audit table name {name!r} is {len(name.encode('utf-8'))} bytes; "
            f"{engine.dialect.name} keeps only {limit}, so opskit could not find its own records; "
            "nothing was written",
            guidance=f"Pick a name of at most {limit} bytes: opskit.Schema(audit_table=...).",
        )


def ensure_table(db: Database) -> sa.Table:
    """The audit table of ``db``, created if missing (in a transaction of its own)."""
    engine = db.own_engine
    table = _tables.get(engine)
    if table is not None:
        return table
    with _create_lock:  # threads of this process create it once
        table = _tables.get(engine)
        if table is None:
            check_table_name(engine, db.schema.audit_table)
            table = audit_table(db.schema.audit_table, db.own_schema)
            for attempt in range(3):
                try:
                    db.ensure_own_schema()
                    with engine.begin() as conn:
                        table.metadata.create_all(conn, checkfirst=True)
                        add_missing_columns(conn, table, _intent_columns())
                    break
                except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                    # Another process created it between the check and the CREATE
                    # (PostgreSQL: duplicate pg_type / pg_class row): look again.
                    if attempt == 2:
                        raise
            _tables[engine] = table
    return table


def _same_database(db: Database) -> bool:
    return db.own_engine is db.engine


def append(
    db: Database,
    *,
    actor: str,
    shop_id: Any,
    action: str,
    target: str | None,
    params: Mapping[str, Any] | None,
    outcome: str,
    idempotency_key: str | None = None,
    result: str | None = None,
    error: str | BaseException | None = None,
    stripe_request_id: str | None = None,
    conn: sa.Connection | None = None,
    writer: str | None = None,
    in_flight_until: datetime | None = None,
) -> int:
    """Append one row and return its ``audit_id``.

    With ``conn`` the row joins that connection's transaction (when the audit
    lives in the backend's database); otherwise it is committed on its own.
    ``shop_id`` may be str, int or UUID; it is stored as text.
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
        "shop_id": id_text(shop_id),
        "action": action,
        "target": None if target is None else redact(target),  # ids typed by a user
        "params": None if params is None else _params_json(params),
        "idempotency_key": None if idempotency_key is None else redact(idempotency_key),
        "outcome": outcome,
        "result": None if result is None else redact(str(result)),
        "error": None if error is None else _one_line(error),
        "stripe_request_id": stripe_request_id,
    }
    if writer is not None:
        row["writer"] = writer
    if in_flight_until is not None:
        row["in_flight_until"] = in_flight_until
    stmt = table.insert().values(**row).returning(table.c.audit_id)
    if conn is not None and _same_database(db):
        audit_id = int(conn.execute(stmt).scalar_one())
    else:
        with db.own_engine.begin() as own:
            audit_id = int(own.execute(stmt).scalar_one())
    _APPENDED.set(_APPENDED.get() + 1)
    return audit_id


# Rows appended in this context (thread / task): a write call that raises having
# appended none was refused before any record, and opskit.writes.refusals audits it.
_APPENDED: ContextVar[int] = ContextVar("opskit_audit_rows_appended", default=0)


def rows_appended() -> int:
    """How many audit rows this thread (or task) has appended so far."""
    return _APPENDED.get()


def begin_intent(
    db: Database,
    *,
    actor: str,
    shop_id: Any,
    action: str,
    target: str | None,
    params: Mapping[str, Any] | None,
    idempotency_key: str | None,
    writer: str | None = None,
    in_flight_until: datetime | None = None,
) -> int:
    """Commit a ``pending`` row for a Stripe write about to be sent; its ``audit_id``.

    ``writer`` (``host:pid:start`` of the sending process) and ``in_flight_until``
    (when its request is over at the latest: the writer's deadline) tell recovery
    whether the request may still be in flight (:mod:`opskit.writes.inflight`).
    Raises whatever the database raises (``SQLAlchemyError``, :class:`ConfigurationError`):
    the caller must then not send the request.
    """
    return append(
        db,
        actor=actor,
        shop_id=shop_id,
        action=action,
        target=target,
        params=params,
        idempotency_key=idempotency_key,
        outcome="pending",
        writer=writer,
        in_flight_until=in_flight_until,
    )


def extend_intent(db: Database, audit_id: int, in_flight_until: datetime) -> None:
    """Move an open intent's ``in_flight_until`` (its request starts later than its claim)."""
    table = ensure_table(db)
    stmt = (
        table.update()
        .where(table.c.audit_id == int(audit_id), table.c.outcome.in_(OPEN_OUTCOMES))
        .values(in_flight_until=in_flight_until)
    )
    with db.own_engine.begin() as conn:
        conn.execute(stmt)


def intent_writers(
    db: Database, audit_ids: list[int]
) -> dict[int, tuple[str | None, datetime | None]]:
    """``audit_id`` -> (``writer``, ``in_flight_until``) of these intents (None: not recorded)."""
    if not audit_ids:
        return {}
    table = ensure_table(db)
    stmt = sa.select(table.c.audit_id, table.c.writer, table.c.in_flight_until).where(
        table.c.audit_id.in_([int(a) for a in audit_ids])
    )
    with db.own_engine.connect() as conn:
        rows = conn.execute(stmt).all()
    out: dict[int, tuple[str | None, datetime | None]] = {}
    for audit_id, writer, until in rows:
        if until is not None and until.tzinfo is None:  # SQLite keeps no offset
            until = until.replace(tzinfo=UTC)
        out[int(audit_id)] = (writer, until)
    return out


def complete(
    db: Database,
    audit_id: int,
    *,
    outcome: str,
    result: str | None = None,
    error: str | BaseException | None = None,
    stripe_request_id: str | None = None,
    resolution: str | None = None,
    params: Mapping[str, Any] | None = None,
    conn: sa.Connection | None = None,
) -> bool:
    """Give an open intent (``pending``/``unknown``) its outcome; False when it had one already.

    ``params`` replaces the stored ones when given (e.g. ``already_done``). With
    ``conn`` the update joins that transaction (a write's local step commits with
    its outcome); without, it commits on its own. Raises what the database raises.
    """
    if outcome not in OUTCOMES or outcome == "pending":
        raise ValueError(f"an intent completes as ok, error, refused or unknown, not {outcome!r}")
    table = ensure_table(db)
    values: dict[str, Any] = {
        "outcome": outcome,
        "completed_at": datetime.now(UTC),
        "result": None if result is None else redact(str(result)),
        "error": None if error is None else _one_line(error),
        "resolution": None if resolution is None else _one_line(resolution),
    }
    if stripe_request_id is not None:
        values["stripe_request_id"] = stripe_request_id
    if params is not None:
        values["params"] = _params_json(params)
    stmt = (
        table.update()
        .where(table.c.audit_id == int(audit_id), table.c.outcome.in_(OPEN_OUTCOMES))
        .values(**values)
    )
    if conn is not None and _same_database(db):
        return bool(conn.execute(stmt).rowcount == 1) or _supersede(table, audit_id, values, conn)
    with db.own_engine.begin() as own:
        return bool(own.execute(stmt).rowcount == 1) or _supersede(table, audit_id, values, own)


def _supersede(table: sa.Table, audit_id: int, values: dict[str, Any], conn: sa.Connection) -> bool:
    """The writer completed ``ok`` an intent recovery had already closed as "not written".

    Recovery only concludes that for a writer it believed gone; if the writer was
    still there after all, Stripe's answer is the truth: the row becomes ``ok`` with
    the result, and ``resolution`` keeps what recovery had said, so the log never
    holds a silent "did not happen" for a write that happened. False otherwise.
    """
    if values["outcome"] != "ok":
        return False
    where = (
        table.c.audit_id == int(audit_id),
        table.c.outcome == "error",
        table.c.error == "not written",
        table.c.resolution.like("recover:%"),
    )
    earlier = conn.execute(
        sa.select(table.c.resolution, table.c.completed_at).where(*where)
    ).first()
    if earlier is None:
        return False
    when = pd.Timestamp(earlier.completed_at).isoformat() if earlier.completed_at else "?"
    note = (
        f"recovered as not written ({earlier.resolution}, at {when}), then completed by its "
        f"writer: Stripe answered {values.get('result') or 'ok'}"
    )
    if values.get("resolution"):
        note += f"; {values['resolution']}"
    update = {**values, "error": None, "resolution": _one_line(note)}
    return bool(conn.execute(table.update().where(*where).values(**update)).rowcount == 1)


def open_intents(db: Database, *, older_than: float = 0.0) -> pd.DataFrame:
    """Stripe writes whose outcome opskit does not know: ``pending`` or ``unknown`` rows.

    ``older_than`` (seconds) leaves out intents begun more recently than that, which
    may still be in flight in another process. A frames.AUDIT frame, oldest first.
    """
    if not sa.inspect(db.own_engine).has_table(db.schema.audit_table, schema=db.own_schema):
        return frames.empty(frames.AUDIT)
    table = ensure_table(db)
    stmt = (
        sa.select(table).where(table.c.outcome.in_(OPEN_OUTCOMES)).order_by(table.c.audit_id.asc())
    )
    if older_than > 0:
        stmt = stmt.where(table.c.at <= datetime.now(UTC) - timedelta(seconds=older_than))
    with db.own_engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    if not rows:
        return frames.empty(frames.AUDIT)
    return frames.conform(pd.DataFrame([dict(r) for r in rows]), frames.AUDIT)


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
    if not sa.inspect(db.own_engine).has_table(db.schema.audit_table, schema=db.own_schema):
        return frames.empty(frames.AUDIT)  # nothing written yet; reading creates nothing
    table = ensure_table(db)
    stmt = sa.select(table).order_by(table.c.audit_id.desc())
    for name, value in filters.items():
        if value is None:
            continue
        col = table.c[name]
        values = list(value) if isinstance(value, list | tuple | set) else [value]
        if name == "shop_id":
            values = [id_text(v) for v in values]
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
    with db.own_engine.connect() as conn:
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
