"""Per-store Stripe events: every create/update/delete the sandbox serves becomes an event.

localstripe records a few events of its own, in one store for every key and
with an old API shape, and none for ``customer.subscription.updated``, charges
or refunds. Here its own ``Event`` objects are never stored; instead, while a
request runs, every localstripe object that is created, changed or deleted is
noticed (attribute writes, store deletions, and the objects a change reaches
through its parents: a charge -> its payment intent -> its invoice -> its
subscription), and when the request ends each one's before/after exports are
compared. What changed becomes events in Stripe's shape::

    {"id": "evt_...", "object": "event", "api_version": ..., "created": <epoch s>,
     "data": {"object": {...}, "previous_attributes": {...}}, "livemode": false,
     "pending_webhooks": n, "request": {"id": "req_...", "idempotency_key": ...},
     "type": "customer.updated"}

into the calling key's own :class:`EventLog` only. Which object kinds emit
which types is the data in :data:`KINDS` and :func:`_transitions`.

``GET /v1/events`` lists them newest first with ``created`` (``gt``/``gte``/
``lt``/``lte`` or a second), ``type`` (``*`` wildcard), ``types[]`` (up to 20),
``limit``, ``starting_after``/``ending_before``; ``GET /v1/events/{id}``
retrieves one. Events older than 30 days are gone, as at Stripe.

On demand (see :class:`opskit.sandbox.Sandbox`): pin the events' clock to one
second (same-second bursts), move it (retention), and list same-second events
in a scrambled order (their ids are not ordered at Stripe either).
"""

from __future__ import annotations

import bisect
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from localstripe import resources as ls
from localstripe.errors import UserError

from opskit.sandbox.middleware import REQUEST_ID
from opskit.sandbox.patches import price_dict
from opskit.sandbox.stores import IndexedStore

API_VERSION = "2026-10-28.endive"
RETENTION_SECONDS = 30 * 86400
MAX_TYPES = 20


@dataclass(frozen=True)
class Kind:
    """How one localstripe object kind shows up in events."""

    prefix: str  # event type prefix: "customer", "customer.subscription", ...
    created: bool = True
    updated: bool = True
    deleted: bool = True
    export: Callable[[Any], dict[str, Any]] | None = None  # None: the object's _export()


# The object kinds that emit events, and under which names (Stripe's).
KINDS: dict[str, Kind] = {
    "customer": Kind("customer"),
    "subscription": Kind("customer.subscription", deleted=False),  # deleted = canceled
    "invoice": Kind("invoice"),
    "payment_intent": Kind("payment_intent", updated=False, deleted=False),
    "charge": Kind("charge", created=False, updated=True, deleted=False),
    "refund": Kind("refund", deleted=False),
    "plan": Kind("price", export=price_dict),
    "product": Kind("product"),
    "payout": Kind("payout", deleted=False),
    "dispute": Kind("charge.dispute", deleted=False),
    "invoiceitem": Kind("invoiceitem", updated=False),
    "payment_method": Kind("payment_method", created=False, updated=True, deleted=False),
}

# A change to a child is a change of its parents (attribute naming the parent id).
PARENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "subscription_item": (("_subscription", "subscription"),),
    "charge": (("payment_intent", "payment_intent"), ("invoice", "invoice")),
    "payment_intent": (("invoice", "invoice"),),
    "invoice": (("subscription", "subscription"),),
    "refund": (("charge", "charge"), ("payment_intent", "payment_intent")),
    "dispute": (("charge", "charge"),),
}
_PARENT_ATTRS = {name for pairs in PARENTS.values() for name, _ in pairs}

# localstripe's own Event(...) calls name things a diff cannot see (a failed
# invoice payment); these are kept, everything else is derived from the diff.
_HINTS = {
    "invoice.payment_failed",
    "invoice.payment_succeeded",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
}

# /v1/<plural>/<id> paths: the object a POST or DELETE acts on.
_PATH_KINDS = {
    "customers": "customer",
    "subscriptions": "subscription",
    "payment_intents": "payment_intent",
    "invoices": "invoice",
    "charges": "charge",
    "refunds": "refund",
    "prices": "plan",
    "plans": "plan",
    "products": "product",
    "payouts": "payout",
    "disputes": "dispute",
    "subscription_items": "subscription_item",
    "payment_methods": "payment_method",
}


# ---------------------------------------------------------------- the per-store log


@dataclass
class EventLog:
    """One key's events, sorted by (created, tiebreak); clock and order settings."""

    entries: list[tuple[int, float, int, dict[str, Any]]] = field(default_factory=list)
    by_id: dict[str, tuple[int, float, int, dict[str, Any]]] = field(default_factory=dict)
    pinned: int | None = None  # every new event gets this `created` (same-second bursts)
    offset: int = 0  # seconds added to the wall clock (retention tests)
    scrambled: bool = False  # same-second events listed in no particular order
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _rng: random.Random = field(default_factory=random.Random)

    def now(self) -> int:
        return int(time.time()) + self.offset

    def stamp(self) -> int:
        return self.pinned if self.pinned is not None else self.now()

    def append(self, event: dict[str, Any]) -> None:
        seq = next(self._seq)
        tiebreak = self._rng.random() if self.scrambled else float(seq)
        entry = (int(event["created"]), tiebreak, seq, event)
        bisect.insort(self.entries, entry, key=lambda e: e[:3])
        self.by_id[event["id"]] = entry

    def visible(self) -> list[tuple[int, float, int, dict[str, Any]]]:
        """Entries within the retention window (older ones are dropped for good)."""
        cutoff = self.now() - RETENTION_SECONDS
        if self.entries and self.entries[0][0] < cutoff:
            keep = bisect.bisect_left(self.entries, cutoff, key=lambda e: e[0])
            for e in self.entries[:keep]:
                self.by_id.pop(e[3]["id"], None)
            del self.entries[:keep]
        return self.entries

    def clear(self) -> None:
        self.entries.clear()
        self.by_id.clear()


def log_of(store: Any) -> EventLog:
    """The event log of one key's store (created on first use)."""
    log = store.__dict__.get("_opskit_events")
    if log is None:
        log = store.__dict__["_opskit_events"] = EventLog()
    assert isinstance(log, EventLog)
    return log


# ---------------------------------------------------------------- noticing changes


def _kind(obj: Any) -> str | None:
    return getattr(type(obj), "object", None)


def _export(kind: str, obj: Any) -> dict[str, Any]:
    spec = KINDS.get(kind)
    try:
        if spec is not None and spec.export is not None:
            return spec.export(obj)
        out = obj._export()
        return out if isinstance(out, dict) else {}
    except Exception:  # noqa: BLE001 - an object mid-change may not export; no event then
        return {}


@dataclass
class _Seen:
    obj: Any
    kind: str
    before: dict[str, Any] | None  # None: new in this request
    deleted: bool = False


class Tracker:
    """What one request changed in one store."""

    def __init__(self, store: IndexedStore) -> None:
        self.store = store
        self.seen: dict[int, _Seen] = {}
        self.hints: list[tuple[str, Any]] = []

    def touch(self, obj: Any) -> None:
        key = id(obj)
        if key in self.seen:
            return
        kind = _kind(obj)
        if kind is None or kind == "event":
            return
        oid = obj.__dict__.get("id")
        existing = oid is not None and self.store.get(kind + ":" + str(oid)) is obj
        entry = _Seen(obj, kind, None)
        self.seen[key] = entry  # before exporting: an export may write attributes
        if existing:
            entry.before = _export(kind, obj) if kind in KINDS else {}
            self.touch_parents(obj, kind)

    def touch_parents(self, obj: Any, kind: str) -> None:
        for attr, parent_kind in PARENTS.get(kind, ()):
            ref = obj.__dict__.get(attr)
            if ref is None:
                continue
            if not isinstance(ref, str):
                ref = getattr(ref, "id", None)
            parent = self.store.get(parent_kind + ":" + str(ref)) if ref else None
            if parent is not None:
                self.touch(parent)

    def deleting(self, key: str) -> None:
        obj = self.store.get(key)
        if obj is None:
            return
        self.touch(obj)
        self.seen[id(obj)].deleted = True

    def events(
        self, log: EventLog, request_id: str | None, idem: str | None
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        done: set[tuple[str, str]] = set()
        created = log.stamp()

        def emit(type_: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
            if not obj or (type_, str(obj.get("id"))) in done:
                return
            done.add((type_, str(obj.get("id"))))
            data: dict[str, Any] = {"object": obj}
            if previous is not None:
                data["previous_attributes"] = previous
            out.append(
                {
                    "id": "evt_" + ls.random_id(24),
                    "object": "event",
                    "api_version": API_VERSION,
                    "created": created,
                    "data": data,
                    "livemode": False,
                    "pending_webhooks": 0,
                    "request": {"id": request_id, "idempotency_key": idem},
                    "type": type_,
                }
            )

        for entry in list(self.seen.values()):
            spec = KINDS.get(entry.kind)
            if spec is None:
                continue
            obj = entry.obj
            oid = obj.__dict__.get("id")
            in_store = oid is not None and self.store.get(entry.kind + ":" + str(oid)) is obj
            if entry.before is None:
                if not in_store:
                    continue  # refused before it was stored
                after = _export(entry.kind, obj)
                if spec.created:
                    emit(spec.prefix + ".created", after)
                for t in _transitions(entry.kind, {}, after, created=True):
                    emit(t, after)
            elif entry.deleted or not in_store:
                if spec.deleted:
                    emit(spec.prefix + ".deleted", entry.before)
            else:
                after = _export(entry.kind, obj)
                previous = {
                    k: entry.before.get(k) for k in after if entry.before.get(k) != after.get(k)
                }
                if not previous:
                    continue
                extra = _transitions(entry.kind, entry.before, after, created=False)
                if spec.updated and not any(t.endswith(".deleted") for t in extra):
                    emit(spec.prefix + ".updated", after, previous)
                for t in extra:
                    emit(t, after, previous)
        for type_, obj in self.hints:
            kind = _kind(obj)
            if kind in KINDS and self.store.get(f"{kind}:{obj.__dict__.get('id')}") is obj:
                emit(type_, _export(kind, obj))
        return out


def _transitions(
    kind: str, before: dict[str, Any], after: dict[str, Any], created: bool
) -> list[str]:
    """Event types a status change means, beyond created/updated."""
    old, new = before.get("status"), after.get("status")
    changed = created or old != new
    out: list[str] = []
    if kind == "subscription" and changed:
        if new == "canceled" and not created:
            out.append("customer.subscription.deleted")
        if new == "paused":
            out.append("customer.subscription.paused")
        if old == "paused" and new != "paused" and not created:
            out.append("customer.subscription.resumed")
    elif kind == "payment_intent" and changed:
        last_error = after.get("last_payment_error")
        if new == "succeeded":
            out.append("payment_intent.succeeded")
        elif new == "canceled":
            out.append("payment_intent.canceled")
        elif new == "processing":
            out.append("payment_intent.processing")
        elif new == "requires_payment_method" and last_error:
            out.append("payment_intent.payment_failed")
    elif kind == "charge":
        if changed and new in ("succeeded", "failed", "pending"):
            out.append("charge." + str(new))
        if (after.get("amount_refunded") or 0) > (before.get("amount_refunded") or 0):
            out.append("charge.refunded")
    elif kind == "invoice" and changed and not created:
        if new == "paid":
            out += ["invoice.paid", "invoice.payment_succeeded"]
        elif new == "open" and old == "draft":
            out.append("invoice.finalized")
        elif new == "void":
            out.append("invoice.voided")
    elif kind == "dispute" and changed and not created and new in ("won", "lost"):
        out.append("charge.dispute.closed")
    elif kind == "payout" and changed and not created and new in ("paid", "failed", "canceled"):
        out.append("payout." + str(new))
    return out


# The tracker of the request being served. Handlers run one at a time, under the
# process-wide store swap lock, so one slot is enough.
_active: Tracker | None = None
_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Hook localstripe's objects and stores (idempotent; after patches.apply())."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True

        def tracked_setattr(self: Any, name: str, value: Any) -> None:
            t = _active
            if t is not None:
                t.touch(self)
            object.__setattr__(self, name, value)
            if t is not None and name in _PARENT_ATTRS:
                kind = _kind(self)
                if kind is not None:
                    t.touch_parents(self, kind)

        ls.StripeObject.__setattr__ = tracked_setattr  # type: ignore[method-assign,assignment]

        orig_delitem = IndexedStore.__delitem__

        def delitem(self: IndexedStore, key: str) -> None:
            t = _active
            if t is not None and t.store is self:
                t.deleting(key)
            orig_delitem(self, key)

        IndexedStore.__delitem__ = delitem  # type: ignore[method-assign]

        # localstripe's own events: never stored (ours replace them); a few are hints.
        def event_init(self: Any, type: str, data: Any) -> None:
            object.__setattr__(self, "id", "evt_localstripe")
            object.__setattr__(self, "type", type)
            object.__setattr__(self, "data", {})
            t = _active
            if t is not None and type in _HINTS:
                t.hints.append((type, data))

        ls.Event.__init__ = event_init  # type: ignore[method-assign]


# ---------------------------------------------------------------- serving


Deliver = Callable[[IndexedStore, list[dict[str, Any]]], None]


def middleware_for(deliver: Deliver, muted: Callable[[], bool] = lambda: False) -> Any:
    """An aiohttp middleware (inside the store swap) that turns changes into events.

    While ``muted()`` is true (:meth:`opskit.sandbox.Sandbox.seeding`), requests change
    objects and record no events: seeding a world's past, which no stream shows.
    """

    @web.middleware
    async def events_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        global _active
        store = ls.store
        if request.method not in ("POST", "DELETE") or not isinstance(store, IndexedStore):
            return await handler(request)
        tracker = Tracker(store)
        _active = tracker
        try:
            _touch_path_object(tracker, request.path)
            return await handler(request)
        finally:
            _active = None
            log = log_of(store)
            new = tracker.events(
                log, request.get(REQUEST_ID), request.headers.get("Idempotency-Key")
            )
            if muted():
                new = []
            for event in new:
                log.append(event)
            if new:
                deliver(store, new)

    return events_middleware


def _touch_path_object(tracker: Tracker, path: str) -> None:
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "v1":
        kind = _PATH_KINDS.get(parts[1])
        if kind is not None:
            obj = tracker.store.get(kind + ":" + parts[2])
            if obj is not None:
                tracker.touch(obj)


def _int(v: Any, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise UserError(400, f"Invalid integer: {v}", {"param": name}) from None


def _type_matcher(data: dict[str, Any]) -> Callable[[str], bool] | None:
    one = data.pop("type", None)
    many = data.pop("types", None)
    if one is not None and many is not None:
        raise UserError(
            400, "You may only specify one of these parameters: type, types.", {"param": "types"}
        )
    if many is not None:
        names = list(many.values()) if isinstance(many, dict) else many
        names = [names] if isinstance(names, str) else list(names)
        if len(names) > MAX_TYPES:
            raise UserError(
                400, f"You may pass at most {MAX_TYPES} values for types.", {"param": "types"}
            )
        wanted = {str(n) for n in names}
        return lambda t: t in wanted
    if one is not None:
        text = str(one)
        if text.endswith("*"):
            prefix = text[:-1]
            return lambda t: t.startswith(prefix)
        return lambda t: t == text
    return None


def list_events(log: EventLog, data: dict[str, Any]) -> dict[str, Any]:
    """A Stripe list envelope of ``log``'s events for the query ``data`` (newest first)."""
    limit = _int(data.pop("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise UserError(400, "Invalid limit: must be between 1 and 100", {"param": "limit"})
    after = data.pop("starting_after", None) or None
    before = data.pop("ending_before", None) or None
    gte, lte = None, None
    created = data.pop("created", None)
    if isinstance(created, dict):
        for op, v in created.items():
            n = _int(v, f"created[{op}]")
            if op in ("gte", "gt"):
                n = n if op == "gte" else n + 1
                gte = n if gte is None else max(gte, n)
            elif op in ("lte", "lt"):
                n = n if op == "lte" else n - 1
                lte = n if lte is None else min(lte, n)
            else:
                raise UserError(400, f"Received unknown parameter: created[{op}]")
    elif created not in (None, ""):
        gte = lte = _int(created, "created")
    match = _type_matcher(data)
    data.pop("delivery_success", None)
    data.pop("expand", None)
    for k in data:
        raise UserError(400, f"Received unknown parameter: {k}", {"param": k})
    entries = log.visible()
    lo, hi = 0, len(entries)
    if gte is not None:
        lo = bisect.bisect_left(entries, gte, key=lambda e: e[0])
    if lte is not None:
        hi = bisect.bisect_right(entries, lte, key=lambda e: e[0])
    reverse = False
    for cursor, param in ((after, "starting_after"), (before, "ending_before")):
        if cursor is None:
            continue
        entry = log.by_id.get(str(cursor))
        if entry is None:
            raise UserError(
                404, f"No such event: '{cursor}'", {"code": "resource_missing", "param": param}
            )
        pos = bisect.bisect_left(entries, entry[:3], key=lambda e: e[:3])
        if cursor is after:
            hi = min(hi, pos)
        else:
            lo = max(lo, pos + 1)
            reverse = True
        break
    picked: list[dict[str, Any]] = []
    indices = range(lo, hi) if reverse else range(hi - 1, lo - 1, -1)
    more = False
    for i in indices:
        event = entries[i][3]
        if match is not None and not match(event["type"]):
            continue
        if len(picked) == limit:
            more = True
            break
        picked.append(event)
    if reverse:
        picked.reverse()
    return {"object": "list", "data": picked, "has_more": more, "url": "/v1/events"}


def add_routes(app: web.Application) -> None:
    """``GET /v1/events`` and ``GET /v1/events/{id}`` (before the generic routes)."""
    from opskit.sandbox.routes import json_response, query

    async def event_list(request: web.Request) -> web.StreamResponse:
        return json_response(list_events(log_of(ls.store), query(request)))

    async def event_retrieve(request: web.Request) -> web.StreamResponse:
        id_ = request.match_info["id"]
        log = log_of(ls.store)
        log.visible()
        entry = log.by_id.get(id_)
        if entry is None:
            raise UserError(
                404, f"No such event: '{id_}'", {"code": "resource_missing", "param": "id"}
            )
        return json_response(entry[3])

    app.router.add_get("/v1/events", event_list)
    app.router.add_get("/v1/events/{id}", event_retrieve)
