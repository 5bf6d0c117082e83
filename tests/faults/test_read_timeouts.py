"""A stalled Stripe read costs the configured bound, and becomes that shop's ``shop_error``.

``Settings.connect_timeout`` / ``read_timeout`` bound each attempt and
``request_deadline`` the whole call (attempts and sleeps) for reads as for writes
(issue 17, kind 6): the sandbox stalls one shop's key (every answer comes seconds
late), the reconciliation reports that shop's timeout in bounded time, and the
other shops' rows are complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables
from opskit.common.config import Settings
from opskit.sandbox import Sandbox
from opskit.stripeapi.clients import clear_clients
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key

READ_TIMEOUT = 0.4
DEADLINE = 1.2
STALL = 6.0  # seconds each answer of the stalled shop is late: far past both bounds


def test_a_stalled_read_is_that_shops_timeout_within_the_deadline(
    tmp_path: Path, sandbox: Sandbox, tally: Tally
) -> None:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    keys = {1: make_key("ok1"), 2: make_key("stall"), 3: make_key("ok3")}
    insert(
        url,
        shops=[{"id": i, "name": f"S{i}", "stripe_secret_key": k} for i, k in keys.items()],
        accounts=[{"id": 10 * i, "shop_id": i, "email": f"{i}@x.io", "details": {}} for i in keys],
    )
    for i, k in keys.items():
        sandbox.seed(k, "customers", [{"email": f"{i}@x.io"}])
    settings = Settings(
        stripe_api_base=sandbox.url,
        max_retry_wait=30.0,  # the deadline, not the backoff budget, must end the call
        connect_timeout=0.5,
        read_timeout=READ_TIMEOUT,
        request_deadline=DEADLINE,
    )
    ops = opskit.connect(url, settings=settings)
    sandbox.configure(key=keys[2], latency=STALL)

    def scenario() -> tuple[str, str]:
        clear_clients()
        started = time.monotonic()
        report = ops.reconcile(progress=False)["customers"]
        elapsed = time.monotonic() - started
        stalled = report[report["shop_id"] == "2"]
        if list(stalled["status"].astype(str).unique()) != ["shop_error"]:
            return "wrong", f"stalled shop reads {list(stalled['status'])}"
        detail = str(stalled["detail"].iloc[0])
        if "deadline" not in detail and "timed out" not in detail.lower():
            return "wrong", f"no timeout in the reason: {detail}"
        others = report[report["shop_id"] != "2"]
        if set(others["status"].astype(str)) != {"no_customer_id", "orphan_in_stripe"} or set(
            others["shop_id"]
        ) != {"1", "3"}:
            return "wrong", f"other shops: {others[['shop_id', 'status']].to_dict('records')}"
        # Each report lists each shop (customers, maybe a retrieve): a few deadlines at most.
        if elapsed > 3 * DEADLINE + 2:
            return "wrong", f"took {elapsed:.1f}s with a {DEADLINE}s deadline"
        tally.measures["stalled read"] = (
            f"shop_error after {elapsed:.1f}s (read timeout {READ_TIMEOUT}s, deadline {DEADLINE}s, "
            f"stall {STALL}s)"
        )
        return "shop_error", f"read timeout: {detail[:80]}"

    def money() -> tuple[str, str]:  # the money reads: their own client path
        clear_clients()  # no cached client keeps the bounds another path set
        started = time.monotonic()
        frame = ops.payments(period="2026", progress=False)
        elapsed = time.monotonic() - started
        errors = frame.attrs["shop_errors"]
        if set(errors) != {"2"} or elapsed > 4 * DEADLINE + 2:
            return "wrong", f"payments: errors {errors} after {elapsed:.1f}s"
        return "shop_error", f"read timeout: {errors['2'][:80]}"

    def events() -> tuple[str, str]:  # the event reads of refresh: their own client path
        clear_clients()
        started = time.monotonic()
        ops.refresh(progress=False)
        elapsed = time.monotonic() - started
        report = ops.reconcile(progress=False, source="refreshed")["customers"]
        stalled = report[report["shop_id"] == "2"]
        if set(stalled["status"].astype(str)) != {"shop_error"} or elapsed > 4 * DEADLINE + 2:
            return "wrong", f"refresh: {list(stalled['status'])} after {elapsed:.1f}s"
        return "shop_error", f"read timeout: {stalled['detail'].iloc[0][:80]}"

    try:
        assert tally.run("stalled read", scenario, timeout=30) == "shop_error"
        assert tally.run("stalled money read", money, timeout=30) == "shop_error"
        assert tally.run("stalled event read", events, timeout=30) == "shop_error"
    finally:
        sandbox.reset_config()
