"""Issue 16: any shop at its rate ceiling without hints, 1,000 shops at once, CPU per page.

Run (about 6 minutes at full size, the sandbox in its own process)::

    .venv/bin/python benchmarks/bench_fleet.py            # everything, full size
    .venv/bin/python benchmarks/bench_fleet.py --quick    # small sizes while developing

Each figure is printed against its target and, where the issue asks, as a ratio against a
baseline measured in the same run on the same machine:

(1) one shop, no prior at all, 250 ms latency, 25 requests/s (Stripe test mode), 5,000 and
    20,000 customers created uniformly over a year and in an import burst (about 100 a
    second, so most seconds hold many customers and some more than a page), both in
    2023-2024, and uniformly over the year that ends now (an active shop). Share of the
    ceiling (pages / 25 s) and requests against the minimum (one per 100), beside the
    floor no lister without a prior can beat (see ``floors``) and the most requests
    that still allow 80%. Also opskit's lister with ``speculate=True`` (blind probes
    sent with the head). Baselines: today's opskit (the lister of commit c8c750e,
    benchmarks/baseline_paging.py) and plain cursor pagination (``auto_paging_iter``).
    ``benchmarks/timeline_paging.py`` shows where one listing's wall time goes.
(2) the fleet: 1,000 shops x 100 customers, 100 ms latency, 25 requests/s per key; wall
    time, requests, client CPU. Concurrency models compared: opskit's threads at several
    widths, today's opskit (8 shop threads, the old lister, stripe's ``json`` parse), and an
    asyncio + aiohttp + orjson prototype; the backend helper's one-retrieve-per-account loop
    is timed on a sample and extrapolated.
(3) CPU ms per page of 100 customers: StripeObjects (``client.v1.customers.list``), today's
    opskit (``raw_request``), opskit now (requestor + orjson + frame rows); a profile of
    where the remaining CPU goes is written to benchmarks/results/bench_fleet_profile.txt.
(4) the fleet on ``distributed.LocalCluster(processes=True)`` (2 worker processes).

Results go to benchmarks/results/bench_fleet.json, with ``uptime``'s load average: the
machine is shared, so compare ratios within one run rather than seconds across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import random
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import stripe

from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.models import Shop
from opskit.common.sealing import seal
from opskit.stripeapi import fetch, paging
from opskit.stripeapi.clients import clear_clients, client_for_shop, fetch_customer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import baseline_paging  # noqa: E402
from proxy import RemoteSandbox  # noqa: E402

RESULTS = HERE / "results" / "bench_fleet.json"
PROFILE = HERE / "results" / "bench_fleet_profile.txt"
RATE = 25.0
YEAR = 365 * 24 * 3600
T0 = 1_700_000_000


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _ctx(url: str, **kw: Any) -> Context:
    settings = Settings(stripe_api_base=url, test_rate_limit=RATE, **kw)
    return Context(db=cast(Any, None), settings=settings)


def uniform(n: int, rng: random.Random) -> list[int]:
    return [T0 + rng.randrange(YEAR) for _ in range(n)]


def burst(n: int, rng: random.Random) -> list[int]:
    """An import at about 100 a second: Poisson-like seconds, many over one page."""
    start = T0 + rng.randrange(YEAR)
    return [start + int(rng.random() * n / 100) for _ in range(n)]


def recent(n: int, rng: random.Random) -> list[int]:
    """Uniform over the year that ends now (an active shop): the other patterns end in 2024."""
    end = int(time.time())
    return [end - rng.randrange(YEAR) for _ in range(n)]


PATTERNS: dict[str, Callable[[int, random.Random], list[int]]] = {
    "uniform over a year": uniform,
    "import burst, ~100/s": burst,
    "uniform over the last year": recent,
}
LATENCY = 0.250


def floors(created: list[int], ceiling: float) -> dict[str, Any]:
    """What no lister without a prior can beat, for these ``created`` values.

    * no prior: until the head's answer is back (one round trip) nothing is known,
      so the first round trip brings one page; the other ``pages - 1`` requests go
      at most ``RATE`` a second, and the last answer takes one more round trip:
      ``2 x latency + (pages - 2) / RATE``. Each request beyond the minimum adds
      ``1 / RATE``, so 80% of the ceiling allows at most ``requests_for_80``.
      (A blind probe sent with the head can only beat this when it finds data, i.e.
      when the objects reach near now.)
    * busiest second: ``created`` has one-second resolution, so a second holding
      ``K`` objects is read by one cursor chain, ``ceil(K/100)`` round trips after
      the head's.
    """
    pages = math.ceil(len(created) / 100)
    per_second: dict[int, int] = {}
    for c in created:
        per_second[c] = per_second.get(c, 0) + 1
    busiest = max(per_second.values())
    no_prior = 2 * LATENCY + (pages - 2) / RATE
    serial = LATENCY * (1 + math.ceil(busiest / 100))
    floor = max(no_prior, serial)
    return {
        "no_prior_seconds": round(no_prior, 3),
        "busiest_second_objects": busiest,
        "busiest_second_seconds": round(serial, 3),
        "floor_seconds": round(floor, 3),
        "best_share_of_ceiling": round(ceiling / floor, 3),
        "requests_for_80": int(2 + (ceiling / 0.8 - 2 * LATENCY) * RATE + 1e-9),
    }


def _seed(sb: RemoteSandbox, key: str, created: list[int]) -> list[str]:
    rows = [
        {"email": f"c{i}@example.com", "name": f"C {i}", "created": c}
        for i, c in enumerate(created)
    ]
    ids: list[str] = []
    for i in range(0, len(rows), 5000):
        ids += sb.seed(key, "customers", rows[i : i + 5000])
    return ids


class Meter:
    """Wall seconds and this process's CPU seconds of a block."""

    def __enter__(self) -> Meter:
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t
        self.cpu = time.process_time() - self.c


def _old_list(key: str, url: str, expected: int = 0) -> tuple[int, int]:
    """Today's opskit (c8c750e) on one shop: its lister over ``raw_request``; rows after."""
    shop = Shop(id=1, name=None, stripe_secret_key=key)
    client = client_for_shop(shop, api_base=url, rate_limit=RATE)
    endpoint = baseline_paging.ENDPOINTS["customers"]
    lister = baseline_paging.WindowedLister(
        baseline_paging.page_fetcher(client, endpoint), expected=expected
    )
    objects = lister.run()
    rows = fetch.customer_rows(1, objects)
    return len(rows), lister.stats.requests


def _speculative_list(key: str, url: str) -> tuple[int, int]:
    """opskit's lister with ``speculate=True`` (blind probes with the head); rows after."""
    shop = Shop(id=1, name=None, stripe_secret_key=key)
    client = client_for_shop(shop, api_base=url, rate_limit=RATE)
    fetcher = paging.page_fetcher(client, paging.ENDPOINTS["customers"])
    lister = paging.WindowedLister(fetcher, speculate=True)
    rows = fetch.customer_rows(1, lister.run())
    return len(rows), lister.stats.requests


def _busiest(sb: RemoteSandbox) -> int:
    """The most requests any one key made in any one second (sandbox arrival times)."""
    worst = 0
    for stamps in sb.request_times().values():
        stamps.sort()
        j = 0
        for i, t in enumerate(stamps):
            while stamps[j] <= t - 1.0:
                j += 1
            worst = max(worst, i - j + 1)
    return worst


# -- (1) one shop, no hint -------------------------------------------------------------------


def bench_big(sb: RemoteSandbox, sizes: list[int], cursor: bool) -> list[dict[str, Any]]:
    sb.configure(latency=LATENCY, rate_limit=RATE, rate_mode="pace")
    out = []
    for n in sizes:
        for label, gen in PATTERNS.items():
            key = f"sk_test_big{n}{gen.__name__}{random.Random(n).getrandbits(40):x}"
            created = gen(n, random.Random(n))
            ids = _seed(sb, key, created)
            pages = math.ceil(n / 100)
            ceiling = pages / RATE
            runs: dict[str, Any] = {}

            def record(
                name: str, m: Meter, requests: int, rows: int, n: int = n, pages: int = pages,
                ceiling: float = ceiling, runs: dict[str, Any] = runs,
            ) -> None:  # fmt: skip
                assert rows == n, (name, rows, n)
                runs[name] = {
                    "seconds": round(m.seconds, 3),
                    "share_of_ceiling": round(ceiling / m.seconds, 3),
                    "requests": requests,
                    "requests_over_min": round(requests / pages, 3),
                    "cpu_seconds": round(m.cpu, 3),
                }

            clear_clients()
            sb.reset_log()
            time.sleep(1.0)
            shop = Shop(id=1, name="big", stripe_secret_key=key)
            with Meter() as m:
                result = fetch.fetch_customers(_ctx(sb.url), [shop], progress=False)
            assert not result.errors, result.errors
            record("opskit", m, sb.request_count(key), len(result.frame))

            clear_clients()
            sb.reset_log()
            time.sleep(1.0)
            with Meter() as m:
                rows, _ = _speculative_list(key, sb.url)
            record("opskit, speculate=True", m, sb.request_count(key), rows)

            clear_clients()
            sb.reset_log()
            time.sleep(1.0)
            with Meter() as m:
                rows, _ = _old_list(key, sb.url)
            record("today's opskit (c8c750e)", m, sb.request_count(key), rows)

            if cursor:
                client = stripe.StripeClient(key, base_addresses={"api": sb.url})
                sb.reset_log()
                time.sleep(1.0)
                with Meter() as m:
                    listing = client.v1.customers.list(params={"limit": 100})
                    rows = sum(1 for _ in listing.auto_paging_iter())
                record("plain cursor pagination", m, sb.request_count(key), rows)
            out.append(
                {
                    "customers": n,
                    "pattern": label,
                    "distinct_seconds": len(set(created)),
                    "min_pages": pages,
                    "request_bound": paging.request_bound(n),
                    "ceiling_seconds": ceiling,
                    "floors": floors(created, ceiling),
                    "load": _load(),
                    "runs": runs,
                }
            )
            del ids
    return out


# -- (2) the fleet ---------------------------------------------------------------------------


def _fleet_keys(sb: RemoteSandbox, shops: int, per_shop: int) -> tuple[list[str], list[list[str]]]:
    keys, ids = [], []
    rng = random.Random(5)
    for i in range(shops):
        key = f"sk_test_fleet{i:05d}x{rng.getrandbits(48):012x}"
        keys.append(key)
        ids.append(_seed(sb, key, uniform(per_shop, rng)))
    return keys, ids


async def _async_fleet(url: str, keys: list[str], concurrency: int) -> tuple[int, int]:
    """Prototype: one event loop, aiohttp, orjson, cursor pages per shop, a semaphore."""
    import aiohttp
    import orjson

    rows = 0
    requests = 0
    sem = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, key: str) -> None:
        nonlocal rows, requests
        headers = {"Authorization": f"Bearer {key}", "Stripe-Version": stripe.api_version}
        after: str | None = None
        while True:
            params = {"limit": "100"} | ({"starting_after": after} if after else {})
            async with sem, session.get(f"{url}/v1/customers", params=params, headers=headers) as r:
                body = orjson.loads(await r.read())
            requests += 1
            data = body["data"]
            rows += len(fetch.customer_rows(1, data))
            if not body.get("has_more") or not data:
                return
            after = data[-1]["id"]

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session, k) for k in keys))
    return rows, requests


def bench_fleet(
    sb: RemoteSandbox, shops: int, per_shop: int, widths: list[int], sample: int
) -> dict[str, Any]:
    latency = 0.100
    sb.configure(latency=latency, rate_limit=RATE, rate_mode="pace")
    t = time.perf_counter()
    keys, ids = _fleet_keys(sb, shops, per_shop)
    seed_s = time.perf_counter() - t
    shop_list = [
        Shop(id=i + 1, name=f"shop {i + 1}", stripe_secret_key=k) for i, k in enumerate(keys)
    ]
    total = shops * per_shop
    min_requests = shops * math.ceil(per_shop / 100)
    runs: dict[str, Any] = {}

    def record(name: str, m: Meter, requests: int, rows: int, **extra: Any) -> None:
        assert rows == total, (name, rows, total)
        runs[name] = {
            "seconds": round(m.seconds, 2),
            "requests": requests,
            "requests_over_min": round(requests / min_requests, 3),
            "cpu_seconds": round(m.cpu, 2),
            "cpu_ms_per_page": round(1000 * m.cpu / max(1, requests), 2),
            "load": _load(),
            **extra,
        }
        print(f"  fleet {name}: {m.seconds:.2f} s, {requests} requests", file=sys.stderr)

    for width in widths:
        clear_clients()
        sb.reset_log()
        time.sleep(1.0)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with Meter() as m:
            result = fetch.fetch_customers(
                _ctx(sb.url, max_shop_workers=width), shop_list, progress=False
            )
        assert not result.errors, list(result.errors.items())[:3]
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        record(
            f"opskit threads, {width} shops in flight",
            m,
            sb.request_count(),
            len(result.frame),
            frame_mib=round(result.frame.memory_usage(deep=True).sum() / 2**20, 1),
            busiest_key_second=_busiest(sb),
            peak_rss_growth_mib=round((rss1 - rss0) / 1024, 1),
        )
        del result

    clear_clients()
    sb.reset_log()
    time.sleep(1.0)
    with Meter() as m, ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(lambda k: _old_list(k, sb.url), keys))
    record(
        "today's opskit (c8c750e), 8 shops in flight",
        m,
        sb.request_count(),
        sum(c[0] for c in counts),
    )

    sb.reset_log()
    time.sleep(1.0)
    with Meter() as m:
        rows, requests = asyncio.run(_async_fleet(sb.url, keys, 64))
    record(
        "asyncio + aiohttp + orjson prototype, 64 in flight (no limiter, no retries)",
        m,
        requests,
        rows,
    )

    # The backend helper: one retrieve per account, account after account.
    accounts = [(shop_list[i % shops], ids[i % shops][i // shops]) for i in range(sample)]
    clear_clients()
    with Meter() as m:
        for s, cid in accounts:
            fetch_customer(s, cid, api_base=sb.url)
    stripe.api_key = None
    helper_s = m.seconds / len(accounts) * total
    return {
        "shops": shops,
        "customers_per_shop": per_shop,
        "latency_ms": latency * 1000,
        "rate_limit_per_key": RATE,
        "seed_seconds": round(seed_s, 1),
        "min_requests": min_requests,
        "runs": runs,
        "helper_sample_accounts": len(accounts),
        "helper_sample_seconds": round(m.seconds, 2),
        "helper_seconds_extrapolated": round(helper_s, 1),
        "_keys": keys,
    }


# -- (3) CPU per page --------------------------------------------------------------------------


def bench_cpu(sb: RemoteSandbox, pages: int) -> dict[str, Any]:
    sb.configure(latency=0.0, rate_limit=0, rate_mode="pace")
    key = "sk_test_cpu" + "x" * 20
    _seed(sb, key, uniform(100, random.Random(9)))
    client = stripe.StripeClient(key, base_addresses={"api": sb.url})
    shop = Shop(id=1, name=None, stripe_secret_key=key)
    opskit_client = client_for_shop(shop, api_base=sb.url, rate_limit=10_000)
    old_fetch = baseline_paging.page_fetcher(opskit_client, baseline_paging.ENDPOINTS["customers"])
    new_fetch = paging.page_fetcher(opskit_client, paging.ENDPOINTS["customers"])
    job = fetch.ShopJob("customers", 1, seal(key), sb.url, 10_000.0, 60.0)

    def objects() -> None:
        [o.to_dict() for o in client.v1.customers.list(params={"limit": 100}).data]

    def old() -> None:
        fetch.customer_rows(1, old_fetch({"limit": 100})[0])

    def new() -> None:
        fetch.customer_rows(1, new_fetch({"limit": 100})[0])

    def job_run() -> None:
        fetch.run_shop_job(job)

    out: dict[str, Any] = {}
    for name, fn in [
        ("StripeObjects (client.v1.customers.list + to_dict)", objects),
        ("today's opskit (raw_request, json, rows)", old),
        ("opskit now (requestor, orjson, rows)", new),
        ("opskit now, a whole one-page shop job (client, lister, rows)", job_run),
    ]:
        fn()
        with Meter() as m:
            for _ in range(pages):
                fn()
        out[name] = {
            "cpu_ms": round(1000 * m.cpu / pages, 2),
            "wall_ms": round(1000 * m.seconds / pages, 2),
        }
    # CPU time (not wall) of the page path, in this thread: fetch, parse, rows.
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for _ in range(pages):
        new()
    prof.disable()
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("tottime").print_stats(30)
    PROFILE.write_text(
        f"cProfile (CPU time) of {pages} pages of 100 customers through opskit's page "
        "path (requestor, HTTP, orjson, frame rows), sorted by own time\n" + text.getvalue()
    )
    # Shares of the CPU per page, from cumulative times of the page path's parts.
    raw = cast(Any, stats).stats

    def cum(file_part: str, func: str) -> float:
        return sum(
            v[3]
            for (f, _, fn), v in raw.items()
            if fn == func and file_part in f.replace("\\", "/")
        )

    total = cum("bench_fleet.py", "new")
    rows = cum("opskit/stripeapi/fetch.py", "customer_rows")
    parse = cum("~", "<orjson.loads>")
    http = cum("requests/sessions.py", "request")
    requestor = cum("stripe/_api_requestor.py", "request_raw") - http
    out["profile_share"] = {
        "HTTP client (requests, urllib3, sockets)": round(http / total, 3),
        "stripe requestor (headers, params, options)": round(requestor / total, 3),
        "orjson parse": round(parse / total, 3),
        "frame rows": round(rows / total, 3),
        "rest (lister glue, profiler)": round(1 - (http + requestor + parse + rows) / total, 3),
    }
    return out


# -- (4) dask ------------------------------------------------------------------------------------


def bench_dask(sb: RemoteSandbox, keys: list[str], per_shop: int, workers: int) -> dict[str, Any]:
    import distributed

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sb.configure(latency=0.100, rate_limit=RATE, rate_mode="pace")
    seal("sk_test_warmup" + "0" * 12)  # the task secret exists before the workers start
    shop_list = [Shop(id=i + 1, name=None, stripe_secret_key=k) for i, k in enumerate(keys)]
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=workers, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):  # fmt: skip
        client.run(lambda: None)
        sb.reset_log()
        time.sleep(1.0)
        with Meter() as m:
            result = fetch.fetch_customers(
                _ctx(sb.url, max_shop_workers=4 * workers), shop_list,
                executor=client.get_executor(), progress=False,
            )  # fmt: skip
    assert not result.errors, list(result.errors.items())[:3]
    assert len(result.frame) == len(keys) * per_shop
    return {
        "workers": 2,
        "threads_per_worker": workers,
        "seconds": round(m.seconds, 2),
        "requests": sb.request_count(),
        "client_cpu_seconds": round(m.cpu, 2),
        "load": _load(),
        "busiest_key_second": _busiest(sb),
    }


# -- report --------------------------------------------------------------------------------------


def _row(name: str, result: str, target: str = "") -> None:
    print(f"{name:<74}{result:>30}  {target}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, no cursor baseline")
    p.add_argument("--shops", type=int, default=1000)
    p.add_argument("--per-shop", type=int, default=100)
    p.add_argument("--big", default="5000,20000")
    p.add_argument("--widths", default="8,32,64", help="shops in flight to compare")
    p.add_argument("--no-cursor", action="store_true", help="skip plain cursor runs (~90 s)")
    p.add_argument("--no-dask", action="store_true")
    p.add_argument("--only", default="big,fleet,cpu,dask")
    args = p.parse_args(argv)
    if args.quick:
        args.shops, args.big, args.no_cursor = 150, "2000", True
    only = set(args.only.split(","))
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "stripe": stripe.VERSION,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_at_start": _load(),
        "command": "python benchmarks/bench_fleet.py " + " ".join(argv or sys.argv[1:]),
    }
    with RemoteSandbox(rate_limit=RATE, rate_mode="pace") as sb:
        if "cpu" in only:
            out["cpu_per_page"] = bench_cpu(sb, 60 if args.quick else 200)
        if "big" in only:
            sizes = [int(x) for x in args.big.split(",") if x]
            out["one_shop_no_hint"] = bench_big(sb, sizes, not args.no_cursor)
        keys: list[str] = []
        if "fleet" in only or "dask" in only:
            widths = [int(w) for w in args.widths.split(",")]
            fl = bench_fleet(sb, args.shops, args.per_shop, widths if "fleet" in only else [], 100)
            keys = fl.pop("_keys")
            out["fleet"] = fl
        if "dask" in only and not args.no_dask:
            out["fleet_dask"] = bench_dask(sb, keys, args.per_shop, 16)
    clear_clients()
    out["load_at_end"] = _load()

    _row("benchmark", "result", "target")
    print("-" * 118)
    if "cpu_per_page" in out:
        c = out["cpu_per_page"]
        for name, r in c.items():
            if name != "profile_share":
                _row(
                    f"(3) CPU per page of 100 customers: {name}", f"{r['cpu_ms']:.2f} ms", "~parse"
                )
        shares = ", ".join(f"{g} {v:.0%}" for g, v in c["profile_share"].items())
        print(f"    where the CPU of a page goes (cProfile, CPU time): {shares}")
    for b in out.get("one_shop_no_hint", []):
        base = b["runs"]
        mine = base["opskit"]
        for name, r in base.items():
            target = f">= 80%, <= {b['request_bound']} req" if name == "opskit" else ""
            _row(
                f"(1) {b['customers']:,} customers, {b['pattern']}: {name}",
                f"{r['share_of_ceiling']:.0%}, {r['requests']} req ({r['requests_over_min']:.2f}x)",
                target,
            )
        fl = b["floors"]
        _row(
            f"    floor: 2 x 250 ms + {b['min_pages'] - 2} pages at {RATE:.0f}/s (no prior); "
            f"busiest second {fl['busiest_second_objects']} objects",
            f"{fl['floor_seconds']:.2f} s = max {fl['best_share_of_ceiling']:.0%}",
            f"80%: <= {fl['requests_for_80']} req",
        )
        old = base["today's opskit (c8c750e)"]
        ratio = f"{old['seconds'] / mine['seconds']:.1f}x today's opskit"
        if "plain cursor pagination" in base:
            ratio += f", {base['plain cursor pagination']['seconds'] / mine['seconds']:.1f}x cursor"
        _row("    speed-up", ratio)
    if "fleet" in out:
        f = out["fleet"]
        print(
            f"(2) fleet: {f['shops']:,} shops x {f['customers_per_shop']} customers, "
            f"{f['latency_ms']:.0f} ms latency, {RATE:.0f} req/s per key; minimum "
            f"{f['min_requests']} requests"
        )
        runs = f["runs"]
        for name, r in runs.items():
            target = "<= 20 s, <= 1.1x" if name.startswith("opskit") else ""
            _row(
                f"    {name}",
                f"{r['seconds']:.1f} s, {r['requests_over_min']:.2f}x req, "
                f"{r['cpu_ms_per_page']:.1f} ms CPU/page",
                target,
            )
        best = min(
            (r for n, r in runs.items() if n.startswith("opskit")),
            key=lambda r: r["seconds"],
            default=None,
        )
        if best is not None:
            old = runs["today's opskit (c8c750e), 8 shops in flight"]
            _row(
                "    speed-up of opskit's best width",
                f"{old['seconds'] / best['seconds']:.1f}x today's, "
                f"{f['helper_seconds_extrapolated'] / best['seconds']:.0f}x helper*",
            )
            print(
                f"    * the helper's loop timed on {f['helper_sample_accounts']} accounts "
                f"({f['helper_sample_seconds']:.1f} s), extrapolated to "
                f"{f['shops'] * f['customers_per_shop']:,}: "
                f"{f['helper_seconds_extrapolated']:.0f} s"
            )
    if "fleet_dask" in out:
        d = out["fleet_dask"]
        _row(
            f"(4) fleet on LocalCluster(processes=True), 2 workers x "
            f"{d['threads_per_worker']} threads",
            f"{d['seconds']:.1f} s, {d['requests']} requests",
            "exact rates",
        )
    print(f"load average (1/5/15 min): start {out['load_at_start']}, end {out['load_at_end']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    if args.only != "big,fleet,cpu,dask" and RESULTS.exists():  # a partial run updates
        out = {**json.loads(RESULTS.read_text()), **out}
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(HERE.parent)} and {PROFILE.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
