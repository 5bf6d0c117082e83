""" "Already done" is success: concurrent identical writes and re-applied plans."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd

from opskit.common.exceptions import OpskitError
from opskit.sandbox import Sandbox
from opskit.writes import actions, sync
from tests.faults.conftest import Tally
from tests.faults.world import make_world


def test_two_simultaneous_identical_create_customer_make_one_and_both_succeed(
    db_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    w = make_world(db_url, sandbox)
    sandbox.configure(key=w.key, latency=0.2)  # both requests in flight together

    def scenario() -> tuple[str, str]:
        results: list[Any] = []
        barrier = threading.Barrier(2)

        def call() -> None:
            barrier.wait()
            try:
                results.append(actions.create_customer(w.ctx, 10, actor="t"))
            except OpskitError as exc:
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            return "wrong", f"{type(errors[0]).__name__}: {errors[0]}"
        ids = {r["id"] for r in results}
        if len(ids) != 1 or len(w.customers()) != 1:
            return "wrong", f"{len(w.customers())} customers, answers {ids}"
        if w.details(10).get("stripe_customer_id") != ids.pop():
            return "wrong", "not linked"
        return "right", "one customer, both calls succeeded"

    assert tally.run("concurrent identical create_customer", scenario) == "right"


def test_reapplying_a_plan_after_a_crash_is_already_applied(
    db_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    w = make_world(db_url, sandbox)
    plan = pd.DataFrame(
        {
            "shop_id": [1, 1],
            "account_id": [10, 11],
            "key": ["stripe_customer_id", "stripe_customer_id"],
            "old_value": [None, None],
            "new_value": ["cus_A", "cus_B"],
        }
    )

    def scenario() -> tuple[str, str]:
        # The first run applied account 10's row, then the process died.
        first = sync.apply_plan(w.ctx, plan.iloc[:1], actor="t")
        again = sync.apply_plan(w.ctx, plan, actor="t")
        if list(first["outcome"]) != ["applied"]:
            return "wrong", f"first run {list(first['outcome'])}"
        if list(again["outcome"]) != ["already_applied", "applied"]:
            return "wrong", f"re-run {list(again['outcome'])}"
        if w.details(10).get("stripe_customer_id") != "cus_A":
            return "wrong", "overwritten"
        return "right", "already applied rows are success"

    assert tally.run("plan re-applied after a crash", scenario) == "right"
