"""ops.refresh() and the webhook receiver keep the accounts' Customer snapshots up to date.

shop-backend's admin sync stores the Customer in ``details["stripe_customer"]`` and
when in ``details["stripe_synced_at"]``. A customer event newer than the stored time
rewrites that snapshot as the sync would (the same plan rows, the same audited
writer); an older one never does, nor one of the same second and state; a deleted
customer and unreadable details are left alone. The proof is the report:
``snapshot_status`` turns fresh, the stored snapshot is the live Customer a sync
would store, and the refreshed report equals a full live run on every column, snapshots included.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import stripe
from pandas.testing import assert_frame_equal

import opskit
from opskit import webhooks
from opskit.core.snapshots import follow_plan
from opskit.sandbox import Sandbox
from tests import shopbackend
from tests.conftest import fresh_sqlite_url
from tests.fixtures_sandbox import make_key
from tests.test_webhooks import Running, _outcomes, _wait

SECRET = "whsec_" + "5" * 32


class SnapWorld:
    """Shops in the sandbox and shop-backend's tables whose accounts keep snapshots."""

    def __init__(self, sandbox: Sandbox, url: str, n_shops: int = 2, seed: int = 0) -> None:
        self.sb = sandbox
        self.url = url
        self.rng = random.Random(seed)
        shopbackend.create(url)
        self.shops = {i: uuid.uuid4() for i in range(1, n_shops + 1)}
        self.keys = {i: make_key(f"snap{i}") for i in self.shops}
        self.clients = {
            i: stripe.StripeClient(k, base_addresses={"api": sandbox.url})
            for i, k in self.keys.items()
        }
        self.accounts: dict[str, str] = {}  # customer id -> account id
        self.live: dict[int, list[str]] = {i: [] for i in self.shops}
        shopbackend.insert(
            url,
            shops=[
                {"id": sid, "name": f"Snap {i}", "stripe_secret_key": self.keys[i]}
                for i, sid in self.shops.items()
            ],
        )

    def customer(
        self,
        shop: int,
        *,
        snapshot: bool = True,
        synced_at: datetime | None = None,
        extra: dict[str, Any] | None = None,
        details: Any = None,
    ) -> str:
        """A customer and the account linking it, synced by the backend a minute ago."""
        n = self.rng.randrange(10**6)
        cus = self.clients[shop].v1.customers.create(params={"email": f"s{n}@example.com"})
        self.live[shop].append(cus.id)
        d: Any = {"stripe_customer_id": cus.id, **(extra or {})}
        if snapshot:
            d["stripe_customer"] = cus.to_dict()
            when = synced_at or datetime.now(UTC) - timedelta(minutes=1)
            d["stripe_synced_at"] = when.isoformat()
        aid = uuid.uuid4()
        row = {
            "id": aid,
            "shop_id": self.shops[shop],
            "name": cus.email,
            "details": d if details is None else details,
        }
        shopbackend.insert(self.url, accounts=[row])
        self.accounts[cus.id] = str(aid)
        return cus.id

    def random_change(self, what: str | None = None) -> str:
        shop = self.rng.choice(list(self.shops))
        c = self.clients[shop]
        what = what or self.rng.choice(["create", "orphan", "email", "name", "name", "delete"])
        if what == "create" or not self.live[shop]:
            self.customer(shop, snapshot=self.rng.random() < 0.7)
            return "create"
        cid = self.rng.choice(self.live[shop])
        if what == "orphan":
            c.v1.customers.create(params={"email": f"o{self.rng.randrange(999)}@example.com"})
        elif what == "email":
            c.v1.customers.update(cid, params={"email": f"e{self.rng.randrange(999)}@example.org"})
        elif what == "name":
            c.v1.customers.update(cid, params={"name": f"N {self.rng.randrange(999)}"})
        elif what == "delete":
            c.v1.customers.delete(cid)
            self.live[shop].remove(cid)
        return what


def connect(w: SnapWorld) -> opskit.Ops:
    settings = opskit.Settings(test_rate_limit=500.0, max_retry_wait=0.2)
    return opskit.connect(w.url, stripe_api_base=w.sb.url, settings=settings)


def details_of(ops: opskit.Ops, account_id: str) -> Any:
    acc = ops.accounts()
    raw = acc.loc[acc["account_id"] == account_id, "details"].item()
    return json.loads(raw)


def live_objects(ops: opskit.Ops) -> dict[str, dict[str, Any]]:
    """Each live customer as the backend's sync (and ops.sync_plan) would store it."""
    customers = ops.customers(progress=False)
    return {
        str(c): json.loads(o)
        for c, o, d in zip(
            customers["stripe_customer_id"],
            customers["stripe_object"],
            customers["deleted"],
            strict=True,
        )
        if not d
    }


def same_reports(ops: opskit.Ops) -> dict[str, pd.DataFrame]:
    live = ops.reconcile(progress=False)
    local = ops.reconcile(progress=False, source="refreshed")
    for name in live:
        assert_frame_equal(local[name], live[name])
    assert {"snapshot_status", "snapshot_fields", "synced_at"} <= set(live["customers"].columns)
    return live


@pytest.fixture
def snap_world(sandbox: Sandbox, empty_db_url: str) -> SnapWorld:
    """On SQLite and on PostgreSQL (shop-backend's json details, uuid ids)."""
    return SnapWorld(sandbox, empty_db_url)


@pytest.fixture
def snap_world_sqlite(sandbox: Sandbox, tmp_path: Path) -> SnapWorld:
    return SnapWorld(sandbox, fresh_sqlite_url(tmp_path))


def test_customer_events_bring_outdated_snapshots_up_to_date(snap_world: SnapWorld) -> None:
    w = snap_world
    c = w.clients[1]
    a = w.customer(1, extra={"newsletter": True, "note": "kept"})
    b = w.customer(1)
    gone = w.customer(1)
    bare = w.customer(1, snapshot=False)
    later = w.customer(1, synced_at=datetime.now(UTC) + timedelta(hours=1))  # synced "later"
    hidden = c.v1.customers.create(params={"email": "hidden@example.com"}).id
    broken_id = uuid.uuid4()
    broken = f'["{hidden}", "unreadable: a list, not an object"]'
    shopbackend.insert(
        w.url, accounts=[{"id": broken_id, "shop_id": w.shops[1], "details": broken}]
    )
    ops = connect(w)
    first = ops.refresh(progress=False)
    assert set(first.shops["mode"]) == {"full_read"}
    assert first.snapshots.empty and (first.shops["snapshots"] == 0).all()  # no event yet
    before = {cid: details_of(ops, w.accounts[cid]) for cid in (gone, later, bare)}
    broken_acc = ops.accounts()
    broken_raw = broken_acc.loc[broken_acc["details_error"].notna(), "details"].item()

    c.v1.customers.update(a, params={"email": "a.changed@example.com"})
    c.v1.customers.update(b, params={"name": "B one"})
    c.v1.customers.update(b, params={"name": "B two"})
    c.v1.customers.delete(gone)
    c.v1.customers.update(bare, params={"name": "no snapshot"})
    c.v1.customers.update(later, params={"name": "older than the snapshot"})
    c.v1.customers.update(hidden, params={"name": "behind unreadable details"})
    result = ops.refresh(progress=False)

    shop1 = result.shops.set_index("shop_id").loc[str(w.shops[1])]
    assert shop1["snapshots"] == 2
    assert shop1["applied"] >= 6  # copies written (counted right on PostgreSQL too)
    written = result.snapshots
    assert set(written["account_id"]) == {w.accounts[a], w.accounts[b]}
    assert set(written["outcome"]) == {"applied"}
    assert set(written["key"]) == {"stripe_customer", "stripe_synced_at"}
    assert set(written["source_status"]) == {"customer_event"}
    # Fresh now, and exactly the Customer a sync would store; other keys kept.
    report = result.reports["customers"].set_index("stripe_customer_id")
    assert list(report.loc[[a, b], "snapshot_status"]) == ["fresh", "fresh"]
    live = live_objects(ops)
    for cid in (a, b):
        assert details_of(ops, w.accounts[cid])["stripe_customer"] == live[cid]
    da = details_of(ops, w.accounts[a])
    assert (da["newsletter"], da["note"]) == (True, "kept")
    assert da["stripe_customer"]["email"] == "a.changed@example.com"
    assert details_of(ops, w.accounts[b])["stripe_customer"]["name"] == "B two"
    # stripe_synced_at: when Stripe's state was that (the newest event's second; its
    # creation event may share the second and be re-listed: then re-read), ISO-8601 UTC.
    ch = result.changes
    upd = ch[(ch["stripe_object_id"] == a) & ch["outcome"].isin(["applied", "refetch"])]
    assert pd.Timestamp(da["stripe_synced_at"]) == upd["created_at"].max()
    note = "snapshot updated: account " + w.accounts[a]
    assert upd["outcome_detail"].str.contains(note, regex=False).any()
    # Left alone: a deleted customer's snapshot, an account without one, a snapshot
    # synced after the event, and unreadable details (flagged).
    for cid in (gone, later, bare):
        assert details_of(ops, w.accounts[cid]) == before[cid], cid
    assert report.loc[gone, "status"] == "deleted_in_stripe"
    assert report.loc[later, "snapshot_status"] == "stale"  # the snapshot claims to be newer
    assert pd.isna(report.loc[bare, "snapshot_status"])
    gap = result.gaps[result.gaps["gap"] == "snapshot_not_written"]
    assert len(gap) == 1 and "details unreadable" in gap["reason"].item()
    assert hidden in gap["reason"].item() and str(broken_id) in gap["reason"].item()
    after = ops.accounts()
    assert after.loc[after["details_error"].notna(), "details"].item() == broken_raw
    # Audited as the sync's writes are: one ok row per key, by "opskit refresh".
    log = ops.audit_log()
    mine = log[log["actor"] == "opskit refresh"]
    assert len(mine) == 4 and set(mine["action"]) == {"sync.set_detail"}
    assert set(mine["outcome"]) == {"ok"}
    assert set(mine["target"]) == {f"account:{w.accounts[a]}", f"account:{w.accounts[b]}"}
    # The refreshed report equals a full run, snapshot columns included; a sync
    # would propose nothing more for the accounts the events updated.
    same_reports(ops)
    plan = ops.sync_plan(progress=False)
    assert not set(plan["account_id"]) & {w.accounts[a], w.accounts[b]}
    # Nothing new: nothing written again.
    again = ops.refresh(progress=False)
    assert again.snapshots.empty and len(ops.audit_log()) == len(log)


def test_a_read_only_refresh_writes_no_snapshot(snap_world_sqlite: SnapWorld) -> None:
    w = snap_world_sqlite
    cid = w.customer(1)
    ops = connect(w)
    ops.refresh(progress=False)
    w.clients[1].v1.customers.update(cid, params={"email": "quiet@example.com"})
    before = details_of(ops, w.accounts[cid])
    result = ops.refresh(progress=False, write_snapshots=False)
    assert result.snapshots.empty and (result.shops["snapshots"] == 0).all()
    assert details_of(ops, w.accounts[cid]) == before
    assert ops.audit_log().empty
    row = result.reports["customers"].set_index("stripe_customer_id").loc[cid]
    assert (row["snapshot_status"], row["snapshot_fields"]) == ("stale", "email")
    # The event is processed: the snapshot is the admin sync's to make now.
    plan = ops.sync_plan(progress=False)
    assert set(plan.loc[plan["account_id"] == w.accounts[cid], "source_status"]) == {
        "snapshot_stale"
    }


def test_the_cli_refresh_writes_snapshots_unless_told_not_to(snap_world_sqlite: SnapWorld) -> None:
    from typer.testing import CliRunner

    from opskit.faces.cli import app

    w = snap_world_sqlite
    one, two = w.customer(1), w.customer(1)
    conn = ["--database-url", w.url, "--stripe-api-base", w.sb.url, "--quiet"]
    runner = CliRunner()
    assert runner.invoke(app, ["refresh", *conn]).exit_code == 0
    ops = connect(w)
    before = details_of(ops, w.accounts[one])
    w.clients[1].v1.customers.update(one, params={"email": "one.new@example.com"})
    quiet = runner.invoke(app, ["refresh", *conn, "--no-snapshots"])
    assert quiet.exit_code == 1, quiet.output  # the snapshot is stale: drift
    assert details_of(ops, w.accounts[one]) == before and ops.audit_log().empty
    w.clients[1].v1.customers.update(two, params={"email": "two.new@example.com"})
    loud = runner.invoke(app, ["refresh", *conn])
    assert loud.exit_code == 1, loud.output  # `one` is still stale (the sync's to write)
    assert details_of(ops, w.accounts[two])["stripe_customer"]["email"] == "two.new@example.com"
    assert set(ops.audit_log()["target"]) == {f"account:{w.accounts[two]}"}


@pytest.fixture
def receiving(snap_world: SnapWorld) -> Iterator[tuple[SnapWorld, opskit.Ops, Running]]:
    w = snap_world
    w.customer(1)
    ops = connect(w)
    ops.refresh(progress=False)
    webhooks.add_secret(ops, w.shops[1], SECRET)
    running = Running(ops)
    try:
        yield w, ops, running
    finally:
        running.stop()


def test_webhooks_duplicated_and_out_of_order_end_with_the_newest_snapshot(
    receiving: tuple[SnapWorld, opskit.Ops, Running],
) -> None:
    w, ops, rx = receiving
    key, cid = w.keys[1], w.live[1][0]
    w.sb.add_webhook_endpoint(key, rx.url(w.shops[1]), SECRET, hold=True)
    t = int(time.time())
    for i, name in enumerate(("first", "second", "third")):
        w.sb.event_clock(key, pin=t + 1 + i)  # distinct seconds, in this order
        w.clients[1].v1.customers.update(cid, params={"name": name})
    w.sb.event_clock(key, unpin=True)
    w.sb.deliver_webhooks(key, order="reverse", duplicate=True)  # newest first, twice
    _wait(lambda: len([o for o in _outcomes(ops) if o != "accepted"]) == 6)
    from opskit.backend.state import state_for

    assert sorted(_outcomes(ops)) == ["duplicate"] * 3 + ["processed"] * 3, (
        state_for(ops.ctx.db).deliveries_frame().to_string()
    )
    details = details_of(ops, w.accounts[cid])
    assert details["stripe_customer"]["name"] == "third"
    assert pd.Timestamp(details["stripe_synced_at"]) == pd.Timestamp(t + 3, unit="s", tz="UTC")
    log = ops.audit_log()
    assert set(log["actor"]) == {"opskit webhook"} and set(log["outcome"]) <= {"ok", "refused"}
    # An older event delivered again later (a replay) changes nothing.
    events = w.clients[1].v1.events.list(params={"type": "customer.updated"}).data
    oldest = min((e.to_dict() for e in events), key=lambda e: e["created"])
    body = json.dumps({**oldest, "id": "evt_replayedcopy1"}).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET)
    rx.post(w.shops[1], body, {"Stripe-Signature": header, "Content-Type": "application/json"})
    _wait(lambda: len([o for o in _outcomes(ops) if o != "accepted"]) == 7)
    assert details_of(ops, w.accounts[cid]) == details
    report = same_reports(ops)["customers"].set_index("stripe_customer_id")
    assert report.loc[cid, "snapshot_status"] == "fresh"


@pytest.mark.parametrize("seed", [7])
def test_refresh_then_reconcile_equals_full_run_on_random_changes_with_snapshots(
    snap_world: SnapWorld, seed: int
) -> None:
    w = snap_world
    w.rng.seed(seed)
    for shop in w.shops:
        for k in range(3):
            w.customer(shop, snapshot=k != 2)
    ops = connect(w)
    ops.refresh(progress=False)
    done: list[str] = []
    written = 0
    for kinds in (["email", "delete"], ["name", "create"]):  # each kind at least once
        for what in kinds + [None] * w.rng.randint(3, 6):
            done.append(w.random_change(what))
        result = ops.refresh(progress=False)
        assert set(result.shops["mode"]) == {"events"}, result.shops
        written += int(result.shops["snapshots"].sum())
        report = same_reports(ops)["customers"]
        # Every snapshot of a live customer is the Customer a full sync would store.
        live = live_objects(ops)
        accounts = ops.accounts()
        kept = accounts[accounts["stripe_customer"].notna()]
        for aid, cid in zip(kept["account_id"], kept["stripe_customer_id"], strict=True):
            if cid in live:
                assert json.loads(details_of_frame(kept, aid)) == live[cid], (aid, done)
        fresh = report[report["stripe_customer_id"].isin(list(live)) & report["account_id"].isin(
            list(kept["account_id"])
        )]  # fmt: skip
        assert set(fresh["snapshot_status"]) <= {"fresh"}
    assert {"email", "name", "delete"} <= set(done), done
    assert written >= 2


def details_of_frame(accounts: pd.DataFrame, account_id: str) -> str:
    return str(accounts.loc[accounts["account_id"] == account_id, "stripe_customer"].item())


# -- the rule, without I/O ---------------------------------------------------------------


def _accounts(rows: list[dict[str, Any]]) -> pd.DataFrame:
    from opskit.core import frames

    return frames.conform(pd.DataFrame(rows), frames.ACCOUNTS)


def test_the_rule_newer_only_deleted_and_unreadable() -> None:
    at = pd.Timestamp("2026-11-29 10:00:00", tz="UTC")
    snap = json.dumps({"id": "cus_A", "email": "old@example.com"})
    base = {"shop_id": "s1", "stripe_customer": snap, "details_error": None}
    accounts = _accounts(
        [
            {**base, "account_id": "a1", "stripe_customer_id": "cus_A", "stripe_synced_at": at},
            {**base, "account_id": "a2", "stripe_customer_id": "cus_B", "stripe_synced_at": at},
            {**base, "account_id": "a3", "stripe_customer_id": "cus_C", "stripe_synced_at": at},
            {"shop_id": "s1", "account_id": "a4", "stripe_customer_id": "cus_D"},  # no snapshot
            {"shop_id": "s1", "account_id": "a5", "details": '["cus_E"]', "details_error": "x"},
            {**base, "account_id": "a6", "shop_id": "s2", "stripe_customer_id": "cus_A"},
            {**base, "account_id": "a7", "stripe_customer_id": "cus_F", "stripe_synced_at": at,
             "stripe_customer": json.dumps({"email": "new@example.com", "id": "cus_X"})},
        ]
    )  # fmt: skip
    t = int(at.timestamp())
    new = json.dumps({"id": "cus_X", "email": "new@example.com"})

    def state(cid: str, version: int, deleted: bool = False) -> dict[str, Any]:
        return {
            "shop_id": "s1",
            "stripe_customer_id": cid,
            "deleted": deleted,
            "stripe_object": new,
            "version": version,
            "event_id": f"evt_{cid}{version}",
        }

    states = pd.DataFrame(
        [
            state("cus_A", t + 1),  # newer: written
            state("cus_A", t - 5),  # an older one of the same batch: the newer wins
            state("cus_B", t),  # the same second, another state (a re-read): written
            state("cus_F", t),  # the same second and the same state: nothing to write
            state("cus_C", t + 9, deleted=True),  # deleted: the snapshot stays
            state("cus_D", t + 1),  # no snapshot kept: none made
            state("cus_E", t + 1),  # behind unreadable details: flagged
        ]
    )
    rows, flagged = follow_plan(accounts, states)
    assert list(zip(rows["account_id"], rows["key"], strict=True)) == [
        ("a1", "stripe_customer"),
        ("a1", "stripe_synced_at"),
        ("a2", "stripe_customer"),
        ("a2", "stripe_synced_at"),
    ]
    assert list(rows["new_value"]) == [
        new, (at + pd.Timedelta(seconds=1)).isoformat(), new, at.isoformat()
    ]  # fmt: skip
    assert list(flagged["account_id"]) == ["a5"] and "cus_E" in flagged["reason"].item()
    # Another shop's account linking the same id is not that shop's customer.
    assert "a6" not in set(rows["account_id"])
    # Nothing stored, no state: nothing.
    assert follow_plan(accounts.iloc[:0], states)[0].empty
    assert follow_plan(accounts, states.iloc[:0])[0].empty
