"""Keeping the accounts' Customer snapshots up to date from Stripe events.

shop-backend's admin sync stores the whole Customer in ``details["stripe_customer"]``
and when in ``details["stripe_synced_at"]``. When ``ops.refresh()`` or the webhook
receiver applies a customer event (``customer.created/updated/deleted``, or a
re-read the event caused), each account of that shop linking the customer and
keeping a snapshot gets the backend's sync of it, written only where the event's
state is newer than ``stripe_synced_at`` (:func:`opskit.core.snapshots.follow_plan`
has the rule). The write is the existing one: sync-plan rows
(:func:`opskit.core.snapshots.sync_rows`, the same shape ``ops.sync_plan()``
proposes) applied by :func:`opskit.writes.sync.apply_plan`: one transaction per
shop, every other details key kept, each value checked against what was read
(a concurrent write makes the row ``stale``, nothing overwritten), each row
audited (``sync.set_detail``, actor ``opskit refresh`` / ``opskit webhook``).
Nothing is written to Stripe.

The snapshots are written *before* the events are recorded as processed: a crash
in between leaves the events to be read again, and writing the same snapshot again
is ``already_applied``, so none is lost and none applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from opskit.backend.state import ObjectWrite, state_for
from opskit.common.context import Context
from opskit.common.stripe_errors import describe_error
from opskit.core import frames
from opskit.core import snapshots as core_snapshots
from opskit.writes import sync

__all__ = ["ACTOR_REFRESH", "ACTOR_WEBHOOK", "SnapshotWrites", "states_of", "write_snapshots"]

log = logging.getLogger(__name__)

ACTOR_REFRESH = "opskit refresh"
ACTOR_WEBHOOK = "opskit webhook"
ATTEMPTS = 3  # plans of one batch: the first, and again for accounts changed meanwhile


@dataclass
class SnapshotWrites:
    """What :func:`write_snapshots` did."""

    results: pd.DataFrame = field(default_factory=lambda: frames.empty(frames.SYNC_RESULT))
    gaps: list[dict[str, Any]] = field(default_factory=list)  # REFRESH_GAPS rows
    # (shop id, customer id) -> the accounts whose snapshot of it was written now
    by_customer: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def note(self, shop_id: str, customer_id: str | None) -> str | None:
        """A line for the event's outcome detail: which snapshots it updated."""
        found = self.by_customer.get((str(shop_id), str(customer_id)))
        if not found:
            return None
        return f"snapshot updated: account {', '.join(found)}"

    def written(self, shop_id: str) -> int:
        """Accounts of ``shop_id`` whose snapshot was written now (applied rows)."""
        r = self.results
        if r.empty:
            return 0
        mine = r[(r["shop_id"] == str(shop_id)) & (r["outcome"] == "applied")]
        return int(mine["account_id"].nunique())


def states_of(shop_id: str, writes: Iterable[ObjectWrite]) -> list[dict[str, Any]]:
    """The customer states among a shop's copy writes, as :func:`follow_plan` rows."""
    return [
        {
            "shop_id": str(shop_id),
            "stripe_customer_id": w.object_id,
            "deleted": w.body.get("deleted") is True,
            "stripe_object": w.body.get("stripe_object"),
            "version": int(w.version),
            "event_id": w.event_id,
        }
        for w in writes
        if w.kind == "customer"
    ]


def write_snapshots(
    ctx: Context,
    states: Iterable[Mapping[str, Any]],
    *,
    accounts: pd.DataFrame | None = None,
    actor: str = ACTOR_REFRESH,
) -> SnapshotWrites:
    """Write the snapshots that the customer ``states`` make outdated (module docstring).

    ``states``: :func:`states_of` rows. ``accounts``: the ACCOUNTS frame of their
    shops, when the caller has it (else the accounts mentioning each customer are
    read). A state older than opskit's copy of that customer (a newer event was
    applied meanwhile) is left out. Returns the :data:`frames.SYNC_RESULT` rows
    and ``REFRESH_GAPS`` rows: ``snapshot_not_written`` for accounts whose details
    are unreadable (never written), ``snapshot_error`` for failed writes. Never
    raises for one shop's failure; a backend without snapshots
    (``Schema.snapshots`` false) gets nothing.
    """
    db = ctx.db
    todo = [dict(s) for s in states]
    out = SnapshotWrites()
    if not db.schema.snapshots or not todo:
        return out
    todo = _not_superseded(ctx, todo)
    if not todo:
        return out
    if accounts is not None:  # only the rows that matter: linkers, and unreadable ones
        shops = {str(s["shop_id"]) for s in todo}
        cids = {str(s["stripe_customer_id"]) for s in todo}
        mine = accounts["shop_id"].isin(shops).fillna(False)
        linked = accounts["stripe_customer_id"].astype("string").str.strip().isin(cids)
        accounts = accounts[mine & (linked.fillna(False) | accounts["details_error"].notna())]
    done: list[pd.DataFrame] = []
    refused = frames.empty(frames.SYNC_RESULT)
    for attempt in range(ATTEMPTS):
        if accounts is None or attempt > 0:  # a retry reads what the other writer left
            accounts = _accounts_mentioning(ctx, todo)
        rows, flagged = core_snapshots.follow_plan(accounts, pd.DataFrame(todo))
        if attempt == 0:
            out.gaps += [
                {"shop_id": f.shop_id, "gap": "snapshot_not_written", "reason": f.reason}
                for f in flagged.itertuples(index=False)
            ]
        empty = pd.DataFrame({"status": pd.Series(dtype="string")})
        plan = sync.build_plan(empty, empty, accounts, keys=db.schema.details_keys, snapshots=rows)
        # What was refused and is no longer planned (now as new or newer): stays refused.
        retried = set(plan["account_id"].astype(str))
        done.append(refused[~refused["account_id"].astype(str).isin(retried)])
        if plan.empty:
            break
        try:
            result = sync.apply_plan(ctx, plan, actor=actor)
        except Exception as exc:  # noqa: BLE001 - snapshots never stop a refresh
            reason = describe_error(exc)
            log.warning("opskit: snapshot writes failed: %s", reason)
            out.gaps += [
                {
                    "shop_id": s,
                    "gap": "snapshot_error",
                    "reason": f"snapshots not written: {reason}",
                }
                for s in sorted(set(plan["shop_id"].astype(str)))
            ]
            break
        links = _links(accounts)
        _note(out, result, links)
        # Refused because the account changed meanwhile (another writer, e.g. a newer
        # event processed at the same time): plan those again from what is stored now,
        # so the newest state wins whichever writer commits first.
        stale = set(result.loc[result["outcome"] == "stale", "account_id"].astype(str))
        done.append(result[~result["account_id"].astype(str).isin(stale)])
        refused = result[result["account_id"].astype(str).isin(stale)]
        if not stale:
            break
        again = {(str(links[a][0]), links[a][1]) for a in stale if a in links}
        todo = [s for s in todo if (str(s["shop_id"]), str(s["stripe_customer_id"])) in again]
        if not todo:
            done.append(refused)
            break
    else:
        done.append(refused)
    parts = [d for d in done if len(d)]
    if parts:
        out.results = frames.conform(pd.concat(parts, ignore_index=True), frames.SYNC_RESULT)
    failed = out.results[out.results["outcome"] == "error"]
    out.gaps += [
        {
            "shop_id": str(r.shop_id),
            "gap": "snapshot_error",
            "reason": f"account {r.account_id}: {r.key} not written: {r.detail}",
        }
        for r in failed.itertuples(index=False)
    ]
    return out


def _accounts_mentioning(ctx: Context, states: list[dict[str, Any]]) -> pd.DataFrame:
    """The accounts of each state's shop whose details mention its customer."""
    parts = [
        ctx.db.load_accounts([s["shop_id"]], mentioning=str(s["stripe_customer_id"]))
        for s in states
    ]
    return pd.concat(parts, ignore_index=True).drop_duplicates(["account_id"])


def _links(accounts: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """account id -> (shop id, linked customer id)."""
    return {
        str(a): (str(s), str(c).strip())
        for a, s, c in zip(
            accounts["account_id"], accounts["shop_id"], accounts["stripe_customer_id"], strict=True
        )
        if c is not None and c is not pd.NA
    }


def _note(out: SnapshotWrites, result: pd.DataFrame, links: Mapping[str, tuple[str, str]]) -> None:
    applied = result[result["outcome"] == "applied"]
    for aid in sorted(set(applied["account_id"].astype(str))):
        if aid in links:
            found = out.by_customer.setdefault(links[aid], [])
            if aid not in found:
                found.append(aid)


def _not_superseded(ctx: Context, states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The states not older than opskit's copy of their customer."""
    state = state_for(ctx.db)
    state.ensure()
    by_shop: dict[str, list[dict[str, Any]]] = {}
    for s in states:
        by_shop.setdefault(str(s["shop_id"]), []).append(s)
    keep: list[dict[str, Any]] = []
    with state.engine.connect() as conn:
        for shop_id, group in by_shop.items():
            stored = state.stored(
                conn, shop_id, [("customer", str(s["stripe_customer_id"])) for s in group]
            )
            for s in group:
                cur = stored.get(("customer", str(s["stripe_customer_id"])))
                if cur is None or cur.version <= int(s["version"]):
                    keep.append(s)
    return keep
