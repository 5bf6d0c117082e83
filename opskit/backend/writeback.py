"""Writing changes into one account's ``details`` JSON: merged, checked, never lossy.

Every key opskit does not change is carried through untouched (and in its
order). A change is only written when the key still holds the value the caller
expected (the optimistic check of a sync plan, or the value read before a
Stripe call); otherwise :class:`~opskit.common.exceptions.StaleWrite` and nothing is
written. Details that are not a JSON object are refused
(:class:`DetailsUnreadable`) rather than overwritten; SQL NULL, JSON null and
``{}`` are empty details, written to like any object.

Values are given as text (the sync plan's ``new_value``); keys in
:data:`JSON_KEYS` (``stripe_customer``, the Customer snapshot) hold a JSON
object, written as an object exactly as shop-backend's admin sync writes it,
and compared as objects (PostgreSQL may render stored JSON differently).

Atomicity of check and write:

* PostgreSQL: the row is read with ``SELECT ... FOR UPDATE``; concurrent
  writers wait for this transaction.
* SQLite (no row locks): the UPDATE is a compare-and-swap
  (``WHERE details = <the text just read>``); a concurrent change makes it
  match no row, which is reported as stale.

The column keeps its storage: a dict for a JSON column (PostgreSQL), JSON text
for a text column (SQLite). ``updated_at`` (when the schema maps it and the
column exists) is set to now, UTC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from opskit.common.exceptions import DetailsUnreadable, InputError, StaleWrite, UnknownAccount
from opskit.common.ids import id_text
from opskit.common.models import detail_text, parse_details

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = [
    "DetailsUnreadable",
    "DetailsWrite",
    "detail_value",
    "merge_details",
    "read_details",
    "write_details",
]

_MISSING = object()


@dataclass(frozen=True)
class DetailsWrite:
    """What one write did: the account, its shop and each key's (old, new) value."""

    account_id: str
    shop_id: str | None
    changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    # True when the details already held every change (a re-applied plan row, a
    # concurrent identical write): nothing was written, and that is success.
    already: bool = False


#: Details keys whose value is a JSON object, given and shown as JSON text.
JSON_KEYS = frozenset({"stripe_customer"})


def detail_value(details: Mapping[str, Any], key: str) -> str | None:
    """A details value as opskit's frames show it (see :func:`opskit.common.models.detail_text`)."""
    return detail_text(details.get(key))


def merge_details(details: Mapping[str, Any], changes: Mapping[str, str | None]) -> dict[str, Any]:
    """A copy of ``details`` with ``changes`` applied; None removes a key. Unknown keys stay."""
    merged = dict(details)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif key in JSON_KEYS and isinstance(value, str):
            merged[key] = _json_object(key, value)
        else:
            merged[key] = value
    return merged


def _json_object(key: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError(f"details[{key!r}] must be JSON text of an object: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"details[{key!r}] must be a JSON object, not {type(value).__name__}")
    return value


def same_value(current: Any, wanted: str | None) -> bool:
    """Whether a stored details value still is ``wanted`` (text as the frames show it).

    Strings compare as text; JSON values (objects, numbers, booleans) compare as
    JSON, so ``{"a": 1}`` stored by PostgreSQL as ``{"a":1}`` is the same value.
    """
    if current is None or wanted is None:
        return current is None and wanted is None
    if isinstance(current, str):
        return current == wanted
    try:
        return bool(json.loads(wanted) == current)
    except ValueError:
        return False


def read_details(
    db: Database, conn: sa.Connection, account_id: Any, *, lock: bool = True
) -> tuple[str | None, dict[str, Any], Any]:
    """``(shop_id, details, raw)`` of one account, locked for update on PostgreSQL."""
    s, t = db.schema, db.accounts_table
    aid = id_text(account_id)
    key = db.account_key(account_id)
    col = _stored(db)  # SQLite: the text as stored, which the compare-and-swap needs
    stmt = sa.select(sa.cast(t.c[s.account_shop_id], sa.Text), col).where(t.c[s.account_id] == key)
    if lock and db.dialect != "sqlite":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise UnknownAccount(f"no account with id {account_id!r}")
    shop_id, raw = id_text(row[0]), row[1]
    if raw is None or (db.dialect == "sqlite" and _is_json(db) and raw.strip() == "null"):
        return shop_id, {}, raw  # JSON null (a JSON column's None) counts as NULL too
    if db.dialect != "sqlite" and _is_json(db) and not isinstance(raw, Mapping):
        # The driver already decoded the JSON: a str here is a JSON string, not JSON text.
        kind = "string" if isinstance(raw, str) else "array" if isinstance(raw, list) else "scalar"
        raise DetailsUnreadable(
            f"account {aid}: details is JSON {kind}, not an object; not overwritten"
        )
    details, problem = parse_details(raw)
    if problem is not None:
        raise DetailsUnreadable(f"account {aid}: {problem}; not overwritten")
    return shop_id, details, raw


def write_details(
    db: Database,
    conn: sa.Connection,
    account_id: Any,
    changes: Mapping[str, str | None],
    *,
    expect: Mapping[str, str | None] | None = None,
    shop_id: Any = None,
) -> DetailsWrite:
    """Merge ``changes`` into the account's details inside ``conn``'s transaction.

    ``expect`` maps keys to the values they must still hold (None: absent);
    ``shop_id``, when given, must be the account's shop. When every change
    already holds, nothing is written and the result has ``already=True``
    (whatever ``expect`` says: the desired state is reached). Raises
    :class:`UnknownAccount`, :class:`DetailsUnreadable`, :class:`StaleWrite` or
    :class:`InputError` before writing anything.
    """
    aid = id_text(account_id)
    current_shop, details, raw = read_details(db, conn, account_id)
    if shop_id is not None and current_shop is not None and current_shop != id_text(shop_id):
        raise InputError(
            f"account {aid} belongs to shop {current_shop}, not shop {shop_id}; not written",
            guidance="Build the plan again: the account's shop differs from the plan's.",
        )
    if changes and all(same_value(details.get(k), v) for k, v in changes.items()):
        # Already in the desired state (applied before a crash, or by a concurrent
        # identical write): success, and nothing to write.
        return DetailsWrite(
            account_id=aid or "",
            shop_id=current_shop,
            changes={k: (v, v) for k, v in changes.items()},
            already=True,
        )
    for key, wanted in (expect or {}).items():
        now = detail_value(details, key)
        if not same_value(details.get(key), wanted):
            raise StaleWrite(
                f"account {aid}: details[{key!r}] is {now!r} now, the write expected {wanted!r}; "
                "not overwritten"
            )
    merged = merge_details(details, changes)
    s, t = db.schema, db.accounts_table
    col = t.c[s.account_details]
    values: dict[str, Any] = {
        s.account_details: merged if isinstance(col.type, sa.JSON) else json.dumps(merged)
    }
    updated = s.account_updated_at
    if updated and updated in t.c:
        values[updated] = _now_for(t.c[updated])
    stmt = t.update().where(t.c[s.account_id] == db.account_key(account_id)).values(**values)
    if db.dialect == "sqlite":
        # No row locks: compare-and-swap on the text just read.
        stored = _stored(db)
        stmt = stmt.where(stored.is_(None) if raw is None else stored == raw)
    result = conn.execute(stmt)
    if result.rowcount != 1:
        _, now_details, _ = read_details(db, conn, aid)
        if all(same_value(now_details.get(k), v) for k, v in changes.items()):
            return DetailsWrite(  # a concurrent identical write got there first
                account_id=aid or "",
                shop_id=current_shop,
                changes={k: (v, v) for k, v in changes.items()},
                already=True,
            )
        raise StaleWrite(f"account {aid}: details changed while writing; not overwritten")
    return DetailsWrite(
        account_id=aid or "",
        shop_id=current_shop,
        changes={k: (detail_value(details, k), v) for k, v in changes.items()},
    )


def _is_json(db: Database) -> bool:
    return isinstance(db.accounts_table.c[db.schema.account_details].type, sa.JSON)


def _stored(db: Database) -> Any:
    """The details column; on SQLite read and compared as its stored text, never decoded."""
    col = db.accounts_table.c[db.schema.account_details]
    return sa.type_coerce(col, sa.Text) if db.dialect == "sqlite" else col


def _now_for(col: sa.Column[Any]) -> Any:
    now = datetime.now(UTC)
    if isinstance(col.type, sa.DateTime):
        return now if col.type.timezone else now.replace(tzinfo=None)
    return now.isoformat()
