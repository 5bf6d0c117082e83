"""How fast opskit reads Stripe across many shops and within one big shop.

Not a timed test: run ``python benchmarks/bench_reconcile.py`` and read the table
(also written to ``benchmarks/results/bench_reconcile.json``).

The local sandbox plays Stripe's test mode: a fixed latency per request and at
most 25 requests/s per key, paced (``rate_mode="pace"``). opskit's own per-shop
client limiter is set to the same 25/s with ``Settings(test_rate_limit=25.0)``
(the default, 20/s, leaves headroom against the real Stripe; with
``opskit.connect(settings=Settings(test_rate_limit=25.0, ...))`` users do the same).

(a) 20 shops x 500 customers, 20 ms latency: opskit's fetch of every shop's
    customers (the reconcile path: listings plus linked-id resolution, shops
    concurrently) against the backend helper's way, ``fetch_customer(shop, id)``
    once per account. The helper's way is one request per account by
    construction, so it is timed on a sample and extrapolated linearly.
(b) one shop with 20,000 customers created over a year, 250 ms latency: share of
    the ceiling (200 pages at 25/s = 8 s) reached by opskit's windowed listing,
    with and without the linked ids' count as a hint, and by plain sequential
    cursor pagination.
(c) the local diff on 1,000,000 accounts (benchmarks/bench_diff.py), when present.

The sandbox runs in a child process (benchmarks/proxy.py), as Stripe runs on
other machines: in-process it would share the client's GIL.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import stripe

from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.models import Shop
from opskit.stripeapi import fetch
from opskit.stripeapi.clients import clear_clients, fetch_customer
from opskit.stripeapi.paging import request_bound

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import RemoteSandbox  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bench_reconcile.json"
RATE = 25.0  # requests/s per key, Stripe test mode
YEAR = 365 * 24 * 3600
T0 = 1_700_000_000


def _key(tag: str) -> str:
    return f"sk_test_{tag}{secrets.token_hex(8)}"


def _ctx(url: str, **settings: Any) -> Context:
    base = Settings(stripe_api_base=url, test_rate_limit=RATE, **settings)
    return Context(db=cast(Any, None), settings=base)  # fetch never touches the database


def _seed(sb: RemoteSandbox, key: str, n: int, rng: random.Random) -> list[str]:
    created = sorted(T0 + rng.randrange(YEAR) for _ in range(n))
    rows = [
        {"email": f"c{i}@example.com", "name": f"C {i}", "created": c}
        for i, c in enumerate(created)
    ]
    return sb.seed(key, "customers", rows)


def bench_many_shops(sb: RemoteSandbox, shops: int, per_shop: int, sample: int) -> dict[str, Any]:
    """(a) every shop's customers: opskit vs fetch_customer per account."""
    latency = 0.020
    sb.configure(latency=latency, rate_limit=RATE, rate_mode="pace")
    rng = random.Random(1)
    shop_list, links = [], {}
    for i in range(shops):
        key = _key(f"many{i}")
        links[i + 1] = set(_seed(sb, key, per_shop, rng))
        shop_list.append(Shop(id=i + 1, name=f"shop {i + 1}", stripe_secret_key=key))
    ctx = _ctx(sb.url)

    clear_clients()
    sb.reset_log()
    t = time.perf_counter()
    result = fetch.fetch_customers(ctx, shop_list, link_ids=links, progress=False)
    opskit_s = time.perf_counter() - t
    served = sb.request_count()
    assert not result.errors, result.errors
    assert len(result.frame) == shops * per_shop
    bound = sum(request_bound(per_shop) for _ in range(shops))

    # The backend helper's way, account by account in account (shop) order.
    per = max(1, sample // shops)
    accounts = [(s, cid) for s in shop_list for cid in sorted(links[int(s.id or 0)])[:per]]
    clear_clients()
    t = time.perf_counter()
    for s, cid in accounts:
        fetch_customer(s, cid, api_base=sb.url)
    sample_s = time.perf_counter() - t
    stripe.api_key = None  # fetch_customer sets the global, as the backend's helper does
    helper_s = sample_s / len(accounts) * shops * per_shop
    return {
        "shops": shops,
        "customers_per_shop": per_shop,
        "latency_ms": latency * 1000,
        "rate_limit_per_key": RATE,
        "opskit_seconds": round(opskit_s, 3),
        "opskit_requests": result.requests,
        "sandbox_requests": served,
        "request_bound": bound,
        "helper_sample_accounts": len(accounts),
        "helper_sample_seconds": round(sample_s, 3),
        "helper_seconds_extrapolated": round(helper_s, 1),
        "speedup": round(helper_s / opskit_s, 1),
        "max_shop_workers": ctx.settings.max_shop_workers,
    }


def bench_big_shop(sb: RemoteSandbox, n: int, sequential: bool) -> dict[str, Any]:
    """(b) one big shop: share of the rate-limit ceiling reached."""
    latency = 0.250
    sb.configure(latency=latency, rate_limit=RATE, rate_mode="pace")
    key = _key("big")
    ids = set(_seed(sb, key, n, random.Random(2)))
    shop = Shop(id=1, name="big", stripe_secret_key=key)
    pages = math.ceil(n / 100)
    ceiling = pages / RATE
    ctx = _ctx(sb.url)
    runs: dict[str, Any] = {}

    def record(label: str, seconds: float, requests: int, rows: int) -> None:
        runs[label] = {
            "seconds": round(seconds, 3),
            "share_of_ceiling": round(ceiling / seconds, 3),
            "requests": requests,
            "request_bound": request_bound(n),
            "rows": rows,
        }

    variants: list[tuple[str, Any, Any]] = [
        ("opskit, reconcile path (linked ids)", {1: ids}, None),
        ("opskit, ops.customers() (account count hint)", None, {1: len(ids)}),
        ("opskit, no prior at all", None, None),
    ]
    for label, links, hints in variants:
        clear_clients()
        sb.reset_log()
        time.sleep(1.0)  # let the sandbox's pacing settle between runs
        t = time.perf_counter()
        result = fetch.fetch_customers(ctx, [shop], link_ids=links, expected=hints, progress=False)
        seconds = time.perf_counter() - t
        assert not result.errors and len(result.frame) == n, result.errors
        record(label, seconds, sb.request_count(key), len(result.frame))

    if sequential:
        client = stripe.StripeClient(key, base_addresses={"api": sb.url})
        sb.reset_log()
        time.sleep(1.0)
        t = time.perf_counter()
        rows = sum(1 for _ in client.v1.customers.list(params={"limit": 100}).auto_paging_iter())
        record("sequential cursor pagination", time.perf_counter() - t, sb.request_count(key), rows)
    return {"customers": n, "latency_ms": latency * 1000, "ceiling_seconds": ceiling, "runs": runs}


def bench_diff() -> dict[str, Any] | None:
    """(c) benchmarks/bench_diff.py in its own process: its 1.5 GiB heap would slow (a)."""
    path = HERE / "bench_diff.py"
    if not path.exists():
        return None
    subprocess.run([sys.executable, str(path)], check=True, stdout=subprocess.DEVNULL)
    figures: dict[str, Any] = json.loads((HERE / "results" / "bench_diff.json").read_text())
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shops", type=int, default=20)
    p.add_argument("--per-shop", type=int, default=500)
    p.add_argument("--sample", type=int, default=200, help="accounts timed the helper's way")
    p.add_argument("--big", type=int, default=20_000)
    p.add_argument("--no-sequential", action="store_true", help="skip the ~50 s cursor run")
    p.add_argument("--no-diff", action="store_true", help="skip (c), the 1M-row local diff")
    args = p.parse_args(argv)

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "stripe": stripe.VERSION,
        "machine": platform.machine(),
    }
    # (c) first, so that its peak-RSS figures are not inflated by the sandbox's stores.
    out["c_local_diff"] = None if args.no_diff else bench_diff()
    with RemoteSandbox(rate_limit=RATE, rate_mode="pace") as sb:
        out["a_many_shops"] = bench_many_shops(sb, args.shops, args.per_shop, args.sample)
        out["b_big_shop"] = bench_big_shop(sb, args.big, not args.no_sequential)
    clear_clients()

    a, b, c = out["a_many_shops"], out["b_big_shop"], out["c_local_diff"]

    def row(name: str, result: str, target: str = "") -> None:
        print(f"{name:<58}{result:>24}{target:>16}")

    row("benchmark", "result", "target")
    print("-" * 98)
    total = a["shops"] * a["customers_per_shop"]
    row(
        f"(a) {a['shops']} shops x {a['customers_per_shop']} customers, opskit",
        f"{a['opskit_seconds']:.2f} s",
    )
    row(
        "    helper fetch_customer per account (extrapolated*)",
        f"{a['helper_seconds_extrapolated']:.1f} s",
    )
    row("    speedup", f"{a['speedup']:.0f}x", ">= 300x")
    row(
        "    requests: opskit count / sandbox log / bound",
        f"{a['opskit_requests']} / {a['sandbox_requests']} / {a['request_bound']}",
    )
    for label, r in b["runs"].items():
        target = ">= 80%" if label.startswith("opskit") else "~12%"
        row(
            f"(b) {b['customers']:,} customers, {label}",
            f"{r['seconds']:.2f} s = {r['share_of_ceiling']:.0%}",
            target,
        )
        row("    requests / bound", f"{r['requests']} / {r['request_bound']}")
    if c is not None:
        for label, d in c["diffs"].items():
            row(
                f"(c) local diff, {c['n_accounts']:,} accounts, {label}",
                f"{d['seconds']:.2f} s, {d['peak_rss_mib'] / 1024:.2f} GiB",
                "< 10 s, 3 GiB",
            )
    print(
        f"* the helper's way was timed on {a['helper_sample_accounts']} accounts "
        f"({a['helper_sample_seconds']:.2f} s) and extrapolated linearly to {total:,}; "
        f"ceiling in (b) = {b['ceiling_seconds']:.0f} s ({b['customers'] // 100} pages at 25/s)."
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
