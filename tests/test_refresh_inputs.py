"""The refreshed report keeps every input a full run's report uses.

Found by a new user: the refreshed report turned each ``mode_mismatch`` into
``missing_in_stripe`` ("clear the link"), kept the previous account's customers
after a shop's key changed, and ``refresh(executor=...)`` would pickle the
database URL and raw keys into each task. Each test fails on the code before
its fix.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from opskit.backend.db import create_reference_tables
from opskit.backend.state import state_for
from opskit.common.exceptions import InputError
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.fixtures_sandbox import make_key
from tests.test_refresh import World, _assert_same_reports, connect


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> World:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    return World(sandbox, url)


@pytest.fixture
def world_any(sandbox: Sandbox, db_url: str) -> World:
    return World(sandbox, db_url)


def _set_key(world: World, shop: int, key: str) -> None:
    engine = sa.create_engine(world.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("update shops set stripe_secret_key = :k where id = :s"), {"k": key, "s": shop}
        )
    engine.dispose()


def test_a_link_to_the_other_mode_stays_mode_mismatch_when_refreshed(world_any: World) -> None:
    """Stripe's "a similar object exists in live mode" 404 is asked the full run's way."""
    world = world_any
    world.new_customer(1)
    (live,) = world.sb.seed_other_mode(world.keys[1], "customers", [{"email": "l@example.com"}])
    world.link(1, live, email="l@example.com")
    ops = connect(world)
    result = ops.refresh(progress=False)
    row = result.reports["customers"].set_index("stripe_customer_id").loc[live]
    assert row["status"] == "mode_mismatch", row["detail"]
    assert "clear the link" not in str(row["suggested_action"])
    _assert_same_reports(ops)


def test_a_new_account_behind_a_shop_drops_the_old_copy_whole(world_any: World) -> None:
    """Copies applied from recent events (newer than the new read) go with the old account."""
    world = world_any
    ids = [world.new_customer(1, link=False) for _ in range(5)]
    ops = connect(world)
    ops.refresh(progress=False)
    for n, cid in enumerate(ids):  # recent: their copies are newer than a read a minute on
        world.clients[1].v1.customers.update(cid, params={"name": f"changed {n}"})
    assert ops.refresh(["1"], progress=False).shops.loc[0, "applied"] == 5
    _set_key(world, 1, make_key("empty"))  # another, empty Stripe account
    result = ops.refresh(["1"], progress=False)
    gap = result.gaps.set_index("shop_id").loc["1"]
    assert "copy is of another account" in gap["reason"]
    report = result.reports["customers"]
    assert not report["stripe_customer_id"].isin(ids).any(), report
    assert "orphan_in_stripe" not in set(report.loc[report["shop_id"] == "1", "status"])
    _assert_same_reports(ops)


def test_another_shops_copy_of_its_old_account_names_no_owner(world: World) -> None:
    """A shop outside the run whose key changed is asked live, not through its old copy."""
    old = world.new_customer(2, link=False)
    world.link(1, old, email="x@example.com")
    ops = connect(world)
    ops.refresh(progress=False)
    before = ops.reconcile(["1"], progress=False, source="refreshed")["customers"]
    assert before.set_index("stripe_customer_id").loc[old, "status"] == "wrong_shop"
    _set_key(world, 2, make_key("moved2"))  # shop 2 now answers from another account
    live = ops.reconcile(["1"], progress=False)["customers"]
    local = ops.reconcile(["1"], progress=False, source="refreshed")["customers"]
    assert live.set_index("stripe_customer_id").loc[old, "status"] == "missing_in_stripe"
    assert local.set_index("stripe_customer_id").loc[old, "status"] == "missing_in_stripe"


def test_refresh_runs_on_threads_only_no_task_carries_secrets(
    world: World, sandbox: Sandbox
) -> None:
    """A process pool (or dask) would pickle the settings (database URL) and raw keys."""
    world.new_customer(1)
    ops = connect(world)
    with ProcessPoolExecutor(1) as pool, pytest.raises(InputError) as err:
        ops.refresh(executor=pool, progress=False)
    text = f"{err.value} {err.value.guidance}"
    assert "ThreadPoolExecutor" in text and "ProcessPoolExecutor" in text
    assert not any(k in text for k in world.keys.values()) and world.url not in text
    assert ops.changes().empty  # refused before anything ran
    with ThreadPoolExecutor(2) as threads:
        done = ops.refresh(executor=threads, progress=False)
    assert set(done.shops["mode"]) == {"full_read"}


def test_a_recorded_subscription_on_a_test_clock_is_read_as_a_full_run_reads_it(
    world: World,
) -> None:
    """Stripe leaves a test clock's objects out of every listing: a full run retrieves the
    recorded subscription ids; the copy's full read and the refreshed report do the same."""
    _, before = world.on_clock(1)  # recorded before the full read: the read keeps it
    unrecorded = world.on_clock(1, record=False)
    ops = connect(world)
    result = ops.refresh(progress=False)
    live = ops.reconcile(progress=False)["subscriptions"]
    assert live.set_index("stripe_subscription_id").loc[before, "status"] != "missing_in_stripe"
    copy = state_for(ops.ctx.db).objects_of("subscription", ["1"])["1"]
    assert before in {r["stripe_subscription_id"] for r in copy}  # kept, not asked each time
    assert result.reports["subscriptions"].equals(live)
    # Recorded since the full read (no event will bring it: its events are older than the
    # cursor): the refreshed report retrieves it, as the full run does.
    world.record(1, *unrecorded)
    live = ops.reconcile(progress=False)["subscriptions"].set_index("stripe_subscription_id")
    assert live.loc[unrecorded[1], "status"] != "missing_in_stripe"
    _assert_same_reports(ops)
