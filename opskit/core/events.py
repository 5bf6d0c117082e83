"""Stripe events to local changes and findings: pure rules, no I/O.

Three questions, answered here once for both ways events arrive (``ops.refresh()``
reading ``GET /v1/events``, and the webhook receiver):

1. **Which events matter** (:data:`EVENT_TYPES`, at most 20 so one
   ``types[]`` filter asks for all of them) and which local copy each changes:
   a customer, a subscription, or nothing (money events only become findings).
2. **What to write** (:func:`plan_changes`): events are deduplicated by id and
   taken oldest first per object; an event older than what is stored is
   ``stale`` and skipped; when two events of one object share the last
   ``created`` second, or an event shares its second with the stored copy,
   their order cannot be known (Stripe's ids are not ordered) and the object
   is re-read from Stripe (``refetch``). A deleted customer stays deleted.
3. **What it means** (:func:`finding_rows`): each event of interest becomes a
   row with a report status, taken from the reports computed after the
   change (so an event and a full run never disagree), or, for money events,
   from :data:`MONEY_STATUSES`.

Versions are Unix seconds: an event's ``created``, or for an object read by
listing or retrieve, the second the read started minus a margin for clock skew.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from opskit.common.keys import redact
from opskit.core import frames

__all__ = [
    "EVENT_TYPES",
    "MONEY_STATUSES",
    "RETENTION_SECONDS",
    "UNREADABLE",
    "Change",
    "EventPlan",
    "Stored",
    "finding_rows",
    "full_read_reason",
    "object_ref",
    "plan_changes",
    "tombstone",
]

RETENTION_SECONDS = 30 * 86400  # GET /v1/events goes back 30 days

# event type -> the local copy it changes ("customer", "subscription") or None.
EVENT_TYPES: Mapping[str, str | None] = {
    "customer.created": "customer",
    "customer.updated": "customer",
    "customer.deleted": "customer",
    "customer.subscription.created": "subscription",
    "customer.subscription.updated": "subscription",
    "customer.subscription.deleted": "subscription",
    "customer.subscription.paused": "subscription",
    "customer.subscription.resumed": "subscription",
    "customer.subscription.pending_update_applied": "subscription",
    "customer.subscription.pending_update_expired": "subscription",
    "customer.subscription.trial_will_end": "subscription",
    "invoice.payment_failed": None,
    "payment_intent.succeeded": None,
    "payment_intent.payment_failed": None,
    "charge.refunded": None,
    "charge.dispute.created": None,
}
assert len(EVENT_TYPES) <= 20  # Stripe's limit for types[]

# Money events: (report, status) in the payments/subscriptions reports' vocabulary.
MONEY_STATUSES: Mapping[str, tuple[str, str]] = {
    "invoice.payment_failed": ("subscriptions", "payment_trouble"),
    "payment_intent.succeeded": ("payments", "paid"),
    "payment_intent.payment_failed": ("payments", "payment_failed"),
    "charge.refunded": ("payments", "refunded"),  # or partially_refunded, by amount
    "charge.dispute.created": ("payments", "disputed"),
}


@dataclass(frozen=True)
class Stored:
    """What the local copy of one object holds: its version and the event that wrote it."""

    version: int
    event_id: str | None = None


@dataclass(frozen=True)
class Change:
    """One write to the local copy: ``body`` at ``version``, or re-read it (``refetch``)."""

    kind: str
    object_id: str
    version: int
    body: Mapping[str, Any] | None  # None with refetch
    event_id: str | None
    refetch: bool = False


@dataclass
class EventPlan:
    """What a batch of events means for the local copy."""

    changes: dict[tuple[str, str], Change] = field(default_factory=dict)
    outcomes: dict[str, tuple[str, str | None]] = field(
        default_factory=dict
    )  # id -> (outcome, why)
    order: list[dict[str, Any]] = field(default_factory=list)  # the new events, oldest first


def tombstone(kind: str, object_id: str) -> dict[str, Any]:
    """What Stripe answers for a deleted object."""
    return {"id": object_id, "object": kind, "deleted": True}


def object_ref(event: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(kind, object id, customer id)`` an event is about; kind None for money events."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    kind = EVENT_TYPES.get(str(event.get("type")))
    oid = obj.get("id") if isinstance(obj, Mapping) else None
    customer = obj.get("customer") if isinstance(obj, Mapping) else None
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    if kind == "customer":
        customer = oid
    return kind, (str(oid) if oid else None), (str(customer) if customer else None)


def _key(event: Mapping[str, Any]) -> tuple[int, str]:
    return int(event.get("created") or 0), str(event.get("id"))


def plan_changes(
    events: Iterable[Mapping[str, Any]],
    stored: Mapping[tuple[str, str], Stored],
    seen: Iterable[str] = (),
) -> EventPlan:
    """What to write for ``events`` given the ``stored`` versions and the event ids ``seen``.

    Every event gets an outcome: ``duplicate`` (its id was processed before),
    ``ignored`` (not a type of :data:`EVENT_TYPES` or no object id), ``stale``
    (older than the stored copy), ``superseded`` (a newer event of the same
    batch wins), ``applied`` (its payload is written), ``refetch`` (the object
    is re-read: order unknown within one second) or ``recorded`` (a money
    event: a finding, no local copy).
    """
    plan = EventPlan()
    done = set(seen)
    fresh: list[Mapping[str, Any]] = []
    for event in events:
        eid = str(event.get("id"))
        if eid in done:
            plan.outcomes.setdefault(eid, ("duplicate", "already processed"))
            continue
        done.add(eid)
        fresh.append(event)
    fresh.sort(key=_key)
    plan.order = [dict(e) for e in fresh]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for event in fresh:
        eid = str(event.get("id"))
        kind, oid, _ = object_ref(event)
        if str(event.get("type")) not in EVENT_TYPES:
            plan.outcomes[eid] = ("ignored", f"type {event.get('type')} is not read")
        elif kind is None:
            plan.outcomes[eid] = ("recorded", None)
        elif oid is None:
            plan.outcomes[eid] = ("ignored", "the event names no object")
        else:
            groups.setdefault((kind, oid), []).append(event)
    for (kind, oid), group in groups.items():
        _plan_object(plan, kind, oid, group, stored.get((kind, oid)))
    return plan


def _plan_object(
    plan: EventPlan,
    kind: str,
    oid: str,
    group: list[Mapping[str, Any]],
    cur: Stored | None,
) -> None:
    newer: list[Mapping[str, Any]] = []
    for event in group:
        created = int(event.get("created") or 0)
        if cur is not None and created < cur.version:
            plan.outcomes[str(event["id"])] = ("stale", "older than the local copy")
        else:
            newer.append(event)
    if not newer:
        return
    deletes = [e for e in newer if e.get("type") == "customer.deleted"]
    if deletes:
        last = max(deletes, key=_key)
        for event in newer:
            same = event is last
            plan.outcomes[str(event["id"])] = (
                ("applied", None) if same else ("superseded", "the customer was deleted")
            )
        plan.changes[(kind, oid)] = Change(
            kind, oid, int(last.get("created") or 0), tombstone(kind, oid), str(last["id"])
        )
        return
    top = max(int(e.get("created") or 0) for e in newer)
    last_second = [e for e in newer if int(e.get("created") or 0) == top]
    tie_with_stored = (
        cur is not None
        and cur.version == top
        and cur.event_id not in {str(e["id"]) for e in last_second}
    )
    if len(last_second) > 1 or tie_with_stored:
        why = "same-second events: order unknown, re-read from Stripe"
        for event in newer:
            plan.outcomes[str(event["id"])] = ("refetch", why)
        plan.changes[(kind, oid)] = Change(kind, oid, top, None, None, refetch=True)
        return
    last = last_second[0]
    for event in newer:
        plan.outcomes[str(event["id"])] = (
            ("applied", None) if event is last else ("superseded", "a newer event of the batch")
        )
    body = (last.get("data") or {}).get("object") or {}
    plan.changes[(kind, oid)] = Change(kind, oid, top, dict(body), str(last["id"]))


def full_read_reason(cursor: int | None, now: int, margin: int = 3600) -> str | None:
    """Why a shop's events cannot be trusted since ``cursor`` (None: they can).

    No cursor: never read. A cursor older than the 30-day retention (less
    ``margin`` seconds, for the time the listing itself takes): events are gone.
    """
    if cursor is None:
        return "no cursor yet: first refresh of this shop"
    if cursor < now - RETENTION_SECONDS + margin:
        days = (now - cursor) / 86400
        return f"cursor is {days:.1f} days old: Stripe keeps events for 30 days"
    return None


# -- findings ---------------------------------------------------------------------------------


def _report_index(
    report: pd.DataFrame | None, column: str, wanted: set[str]
) -> dict[tuple[str, str], Any]:
    if report is None or report.empty or column not in report.columns:
        return {}
    out: dict[tuple[str, str], Any] = {}
    rows = report[report[column].isin(list(wanted)).fillna(False)]
    for row in rows.itertuples(index=False):
        oid = getattr(row, column)
        if oid is None or oid is pd.NA:
            continue
        out.setdefault((str(row.shop_id), str(oid)), row)
    return out


def finding_rows(
    processed: Iterable[Mapping[str, Any]],
    customer_report: pd.DataFrame | None,
    subscription_report: pd.DataFrame | None,
    links: Mapping[tuple[str, str], str],
) -> pd.DataFrame:
    """The ``CHANGES`` frame: one row per processed event of interest.

    ``processed``: dicts with ``shop_id``, ``event`` (the event), ``outcome``,
    ``outcome_detail`` and ``source`` (``refresh``/``webhook``).
    ``customer_report``/``subscription_report``: the reports after the change
    (rows found by ``stripe_customer_id`` / ``stripe_subscription_id``); an
    object with no row there has no finding (status <NA>). ``links``:
    ``(shop_id, customer id) -> account_id``.
    """
    processed = list(processed)
    ids = {_object_id(p) for p in processed}
    customers = _report_index(customer_report, "stripe_customer_id", ids)
    subscriptions = _report_index(subscription_report, "stripe_subscription_id", ids)
    rows = []
    for item in processed:
        try:
            row = _finding_row(item, customers, subscriptions, links)
        except Exception as exc:  # noqa: BLE001 - one odd stored event is its row, not the frame's end
            row = _unreadable_row(item, exc)
        if row is not None:
            rows.append(row)
    if not rows:
        return frames.empty(frames.CHANGES)
    df = pd.DataFrame.from_records(rows)
    df = df.sort_values(["shop_id", "created_at", "event_id"], kind="stable")
    return frames.conform(df, frames.CHANGES)


UNREADABLE = "unreadable_event"  # CHANGES status of a stored event that cannot be read


def _object_id(item: Mapping[str, Any]) -> str:
    event = item.get("event")
    return (object_ref(event)[1] or "") if isinstance(event, Mapping) else ""


def _finding_row(
    item: Mapping[str, Any],
    customers: Mapping[tuple[str, str], Any],
    subscriptions: Mapping[tuple[str, str], Any],
    links: Mapping[tuple[str, str], str],
) -> dict[str, Any] | None:
    event = item["event"]
    etype = str(event.get("type"))
    if etype not in EVENT_TYPES:
        return None
    shop = str(item["shop_id"])
    kind, oid, customer = object_ref(event)
    obj = (event.get("data") or {}).get("object") or {}
    report, status, detail = None, None, None
    if kind == "customer" and oid:
        report = "customers"
        row = customers.get((shop, oid))
        if row is not None:
            status, detail = row.status, row.detail
    elif kind == "subscription" and oid:
        report = "subscriptions"
        row = subscriptions.get((shop, oid))
        if row is not None:
            status, detail = row.status, row.detail
    elif kind is not None:  # a customer or subscription event naming no object
        report = "customers" if kind == "customer" else "subscriptions"
        detail = "the event names no object"
    else:
        report, status = MONEY_STATUSES[etype]
        if etype == "charge.refunded":
            amount, refunded = obj.get("amount") or 0, obj.get("amount_refunded") or 0
            if refunded and refunded < amount:
                status = "partially_refunded"
            detail = f"refunded {refunded} of {amount} {obj.get('currency') or ''}".strip()
        elif etype in ("payment_intent.payment_failed", "invoice.payment_failed"):
            err = obj.get("last_payment_error") or {}
            detail = err.get("message") if isinstance(err, Mapping) else None
    created = int(event.get("created") or 0)
    return {
        "shop_id": shop,
        "event_id": str(event.get("id")),
        "event_type": etype,
        "created_at": pd.Timestamp(created, unit="s", tz="UTC"),
        "object_type": str(obj.get("object")) if obj.get("object") else kind,
        "stripe_object_id": oid,
        "stripe_customer_id": customer,
        "account_id": links.get((shop, customer)) if customer else None,
        "report": report,
        "status": None if status is None else str(status),
        "detail": None if detail is None or detail is pd.NA else str(detail),
        "outcome": item.get("outcome"),
        "outcome_detail": item.get("outcome_detail"),
        "source": item.get("source"),
    }


def _unreadable_row(item: Mapping[str, Any], exc: Exception) -> dict[str, Any]:
    """The flagged row of an event :func:`_finding_row` could not read."""
    event = item.get("event")
    event = event if isinstance(event, Mapping) else {}
    created = event.get("created")
    try:
        when = pd.Timestamp(int(created), unit="s", tz="UTC")  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - no time is a time too
        when = pd.NaT
    return {
        "shop_id": str(item.get("shop_id")),
        "event_id": str(event.get("id")),
        "event_type": str(event.get("type")),
        "created_at": when,
        "object_type": None,
        "stripe_object_id": None,
        "stripe_customer_id": None,
        "account_id": None,
        "report": None,
        "status": UNREADABLE,
        "detail": redact(f"this stored event could not be read ({type(exc).__name__}: {exc})")[
            :300
        ],
        "outcome": item.get("outcome"),
        "outcome_detail": item.get("outcome_detail"),
        "source": item.get("source"),
    }
