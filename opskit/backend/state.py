"""opskit's own tables for following Stripe by events: cursors, local copies, events,
webhook deliveries and signing secrets.

Where they live: beside the audit table, never in the backend's
migration-managed schema. On PostgreSQL that is the schema named by
``Schema.own_schema`` (default ``opskit``, created when missing) or the
database of ``Schema.own_database_url``; SQLite keeps them in its file.

Tables (created on first use)::

    opskit_event_cursors     shop_id PK, cursor (Unix s: events before it are known),
                             account (hash of key + API base), full_read_at, refreshed_at
    opskit_stripe_objects    (shop_id, kind, object_id) PK, version (Unix s), event_id,
                             deleted, body (JSON: the object's frame row, as a listing keeps it)
    opskit_events            (shop_id, event_id) PK, type, created, object_kind, object_id,
                             customer_id, outcome, outcome_detail, source, processed_at,
                             account_id, report, status, detail (the finding)
    opskit_webhook_deliveries delivery_id PK, received_at, shop_id, path, headers, body,
                             status_code, outcome, reason, event_id, event_type, processed_at,
                             body_length, body_sha256 (body: whole only when signed)
    opskit_webhook_secrets   (shop_id, secret) PK, added_at, expires_at

Local ids are stored as text. Signing secrets are stored like the shops'
secret keys are (in the database, readable by whoever can read it) and are
never returned by anything but :meth:`State.signing_secrets`; every other
reader masks them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from opskit.backend.own_tables import add_missing_columns, serial_id
from opskit.common.keys import mask_key, redact
from opskit.core import frames
from opskit.core.events import Stored

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = ["HEADER_CHARS", "KEPT_HEADERS", "PATH_CHARS", "ObjectWrite", "State", "state_for"]

# What a delivery stored with a bounded body (rejected ones) keeps of its request.
KEPT_HEADERS = frozenset(
    {"stripe-signature", "content-type", "content-length", "user-agent", "x-forwarded-for"}
)
HEADER_CHARS = 1024  # each kept header's value, at most
PATH_CHARS = 512  # the request path, at most
MAX_HEADERS = 64  # headers kept of a signed delivery (the signature does not cover them)
SIGNED_HEADER_CHARS = 8192  # each one's value, at most

_states: weakref.WeakKeyDictionary[Any, State] = weakref.WeakKeyDictionary()


def state_for(db: Database) -> State:
    """The :class:`State` of ``db`` (one per database object, tables created once)."""
    st = _states.get(db)
    if st is None:
        st = _states[db] = State(db)
    return st


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ObjectWrite:
    """One local copy to write: ``body`` is its frame row (``deleted`` True: a tombstone)."""

    kind: str
    object_id: str
    version: int
    body: Mapping[str, Any]
    event_id: str | None = None
    force: bool = False  # write even if the stored version is newer (a fresh re-read)


class State:
    """opskit's event-following tables in one database (see the module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Beside the audit table: the same engine and schema (see Database.own_engine).
        self.engine = db.own_engine
        self.dialect = self.engine.dialect.name
        self.schema_name: str | None = db.own_schema
        md = sa.MetaData(schema=self.schema_name)
        self.cursors = sa.Table(
            "opskit_event_cursors",
            md,
            sa.Column("shop_id", sa.Text, primary_key=True),
            sa.Column("cursor", sa.BigInteger, nullable=False),
            # Which Stripe account the copy is of (a hash of key and API base, no secret):
            # another account behind the same shop makes the copy worthless.
            sa.Column("account", sa.Text, nullable=True),
            sa.Column("full_read_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        )
        self.objects = sa.Table(
            "opskit_stripe_objects",
            md,
            sa.Column("shop_id", sa.Text, primary_key=True),
            sa.Column("kind", sa.Text, primary_key=True),
            sa.Column("object_id", sa.Text, primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
            sa.Column("event_id", sa.Text, nullable=True),
            sa.Column("deleted", sa.Boolean, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
        )
        self.events = sa.Table(
            "opskit_events",
            md,
            sa.Column("shop_id", sa.Text, primary_key=True),
            sa.Column("event_id", sa.Text, primary_key=True),
            sa.Column("type", sa.Text, nullable=False),
            sa.Column("created", sa.BigInteger, nullable=False),
            sa.Column("object_kind", sa.Text, nullable=True),
            sa.Column("object_id", sa.Text, nullable=True),
            sa.Column("customer_id", sa.Text, nullable=True),
            sa.Column("outcome", sa.Text, nullable=False),
            sa.Column("outcome_detail", sa.Text, nullable=True),
            sa.Column("source", sa.Text, nullable=False),
            sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("account_id", sa.Text, nullable=True),
            sa.Column("report", sa.Text, nullable=True),
            sa.Column("status", sa.Text, nullable=True),
            sa.Column("detail", sa.Text, nullable=True),
            sa.Column("body", sa.Text, nullable=True),  # the event, for findings later
            sa.Index("ix_opskit_events_processed", "processed_at"),
        )
        self.deliveries = sa.Table(
            "opskit_webhook_deliveries",
            md,
            serial_id("delivery_id"),
            sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("shop_id", sa.Text, nullable=True),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("headers", sa.Text, nullable=False),
            sa.Column("body", sa.LargeBinary, nullable=False),
            sa.Column("status_code", sa.Integer, nullable=True),
            sa.Column("outcome", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=True),
            sa.Column("event_id", sa.Text, nullable=True),
            sa.Column("event_type", sa.Text, nullable=True),
            sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
            # The body as received: its length and SHA-256; ``body`` holds all of it only
            # for a delivery whose signature verified, else a prefix (see record_delivery).
            sa.Column("body_length", sa.BigInteger, nullable=True),
            sa.Column("body_sha256", sa.Text, nullable=True),
        )
        self.secrets = sa.Table(
            "opskit_webhook_secrets",
            md,
            sa.Column("shop_id", sa.Text, primary_key=True),
            sa.Column("secret", sa.Text, primary_key=True),
            sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        )
        self.metadata = md
        self._ready = False

    def __repr__(self) -> str:
        where = f"schema {self.schema_name!r}" if self.schema_name else "its own tables"
        return f"<opskit State in {where}>"

    # -- setup --------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the schema and tables if missing (idempotent, cheap after the first call)."""
        if self._ready:
            return
        self.db.ensure_own_schema()
        with self.engine.begin() as conn:
            self.metadata.create_all(conn, checkfirst=True)
            # A cursors table made before the account column existed.
            add_missing_columns(conn, self.cursors, [sa.Column("account", sa.Text)])
            # A deliveries table made before bodies were bounded.
            add_missing_columns(
                conn,
                self.deliveries,
                [sa.Column("body_length", sa.BigInteger), sa.Column("body_sha256", sa.Text)],
            )
        self._ready = True

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    @contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A write transaction on opskit's tables.

        SQLite has one writer at a time: writers of this process queue on a lock
        (instead of failing with "database is locked" after the driver's 5 s), and
        wait up to a minute for writers of other processes.
        """
        self.ensure()
        if self.dialect != "sqlite":
            with self.engine.begin() as conn:
                yield conn
            return
        with _sqlite_lock(str(self.engine.url)), self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 60000")
            yield conn

    # -- cursors ------------------------------------------------------------------------

    def cursors_of(self, shop_ids: Iterable[str], account: str | None = None) -> dict[str, int]:
        """``{shop_id: cursor}`` for the shops that have one (of ``account``, when given)."""
        self.ensure()
        ids = [str(s) for s in shop_ids]
        t = self.cursors
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.shop_id, t.c.cursor, t.c.account).where(t.c.shop_id.in_(ids))
            )
            return {str(r[0]): int(r[1]) for r in rows if account is None or r[2] == account}

    def accounts_of(self, shop_ids: Iterable[str]) -> dict[str, str | None]:
        """``{shop_id: account hash}`` of the shops that have a cursor."""
        self.ensure()
        t = self.cursors
        ids = [str(s) for s in shop_ids]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.shop_id, t.c.account).where(t.c.shop_id.in_(ids)))
            return {str(r[0]): r[1] for r in rows}

    def set_cursor(
        self,
        conn: sa.Connection,
        shop_id: str,
        cursor: int,
        full: bool,
        account: str | None = None,
    ) -> None:
        t = self.cursors
        now = _utcnow()
        values = {
            "shop_id": str(shop_id),
            "cursor": int(cursor),
            "refreshed_at": now,
            "account": account,
        }
        if full:
            values["full_read_at"] = now
        ins = self._insert(t).values(**values)
        update = {k: ins.excluded[k] for k in values if k != "shop_id"}
        conn.execute(ins.on_conflict_do_update(index_elements=["shop_id"], set_=update))

    def drop_cursor(self, shop_id: str) -> None:
        """Forget a shop's cursor: its next refresh reads it in full."""
        with self.begin() as conn:
            conn.execute(self.cursors.delete().where(self.cursors.c.shop_id == str(shop_id)))

    # -- local copies -------------------------------------------------------------------

    def stored(
        self, conn: sa.Connection, shop_id: str, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], Stored]:
        wanted = list(keys)
        if not wanted:
            return {}
        t = self.objects
        out: dict[tuple[str, str], Stored] = {}
        ids = sorted({oid for _, oid in wanted})
        for chunk in _chunks(ids, 500):
            rows = conn.execute(
                sa.select(t.c.kind, t.c.object_id, t.c.version, t.c.event_id).where(
                    t.c.shop_id == str(shop_id), t.c.object_id.in_(chunk)
                )
            )
            for kind, oid, version, event_id in rows:
                out[(kind, oid)] = Stored(int(version), event_id)
        return {k: v for k, v in out.items() if k in set(wanted)}

    def write_objects(
        self, conn: sa.Connection, shop_id: str, writes: Sequence[ObjectWrite]
    ) -> int:
        """Upsert local copies where newer than what is stored (or ``force``); returns writes."""
        t = self.objects
        n = 0
        for w in writes:
            values = {
                "shop_id": str(shop_id),
                "kind": w.kind,
                "object_id": w.object_id,
                "version": int(w.version),
                "event_id": w.event_id,
                "deleted": bool(w.body.get("deleted") is True),
                "body": json.dumps(dict(w.body), sort_keys=True, default=str),
            }
            ins = self._insert(t).values(**values)
            update = {k: ins.excluded[k] for k in ("version", "event_id", "deleted", "body")}
            where = None if w.force else t.c.version <= ins.excluded.version
            stmt = ins.on_conflict_do_update(
                index_elements=["shop_id", "kind", "object_id"], set_=update, where=where
            )
            # a row comes back only when inserted or updated (rowcount is -1 on psycopg 3)
            n += conn.execute(stmt.returning(t.c.object_id)).first() is not None
        return n

    def replace_objects(
        self,
        conn: sa.Connection,
        shop_id: str,
        kind: str,
        bodies: Mapping[str, Mapping[str, Any]],
        version: int,
    ) -> int:
        """A full read: the shop's ``kind`` copies become ``bodies`` (id -> row), except
        copies newer than the read (a webhook applied while it ran), which stay."""
        t = self.objects
        conn.execute(
            t.delete().where(
                t.c.shop_id == str(shop_id), t.c.kind == kind, t.c.version <= int(version)
            )
        )
        newer = {
            r[0]
            for r in conn.execute(
                sa.select(t.c.object_id).where(t.c.shop_id == str(shop_id), t.c.kind == kind)
            )
        }
        rows = [
            {
                "shop_id": str(shop_id),
                "kind": kind,
                "object_id": str(oid),
                "version": int(version),
                "event_id": None,
                "deleted": bool(b.get("deleted") is True),
                "body": json.dumps(dict(b), sort_keys=True, default=str),
            }
            for oid, b in bodies.items()
            if str(oid) not in newer
        ]
        if rows:
            conn.execute(t.insert(), rows)
        return len(rows)

    def drop_objects(self, conn: sa.Connection, shop_id: str) -> int:
        """Forget every local copy of ``shop_id`` (all kinds, any version); returns how many
        rows went (``-1`` where the driver does not count)."""
        t = self.objects
        return int(conn.execute(t.delete().where(t.c.shop_id == str(shop_id))).rowcount)

    def objects_of(
        self, kind: str, shop_ids: Iterable[str] | None
    ) -> dict[str, list[dict[str, Any]]]:
        """``{shop_id: [rows]}`` of the local copies of ``kind``."""
        self.ensure()
        t = self.objects
        stmt = sa.select(t.c.shop_id, t.c.body).where(t.c.kind == kind)
        if shop_ids is not None:
            stmt = stmt.where(t.c.shop_id.in_([str(s) for s in shop_ids]))
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            for shop_id, body in conn.execute(stmt.order_by(t.c.shop_id, t.c.object_id)):
                out.setdefault(str(shop_id), []).append(json.loads(body))
        return out

    # -- events -------------------------------------------------------------------------

    def seen(self, conn: sa.Connection, shop_id: str, event_ids: Iterable[str]) -> set[str]:
        ids = sorted({str(i) for i in event_ids})
        t = self.events
        out: set[str] = set()
        for chunk in _chunks(ids, 500):
            rows = conn.execute(
                sa.select(t.c.event_id).where(t.c.shop_id == str(shop_id), t.c.event_id.in_(chunk))
            )
            out.update(str(r[0]) for r in rows)
        return out

    def record_event(
        self,
        conn: sa.Connection,
        shop_id: str,
        event: Mapping[str, Any],
        *,
        kind: str | None,
        object_id: str | None,
        customer_id: str | None,
        outcome: str,
        outcome_detail: str | None,
        source: str,
    ) -> bool:
        """Record one processed event; False when its id was already recorded (a duplicate)."""
        ins = self._insert(self.events).values(
            shop_id=str(shop_id),
            event_id=str(event["id"]),
            type=str(event.get("type")),
            created=int(event.get("created") or 0),
            object_kind=kind,
            object_id=object_id,
            customer_id=customer_id,
            outcome=outcome,
            outcome_detail=outcome_detail,
            source=source,
            processed_at=_utcnow(),
            body=json.dumps(dict(event), sort_keys=True, default=str),
        )
        # RETURNING, not rowcount: psycopg 3 reports -1 for this statement on PostgreSQL,
        # which read as "recorded" let two concurrent deliveries of one event both apply.
        stmt = ins.on_conflict_do_nothing(index_elements=["shop_id", "event_id"])
        return conn.execute(stmt.returning(self.events.c.event_id)).first() is not None

    def set_findings(self, rows: pd.DataFrame) -> None:
        """Store each row's ``account_id``/``report``/``status``/``detail`` on its event."""
        if rows.empty:
            return
        t = self.events
        with self.begin() as conn:
            for r in rows.itertuples(index=False):
                conn.execute(
                    t.update()
                    .where(t.c.shop_id == str(r.shop_id), t.c.event_id == str(r.event_id))
                    .values(
                        account_id=_text(r.account_id),
                        report=_text(r.report),
                        status=_text(r.status),
                        detail=_text(r.detail),
                    )
                )

    def changes(
        self,
        since: datetime | None = None,
        shop_ids: Iterable[str] | None = None,
        *,
        by: str = "processed_at",
    ) -> pd.DataFrame:
        """Recorded events with their findings (``CHANGES``), oldest first.

        ``since`` compares with ``by``: ``processed_at`` (when opskit learnt of it)
        or ``created`` (when it happened at Stripe).
        """
        self.ensure()
        t = self.events
        stmt = sa.select(t)
        if since is not None:
            if by == "created":
                stmt = stmt.where(t.c.created >= int(since.timestamp()))
            else:
                stmt = stmt.where(t.c.processed_at >= since)
        if shop_ids is not None:
            stmt = stmt.where(t.c.shop_id.in_([str(s) for s in shop_ids]))
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(t.c.created, t.c.event_id)).mappings().all()
        if not rows:
            return frames.empty(frames.CHANGES)
        df = pd.DataFrame(
            {
                "shop_id": [r["shop_id"] for r in rows],
                "event_id": [r["event_id"] for r in rows],
                "event_type": [r["type"] for r in rows],
                "created_at": _utc_seconds([r["created"] for r in rows]),
                "object_type": [r["object_kind"] for r in rows],
                "stripe_object_id": [r["object_id"] for r in rows],
                "stripe_customer_id": [r["customer_id"] for r in rows],
                "account_id": [r["account_id"] for r in rows],
                "report": [r["report"] for r in rows],
                "status": [r["status"] for r in rows],
                "detail": [r["detail"] for r in rows],
                "outcome": [r["outcome"] for r in rows],
                "outcome_detail": [r["outcome_detail"] for r in rows],
                "source": [r["source"] for r in rows],
            }
        )
        return frames.conform(df, frames.CHANGES)

    def event_bodies(self, shop_id: str, event_ids: Iterable[str]) -> list[dict[str, Any]]:
        t = self.events
        ids = [str(i) for i in event_ids]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.body).where(t.c.shop_id == str(shop_id), t.c.event_id.in_(ids))
            )
            out = []
            for (body,) in rows:
                try:
                    event = json.loads(body) if body else None
                except (ValueError, RecursionError):
                    event = None
                if isinstance(event, dict) and event.get("id") is not None:
                    out.append(event)  # an unreadable body gets no finding (status <NA>)
            return out

    # -- webhook deliveries -------------------------------------------------------------

    def record_delivery(
        self,
        *,
        shop_id: str | None,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        outcome: str,
        status_code: int | None = None,
        reason: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        keep: int | None = None,
        body_length: int | None = None,
    ) -> int:
        """Store a delivery as received (before anything is parsed); returns its id.

        ``keep``: at most this many bytes of ``body`` are stored (None: all of it);
        ``body_length`` (default ``len(body)``) and the SHA-256 of ``body`` are
        stored either way (no hash when ``body_length`` says ``body`` is not whole).
        Headers are stored with any key or secret redacted; with ``keep`` set, only
        :data:`KEPT_HEADERS`, each cut to :data:`HEADER_CHARS` characters, and the
        path cut to :data:`PATH_CHARS`: what an unauthenticated sender can make
        opskit store is bounded.
        """
        raw = bytes(body)
        length = len(raw) if body_length is None else int(body_length)
        digest = hashlib.sha256(raw).hexdigest() if length == len(raw) else None
        if keep is not None:
            kept = {k: v[:HEADER_CHARS] for k, v in headers.items() if k.lower() in KEPT_HEADERS}
            raw, path = raw[: max(0, keep)], path[:PATH_CHARS]
        else:  # signed: every header, within what any HTTP server accepts
            kept = {k: v[:SIGNED_HEADER_CHARS] for k, v in list(headers.items())[:MAX_HEADERS]}
        safe_headers = {k: redact(v) for k, v in kept.items()}
        with self.begin() as conn:
            res = conn.execute(
                self.deliveries.insert()
                .values(
                    received_at=_utcnow(),
                    shop_id=None if shop_id is None else str(shop_id),
                    path=redact(path),
                    headers=json.dumps(safe_headers, sort_keys=True),
                    body=raw,
                    body_length=length,
                    body_sha256=digest,
                    status_code=status_code,
                    outcome=outcome,
                    reason=None if reason is None else redact(reason)[:500],
                    event_id=event_id,
                    event_type=event_type,
                )
                .returning(self.deliveries.c.delivery_id)
            )
            return int(res.scalar_one())

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        outcome: str,
        status_code: int | None = None,
        reason: str | None = None,
        event_id: str | None = None,
        event_type: str | None = None,
        conn: sa.Connection | None = None,
    ) -> None:
        values: dict[str, Any] = {"outcome": outcome, "processed_at": _utcnow()}
        if status_code is not None:
            values["status_code"] = status_code
        if reason is not None:
            values["reason"] = redact(reason)[:500]
        if event_id is not None:
            values["event_id"] = event_id
        if event_type is not None:
            values["event_type"] = event_type
        stmt = (
            self.deliveries.update()
            .where(self.deliveries.c.delivery_id == int(delivery_id))
            .values(**values)
        )
        if conn is not None:
            conn.execute(stmt)
            return
        with self.begin() as own:
            own.execute(stmt)

    def delivery_rows(
        self, outcomes: Iterable[str] | None = None, shop_ids: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Deliveries with their raw headers and body (for replay), oldest first."""
        self.ensure()
        t = self.deliveries
        stmt = sa.select(t).order_by(t.c.delivery_id)
        if outcomes is not None:
            stmt = stmt.where(t.c.outcome.in_(list(outcomes)))
        if shop_ids is not None:
            stmt = stmt.where(t.c.shop_id.in_([str(s) for s in shop_ids]))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings().all()]

    def deliveries_frame(self, shop_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """``WEBHOOK_DELIVERIES``: what the receiver got and did, newest first, no bodies."""
        rows = self.delivery_rows(shop_ids=shop_ids)
        if not rows:
            return frames.empty(frames.WEBHOOK_DELIVERIES)
        df = pd.DataFrame([{k: r[k] for k in frames.WEBHOOK_DELIVERIES} for r in rows])
        df = df.iloc[::-1]
        return frames.conform(df, frames.WEBHOOK_DELIVERIES)

    # -- signing secrets ----------------------------------------------------------------

    def add_secret(self, shop_id: str, secret: str, expires_at: datetime | None = None) -> None:
        """Accept ``secret`` for ``shop_id``'s deliveries (besides any others it has)."""
        ins = self._insert(self.secrets).values(
            shop_id=str(shop_id), secret=secret, added_at=_utcnow(), expires_at=expires_at
        )
        with self.begin() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["shop_id", "secret"], set_={"expires_at": expires_at}
                )
            )

    def remove_secrets(self, shop_id: str, masked_or_secret: str | None = None) -> int:
        """Stop accepting one secret (given in full or as shown masked), or all of a shop's."""
        t = self.secrets
        removed = 0
        with self.begin() as conn:
            rows = conn.execute(sa.select(t.c.secret).where(t.c.shop_id == str(shop_id))).all()
            for (secret,) in rows:
                if masked_or_secret in (None, secret, mask_key(secret)):
                    conn.execute(
                        t.delete().where(t.c.shop_id == str(shop_id), t.c.secret == secret)
                    )
                    removed += 1
        return removed

    def signing_secrets(self, shop_id: str) -> list[str]:
        """The secrets currently valid for ``shop_id`` (raw: for verification only)."""
        self.ensure()
        t = self.secrets
        now = _utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.secret, t.c.expires_at)
                .where(t.c.shop_id == str(shop_id))
                .order_by(t.c.added_at.desc())
            ).all()
        out = []
        for secret, expires in rows:
            if expires is not None and _aware(expires) <= now:
                continue
            out.append(str(secret))
        return out

    def secrets_frame(self) -> pd.DataFrame:
        """Every signing secret, masked (whsec_…abcd): shop_id, secret, added_at, expires_at."""
        self.ensure()
        t = self.secrets
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.shop_id, t.c.added_at)).mappings().all()
        return pd.DataFrame(
            {
                "shop_id": pd.array([r["shop_id"] for r in rows], dtype="string"),
                "secret": pd.array([mask_key(r["secret"]) for r in rows], dtype="string"),
                "added_at": pd.to_datetime([_aware(r["added_at"]) for r in rows], utc=True),
                "expires_at": pd.to_datetime(
                    [_aware(r["expires_at"]) if r["expires_at"] else None for r in rows], utc=True
                ),
            }
        )


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _sqlite_lock(url: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(url, threading.Lock())


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _utc_seconds(values: Iterable[Any]) -> pd.DatetimeIndex:
    """Unix seconds as UTC times; one pandas cannot hold (a bogus ``created``) is NaT,
    so one odd stored row never stops the frame."""
    seconds = pd.to_numeric(pd.Series(list(values), dtype="object"), errors="coerce")
    seconds = seconds.where(seconds.abs() < 9e9)  # past year 2255: no time
    return pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True, errors="coerce"))


def _chunks(items: Sequence[str], n: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
