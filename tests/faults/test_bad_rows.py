"""One bad row never stops a run: it becomes a flagged row naming it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key


def test_details_nested_ten_thousand_deep_are_a_flagged_row(
    tmp_path: Path, sandbox: Sandbox, tally: Tally
) -> None:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    deep = '{"a": ' + "[" * 10_000 + "]" * 10_000 + "}"
    insert(
        url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": make_key("deep")}],
        accounts=[
            {"id": 10, "shop_id": 1, "email": "a@x.io", "details": deep},
            {"id": 11, "shop_id": 1, "email": "b@x.io", "details": {}},
        ],
    )
    ops = opskit.connect(url, stripe_api_base=sandbox.url)

    def scenario() -> tuple[str, str]:
        accounts = ops.accounts()
        flagged = accounts[accounts["details_error"].notna()]
        if list(flagged["account_id"].astype(str)) != ["10"]:
            return "wrong", f"flagged {list(flagged['account_id'])}"
        if "nested too deep" not in flagged["details_error"].iloc[0]:
            return "wrong", str(flagged["details_error"].iloc[0])
        report = ops.reconcile_customers(progress=False)
        if set(report["account_id"].dropna().astype(str)) != {"10", "11"}:
            return "wrong", "an account is missing from the report"
        ops.sync_plan(progress=False)
        return "right", "flagged, the run went on"

    assert tally.run("details 10,000 deep", scenario) == "right"
