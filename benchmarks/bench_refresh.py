"""Issue 14: a daily refresh by events against a full reconciliation, 1,000 shops, 1% changed.

Run (the sandbox in its own process, as Stripe is on other machines)::

    .venv/bin/python benchmarks/bench_refresh.py            # 1,000 shops, full size
    .venv/bin/python benchmarks/bench_refresh.py --quick    # 50 shops while developing

Setup: ``--shops`` shops, each its own key limited to 25 requests/s (Stripe test mode)
with ``--latency`` per request, holding ``--customers`` customers (all linked by local
accounts) and ``--subscriptions`` subscriptions. A first ``ops.refresh()`` reads every
shop in full (no cursor yet). Then ``--changed`` (1%) of the objects change through the
API (customer emails and names, customer deletions, subscriptions set to cancel at
period end), and the day's run is measured both ways, in the same run:

* **full**: ``ops.reconcile()``, listing every customer and subscription of every shop;
* **refresh**: ``ops.refresh()``: each shop's events since its cursor, applied to
  opskit's copy, and both reports made from the copy (``result.reports``).

Both reports are compared (they must be equal). Requests are counted by the sandbox;
seconds are wall time on this machine, which is shared: compare the ratio.
Results go to benchmarks/results/bench_refresh.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import stripe
from pandas.testing import assert_frame_equal

import opskit
from opskit.backend.db import create_reference_tables

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from proxy import RemoteSandbox  # noqa: E402

RESULTS = HERE / "results" / "bench_refresh.json"
RATE = 25.0


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def build(
    sb: RemoteSandbox, url: str, shops: int, customers: int, subscriptions: int
) -> dict[int, dict[str, Any]]:
    """Seed every shop's Stripe and the backend's shops and accounts; returns per shop ids."""
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    md = sa.MetaData()
    shops_t = sa.Table("shops", md, autoload_with=engine)
    accounts_t = sa.Table("accounts", md, autoload_with=engine)
    world: dict[int, dict[str, Any]] = {}
    account_rows = []
    now = int(time.time())
    for i in range(1, shops + 1):
        key = f"sk_test_bench{i:05d}x{os.getpid()}"
        created = [now - 86400 * 30 + j for j in range(customers)]
        cus = sb.seed(
            key,
            "customers",
            [
                {"email": f"c{j}@shop{i}.example", "name": f"C {j}", "created": c}
                for j, c in enumerate(created)
            ],
        )
        price = sb.seed(
            key,
            "prices",
            [{"unit_amount": 900, "currency": "eur", "recurring": {"interval": "month"}}],
        )[0]
        subs = sb.seed(
            key,
            "subscriptions",
            [{"customer": cus[j], "price": price} for j in range(min(subscriptions, customers))],
        )
        world[i] = {"key": key, "customers": cus, "subscriptions": subs}
        for j, cid in enumerate(cus):
            account_rows.append(
                {
                    "id": i * 100_000 + j,
                    "shop_id": i,
                    "email": f"c{j}@shop{i}.example",
                    "name": f"C {j}",
                    "details": json.dumps({"stripe_customer_id": cid}),
                }
            )
    with engine.begin() as conn:
        conn.execute(
            shops_t.insert(),
            [
                {"id": i, "name": f"Shop {i}", "stripe_secret_key": w["key"]}
                for i, w in world.items()
            ],
        )
        conn.execute(accounts_t.insert(), account_rows)
    engine.dispose()
    return world


def change(sb_url: str, world: dict[int, dict[str, Any]], share: float, seed: int) -> int:
    """Change ``share`` of every shop's objects through the API; returns how many."""
    rng = random.Random(seed)
    todo: list[tuple[str, str, str]] = []
    for w in world.values():
        objects = [("customer", c) for c in w["customers"]] + [
            ("subscription", s) for s in w["subscriptions"]
        ]
        n = max(1, round(len(objects) * share))
        for kind, oid in rng.sample(objects, n):
            todo.append((w["key"], kind, oid))

    def one(item: tuple[str, str, str]) -> None:
        key, kind, oid = item
        client = stripe.StripeClient(key, base_addresses={"api": sb_url}, max_network_retries=3)
        r = random.Random(oid)
        if kind == "subscription":
            client.v1.subscriptions.update(oid, params={"cancel_at_period_end": True})
        elif r.random() < 0.2:
            client.v1.customers.delete(oid)
        elif r.random() < 0.5:
            client.v1.customers.update(oid, params={"email": f"moved-{oid}@example.com"})
        else:
            client.v1.customers.update(oid, params={"name": f"Renamed {oid[-4:]}"})

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, todo))
    return len(todo)


def measure(sb: RemoteSandbox, fn: Any) -> tuple[Any, int, float]:
    sb.reset_log()
    started = time.perf_counter()
    out = fn()
    return out, sb.request_count(), time.perf_counter() - started


def _errors(result: Any) -> None:
    failed = result.shops[result.shops["mode"] == "error"]
    for error, n in failed["error"].value_counts().items():
        print(f"    {n} shop(s) failed: {error}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shops", type=int, default=1000)
    p.add_argument("--customers", type=int, default=100)
    p.add_argument("--subscriptions", type=int, default=20)
    p.add_argument("--changed", type=float, default=0.01, help="share of objects changed")
    p.add_argument("--latency", type=float, default=0.1, help="seconds per request")
    p.add_argument("--quick", action="store_true", help="50 shops (for development)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    a = p.parse_args(argv)
    if a.quick:
        a.shops = 50
    tmp = tempfile.TemporaryDirectory(prefix="opskit-bench-refresh-")
    url = f"sqlite:///{tmp.name}/backend.sqlite"
    print(
        f"bench_refresh: {a.shops} shops x {a.customers} customers + {a.subscriptions} subs, "
        f"{a.changed:.0%} changed, {a.latency * 1000:.0f} ms latency, {RATE:.0f} req/s per key"
    )
    with RemoteSandbox(rate_limit=RATE, rate_mode="pace") as sb:
        t = time.perf_counter()
        world = build(sb, url, a.shops, a.customers, a.subscriptions)
        print(f"  seeded in {time.perf_counter() - t:.1f} s")
        settings = opskit.Settings(stripe_api_base=sb.url, test_rate_limit=RATE)
        ops = opskit.connect(url, settings=settings)
        sb.configure(latency=a.latency)
        first, first_requests, first_s = measure(sb, lambda: ops.refresh(progress=False))
        modes = first.shops["mode"].value_counts().to_dict()
        print(f"  first refresh (full reads): {first_requests} requests, {first_s:.1f} s {modes}")
        _errors(first)
        sb.configure(latency=0.0)
        changed = change(sb.url, world, a.changed, seed=14)
        print(f"  changed {changed} objects through the API")
        sb.configure(latency=a.latency)
        full, full_requests, full_s = measure(sb, lambda: ops.reconcile(progress=False))
        print(f"  full reconciliation: {full_requests} requests, {full_s:.1f} s")

        # The day's run: events since each cursor, then both reports from the copy.
        result, refresh_requests, refresh_s = measure(sb, lambda: ops.refresh(progress=False))
        refreshed = result.reports
        _errors(result)
        print(
            f"  refresh + report from the copy: {refresh_requests} requests, {refresh_s:.1f} s"
            f" ({len(result.changes)} events, {result.shops['mode'].value_counts().to_dict()})"
        )
        equal = True
        for name in full:
            try:
                assert_frame_equal(refreshed[name], full[name])
            except AssertionError as exc:
                equal = False
                print(f"  REPORTS DIFFER ({name}): {str(exc)[:300]}")
    out = {
        "command": "python benchmarks/bench_refresh.py " + " ".join(argv or sys.argv[1:]),
        "shops": a.shops,
        "customers_per_shop": a.customers,
        "subscriptions_per_shop": a.subscriptions,
        "objects_changed": changed,
        "latency_ms": a.latency * 1000,
        "rate_per_key": RATE,
        "first_refresh": {"requests": first_requests, "seconds": round(first_s, 1)},
        "full_reconcile": {"requests": full_requests, "seconds": round(full_s, 1)},
        "refresh_and_report": {"requests": refresh_requests, "seconds": round(refresh_s, 1)},
        "requests_ratio": round(full_requests / max(1, refresh_requests), 2),
        "seconds_ratio": round(full_s / max(1e-9, refresh_s), 2),
        "reports_equal": equal,
        "events": int(len(result.changes)),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, load {_load()}",
    }
    print(
        f"  ratio full/refresh: {out['requests_ratio']}x requests, {out['seconds_ratio']}x time;"
        f" reports equal: {equal}"
    )
    if not a.quick:
        a.results.write_text(json.dumps(out, indent=2) + "\n")
        print(f"  wrote {a.results}")
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
