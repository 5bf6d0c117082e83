"""Keeping opskit's local copy of each shop's Stripe up to date from events.

``refresh(ctx, shops, accounts)`` does, per shop and with the shop's own key:

1. read the shop's cursor (opskit's table); with none, or one older than
   Stripe's 30-day event retention, read the shop **in full** (every customer,
   linked ids the listing lacks, every subscription), replace its local copy,
   set the cursor to when the read started, and report the gap;
2. otherwise list the events of :data:`opskit.core.events.EVENT_TYPES` created
   since ``cursor - overlap`` (the overlap catches same-second events and events
   that became visible late), skip those already processed (by id), and plan
   the writes with :func:`opskit.core.events.plan_changes` (oldest first, only
   where newer than the stored copy; same-second ties re-read from Stripe);
3. bring the accounts' Customer snapshots (``details["stripe_customer"]`` and
   ``stripe_synced_at``) up to date for the customers whose events were applied,
   where the event is newer than the stored snapshot
   (:mod:`opskit.writes.snapshots`; not on a full read, and not when
   ``write_snapshots=False``);
4. in **one transaction per shop**: write the copies, record every new event
   with its outcome, move the cursor. A crash leaves each shop either refreshed
   or untouched; the next run re-reads from the old cursor and skips what was
   recorded, so no event is lost or applied twice (a snapshot written before the
   crash is found already written).

One shop's failure is that shop's row (``mode="error"``), never the run's.
:func:`local_customers` / :func:`local_subscriptions` give the same
:class:`~opskit.stripeapi.fetch.FetchResult` a live listing gives, from the
local copy, so a reconciliation after a refresh reads nothing it does not need.
:func:`process_event` applies one event (a webhook delivery) the same way.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from opskit.backend.state import ObjectWrite, State, state_for
from opskit.common.context import Context
from opskit.common.exceptions import InputError
from opskit.common.models import Shop
from opskit.common.progress import bar as progress_bar
from opskit.common.stripe_errors import describe_error
from opskit.core import frames
from opskit.core.events import (
    EVENT_TYPES,
    Change,
    full_read_reason,
    object_ref,
    plan_changes,
    tombstone,
)
from opskit.stripeapi import events as stripe_events
from opskit.stripeapi import fetch
from opskit.writes import snapshots as snapshot_writes

__all__ = [
    "OVERLAP_SECONDS",
    "SKEW_SECONDS",
    "RefreshResult",
    "ShopRefresh",
    "local_customers",
    "local_subscriptions",
    "process_event",
    "refresh",
    "refresh_shop",
]

log = logging.getLogger(__name__)

# local copy kind -> (fetch's endpoint name, the id column of its rows)
_ENDPOINT = {"customer": "customers", "subscription": "subscriptions"}
_ID = {"customer": "stripe_customer_id", "subscription": "stripe_subscription_id"}

OVERLAP_SECONDS = 300  # events re-listed before the cursor (same second, late visibility)
SKEW_SECONDS = 60  # a read at local second t is taken as Stripe's state at t - this
BATCH_SHOPS = 50  # shops written per transaction by refresh()
STALE_AFTER_SECONDS = 300  # a webhook payload older than this is re-read before it is used


def account_of(shop: Shop, api_base: str | None) -> str:
    """Which Stripe account a shop's copy is of: a hash of its key and the API base.

    Never the key: 16 hex digits of SHA-256, not reversible.
    """
    key = (shop.stripe_secret_key or "").strip()
    return hashlib.sha256(f"{key}|{api_base or 'stripe'}".encode()).hexdigest()[:16]


def sid(value: Any) -> str:
    """A local shop id as the text opskit's own tables store."""
    return str(value)


@dataclass
class ShopRefresh:
    """What one shop's refresh did (plain data)."""

    shop_id: str
    mode: str  # events / full_read / error / not_configured
    processed: list[dict[str, Any]] = field(default_factory=list)  # {event, outcome, ...}
    gaps: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    applied: int = 0
    read: int = 0  # events listed (new and already processed)
    duplicates: int = 0  # listed again (the overlap window): already processed
    cursor: int | None = None
    error: str | None = None
    # Customer states applied by events (opskit.writes.snapshots.states_of) and the
    # snapshots they brought up to date.
    customer_states: list[dict[str, Any]] = field(default_factory=list, repr=False)
    snapshots: int = 0
    snapshot_results: pd.DataFrame | None = field(default=None, repr=False)  # SYNC_RESULT
    snapshot_writes: snapshot_writes.SnapshotWrites | None = field(default=None, repr=False)
    # The shop's writes, made once Stripe has been read: (conn) -> (applied, processed, gaps).
    pending: Callable[[Any], tuple[int, list[dict[str, Any]], list[dict[str, Any]]]] | None = field(
        default=None, repr=False
    )

    @property
    def skipped(self) -> int:
        return self.duplicates + sum(
            1
            for p in self.processed
            if p["outcome"] in ("duplicate", "stale", "superseded", "ignored")
        )


@dataclass
class RefreshResult:
    """The outcome of :func:`refresh`: what changed, what could not be followed, per shop."""

    changes: pd.DataFrame  # CHANGES: one row per event of interest processed now
    gaps: pd.DataFrame  # REFRESH_GAPS: full reads, skipped events, failed shops
    shops: pd.DataFrame  # REFRESH_SHOPS: one row per shop
    requests: int = 0
    reports: dict[str, pd.DataFrame] = field(default_factory=dict)  # the reports from the copy
    # SYNC_RESULT: the Customer snapshots written (or found written) from customer events
    snapshots: pd.DataFrame = field(default_factory=lambda: frames.empty(frames.SYNC_RESULT))

    def __repr__(self) -> str:
        modes = self.shops["mode"].value_counts().to_dict() if not self.shops.empty else {}
        return (
            f"<RefreshResult shops={len(self.shops)} {modes} changes={len(self.changes)} "
            f"gaps={len(self.gaps)} snapshots={int(self.shops['snapshots'].sum())} "
            f"requests={self.requests}>"
        )


# -- one shop ------------------------------------------------------------------------------


def refresh_shop(
    ctx: Context,
    state: State,
    shop: Shop,
    link_ids: Collection[str] = (),
    *,
    overlap: int = OVERLAP_SECONDS,
    now: int | None = None,
    write_snapshots: bool = True,
    subscription_ids: Collection[str] = (),
) -> ShopRefresh:
    """Bring one shop's local copy up to date (see the module docstring)."""
    out = read_shop_changes(
        ctx, state, shop, link_ids, overlap=overlap, now=now, subscription_ids=subscription_ids
    )
    if write_snapshots:
        write_shop_snapshots(ctx, [out])
    commit_shops(state, [out])
    return out


def read_shop_changes(
    ctx: Context,
    state: State,
    shop: Shop,
    link_ids: Collection[str] = (),
    *,
    overlap: int = OVERLAP_SECONDS,
    now: int | None = None,
    subscription_ids: Collection[str] = (),
) -> ShopRefresh:
    """The Stripe half of one shop's refresh: read, plan, re-read; writes left ``pending``.

    ``link_ids`` / ``subscription_ids``: the customer / subscription ids the shop's
    accounts record, retrieved on a full read when its listings lack them, as a full
    reconciliation retrieves them (deleted customers, a test clock's objects)."""
    shop_id = sid(shop.id)
    out = ShopRefresh(shop_id, "events")
    if not shop.key_info.usable:
        out.mode = "not_configured"
        out.error = shop.key_info.problem
        return out
    try:
        account = account_of(shop, ctx.api_base)
        cursor = state.cursors_of([shop_id], account).get(shop_id)
        reason = full_read_reason(cursor, int(now if now is not None else time.time()))
        moved = cursor is None and state.cursors_of([shop_id]).get(shop_id) is not None
        if moved:
            reason = "the shop's key or Stripe endpoint changed: its copy is of another account"
        if reason is not None:
            _full_read(
                ctx, state, shop, link_ids, out, reason, drop_all=moved, subs=subscription_ids
            )
        else:
            assert cursor is not None
            _follow_events(ctx, state, shop, cursor, overlap, out)
    except Exception as exc:  # noqa: BLE001 - one shop's failure is this shop's row
        out.mode = "error"
        out.error = describe_error(exc)
        out.processed = []
        out.applied = 0
        out.gaps.append({"shop_id": shop_id, "gap": "shop_error", "reason": out.error})
        if isinstance(exc, stripe_events.ShopReadFailed):
            out.requests += exc.requests
    return out


def _full_read(
    ctx: Context,
    state: State,
    shop: Shop,
    link_ids: Collection[str],
    out: ShopRefresh,
    reason: str,
    *,
    drop_all: bool = False,
    subs: Collection[str] = (),
) -> None:
    """Read the shop in full; its copy becomes what was read. ``drop_all``: the copy is
    of another account (the key or endpoint changed): every object of it goes, in the
    same transaction as the new read's rows, whatever its version (a copy kept for
    being newer than the read would be the old account's object)."""
    started = int(time.time())
    objects, requests = stripe_events.read_shop(ctx, shop, link_ids, subs)
    out.requests += requests
    version = started - SKEW_SECONDS
    account = account_of(shop, ctx.api_base)

    def write(conn: Any) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
        applied = 0
        if drop_all:
            state.drop_objects(conn, out.shop_id)
        for kind, rows in objects.items():
            by_id = {str(r[_ID[kind]]): r for r in rows if r.get(_ID[kind])}
            applied += state.replace_objects(conn, out.shop_id, kind, by_id, version)
        state.set_cursor(conn, out.shop_id, started, full=True, account=account)
        return applied, [], []

    out.mode = "full_read"
    out.cursor = started
    out.pending = write
    out.gaps.append({"shop_id": out.shop_id, "gap": "full_read", "reason": reason})


def _follow_events(
    ctx: Context, state: State, shop: Shop, cursor: int, overlap: int, out: ShopRefresh
) -> None:
    client = stripe_events.shop_client(ctx, shop)
    started = int(time.time())
    events, requests = stripe_events.read_events(client, cursor - overlap, EVENT_TYPES)
    out.requests += requests
    out.read = len(events)
    keys = {(k, o) for k, o, _ in (object_ref(e) for e in events) if k and o}
    with state.engine.connect() as conn:
        seen = state.seen(conn, out.shop_id, [str(e["id"]) for e in events])
        stored = state.stored(conn, out.shop_id, keys)
    plan = plan_changes(events, stored, seen)
    out.duplicates = sum(1 for o, _ in plan.outcomes.values() if o == "duplicate")
    writes, fetched = _writes(client, shop, plan.changes.values())
    out.requests += fetched
    out.customer_states = snapshot_writes.states_of(out.shop_id, writes)
    new_cursor = max(cursor, started)
    account = account_of(shop, ctx.api_base)

    def write(conn: Any) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
        applied = state.write_objects(conn, out.shop_id, writes)
        processed: list[dict[str, Any]] = []
        gaps: list[dict[str, Any]] = []
        for event in plan.order:
            kind, oid, customer = object_ref(event)
            outcome, why = plan.outcomes[str(event["id"])]
            why = _with_note(why, out.snapshot_writes, out.shop_id, kind, oid, outcome)
            recorded = state.record_event(
                conn,
                out.shop_id,
                event,
                kind=kind,
                object_id=oid,
                customer_id=customer,
                outcome=outcome,
                outcome_detail=why,
                source="refresh",
            )
            if not recorded:
                outcome, why = "duplicate", "processed meanwhile (webhook)"
            processed.append(
                {
                    "shop_id": out.shop_id,
                    "event": event,
                    "outcome": outcome,
                    "outcome_detail": why,
                    "source": "refresh",
                }
            )
            if outcome in ("stale", "ignored"):
                gaps.append(
                    {
                        "shop_id": out.shop_id,
                        "gap": "skipped_event",
                        "event_id": str(event["id"]),
                        "event_type": str(event.get("type")),
                        "reason": why,
                    }
                )
        state.set_cursor(conn, out.shop_id, new_cursor, full=False, account=account)
        return applied, processed, gaps

    out.pending = write
    out.cursor = new_cursor


def write_shop_snapshots(
    ctx: Context,
    outs: Iterable[ShopRefresh],
    accounts: pd.DataFrame | None = None,
    *,
    actor: str = snapshot_writes.ACTOR_REFRESH,
) -> None:
    """The snapshot writes of shops read but not yet committed (before their commit:
    see :mod:`opskit.writes.snapshots`); counts and gaps go to each shop's result."""
    ready = [o for o in outs if o.pending is not None and o.customer_states]
    if not ready:
        return
    try:
        done = snapshot_writes.write_snapshots(
            ctx, [st for o in ready for st in o.customer_states], accounts=accounts, actor=actor
        )
    except Exception as exc:  # noqa: BLE001 - snapshots never stop the refresh of events
        reason = f"snapshots not written: {describe_error(exc)}"
        log.warning("opskit refresh: %s", reason)
        for o in ready:
            o.gaps.append({"shop_id": o.shop_id, "gap": "snapshot_error", "reason": reason})
        return
    for o in ready:
        o.snapshot_writes = done
        o.snapshots += done.written(o.shop_id)
        o.gaps += [g for g in done.gaps if g["shop_id"] == o.shop_id]
        if not done.results.empty:
            mine = done.results[done.results["shop_id"] == o.shop_id]
            o.snapshot_results = mine if len(mine) else None


def _with_note(
    why: str | None,
    done: snapshot_writes.SnapshotWrites | None,
    shop_id: str,
    kind: str | None,
    oid: str | None,
    outcome: str,
) -> str | None:
    """The event's outcome detail, naming the snapshots its customer state updated."""
    if done is None or kind != "customer" or outcome not in ("applied", "refetch"):
        return why
    note = done.note(shop_id, oid)
    if note is None:
        return why
    return f"{why}; {note}" if why else note


def commit_shops(state: State, outs: Iterable[ShopRefresh]) -> None:
    """Write the pending changes of several shops in one transaction (one commit, one
    fsync, instead of one per shop); if it fails, each shop alone, so that only a shop
    whose own writes fail becomes an error. A crash before the commit loses nothing:
    those shops' cursors did not move, the next refresh reads the same events again.
    """
    ready = [o for o in outs if o.pending is not None]
    if not ready:
        return
    try:
        with state.begin() as conn:
            results = [(o, o.pending(conn)) for o in ready if o.pending is not None]
    except Exception:  # noqa: BLE001 - retried shop by shop below
        for o in ready:
            _commit_one(state, o)
        return
    for o, result in results:
        _done(o, result)


def _commit_one(state: State, out: ShopRefresh) -> None:
    assert out.pending is not None
    try:
        with state.begin() as conn:
            result = out.pending(conn)
    except Exception as exc:  # noqa: BLE001 - this shop's row
        out.pending = None
        out.mode, out.error, out.cursor = "error", describe_error(exc), None
        out.gaps.append({"shop_id": out.shop_id, "gap": "shop_error", "reason": out.error})
        return
    _done(out, result)


def _done(out: ShopRefresh, result: tuple[int, list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    applied, processed, gaps = result
    out.pending = None
    out.applied += applied
    out.processed = processed
    out.gaps += gaps


def _row(kind: str, shop: Shop, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The frame row a listing keeps for one object."""
    return fetch.object_rows(_ENDPOINT[kind], shop.id, [dict(obj)])[0]


def _writes(client: Any, shop: Shop, changes: Iterable[Change]) -> tuple[list[ObjectWrite], int]:
    """Object writes for planned changes, re-reading the ones whose order is unknown."""
    writes: list[ObjectWrite] = []
    refetch: dict[str, list[Change]] = {}
    for ch in changes:
        if ch.refetch:
            refetch.setdefault(ch.kind, []).append(ch)
        else:
            assert ch.body is not None
            row = _row(ch.kind, shop, ch.body)
            writes.append(ObjectWrite(ch.kind, ch.object_id, ch.version, row, ch.event_id))
    requests = 0
    for kind, group in refetch.items():
        started = int(time.time())
        found, missing, n = stripe_events.retrieve_objects(
            client, kind, [c.object_id for c in group]
        )
        requests += n
        for ch in group:
            body = _row(kind, shop, found.get(ch.object_id) or tombstone(kind, ch.object_id))
            writes.append(
                ObjectWrite(kind, ch.object_id, max(ch.version, started - SKEW_SECONDS), body)
            )
    return writes, requests


# -- many shops -----------------------------------------------------------------------------


def refresh(
    ctx: Context,
    shops: Iterable[Shop],
    link_ids: Mapping[str, Collection[str]] | None = None,
    *,
    overlap: int = OVERLAP_SECONDS,
    executor: Executor | None = None,
    progress: bool = True,
    max_workers: int | None = None,
    write_snapshots: bool = True,
    accounts: pd.DataFrame | None = None,
    subscription_ids: Mapping[str, Collection[str]] | None = None,
) -> list[ShopRefresh]:
    """Refresh every shop, at most ``max_workers`` (``Settings.max_shop_workers``) at once.

    ``link_ids``: ``{shop_id text: customer ids its accounts link}``, retrieved on a
    full read when the listing lacks them (deleted customers); ``subscription_ids``
    likewise for the subscription ids they record (a test clock's). ``write_snapshots``:
    bring the accounts' Customer snapshots up to date from the customer events
    (:mod:`opskit.writes.snapshots`); ``accounts``: the shops' ACCOUNTS frame when
    the caller has it (else read where needed). Returns one :class:`ShopRefresh`
    per shop, in shop order.

    ``executor``: a :class:`~concurrent.futures.ThreadPoolExecutor` (threads of this
    process) to run the shops' reads on. Any other executor (a process pool, a
    dask.distributed client's) is refused with :class:`~opskit.common.exceptions.InputError`
    before anything is submitted: a shop's refresh reads and writes opskit's local
    tables and uses the shop's key, so its task would carry the database URL and the
    raw key to another process; ``max_workers`` bounds the threads instead.
    """
    _check_executor(executor)
    state = state_for(ctx.db)
    state.ensure()
    todo = list(shops)
    links = link_ids or {}
    subs = subscription_ids or {}
    limit = max(1, int(max_workers or ctx.settings.max_shop_workers))
    own = executor is None
    pool: Executor = executor or ThreadPoolExecutor(limit, thread_name_prefix="opskit-refresh")
    results: list[ShopRefresh] = []
    batch: list[ShopRefresh] = []
    try:
        futures = [
            pool.submit(
                read_shop_changes,
                ctx,
                state,
                s,
                links.get(sid(s.id), ()),
                overlap=overlap,
                subscription_ids=subs.get(sid(s.id), ()),
            )
            for s in todo
        ]
        order = {id(f): i for i, f in enumerate(futures)}
        done: dict[int, ShopRefresh] = {}
        with progress_bar(
            progress=progress, total=len(futures), desc="Stripe events", unit="shop"
        ) as bar:
            for fut in as_completed(futures):
                out = fut.result()
                done[order[id(fut)]] = out
                batch.append(out)
                if len(batch) >= BATCH_SHOPS:
                    if write_snapshots:
                        write_shop_snapshots(ctx, batch, accounts)
                    commit_shops(state, batch)
                    batch = []
                bar.update(1)
            if write_snapshots:
                write_shop_snapshots(ctx, batch, accounts)
            commit_shops(state, batch)
        results = [done[i] for i in range(len(futures))]
    finally:
        if own:
            pool.shutdown(wait=True)
    return results


def _check_executor(executor: Executor | None) -> None:
    """Refuse an executor that may run a task outside this process (see :func:`refresh`)."""
    if executor is None or isinstance(executor, ThreadPoolExecutor):
        return
    raise InputError(
        f"refresh runs on this process's threads only, not on a {type(executor).__name__}",
        guidance=(
            "A shop's refresh reads and writes opskit's local tables with the shop's key: "
            "its task would carry the database URL and the raw key to another process. "
            "Pass no executor (max_workers bounds the threads) or a ThreadPoolExecutor; "
            "reconcile() and the money reads take a dask executor (keys sealed)."
        ),
    )


def result_frames(
    results: list[ShopRefresh],
    changes: pd.DataFrame,
    reports: Mapping[str, pd.DataFrame] | None = None,
) -> RefreshResult:
    """The :class:`RefreshResult` of ``results`` with ``changes`` (findings) already made."""
    gaps = [g for r in results for g in r.gaps]
    shops = pd.DataFrame(
        {
            "shop_id": [r.shop_id for r in results],
            "mode": [r.mode for r in results],
            "events_read": [r.read for r in results],
            "applied": [r.applied for r in results],
            "skipped": [r.skipped for r in results],
            "requests": [r.requests for r in results],
            "snapshots": [r.snapshots for r in results],
            "cursor_at": pd.to_datetime([r.cursor for r in results], unit="s", utc=True),
            "error": [r.error for r in results],
        }
    )
    return RefreshResult(
        changes=changes,
        gaps=frames.conform(pd.DataFrame(gaps), frames.REFRESH_GAPS)
        if gaps
        else frames.empty(frames.REFRESH_GAPS),
        shops=frames.conform(shops, frames.REFRESH_SHOPS)
        if results
        else frames.empty(frames.REFRESH_SHOPS),
        requests=sum(r.requests for r in results),
        reports=dict(reports or {}),
        snapshots=_snapshot_frame(results),
    )


def _snapshot_frame(results: list[ShopRefresh]) -> pd.DataFrame:
    parts = [r.snapshot_results for r in results if r.snapshot_results is not None]
    if not parts:
        return frames.empty(frames.SYNC_RESULT)
    return frames.conform(pd.concat(parts, ignore_index=True), frames.SYNC_RESULT)


# -- one event (webhooks) ------------------------------------------------------------------


def process_event(
    ctx: Context,
    shop: Shop,
    event: Mapping[str, Any],
    *,
    source: str = "webhook",
    delivery_id: int | None = None,
    now: int | None = None,
    write_snapshots: bool = True,
    refetch: str | None = None,
) -> tuple[str, str | None]:
    """Apply one event of ``shop`` idempotently: ``(outcome, why)``.

    The event is recorded in the same transaction as its effect (and the
    delivery's outcome, when ``delivery_id`` is given); an event id already
    recorded is a ``duplicate`` with no effect. The object is re-read with the
    shop's key when the payload may be stale: its second ties the stored copy,
    or it is older than :data:`STALE_AFTER_SECONDS` (a late or replayed delivery),
    or ``refetch`` says why its payload is not to be trusted (then the outcome detail).
    A customer state newer than an account's stored Customer snapshot updates the
    snapshot first (``write_snapshots``; :mod:`opskit.writes.snapshots`), so a crash
    before the event is recorded leaves it to be processed again, never lost.
    """
    state = state_for(ctx.db)
    state.ensure()
    shop_id = sid(shop.id)
    kind, oid, customer = object_ref(event)
    eid = str(event.get("id"))
    with state.engine.connect() as conn:
        if state.seen(conn, shop_id, [eid]):
            outcome: tuple[str, str | None] = ("duplicate", "already processed")
            if delivery_id is not None:
                state.finish_delivery(delivery_id, outcome="duplicate", event_id=eid)
            return outcome
        stored = state.stored(conn, shop_id, [(kind, oid)] if kind and oid else [])
    plan = plan_changes([event], stored)
    outcome = plan.outcomes.get(eid, ("ignored", "not an event of interest"))
    writes: list[ObjectWrite] = []
    change = plan.changes.get((kind or "", oid or ""))
    age = int(now if now is not None else time.time()) - int(event.get("created") or 0)
    if change is not None and (refetch or change.refetch or age > STALE_AFTER_SECONDS):
        if not shop.key_info.usable:
            raise stripe_events.ShopReadFailed(f"shop {shop_id} has no usable key to re-read with")
        client = stripe_events.shop_client(ctx, shop)
        started = int(time.time())
        found, _, _ = stripe_events.retrieve_objects(client, change.kind, [change.object_id])
        obj = found.get(change.object_id) or tombstone(change.kind, change.object_id)
        body = _row(change.kind, shop, obj)
        version = max(change.version, started - SKEW_SECONDS)
        writes.append(ObjectWrite(change.kind, change.object_id, version, body))
        outcome = ("refetch", refetch or outcome[1] or "late delivery: the object was re-read")
    elif change is not None and change.body is not None:
        row = _row(change.kind, shop, change.body)
        writes.append(
            ObjectWrite(change.kind, change.object_id, change.version, row, change.event_id)
        )
    if write_snapshots and writes:
        done = snapshot_writes.write_snapshots(
            ctx, snapshot_writes.states_of(shop_id, writes), actor=snapshot_writes.ACTOR_WEBHOOK
        )
        why = _with_note(outcome[1], done, shop_id, kind, oid, outcome[0])
        for gap in done.gaps:  # unreadable details, failed writes: said on the event
            log.warning("opskit webhooks: shop %s: %s", shop_id, gap["reason"])
            why = f"{why}; {gap['reason']}" if why else gap["reason"]
        outcome = (outcome[0], why)
    with state.begin() as conn:
        recorded = state.record_event(
            conn,
            shop_id,
            event,
            kind=kind,
            object_id=oid,
            customer_id=customer,
            outcome=outcome[0],
            outcome_detail=outcome[1],
            source=source,
        )
        if not recorded:
            outcome = ("duplicate", "already processed")
        else:
            state.write_objects(conn, shop_id, writes)
        if delivery_id is not None:
            state.finish_delivery(
                delivery_id,
                outcome="duplicate" if not recorded else "processed",
                event_id=eid,
                event_type=str(event.get("type")),
                reason=outcome[1],
                conn=conn,
            )
    return outcome


# -- reading the local copy as a listing would -------------------------------------------


def _not_refreshed(
    ctx: Context, state: State, shops: list[Shop], failed: Mapping[str, str] | None = None
) -> dict[Any, str]:
    """Shops whose copy cannot stand for Stripe: never refreshed, refreshed with another
    key or endpoint than the shop's current one, or the refresh failed."""
    have = state.accounts_of([sid(s.id) for s in shops])
    out: dict[Any, str] = {}
    for s in shops:
        if (failed or {}).get(sid(s.id)):
            out[s.id] = (failed or {})[sid(s.id)]
        elif sid(s.id) not in have:
            out[s.id] = "no local copy of this shop's Stripe yet: run ops.refresh() first"
        elif have[sid(s.id)] != account_of(s, ctx.api_base):
            out[s.id] = "the shop's key or Stripe endpoint changed since its last refresh"
    return out


def local_subscriptions(
    ctx: Context,
    shops: Iterable[Shop],
    *,
    failed: Mapping[str, str] | None = None,
    link_ids: Mapping[Any, Collection[str]] | None = None,
) -> fetch.FetchResult:
    """Every subscription of each shop from the local copy, as ``fetch_subscriptions`` gives.

    ``failed``: ``{shop id text: why}`` of shops whose refresh failed (their errors).
    ``link_ids``: ``{shop id: subscription ids its accounts record}``; one its copy
    does not hold (recorded since the shop's full read, on a test clock: left out of
    listings and so of the copy) is retrieved live in its shop, as a full run
    retrieves it; a shop whose retrieve fails is its error, as in a full run.
    """
    state = state_for(ctx.db)
    usable = [s for s in shops if s.key_info.usable]
    errors = _not_refreshed(ctx, state, usable, failed)
    ok = [s for s in usable if s.id not in errors]
    copies = state.objects_of("subscription", [sid(s.id) for s in ok])
    rows_by_shop = {s.id: copies.get(sid(s.id), []) for s in ok}
    links = {sid(k): {str(i) for i in v} for k, v in (link_ids or {}).items()}
    requests = 0
    for s in ok:
        held = {str(r["stripe_subscription_id"]) for r in rows_by_shop[s.id]}
        wanted = tuple(sorted(links.get(sid(s.id), set()) - held))
        if not wanted:
            continue
        outcome = fetch.run_shop_job(
            fetch.shop_job(ctx, "subscriptions", s, retrieve_ids=wanted, listing=False)
        )
        requests += outcome.requests
        if outcome.error is not None:
            errors[s.id] = outcome.error
            del rows_by_shop[s.id]
            continue
        rows_by_shop[s.id] = [*rows_by_shop[s.id], *outcome.rows]
    frame = fetch.frame_of("subscriptions", rows_by_shop)
    items = fetch.items_frame(
        {**row, "shop_id": shop} for shop, rows in rows_by_shop.items() for row in rows
    )
    return fetch.FetchResult(frame=frame, errors=errors, requests=requests, items=items)


def local_customers(
    ctx: Context,
    shops: Iterable[Shop],
    *,
    link_ids: Mapping[Any, Collection[str]] | None = None,
    lookup_shops: Iterable[Shop] = (),
    failed: Mapping[str, str] | None = None,
) -> fetch.FetchResult:
    """Every customer of each shop from the local copy, as ``fetch_customers`` gives.

    The linked-id rules of :mod:`opskit.stripeapi.fetch` hold: deleted customers
    appear only where linked; an id a shop's copy does not know is looked up in
    the other shops' copies, then (rarely: typos, links made since) retrieved
    live in its own shop and in the others, as a full run would.
    """
    state = state_for(ctx.db)
    usable = [s for s in shops if s.key_info.usable]
    errors = _not_refreshed(ctx, state, usable, failed)
    run = [s for s in usable if s.id not in errors]
    outsiders = [s for s in lookup_shops if s.key_info.usable and s.id not in {x.id for x in run}]
    everyone = run + outsiders
    # An outsider's copy stands for its Stripe only when it is of its current account
    # (never refreshed, or refreshed with another key: asked live instead, as a full
    # run asks it); a copy of another account would name a wrong owner.
    stale = _not_refreshed(ctx, state, outsiders)
    trusted = [s for s in everyone if s.id not in stale]
    copies = state.objects_of("customer", [sid(s.id) for s in trusted])
    links = {sid(k): {str(i) for i in v} for k, v in (link_ids or {}).items()}
    by_shop: dict[Any, dict[str, dict[str, Any]]] = {s.id: {} for s in everyone}
    known: dict[str, dict[str, dict[str, Any]]] = {
        sid(s.id): {str(o["stripe_customer_id"]): o for o in copies.get(sid(s.id), [])}
        for s in everyone
    }
    live_anywhere: set[str] = set()
    for s in run:
        mine = links.get(sid(s.id), set())
        for oid, obj in known[sid(s.id)].items():
            if obj.get("deleted") is not True or oid in mine:
                by_shop[s.id][oid] = obj
                if obj.get("deleted") is not True:
                    live_anywhere.add(oid)
    requests = 0
    lookup_errors: dict[str, str] = {}
    other_mode: dict[str, dict[str, str]] = {}
    for s in run:
        own = known[sid(s.id)]
        unresolved = [i for i in links.get(sid(s.id), set()) if i not in own]
        if not unresolved:
            continue
        # Known in another shop's copy: that shop's row, as a full run's lookups give.
        rest = []
        for oid in sorted(unresolved):
            if oid in live_anywhere:
                continue
            holder = next((o for o in everyone if o.id != s.id and oid in known[sid(o.id)]), None)
            if holder is not None:
                by_shop[holder.id][oid] = known[sid(holder.id)][oid]
            else:
                rest.append(oid)
        if not rest:
            continue
        # Not in any copy: ask Stripe, own shop first, then the others, with the full
        # run's own lookup (fetch.run_shop_job), so each answer means what it means
        # there: a tombstone is a row, Stripe's "exists in the other mode" 404 is
        # other_mode (mode_mismatch, never "missing"), and a shop that cannot be asked
        # is a lookup error: the report then says the link's owner is unknown (as a
        # full run does), never "missing" with destructive advice.
        missing = list(rest)
        for holder in [s, *(o for o in everyone if o.id != s.id)]:
            if not missing:
                break
            outcome = fetch.run_shop_job(
                fetch.shop_job(ctx, "customers", holder, retrieve_ids=tuple(missing), listing=False)
            )
            requests += outcome.requests
            if outcome.error is not None:
                lookup_errors[sid(holder.id)] = outcome.error
                log.info("opskit: linked-id lookup in shop %s failed: %s", holder.id, outcome.error)
                continue
            for row in outcome.rows:
                by_shop[holder.id][str(row["stripe_customer_id"])] = row
            missing = list(outcome.not_found)
            if holder is s and outcome.other_mode:  # its owner is known: not lost
                other_mode.setdefault(sid(s.id), {}).update(outcome.other_mode)
                missing = [i for i in missing if i not in outcome.other_mode]
    frame = fetch.frame_of("customers", {k: list(v.values()) for k, v in by_shop.items()})
    return fetch.FetchResult(
        frame=frame,
        errors=errors,
        requests=requests,
        other_mode=other_mode,
        lookup_errors=lookup_errors,
    )
