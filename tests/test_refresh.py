"""ops.refresh(): events since each shop's cursor keep opskit's copy equal to Stripe.

The proof is the report: after any sequence of changes in the sandbox and a
refresh, ``reconcile(source="refreshed")`` equals a full live ``reconcile()``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import stripe
from pandas.testing import assert_frame_equal

import opskit
from opskit.backend.db import create_reference_tables
from opskit.backend.state import state_for
from opskit.core import frames
from opskit.core.events import EVENT_TYPES
from opskit.sandbox import Sandbox
from tests import dbutil
from tests.conftest import fresh_sqlite_url
from tests.fixtures_sandbox import make_key


class World:
    """Shops in the sandbox and a backend database linking their customers."""

    def __init__(self, sandbox: Sandbox, url: str, n_shops: int = 3, seed: int = 0) -> None:
        self.sb = sandbox
        self.url = url
        self.rng = random.Random(seed)
        self.keys = {i: make_key(f"rf{i}") for i in range(1, n_shops + 1)}
        self.clients = {
            i: stripe.StripeClient(k, base_addresses={"api": sandbox.url})
            for i, k in self.keys.items()
        }
        self.prices: dict[int, str] = {}
        self.customers: dict[int, list[str]] = {i: [] for i in self.keys}
        self.subs: dict[int, list[str]] = {i: [] for i in self.keys}
        self.next_account = 1
        dbutil.insert(
            url,
            shops=[
                {"id": i, "name": f"Shop {i}", "stripe_secret_key": k} for i, k in self.keys.items()
            ],
        )
        for i, c in self.clients.items():
            self.prices[i] = c.v1.prices.create(
                params={
                    "unit_amount": 900 + i,
                    "currency": "eur",
                    "recurring": {"interval": "month"},
                    "product_data": {"name": f"Plan {i}"},
                }
            ).id

    def new_customer(self, shop: int, link: bool = True, subscribe: bool = False) -> str:
        c = self.clients[shop]
        n = self.rng.randrange(10**6)
        cus = c.v1.customers.create(params={"email": f"c{n}@example.com", "name": f"C {n}"})
        self.customers[shop].append(cus.id)
        if link:
            self.link(shop, cus.id, email=f"c{n}@example.com", name=f"C {n}")
        if subscribe:
            self.subscribe(shop, cus.id)
        return cus.id

    def link(self, shop: int, customer: str, email: str | None = None, name: str | None = None):
        dbutil.insert(
            self.url,
            accounts=[
                {
                    "id": self.next_account,
                    "shop_id": shop,
                    "email": email,
                    "name": name,
                    "details": {"stripe_customer_id": customer},
                }
            ],
        )
        self.next_account += 1

    def link_other_mode(self, shop: int) -> str:
        """Link a customer that exists only in the other mode of the shop's account."""
        n = self.rng.randrange(10**6)
        (cid,) = self.sb.seed_other_mode(
            self.keys[shop], "customers", [{"email": f"live{n}@example.com"}]
        )
        self.link(shop, cid, email=f"live{n}@example.com")
        return cid

    def on_clock(self, shop: int, record: bool = True) -> tuple[str, str]:
        """A customer on a test clock (left out of every listing, as at Stripe) with a
        subscription, both recorded in a new account's details (``record``): (cus_, sub_)."""
        c = self.clients[shop]
        clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
        cus = c.v1.customers.create(params={"test_clock": clock.id})
        sub = self.subscribe(shop, cus.id)
        if record:
            self.record(shop, cus.id, sub)
        return cus.id, sub

    def record(self, shop: int, customer: str, subscription: str) -> None:
        """A new account recording a customer and its subscription in details."""
        details = {"stripe_customer_id": customer, "stripe_subscription_id": subscription}
        account = {"id": self.next_account, "shop_id": shop, "email": f"{customer}@example.com"}
        dbutil.insert(self.url, accounts=[{**account, "details": details}])
        self.next_account += 1

    def subscribe(self, shop: int, customer: str) -> str:
        c = self.clients[shop]
        pm = c.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {
                    "number": "4242424242424242",
                    "exp_month": 12,
                    "exp_year": 2030,
                    "cvc": "123",
                },
            }
        )
        c.v1.payment_methods.attach(pm.id, params={"customer": customer})
        c.v1.customers.update(
            customer, params={"invoice_settings": {"default_payment_method": pm.id}}
        )
        sub = c.v1.subscriptions.create(
            params={"customer": customer, "items": [{"price": self.prices[shop]}]}
        )
        self.subs[shop].append(sub.id)
        return sub.id

    def random_change(self) -> str:
        shop = self.rng.choice(list(self.keys))
        c = self.clients[shop]
        live = [x for x in self.customers[shop] if x]
        subs = self.subs[shop]
        what = self.rng.choice(
            ["create", "create_orphan", "email", "name", "delete", "subscribe", "cancel", "flag"]
        )
        if what == "create" or not live:
            self.new_customer(shop, link=True)
            return "create"
        cid = self.rng.choice(live)
        if what == "create_orphan":
            self.new_customer(shop, link=False)
        elif what == "email":
            c.v1.customers.update(
                cid, params={"email": f"new{self.rng.randrange(999)}@example.com"}
            )
        elif what == "name":
            c.v1.customers.update(cid, params={"name": f"N {self.rng.randrange(999)}"})
        elif what == "delete":
            c.v1.customers.delete(cid)
            self.customers[shop].remove(cid)
        elif what == "subscribe":
            self.subscribe(shop, cid)
        elif what in ("cancel", "flag") and subs:
            sub = self.rng.choice(subs)
            try:
                if what == "cancel":
                    c.v1.subscriptions.cancel(sub)
                else:
                    c.v1.subscriptions.update(sub, params={"cancel_at_period_end": True})
            except stripe.InvalidRequestError:
                pass  # already canceled (or its customer deleted)
        return what


def _assert_same_reports(ops: opskit.Ops) -> None:
    live = ops.reconcile(progress=False)
    local = ops.reconcile(progress=False, source="refreshed")
    for name in live:
        assert_frame_equal(local[name], live[name], check_like=False)


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> World:
    """A world on SQLite (the PostgreSQL run is the equivalence test's)."""
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    return World(sandbox, url)


@pytest.fixture
def world_any(sandbox: Sandbox, db_url: str) -> World:
    """A world on SQLite and on PostgreSQL (opskit's tables in their own schema there)."""
    return World(sandbox, db_url)


def connect(w: World) -> opskit.Ops:
    # Faster than Stripe's test-mode ceiling and quick to give up: this is not a speed test.
    settings = opskit.Settings(test_rate_limit=500.0, max_retry_wait=0.2)
    return opskit.connect(w.url, stripe_api_base=w.sb.url, settings=settings)


def test_first_refresh_reads_each_shop_in_full_and_says_so(world_any: World) -> None:
    world = world_any
    for shop in world.keys:
        world.new_customer(shop, subscribe=True)
    ops = connect(world)
    first = ops.refresh(progress=False)
    assert set(first.shops["mode"]) == {"full_read"}
    assert set(first.gaps["gap"]) == {"full_read"}
    assert first.gaps["reason"].str.contains("no cursor").all()
    _assert_same_reports(ops)

    again = ops.refresh(progress=False)
    assert set(again.shops["mode"]) == {"events"} and again.gaps.empty
    # The overlap re-lists what happened just before the full read: recorded once now...
    assert (again.changes["created_at"] <= first.shops["cursor_at"].max()).all()
    third = ops.refresh(progress=False)
    assert third.changes.empty  # ...and never again
    assert (third.shops["requests"] == 1).all()  # one page of events per quiet shop
    _assert_same_reports(ops)
    engine = sa.create_engine(world.url)
    mine = {"opskit_event_cursors", "opskit_stripe_objects", "opskit_events"}
    if engine.dialect.name == "postgresql":  # never in the backend's own schema
        assert mine <= set(sa.inspect(engine).get_table_names(schema="opskit"))
        assert not mine & set(sa.inspect(engine).get_table_names(schema="public"))
    engine.dispose()


@pytest.mark.parametrize("seed", [1])
def test_refreshed_reports_equal_full_runs_on_random_changes(world_any: World, seed: int) -> None:
    world = world_any
    world.rng.seed(seed)
    for shop in world.keys:
        for k in range(3):
            world.new_customer(shop, link=k != 2, subscribe=k == 0)
    # An account linking another shop's customer (wrong_shop) and an unknown id.
    world.link(1, world.customers[2][0], email="x@example.com")
    world.link(2, "cus_doesnotexist", email="y@example.com")
    # ...and one linking a customer of the key's other mode (Stripe's "similar object
    # exists in live mode" 404: mode_mismatch), before the first read and after it.
    world.link_other_mode(3)
    world.on_clock(2)  # recorded ids the listings lack: retrieved, as a full run does
    ops = connect(world)
    ops.refresh(progress=False)
    done: list[str] = []
    for _ in range(4):
        for _ in range(world.rng.randint(3, 8)):
            done.append(world.random_change())
        if len(done) < 10:  # links made since the first read
            world.link_other_mode(world.rng.choice(list(world.keys)))
            world.on_clock(world.rng.choice(list(world.keys)))
        result = ops.refresh(progress=False)
        assert set(result.shops["mode"]) == {"events"}, result.shops
        _assert_same_reports(ops)
    assert len(set(done)) >= 4  # the sequence really mixed kinds of change
    statuses = set(result.reports["customers"]["status"])
    assert {"mode_mismatch", "wrong_shop", "missing_in_stripe"} <= statuses, statuses


def test_changes_carry_report_statuses_and_money_events(world: World) -> None:
    cid = world.new_customer(1, subscribe=True)
    ops = connect(world)
    ops.refresh(progress=False)
    c = world.clients[1]
    c.v1.customers.update(cid, params={"email": "changed@example.com"})
    orphan = c.v1.customers.create(params={"email": "orphan@example.com"}).id
    pm = c.v1.payment_methods.list(params={"customer": cid, "type": "card"}).data[0].id
    pi = c.v1.payment_intents.create(
        params={"amount": 700, "currency": "eur", "customer": cid, "payment_method": pm,
                "confirm": True}
    )  # fmt: skip
    c.v1.customers.delete(cid)
    result = ops.refresh(progress=False)
    ch = result.changes
    assert list(ch.columns) == list(frames.CHANGES)
    by = {(r.event_type, r.stripe_object_id): r for r in ch.itertuples()}
    deleted = by[("customer.deleted", cid)]
    assert (deleted.report, deleted.status, deleted.account_id) == (
        "customers",
        "deleted_in_stripe",
        "1",
    )
    assert by[("customer.created", orphan)].status == "orphan_in_stripe"
    paid = by[("payment_intent.succeeded", pi.id)]
    assert (paid.report, paid.status, paid.account_id) == ("payments", "paid", "1")
    upd = by[("customer.updated", cid)]
    assert upd.outcome == "superseded"  # the delete came later in the same batch
    # The same rows are kept: "since yesterday" without re-reading Stripe.
    kept = ops.changes(since="2000-01-01")
    assert set(kept["event_id"]) >= set(ch["event_id"])
    assert kept.set_index("event_id").loc[deleted.event_id, "status"] == "deleted_in_stripe"


def test_same_second_and_scrambled_events_are_resolved_by_rereading(
    world: World, sandbox: Sandbox
) -> None:
    cid = world.new_customer(1)
    ops = connect(world)
    ops.refresh(progress=False)
    key, c = world.keys[1], world.clients[1]
    sandbox.event_clock(key, pin=int(time.time()), scrambled=True)
    for name in ("a", "b", "c", "d"):
        c.v1.customers.update(cid, params={"name": name})
    sandbox.event_clock(key, unpin=True, scrambled=False)
    result = ops.refresh(progress=False)
    outcomes = set(result.changes["outcome"])
    assert outcomes == {"refetch"}
    assert result.shops.loc[0, "requests"] == 2  # one events page, one re-read
    local = ops.reconcile(progress=False, source="refreshed")["customers"]
    assert local.loc[local["stripe_customer_id"] == cid, "stripe_name"].item() == "d"
    _assert_same_reports(ops)


def test_a_cursor_older_than_retention_falls_back_to_a_full_read(world: World) -> None:
    world.new_customer(1)
    ops = connect(world)
    ops.refresh(progress=False)
    state = state_for(ops.ctx.db)
    with state.begin() as conn:
        conn.execute(
            state.cursors.update()
            .where(state.cursors.c.shop_id == "1")
            .values(cursor=int(time.time()) - 31 * 86400)
        )
    world.new_customer(1)
    result = ops.refresh(progress=False)
    modes = dict(zip(result.shops["shop_id"], result.shops["mode"], strict=True))
    assert modes == {"1": "full_read", "2": "events", "3": "events"}
    gap = result.gaps.set_index("shop_id").loc["1"]
    assert gap["gap"] == "full_read" and "30 days" in gap["reason"]
    _assert_same_reports(ops)


def test_a_shop_whose_key_changed_is_read_again_in_full(world: World) -> None:
    world.new_customer(1)
    ops = connect(world)
    ops.refresh(progress=False)
    new_key = make_key("moved")  # the shop moved to another Stripe account
    stripe.StripeClient(new_key, base_addresses={"api": world.sb.url}).v1.customers.create(
        params={"email": "elsewhere@example.com"}
    )
    engine = sa.create_engine(world.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("update shops set stripe_secret_key = :k where id = 1"), {"k": new_key}
        )
    engine.dispose()
    stale = ops.reconcile(progress=False, source="refreshed")["customers"]
    assert "key or Stripe endpoint changed" in stale.loc[stale["shop_id"] == "1", "detail"].iloc[0]
    result = ops.refresh(progress=False)
    gap = result.gaps.set_index("shop_id").loc["1"]
    assert gap["gap"] == "full_read" and "key or Stripe endpoint changed" in gap["reason"]
    _assert_same_reports(ops)


def test_duplicates_and_superseded_events_are_not_applied_twice(world: World) -> None:
    cid = world.new_customer(1)
    ops = connect(world)
    ops.refresh(progress=False)
    world.sb.event_clock(world.keys[1], pin=int(time.time()) + 5)  # a later second
    world.clients[1].v1.customers.update(cid, params={"name": "later"})
    world.sb.event_clock(world.keys[1], unpin=True)
    first = ops.refresh(progress=False)
    outcomes = dict(zip(first.changes["event_type"], first.changes["outcome"], strict=True))
    assert outcomes == {"customer.created": "superseded", "customer.updated": "applied"}
    # The overlap window re-lists both events: neither is processed again.
    second = ops.refresh(progress=False)
    assert second.changes.empty and second.shops.loc[0, "skipped"] == 2
    engine = sa.create_engine(world.url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("select count(*) from opskit_events where event_id = :e"),
            {"e": first.changes["event_id"].iloc[-1]},
        ).scalar()
    engine.dispose()
    assert n == 1
    _assert_same_reports(ops)


def test_one_failing_shop_is_its_own_row(world: World, sandbox: Sandbox) -> None:
    world.new_customer(1)
    ops = connect(world)
    ops.refresh(progress=False)
    sandbox.configure(key=world.keys[2], fail_next=50, fail_status=500)
    try:
        result = ops.refresh(progress=False)
    finally:
        sandbox.configure(key=world.keys[2], fail_next=0)
    modes = dict(zip(result.shops["shop_id"], result.shops["mode"], strict=True))
    assert modes == {"1": "events", "2": "error", "3": "events"}
    err = result.shops.set_index("shop_id").loc["2", "error"]
    assert "500" in err and world.keys[2] not in err
    assert "shop_error" in set(result.gaps["gap"])


def test_a_link_a_failed_shop_may_own_is_unknown_not_missing(
    world: World, sandbox: Sandbox
) -> None:
    """As in a full run: when another shop cannot be asked, a link found nowhere is unknown.

    Found by a new user: refresh said "no such customer ... create a new customer"
    (and exit 1) where reconcile said "could not be asked" (exit 2).
    """
    from opskit.core.reconcile import INCOMPLETE

    world.new_customer(1)
    world.link(1, "cus_nowhere0000", email="gone@example.com")
    ops = connect(world)
    ops.refresh(progress=False)
    sandbox.configure(key=world.keys[2], fail_next=500, fail_status=500)
    try:
        result = ops.refresh(["1"], progress=False)
    finally:
        sandbox.configure(key=world.keys[2], fail_next=0)
    report = result.reports["customers"]
    row = report[report["stripe_customer_id"] == "cus_nowhere0000"].iloc[0]
    assert INCOMPLETE in row["detail"], row["detail"]
    assert "create a new" not in str(row["suggested_action"])


_CHILD = """
import sys, opskit
ops = opskit.connect(sys.argv[1], stripe_api_base=sys.argv[2])
ops.refresh(progress=False)
print("done", flush=True)
"""


def test_a_refresh_killed_midway_loses_nothing_and_applies_nothing_twice(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = fresh_sqlite_url(tmp_path)
    eng = sa.create_engine(url)
    create_reference_tables(eng)
    eng.dispose()
    w = World(sandbox, url, n_shops=6, seed=7)
    for shop in w.keys:
        w.new_customer(shop)
    ops = connect(w)
    ops.refresh(progress=False)
    for _ in range(30):
        w.random_change()
    # Slow Stripe down so the child is killed while some shops are done and others not.
    sandbox.configure(latency=0.15)
    try:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, sandbox.url], env=env, stdout=subprocess.DEVNULL
        )
        time.sleep(1.5)
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL  # killed, not finished
    finally:
        sandbox.configure(latency=0.0)
    result = ops.refresh(progress=False)
    assert set(result.shops["mode"]) == {"events"}
    _assert_same_reports(ops)
    # Every event of interest of every shop is recorded, each exactly once (the full
    # read's own events too: the 5-minute overlap re-lists them, as stale).
    recorded = ops.changes()
    assert not recorded["event_id"].duplicated().any()
    for shop, key in w.keys.items():
        wanted = {e["id"] for e in sandbox.events(key) if e["type"] in EVENT_TYPES}
        got = set(recorded.loc[recorded["shop_id"] == str(shop), "event_id"])
        assert wanted <= got, (shop, wanted - got)
