"""Where the wall time of one no-hint listing goes: a timeline of its requests.

Run (the sandbox in its own process, 25 requests/s, 250 ms latency, as bench_fleet)::

    .venv/bin/python benchmarks/timeline_paging.py --n 5000 --pattern uniform
    .venv/bin/python benchmarks/timeline_paging.py --n 5000 --pattern burst --lister old

Every page request is timed from the moment the lister hands it to its thread
(before the client's rate limiter) to the moment its answer is back. The rate
limit is what bounds a listing: one request every 40 ms. A *slot* of 40 ms that
no request could use because none was ready is pipeline idle time; the report
prints the requests, then the idle stretches, then a summary::

    wall = idle slots + requests x 40 ms + the last answer's round trip (+ overheads)
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from opskit.common.models import Shop
from opskit.stripeapi import paging
from opskit.stripeapi.clients import clear_clients, client_for_shop

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import baseline_paging  # noqa: E402
import bench_fleet  # noqa: E402
from proxy import RemoteSandbox  # noqa: E402

PATTERNS = {
    "uniform": bench_fleet.uniform,
    "burst": bench_fleet.burst,
    "recent": bench_fleet.recent,
}


def run(
    sb: RemoteSandbox, key: str, lister_name: str, speculate: bool
) -> tuple[list[dict[str, Any]], float, Any]:
    shop = Shop(id=1, name=None, stripe_secret_key=key)
    client = client_for_shop(shop, api_base=sb.url, rate_limit=bench_fleet.RATE)
    module: Any = paging if lister_name == "new" else baseline_paging
    inner = module.page_fetcher(client, module.ENDPOINTS["customers"])
    log: list[dict[str, Any]] = []
    lock = threading.Lock()
    t0 = time.perf_counter()

    def fetch(params: dict[str, Any]) -> Any:
        start = time.perf_counter() - t0
        data, more = inner(params)
        end = time.perf_counter() - t0
        created = params.get("created", {})
        with lock:
            log.append(
                {
                    "start": start,
                    "end": end,
                    "lo": created.get("gte"),
                    "hi": created.get("lte"),
                    "cursor": "starting_after" in params,
                    "n": len(data),
                    "more": more,
                }
            )
        return data, more

    lister = (
        module.WindowedLister(fetch, speculate=True) if speculate else module.WindowedLister(fetch)
    )
    t0 = time.perf_counter()
    objects = lister.run()
    wall = time.perf_counter() - t0
    assert len({o["id"] for o in objects}) == len(objects)
    return log, wall, lister.stats


def report(log: list[dict[str, Any]], wall: float, n: int, rate: float, latency: float) -> None:
    log.sort(key=lambda r: r["start"])
    slot = 1 / rate
    pages = math.ceil(n / 100)
    print(f"{'#':>3} {'sent':>7} {'back':>7} {'in flight':>9} {'objs':>5} more  window")
    for i, r in enumerate(log):
        flying = sum(1 for q in log if q["start"] <= r["start"] < q["end"])
        lo = "-inf" if r["lo"] is None else str(r["lo"] - bench_fleet.T0)
        hi = "+inf" if r["hi"] is None else str(r["hi"] - bench_fleet.T0)
        print(
            f"{i:3d} {r['start']:7.3f} {r['end']:7.3f} {flying:9d} {r['n']:5d} "
            f"{'y' if r['more'] else ' '}     [{lo}, {hi}]{' cursor' if r['cursor'] else ''}"
        )
    # The limiter serves one request per slot; a request is ready at its start. Walk the
    # slots: a slot with no ready request is idle.
    idle = []
    t = 0.0
    for r in log:
        if r["start"] > t + 1e-3:
            idle.append((t, r["start"]))
            t = r["start"]
        t += slot
    idle_s = sum(b - a for a, b in idle)
    print("\nidle stretches (no request ready for the next 40 ms slot), >= 40 ms:")
    for a, b in idle:
        if b - a >= slot:
            print(f"  {a:6.3f} .. {b:6.3f}  ({b - a:.3f} s)")
    last = max(r["end"] for r in log)
    last_start = max(r["start"] for r in log)
    empty = sum(1 for r in log if r["n"] == 0)
    partial = sum(1 for r in log if 0 < r["n"] < 100)
    waste = sum(100 - r["n"] for r in log) / 100
    ceiling = pages / rate
    print(
        f"\n{n:,} objects, {pages} pages minimum, ceiling {ceiling:.2f} s; wall {wall:.3f} s "
        f"= {ceiling / wall:.0%} of the ceiling"
    )
    print(
        f"requests {len(log)} ({len(log) / pages:.2f}x): {empty} empty, {partial} partial; "
        f"unfilled page space {waste:.1f} pages"
    )
    print(
        f"idle slots {idle_s:.3f} s (of which before the first answer "
        f"{sum(min(b, log[0]['end']) - a for a, b in idle if a < log[0]['end']):.3f} s); "
        f"{len(log)} x {slot * 1000:.0f} ms = {len(log) * slot:.3f} s; last answer's "
        f"round trip {last - last_start:.3f} s; "
        f"rest {wall - idle_s - len(log) * slot - (last - last_start):.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--pattern", choices=sorted(PATTERNS), default="uniform")
    p.add_argument("--lister", choices=("new", "old"), default="new")
    p.add_argument("--latency", type=float, default=0.250)
    p.add_argument("--speculate", action="store_true", help="blind probes with the head")
    args = p.parse_args(argv)
    rate = bench_fleet.RATE
    with RemoteSandbox(rate_limit=rate, rate_mode="pace", latency=args.latency) as sb:
        key = f"sk_test_timeline{random.Random(args.n).getrandbits(40):x}"
        bench_fleet._seed(sb, key, PATTERNS[args.pattern](args.n, random.Random(args.n)))
        time.sleep(1.0)
        log, wall, stats = run(sb, key, args.lister, args.speculate)
        assert sb.request_count(key) == len(log)
    clear_clients()
    report(log, wall, args.n, rate, args.latency)
    print(f"lister stats: {stats}; load {bench_fleet._load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
