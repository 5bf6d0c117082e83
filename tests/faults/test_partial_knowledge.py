"""Partial knowledge is reported as such: when another shop's Stripe fails, a link found
in no answering shop is not declared missing with destructive advice, and the run's
exit code is 2 (a shop failed), not 1, even with a shop filter that leaves it out."""

from __future__ import annotations

import pytest

from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.core.reconcile import INCOMPLETE
from opskit.ops import Ops
from opskit.reports import files as report
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key


@pytest.mark.parametrize("shops", [[1], [1, 2]])
def test_a_link_to_a_failed_shop_is_unknown_not_missing(
    db_url: str, sandbox: Sandbox, tally: Tally, shops: list[int]
) -> None:
    k1, k2 = make_key("p1"), make_key("p2")
    [theirs] = sandbox.seed(k2, "customers", [{"email": "x@x.io"}])
    insert(
        db_url,
        shops=[
            {"id": 1, "name": "One", "stripe_secret_key": k1},
            {"id": 2, "name": "Two", "stripe_secret_key": k2},
        ],
        accounts=[
            {"id": 10, "shop_id": 1, "email": "x@x.io", "details": {"stripe_customer_id": theirs}},
            {"id": 11, "shop_id": 1, "email": "y@x.io", "details": {"stripe_customer_id": "cus_0"}},
        ],
    )
    settings = Settings(database_url=db_url, stripe_api_base=sandbox.url, max_retry_wait=0.0)
    ops = Ops(Context(db=Database(db_url), settings=settings))
    sandbox.configure(key=k2, fail_next=10_000)  # shop 2's Stripe is down

    def scenario() -> tuple[str, str]:
        rep = ops.reconcile_customers(shops, progress=False)
        mine = rep[rep["shop_id"] == 1]
        if set(mine["status"]) - {"missing_in_stripe"}:
            return "wrong", f"statuses {set(mine['status'])}"
        for row in mine.to_dict("records"):
            if INCOMPLETE not in row["detail"] or "shop(s) 2" not in row["detail"]:
                return "wrong", f"stated as certain: {row['detail']}"
            if "clear" in row["suggested_action"].replace("do not clear", ""):
                return "wrong", f"destructive advice: {row['suggested_action']}"
        code = report.outcome({"customers": rep})
        if code != report.SHOP_FAILED:
            return "wrong", f"exit code {code}, not 2"
        return "shop_error", "shop 2 failed: the links it may own are reported as unknown"

    assert tally.run(f"another shop failed (run {shops})", scenario) == "shop_error"
    sandbox.reset_config()
