"""kill -9 at random points of every kind of Stripe write: each leaves a record, and
`recover` resolves every intent left open, so nothing happened at Stripe without a record.

A separate process (tests/faults/killer.py) forks one child per write and SIGKILLs it
after a random delay drawn over the write's whole duration (the sandbox adds latency
so the request itself is a wide target). Then, in this process: the open intents are
counted, ``ops.recover()`` runs, and Stripe's state is compared with the audit log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import stripe

import opskit
from opskit.backend import audit
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key

ROOT = Path(__file__).resolve().parents[2]
LATENCY = 0.05  # seconds the sandbox holds each request: the request is a wide target
ACTIONS = ("customer.create", "payment_intent.create", "subscription.create", "subscription.cancel")
KILLS = {"sqlite": 60, "postgresql": 24}  # 4 of each are timing runs, not killed


def _details(url: str) -> dict[int, dict[str, Any]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, details FROM accounts")).all()
    engine.dispose()
    out = {}
    for aid, raw in rows:
        value = json.loads(raw) if isinstance(raw, str) else raw
        out[int(aid)] = value or {}
    return out


def _prepare(url: str, sandbox: Sandbox, n: int) -> tuple[str, list[dict[str, Any]]]:
    key = make_key("kill")
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    [price] = sandbox.seed(
        key, "prices", [{"unit_amount": 900, "currency": "eur", "recurring": {"interval": "month"}}]
    )
    accounts, jobs = [], []
    for i in range(n):
        action = ACTIONS[i % len(ACTIONS)]
        aid = 100 + i
        details: dict[str, Any] = {"note": f"k{i}"}
        job: dict[str, Any] = {"i": i, "action": action, "actor": f"k{i}", "account": aid}
        if action != "customer.create":
            [cid] = sandbox.seed(key, "customers", [{"email": f"a{aid}@x.io"}])
            details["stripe_customer_id"] = cid
        if action == "subscription.create":
            job["price"] = price
        if action == "subscription.cancel":
            sub = client.v1.subscriptions.create(
                params={"customer": cid, "items": [{"price": price}], "trial_period_days": 7}
            )
            job |= {"subscription": sub.id, "shop": 1}
        accounts.append({"id": aid, "shop_id": 1, "email": f"a{aid}@x.io", "details": details})
        jobs.append(job)
    insert(url, shops=[{"id": 1, "name": "Kill", "stripe_secret_key": key}], accounts=accounts)
    return key, jobs


def _stripe_effects(sandbox: Sandbox, key: str, job: dict[str, Any]) -> list[str]:
    """Ids of what the job's write left in Stripe (by its account, or the canceled sub)."""
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    mine = str(job["account"])
    if job["action"] == "customer.create":
        found = client.v1.customers.list(params={"email": f"a{mine}@x.io", "limit": 100}).data
    elif job["action"] == "payment_intent.create":
        cid = _details_cache[job["account"]]["stripe_customer_id"]
        found = client.v1.payment_intents.list(params={"customer": cid, "limit": 100}).data
    elif job["action"] == "subscription.create":
        cid = _details_cache[job["account"]]["stripe_customer_id"]
        found = client.v1.subscriptions.list(
            params={"customer": cid, "status": "all", "limit": 100}
        ).data
    else:
        sub = client.v1.subscriptions.retrieve(job["subscription"])
        return [sub.id] if sub.status == "canceled" else []
    return [
        o.id for o in found if (o.to_dict().get("metadata") or {}).get("opskit_account_id") == mine
    ]


_details_cache: dict[int, dict[str, Any]] = {}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_kill_9_anywhere_in_a_write_leaves_a_record_that_recover_resolves(
    kind: str, tmp_path: Path, sandbox: Sandbox, tally: Tally, request: pytest.FixtureRequest
) -> None:
    from tests.conftest import fresh_postgres_url, fresh_sqlite_url

    if kind == "sqlite":
        url = fresh_sqlite_url(tmp_path)
    else:
        url = fresh_postgres_url(request.getfixturevalue("pg_base_url"))
    engine = sa.create_engine(url)
    from opskit.backend.db import create_reference_tables

    create_reference_tables(engine)
    engine.dispose()
    n = KILLS[kind]
    key, jobs = _prepare(url, sandbox, n)
    _details_cache.update(_details(url))
    sandbox.configure(key=key, latency=LATENCY)
    cfg = tmp_path / "kill.json"
    cfg.write_text(json.dumps({"db_url": url, "api_base": sandbox.url, "seed": 17, "jobs": jobs}))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.faults.killer", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(runs) == n
    sandbox.configure(key=key, latency=0.0)

    ops = opskit.connect(url, stripe_api_base=sandbox.url)
    before = audit.read_log(ops.ctx.db)
    stage = Counter()
    for run in runs:
        rows = before[before["actor"] == run["actor"]]
        run["open"] = bool(rows["outcome"].isin(["pending", "unknown"]).any())
        if run["killed"]:
            stage["no record yet (nothing sent)" if rows.empty else
                  "intent open" if run["open"] else "outcome recorded"] += 1  # fmt: skip
    recovered = ops.recover(older_than=0)
    assert audit.open_intents(ops.ctx.db).empty  # every intent resolved
    after = audit.read_log(ops.ctx.db)
    details = _details(url)
    _details_cache.update(details)

    def judge(run: dict[str, Any]) -> tuple[str, str]:
        rows = after[after["actor"] == run["actor"]]
        effects = _stripe_effects(sandbox, key, run)
        ok = rows[(rows["action"] == run["action"]) & (rows["outcome"] == "ok")]
        recorded = set(ok["result"].dropna())
        unrecorded = [e for e in effects if e not in recorded]
        if unrecorded:
            tally.count("unrecorded", len(unrecorded), f"{run['actor']} {unrecorded}")
            seen = rows[["action", "outcome", "result", "error", "resolution"]].to_dict("records")
            return "wrong", f"{run['action']} left {unrecorded} without a record: {run} {seen}"
        if len(effects) > 1:
            return "wrong", f"{run['action']} made {len(effects)} objects"
        if recorded - set(effects):
            return "wrong", f"audit claims {recorded - set(effects)} which Stripe lacks"
        if not run["killed"] and run["exit"] != 0:
            return "wrong", f"unkilled write failed with exit {run['exit']}"
        if run["action"] in ("customer.create", "subscription.create") and effects:
            linked = details[run["account"]].get(
                "stripe_customer_id" if run["action"] == "customer.create" else
                "stripe_subscription_id"
            )  # fmt: skip
            if linked != effects[0]:
                seen = rows[["action", "outcome", "result", "error", "resolution"]].to_dict(
                    "records"
                )
                return (
                    "wrong",
                    f"{effects[0]} exists but the account links {linked!r}: {run} {seen}",
                )
        if details[run["account"]].get("note") != f"k{run['i']}":
            return "wrong", "an unknown details key was lost"
        return "right", "recorded" + (" and resolved" if run["open"] else "")

    verdicts = Counter(tally.run(f"kill {kind} {r['actor']}", lambda r=r: judge(r)) for r in runs)
    killed = sum(r["killed"] for r in runs)
    resolved = len(recovered)
    tally.measures[f"kill -9 ({kind})"] = (
        f"{n} writes, {killed} killed mid-write ({dict(stage)}); "
        f"{resolved} open intents, all resolved by recover "
        f"({dict(Counter(recovered['outcome']))})"
    )
    assert verdicts == Counter({"right": n}), verdicts
    # The kill points fall inside the writes, and a good share between intent and
    # outcome (how many depends on the machine's load: local reads take their share).
    assert killed >= 0.5 * (n - len(ACTIONS))
    assert stage["intent open"] >= 0.15 * killed
    assert resolved == sum(r["open"] for r in runs)
