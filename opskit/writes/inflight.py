"""Creates in flight: serializing ``create_customer`` per shop and email across processes.

Two accounts of one shop with one email, created at the same moment (two notebooks, a
panel and a script), must not both find "no customer with this email" and both create
one. The lock is opskit's own audit intent: ``create_customer`` commits its intent
*before* it asks Stripe for same-email customers, then waits until no earlier open
intent (lower ``audit_id``, ``pending`` or ``unknown``) of a ``customer.create`` in the
same shop, for an email that is the same by opskit's email rule, remains. Intents are
ordered by ``audit_id``, so of two concurrent creates exactly one goes first and the
other checks only after it is linked (or failed): the same outcome as one after the
other.

Crash safety: an intent whose process died stays open until ``opskit recover``
resolves it against Stripe (it links the customer the write may have made). Until
then a create for that email is refused (:class:`DuplicateCustomer` naming the
intent) after :data:`IN_FLIGHT_WAIT` seconds, never sent: the dead write may have
made the very customer a second create would duplicate. The wait is in this
process only; no database lock is held while waiting or while Stripe answers.
A call repeating the same write (same idempotency key) never waits for itself:
Stripe replays it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from opskit.backend import audit
from opskit.core.normalize import email_key

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = ["IN_FLIGHT_WAIT", "in_flight_creates"]

#: Seconds a create waits for an earlier one of the same email before refusing.
IN_FLIGHT_WAIT = 10.0


def in_flight_creates(
    db: Database, shop_id: Any, email: Any, *, before: int, key: str | None = None
) -> list[dict[str, Any]]:
    """Open ``customer.create`` intents of ``shop_id`` for ``email`` begun before ``before``.

    As dicts (``audit_id``, ``actor``, ``target``, ``idempotency_key``), oldest first;
    intents under ``key`` (or a key stepped from it) are left out. Database errors
    propagate.
    """
    wanted = email_key(email)
    if not wanted:
        return []
    rows = audit.open_intents(db)
    if rows.empty:
        return []
    rows = rows[
        rows["action"].eq("customer.create").fillna(False)
        & rows["shop_id"].eq(str(shop_id)).fillna(False)
        & (rows["audit_id"] < before)
    ]
    out = []
    for row in rows.to_dict("records"):
        other_key = row.get("idempotency_key")
        if (
            key
            and isinstance(other_key, str)
            and (other_key == key or other_key.startswith(f"{key}:"))
        ):
            continue
        if email_key(_email_of(row.get("params"))) == wanted:
            out.append(row)
    return out


def _email_of(params: Any) -> Any:
    try:
        value = json.loads(params) if isinstance(params, str) else params
    except ValueError:
        return None
    return value.get("email") if isinstance(value, dict) else None
