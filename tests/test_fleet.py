"""Listing at fleet scale through the real sandbox: completeness of adaptive windowing on
randomized creation patterns (same-second bursts included), per-key rates on the fleet path
(threads and a dask cluster of worker processes), sealed keys in task payloads.

None of these tests is timed: they assert what was listed, what was sent, and what the
sandbox's request log shows per key.
"""

from __future__ import annotations

import logging
import pickle
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, cast

import pytest

from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.exceptions import ConfigurationError
from opskit.common.executors import check_workers, executor_for
from opskit.common.models import Shop
from opskit.common.sealing import TASK_SECRET_ENV, seal
from opskit.sandbox import Sandbox
from opskit.stripeapi import fetch, paging
from opskit.stripeapi.clients import clear_clients
from opskit.stripeapi.paging import request_bound
from tests.fixtures_sandbox import make_key

T0 = 1_700_000_000
DAY = 24 * 3600
YEAR = 365 * DAY


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    clear_clients()
    yield
    clear_clients()


def ctx_for(url: str, **settings: Any) -> Context:
    return Context(db=cast(Any, None), settings=replace(Settings(stripe_api_base=url), **settings))


def seed(sb: Sandbox, key: str, created: list[int]) -> list[str]:
    rows = [{"email": f"c{i}@example.com", "created": c} for i, c in enumerate(created)]
    return sb.seed(key, "customers", rows)


# -- creation patterns ---------------------------------------------------------------------


def uniform(n: int, rng: random.Random) -> list[int]:
    return [T0 + rng.randrange(YEAR) for _ in range(n)]


def one_second(n: int, rng: random.Random) -> list[int]:
    return [T0 + 17] * n


def burst(n: int, rng: random.Random) -> list[int]:
    """An import: about 150 a second, so most seconds hold more than a page."""
    start = T0 + rng.randrange(YEAR)
    return [start + int(rng.random() * n / 150) for _ in range(n)]


def bursts(n: int, rng: random.Random) -> list[int]:
    """Bursts of 50-400 objects within a few seconds, scattered over a year, plus a trickle."""
    out: list[int] = []
    while len(out) < n:
        if rng.random() < 0.3:
            out.append(T0 + rng.randrange(YEAR))
            continue
        start, size = T0 + rng.randrange(YEAR), rng.randrange(50, 400)
        width = rng.choice([1, 1, 2, 5])
        out.extend(start + rng.randrange(width) for _ in range(min(size, n - len(out))))
    return out


def ancient_and_new(n: int, rng: random.Random) -> list[int]:
    """Objects before 2011 (below the cut floor) and a dense recent cluster."""
    return [rng.choice([rng.randrange(0, 10**6), T0 + rng.randrange(3600)]) for _ in range(n)]


PATTERNS: dict[str, Callable[[int, random.Random], list[int]]] = {
    "uniform": uniform,
    "one-second": one_second,
    "burst": burst,
    "bursts": bursts,
    "ancient-and-new": ancient_and_new,
}


@pytest.mark.parametrize("seed_value", range(3))
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_listing_is_complete_on_random_creation_patterns(
    sandbox: Sandbox, pattern: str, seed_value: int
) -> None:
    """Every object once, none twice, within the request bound, whatever the pattern.

    A little latency keeps several pages in flight, so windows are split while their
    own pages are on the way (the answers then keep only what is inside the new bounds).
    """
    rng = random.Random(f"{pattern}-{seed_value}")
    n = rng.randrange(150, 1500)
    key = make_key("complete")
    ids = seed(sandbox, key, PATTERNS[pattern](n, rng))
    sandbox.configure(key=key, latency=0.005)
    shops = [Shop(id=1, name=None, stripe_secret_key=key)]
    result = fetch.fetch_customers(
        ctx_for(sandbox.url, test_rate_limit=1000.0), shops, progress=False
    )
    listed = list(result.frame["stripe_customer_id"])
    assert sorted(listed) == sorted(ids)
    served = sandbox.request_count(key)
    assert served == result.requests
    assert served <= request_bound(n), (served, request_bound(n))


def test_lister_reads_no_object_twice_and_splits(sandbox: Sandbox) -> None:
    """The lister itself: duplicates are counted, not hidden, and there are none."""
    key = make_key("dups")
    rng = random.Random(7)
    ids = seed(sandbox, key, bursts(2500, rng))
    sandbox.configure(key=key, latency=0.01)
    job = fetch.ShopJob("customers", 1, seal(key), sandbox.url, 1000.0, 60.0)
    client = fetch._shop_client(job)
    lister = paging.WindowedLister(paging.page_fetcher(client, paging.ENDPOINTS["customers"]))
    objects = lister.run()
    assert sorted(o["id"] for o in objects) == sorted(ids)
    assert lister.stats.duplicates == 0
    assert lister.stats.splits >= 2 and lister.stats.windows >= 4
    assert lister.stats.requests <= request_bound(2500)


NOW = T0 + 2 * YEAR  # the speculative lister's clock in these tests


def around_the_cuts(n: int, rng: random.Random) -> list[int]:
    """Recent bursts, seconds exactly at and beside each blind cut, the future, the ancient."""
    cuts = [NOW - age for age in paging.SPECULATE_AGES]
    out: list[int] = []
    while len(out) < n:
        r = rng.random()
        if r < 0.3:  # a same-second burst on a cut or next to one, often over a page
            at = rng.choice(cuts) + rng.choice([-1, 0, 1])
            out.extend([at] * min(rng.randrange(20, 250), n - len(out)))
        elif r < 0.8:
            out.append(NOW - rng.randrange(2 * YEAR))
        elif r < 0.9:
            out.append(NOW + rng.randrange(1, 3600))  # created after "now"
        else:
            out.append(rng.randrange(0, 10**6))  # before 2011
    return out


@pytest.mark.parametrize("seed_value", range(4))
def test_speculative_first_wave_is_complete(sandbox: Sandbox, seed_value: int) -> None:
    """Blind probes sent with the head: every object once, within the bound, all seconds covered.

    Objects sit exactly on the probes' cuts (and one second either side), in
    same-second bursts over a page, after ``now`` and before 2011.
    """
    rng = random.Random(f"speculate-{seed_value}")
    n = rng.randrange(150, 1200) if seed_value else 60  # seed 0: a one-page shop
    key = make_key("speculate")
    ids = seed(sandbox, key, around_the_cuts(n, rng))
    sandbox.configure(key=key, latency=0.005)
    job = fetch.ShopJob("customers", 1, seal(key), sandbox.url, 1000.0, 60.0)
    client = fetch._shop_client(job)
    lister = paging.WindowedLister(
        paging.page_fetcher(client, paging.ENDPOINTS["customers"]),
        speculate=True,
        now=lambda: float(NOW),
    )
    objects = lister.run()
    assert sorted(o["id"] for o in objects) == sorted(ids)
    assert lister.stats.duplicates == 0
    first_wave = len(paging.SPECULATE_AGES) + 1
    assert lister.stats.windows >= first_wave
    assert sandbox.request_count(key) == lister.stats.requests
    assert lister.stats.requests <= max(request_bound(n), first_wave)


def test_a_one_page_shop_costs_one_request(sandbox: Sandbox) -> None:
    keys = [make_key(f"small{i}") for i in range(5)]
    for i, key in enumerate(keys):
        seed(sandbox, key, uniform(100 if i else 1, random.Random(i)))
    shops = [Shop(id=i, name=None, stripe_secret_key=k) for i, k in enumerate(keys)]
    result = fetch.fetch_customers(ctx_for(sandbox.url), shops, progress=False)
    assert result.requests == 5
    assert len(result.frame) == 401


# -- per-key rates on the fleet path -------------------------------------------------------


def _busiest_second(sb: Sandbox, key: str) -> int:
    stamps = sorted(r.at for r in sb.requests(key))
    return max(sum(1 for t in stamps if s <= t < s + 1) for s in stamps)


def _span(sb: Sandbox, key: str) -> float:
    stamps = [r.at for r in sb.requests(key)]
    return max(stamps) - min(stamps)


def _fleet(sb: Sandbox, tag: str) -> tuple[list[Shop], dict[str, int]]:
    """Six keys: one shared by two shops, each shop about five pages; plus small shops."""
    shared = make_key(f"{tag}shared")
    shops, sizes = [], {}
    for i in range(4):
        key = shared if i < 2 else make_key(f"{tag}{i}")
        n = 500
        seed(sb, key, uniform(n, random.Random(i)))
        sizes[key] = sizes.get(key, 0) + n
        shops.append(Shop(id=i + 1, name=f"shop {i + 1}", stripe_secret_key=key))
    for i in range(4, 10):
        key = make_key(f"{tag}small{i}")
        seed(sb, key, uniform(60, random.Random(i)))
        sizes[key] = 60
        shops.append(Shop(id=i + 1, name=f"shop {i + 1}", stripe_secret_key=key))
    return shops, sizes


RATE = 10.0  # client-side requests/s per key in these tests (burst 1)


def _check_rates(sb: Sandbox, shops: list[Shop], result: fetch.FetchResult) -> None:
    keys = {str(s.stripe_secret_key) for s in shops}
    assert not result.errors
    assert all(r.status == 200 for k in keys for r in sb.requests(k))  # not one 429
    shared = str(shops[0].stripe_secret_key)
    assert sb.request_count(shared) > 2 * RATE  # long enough to measure a rate
    for key in keys:
        # The sandbox stamps arrivals, and a loaded machine can hold paced requests back
        # and let them in together, so one second alone may see a bunch: it gets twice
        # the rate. What bunching cannot do is shorten the whole: n requests at RATE with
        # a burst of 1 span at least (n - 2) / RATE seconds (10% slack for clock jitter).
        # Unlimited, the shared key's two shops would take well under a second.
        assert _busiest_second(sb, key) <= RATE * 2 + 1, key
        n = sb.request_count(key)
        assert _span(sb, key) >= 0.9 * (n - 2) / RATE, (key, n, _span(sb, key))


def test_fleet_threads_keep_every_key_under_its_rate(sandbox: Sandbox) -> None:
    shops, sizes = _fleet(sandbox, "thr")
    for key in sizes:
        sandbox.configure(key=key, latency=0.01, rate_limit=RATE * 2 + 1, rate_mode="reject")
    result = fetch.fetch_customers(
        ctx_for(sandbox.url, test_rate_limit=RATE, max_shop_workers=16), shops, progress=False
    )
    assert len(result.frame) == sum(sizes[str(s.stripe_secret_key)] for s in shops)
    _check_rates(sandbox, shops, result)


class _RecordingExecutor(Executor):
    """Passes every task to ``inner`` and keeps its pickled payload (what would travel)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.payloads: list[bytes] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.payloads.append(pickle.dumps((fn, args, kwargs)))
        return self.inner.submit(fn, *args, **kwargs)


def test_task_payloads_hold_no_key_and_no_database_url(sandbox: Sandbox) -> None:
    key = make_key("payload")
    seed(sandbox, key, uniform(120, random.Random(1)))
    url = "postgresql://opskit:hunter2@db.internal/shop"
    with ThreadPoolExecutor(2) as pool:
        recorder = _RecordingExecutor(pool)
        result = fetch.fetch_customers(
            ctx_for(sandbox.url, database_url=url), [Shop(id=1, name=None, stripe_secret_key=key)],
            link_ids={1: {"cus_gone"}}, executor=recorder, progress=False,
        )  # fmt: skip
    assert len(result.frame) == 120 and not result.errors
    assert recorder.payloads
    for payload in recorder.payloads:
        assert key.encode() not in payload and key[8:].encode() not in payload
        assert b"hunter2" not in payload and b"db.internal" not in payload


def test_a_worker_without_the_task_secret_makes_a_shop_error(
    monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox
) -> None:
    key = make_key("nosecret")
    job = fetch.ShopJob("customers", 3, seal(key), sandbox.url, 25.0, 60.0)
    monkeypatch.delenv(TASK_SECRET_ENV)
    with pytest.raises(ConfigurationError, match=TASK_SECRET_ENV):
        job.key.open()
    out = fetch.run_shop_job(job)
    assert out.error is not None and TASK_SECRET_ENV in out.error
    assert key not in out.error and key not in repr(job)


def test_a_slow_shop_does_not_hold_up_the_others(sandbox: Sandbox) -> None:
    """Every fast shop is served before the slow shop's single page comes back."""
    slow = make_key("slow")
    seed(sandbox, slow, uniform(30, random.Random(0)))
    sandbox.configure(key=slow, latency=1.5)
    fast = [make_key(f"fast{i}") for i in range(24)]
    for i, key in enumerate(fast):
        seed(sandbox, key, uniform(50, random.Random(i)))
    shops = [Shop(id=0, name=None, stripe_secret_key=slow)]
    shops += [Shop(id=i + 1, name=None, stripe_secret_key=k) for i, k in enumerate(fast)]
    result = fetch.fetch_customers(ctx_for(sandbox.url, max_shop_workers=4), shops, progress=False)
    assert not result.errors and len(result.frame) == 30 + 24 * 50
    slow_done = max(r.at for r in sandbox.requests(slow))
    assert max(r.at for k in fast for r in sandbox.requests(k)) < slow_done


def test_dask_worker_processes_keep_every_key_under_its_rate(sandbox: Sandbox) -> None:
    """The fleet on a 2-process dask cluster: keys sealed, a key's shops on one worker."""
    distributed = pytest.importorskip("distributed")
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    shops, sizes = _fleet(sandbox, "dask")
    for key in sizes:
        sandbox.configure(key=key, latency=0.01, rate_limit=RATE * 2 + 1, rate_mode="reject")
    seal("sk_test_warmup0000000000")  # the task secret exists before the workers start
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=4, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):  # fmt: skip
        check_workers(client)  # the workers inherited this process's task secret
        recorder = _RecordingExecutor(client.get_executor())
        result = fetch.fetch_customers(
            ctx_for(sandbox.url, test_rate_limit=RATE), shops, executor=recorder, progress=False
        )
    assert len(result.frame) == sum(sizes[str(s.stripe_secret_key)] for s in shops)
    _check_rates(sandbox, shops, result)
    assert 1 < len(recorder.payloads) < len(shops)  # a few keys per task
    for payload in recorder.payloads:
        assert not any(k.encode() in payload for k in sizes)


def test_workers_without_the_task_secret_are_refused_before_any_work() -> None:
    """A scheduler whose worker has another task secret: executor_for stops at once."""
    distributed = pytest.importorskip("distributed")
    from cryptography.fernet import Fernet

    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    other = Fernet.generate_key().decode()
    with distributed.LocalCluster(  # noqa: SIM117 - the inner with needs the cluster
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR, env={TASK_SECRET_ENV: other},
    ) as cluster:  # fmt: skip
        with (
            pytest.raises(ConfigurationError, match=TASK_SECRET_ENV),
            executor_for(cluster.scheduler_address),
        ):
            pass


def test_money_task_payloads_hold_no_key_and_no_database_url(sandbox: Sandbox) -> None:
    """The money reads travel to an executor as sealed keys too, without the database URL."""
    from opskit.stripeapi import money

    key = make_key("moneypayload")
    url = "postgresql://opskit:hunter2@db.internal/shop"
    with ThreadPoolExecutor(2) as pool:
        recorder = _RecordingExecutor(pool)
        result = money.fetch_money(
            ctx_for(sandbox.url, database_url=url),
            [Shop(id="s1", name=None, stripe_secret_key=key)],
            executor=recorder,
            progress=False,
        )
    assert not result.errors and result.requests["s1"] > 0  # the worker opened the sealed key
    assert recorder.payloads
    for payload in recorder.payloads:
        assert key.encode() not in payload and key[8:].encode() not in payload
        assert b"hunter2" not in payload and b"db.internal" not in payload
