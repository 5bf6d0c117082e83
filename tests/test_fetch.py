"""Bulk fetching through the real sandbox over HTTP: frames, request bounds, shop errors,
linked-id resolution, executors and progress output."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pandas as pd
import pytest
import stripe

from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.models import Shop
from opskit.common.sealing import seal
from opskit.core.frames import CUSTOMERS, SUBSCRIPTIONS, empty
from opskit.sandbox import Sandbox
from opskit.stripeapi import fetch
from opskit.stripeapi.clients import clear_clients
from opskit.stripeapi.paging import request_bound
from tests.fixtures_sandbox import make_key
from tests.leakcheck import assert_no_secrets

YEAR = 365 * 24 * 3600
T0 = 1_700_000_000


def ctx_for(url: str, **settings: Any) -> Context:
    """A Context for fetch only: the database is never touched by opskit.stripeapi.fetch."""
    return Context(db=cast(Any, None), settings=replace(Settings(stripe_api_base=url), **settings))


def job_for(shop_id: int, key: str, url: str, rate: float = 20.0) -> fetch.ShopJob:
    """A customers ShopJob as fetch builds it (the key sealed)."""
    return fetch.ShopJob("customers", shop_id, seal(key), url, rate, 60.0)


def shop(shop_id: int, key: str | None) -> Shop:
    return Shop(id=shop_id, name=f"shop {shop_id}", stripe_secret_key=key)


def seed_customers(sb: Sandbox, key: str, created: list[int]) -> list[str]:
    return sb.seed(
        key,
        "customers",
        [
            {"email": f"c{i}@example.com", "name": f"C {i}", "created": c}
            for i, c in enumerate(created)
        ],
    )


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    clear_clients()
    yield
    clear_clients()


# -- frames and request bounds ----------------------------------------------------------------


def test_customers_frame_is_typed_per_spec(sandbox: Sandbox, fresh_key: str) -> None:
    ids = seed_customers(sandbox, fresh_key, [T0 + i * 60 for i in range(250)])
    result = fetch.fetch_customers(ctx_for(sandbox.url), [shop(7, fresh_key)], progress=False)
    df = result.frame
    pd.testing.assert_series_equal(df.dtypes, empty(CUSTOMERS).dtypes)
    assert sorted(df["stripe_customer_id"]) == sorted(ids)
    assert df["stripe_customer_id"].is_unique
    assert (df["shop_id"] == "7").all()
    assert not df["deleted"].any()
    newest = df.loc[df["stripe_customer_id"] == ids[-1]].iloc[0]
    assert newest["created_at"] == pd.Timestamp(T0 + 249 * 60, unit="s", tz="UTC")
    assert newest["email"] == "c249@example.com"
    assert result.errors == {}


def _spread(n: int, rng: random.Random) -> list[int]:
    return [T0 + rng.randrange(YEAR) for _ in range(n)]


@pytest.mark.parametrize(
    ("n", "layout"),
    [
        (0, "spread"),
        (1, "spread"),
        (100, "spread"),
        (101, "spread"),
        (101, "same second"),
        (3000, "spread"),
        (3000, "same second"),
    ],
)
def test_listing_stays_within_the_request_bound(sandbox: Sandbox, n: int, layout: str) -> None:
    key = make_key("bound")
    rng = random.Random(n)
    created = _spread(n, rng) if layout == "spread" else [T0] * n
    ids = seed_customers(sandbox, key, created)
    result = fetch.fetch_customers(ctx_for(sandbox.url), [shop(1, key)], progress=False)
    assert sorted(result.frame["stripe_customer_id"]) == sorted(ids)
    served = sandbox.request_count(key)
    assert served == result.requests
    assert served <= request_bound(n), (served, request_bound(n))


def test_big_shop_listing_fans_out_into_windows(sandbox: Sandbox) -> None:
    """3,000 customers over a year: several windows, still exact and within the bound."""
    key = make_key("fan")
    ids = seed_customers(sandbox, key, _spread(3000, random.Random(3)))
    out = fetch.run_shop_job(job_for(1, key, sandbox.url, rate=1000))
    assert out.error is None
    assert sorted(o["stripe_customer_id"] for o in out.rows) == sorted(ids)
    assert out.windows >= 2
    assert out.requests <= request_bound(3000)


def test_subscriptions_frame(sandbox: Sandbox, fresh_key: str) -> None:
    cus = seed_customers(sandbox, fresh_key, [T0, T0 + 1, T0 + 2])
    [usd, jpy] = sandbox.seed(
        fresh_key,
        "prices",
        [
            {"unit_amount": 1999, "currency": "usd", "recurring": {"interval": "month"}},
            {"unit_amount": 500, "currency": "jpy", "recurring": {"interval": "year"}},
        ],
    )
    subs = sandbox.seed(
        fresh_key,
        "subscriptions",
        [
            {"customer": cus[0], "price": usd, "created": T0 + 10},
            {"customer": cus[1], "price": jpy, "status": "canceled", "canceled_at": T0 + 99},
            {"customer": cus[2], "price": usd, "status": "trialing"},
        ],
    )
    result = fetch.fetch_subscriptions(ctx_for(sandbox.url), [shop(3, fresh_key)], progress=False)
    df = result.frame.set_index("stripe_subscription_id")
    pd.testing.assert_series_equal(result.frame.dtypes, empty(SUBSCRIPTIONS).dtypes)
    assert sorted(df.index) == sorted(subs)
    first, canceled = df.loc[subs[0]], df.loc[subs[1]]
    assert first["stripe_customer_id"] == cus[0]
    assert first["stripe_price_id"] == usd
    assert first["unit_amount"] == 1999 and first["currency"] == "usd"
    assert first["interval"] == "month"
    assert first["created_at"] == pd.Timestamp(T0 + 10, unit="s", tz="UTC")
    assert pd.notna(first["current_period_end_at"])
    assert canceled["status"] == "canceled"  # listed only with status="all"
    assert canceled["unit_amount"] == 500 and canceled["currency"] == "jpy"
    assert canceled["interval"] == "year"
    assert canceled["canceled_at"] == pd.Timestamp(T0 + 99, unit="s", tz="UTC")
    assert df.loc[subs[2], "status"] == "trialing"


def test_subscription_rows_read_period_end_from_the_item() -> None:
    """Newer API versions keep current_period_end on the item, and may omit price."""
    obj = {
        "id": "sub_1",
        "customer": {"id": "cus_1"},
        "status": "active",
        "created": T0,
        "items": {
            "data": [
                {
                    "current_period_end": T0 + 30,
                    "plan": {"id": "plan_1", "amount": 700, "currency": "EUR", "interval": "week"},
                }
            ]
        },
    }
    [row] = fetch.subscription_rows(1, [obj])
    assert row["stripe_customer_id"] == "cus_1"
    assert row["current_period_end_at"] == T0 + 30
    assert (row["stripe_price_id"], row["unit_amount"], row["currency"], row["interval"]) == (
        "plan_1",
        700,
        "eur",
        "week",
    )


def test_empty_run_has_every_column() -> None:
    result = fetch.fetch_customers(ctx_for("http://127.0.0.1:9"), [shop(1, None)], progress=False)
    pd.testing.assert_frame_equal(result.frame, empty(CUSTOMERS))
    assert result.errors == {} and result.requests == 0


# -- linked ids --------------------------------------------------------------------------------


def test_linked_ids_resolve_deleted_wrong_shop_and_missing(sandbox: Sandbox) -> None:
    key_a, key_b = make_key("a"), make_key("b")
    a_live, a_gone = seed_customers(sandbox, key_a, [T0, T0 + 1])
    b_live, b_gone = seed_customers(sandbox, key_b, [T0, T0 + 1])
    for key, cid in ((key_a, a_gone), (key_b, b_gone)):
        stripe.StripeClient(key, base_addresses={"api": sandbox.url}).v1.customers.delete(cid)
    before = sandbox.request_count(key_a) + sandbox.request_count(key_b)
    links = {1: {a_live, a_gone, b_live, b_gone, "cus_doesnotexist"}}
    result = fetch.fetch_customers(
        ctx_for(sandbox.url), [shop(1, key_a), shop(2, key_b)], link_ids=links, progress=False
    )
    rows = {
        (int(r.shop_id), r.stripe_customer_id): bool(r.deleted) for r in result.frame.itertuples()
    }
    assert rows == {
        (1, a_live): False,
        (1, a_gone): True,  # tombstone, found by a retrieve in its own shop
        (2, b_live): False,  # listed in shop 2: the reconcile layer says wrong_shop
        (2, b_gone): True,  # deleted in shop 2: found by the cross-shop lookup
    }
    # 2 listings + 4 retrieves in shop 1 (every linked id it did not list)
    # + 2 cross-shop retrieves in shop 2 (the two ids listed nowhere).
    assert result.requests == 8
    assert sandbox.request_count(key_a) + sandbox.request_count(key_b) - before == 8


def test_linked_ids_from_accounts() -> None:
    accounts = pd.DataFrame(
        {
            "shop_id": pd.array([1, 1, 1, 2, 2, None], dtype="Int64"),
            "stripe_customer_id": pd.array(
                ["cus_a", " cus_a ", None, "", "cus_b", "cus_x"], dtype="string"
            ),
        }
    )
    assert fetch.linked_ids(accounts, "stripe_customer_id") == {"1": {"cus_a"}, "2": {"cus_b"}}
    assert fetch.linked_ids(accounts.iloc[:0], "stripe_customer_id") == {}


# -- shop failures are data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_sandbox() -> Iterator[tuple[Sandbox, str]]:
    """A sandbox that accepts one key only: any other key gets Stripe's 401."""
    good = make_key("good")
    sb = Sandbox(keys=[good])
    sb.start()
    try:
        yield sb, good
    finally:
        sb.stop()


def test_invalid_key_shop_becomes_an_error_and_the_run_goes_on(
    strict_sandbox: tuple[Sandbox, str],
) -> None:
    sb, good = strict_sandbox
    bad = make_key("revoked")
    ids = seed_customers(sb, good, [T0, T0 + 5])
    shops = [shop(1, good), shop(2, bad), shop(3, None), shop(4, "pk_test_notsecret123")]
    result = fetch.fetch_customers(ctx_for(sb.url), shops, progress=False)
    assert sorted(result.frame["stripe_customer_id"]) == sorted(ids)
    assert set(result.frame["shop_id"]) == {"1"}
    assert list(result.errors) == ["2"]  # shops 3 and 4 have no usable key: skipped
    line = result.errors["2"]
    assert line.startswith("AuthenticationError (401)")
    assert "[request req_" in line and "\n" not in line
    assert_no_secrets([line, repr(result)], [good, bad])


def test_exhausted_retries_become_an_error_while_others_succeed(sandbox: Sandbox) -> None:
    ok, flaky = make_key("ok"), make_key("flaky")
    ids = seed_customers(sandbox, ok, [T0])
    seed_customers(sandbox, flaky, [T0])
    sandbox.configure(key=flaky, fail_next=1000, fail_status=503)
    try:
        result = fetch.fetch_subscriptions(
            ctx_for(sandbox.url, max_retry_wait=0.3), [shop(1, flaky), shop(2, ok)], progress=False
        )
        customers = fetch.fetch_customers(
            ctx_for(sandbox.url, max_retry_wait=0.3), [shop(1, flaky), shop(2, ok)], progress=False
        )
    finally:
        sandbox.configure(key=flaky, fail_next=0)
    assert result.errors["1"].startswith("StripeRetriesExhausted (503)")
    assert "[request req_" in result.errors["1"]
    assert list(customers.errors) == ["1"]
    assert list(customers.frame["stripe_customer_id"]) == ids
    assert_no_secrets([result.errors["1"], customers.errors["1"]], [ok, flaky])


# -- progress ----------------------------------------------------------------------------------


def test_progress_false_prints_nothing(
    sandbox: Sandbox,
    fresh_key: str,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_customers(sandbox, fresh_key, [T0])
    fetch.fetch_customers(ctx_for(sandbox.url), [shop(1, fresh_key)], progress=False)
    assert capfd.readouterr() == ("", "")
    # A bar is drawn only at a terminal (opskit.common.progress): make stderr one.
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    fetch.fetch_customers(ctx_for(sandbox.url), [shop(1, fresh_key)], progress=True)
    out, err = capfd.readouterr()
    assert out == "" and "1/1" in err


# -- executors ---------------------------------------------------------------------------------


class _CountingExecutor(ThreadPoolExecutor):
    """A thread pool that records the shops its tasks carried and the most running at once."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.submitted = 0
        self.shops = 0
        self.running = 0
        self.peak = 0
        self._count_lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        shops = len(args[0]) if args else 0

        def counted() -> Any:
            with self._count_lock:
                self.running += shops
                self.peak = max(self.peak, self.running)
            try:
                time.sleep(0.05)  # long enough for a third task to overlap, if it could
                return fn(*args, **kwargs)
            finally:
                with self._count_lock:
                    self.running -= shops

        self.submitted += 1
        self.shops += shops
        return super().submit(counted)


def test_any_executor_is_used_and_bounded(sandbox: Sandbox) -> None:
    keys = [make_key(f"ex{i}") for i in range(5)]
    for i, key in enumerate(keys):
        seed_customers(sandbox, key, [T0 + j for j in range(i + 1)])
    with _CountingExecutor(8) as pool:  # the pool could run 8; max_workers says 2
        result = fetch.fetch_customers(
            ctx_for(sandbox.url),
            [shop(i, k) for i, k in enumerate(keys)],
            executor=pool,
            max_workers=2,
            progress=False,
        )
    assert result.frame.groupby("shop_id").size().to_dict() == {str(i): i + 1 for i in range(5)}
    assert pool.shops == 5  # every shop ran on the given executor
    assert pool.submitted < 5  # a few shops per task
    assert pool.peak == 2  # and never more than max_workers shops at once


def test_dask_distributed_executor(sandbox: Sandbox) -> None:
    """The shop fan-out on a 2-process dask cluster (well under 20 s, cluster start included)."""
    distributed = pytest.importorskip("distributed")
    started = time.monotonic()
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    keys = [make_key(f"dask{i}") for i in range(3)]
    for i, key in enumerate(keys):
        seed_customers(sandbox, key, [T0 + j for j in range(50 * (i + 1))])
    bad = make_key("notseeded") + "!"  # malformed: skipped before any work is sent
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        result = fetch.fetch_customers(
            ctx_for(sandbox.url),
            [*(shop(i, k) for i, k in enumerate(keys)), shop(9, bad)],
            executor=client.get_executor(),
            progress=False,
        )
    assert result.errors == {}
    assert result.frame.groupby("shop_id").size().to_dict() == {"0": 50, "1": 100, "2": 150}
    pd.testing.assert_series_equal(result.frame.dtypes, empty(CUSTOMERS).dtypes)
    assert time.monotonic() - started < 20


def test_size_hints_count_distinct_links_per_shop() -> None:
    import pandas as pd

    accounts = pd.DataFrame(
        {
            "shop_id": pd.array([1, 1, 1, 2, 2], dtype="Int64"),
            "stripe_customer_id": pd.array(
                ["cus_a", " cus_a ", "cus_b", None, "  "], dtype="string"
            ),
        }
    )
    assert fetch.size_hints(accounts, "stripe_customer_id") == {"1": 2}


# -- a shop that fails in an unexpected way is still only that shop's error -------------------


class _FailingShopExecutor(ThreadPoolExecutor):
    """Runs every shop job except ``shop_id``'s, whose future fails as a dead worker's would."""

    def __init__(self, shop_id: int) -> None:
        super().__init__(2)
        self.shop_id = shop_id

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if args and any(getattr(job, "shop_id", None) == str(self.shop_id) for job in args[0]):
            failed: Future[Any] = Future()
            failed.set_exception(RuntimeError("worker for this task died"))
            return failed
        return super().submit(fn, *args, **kwargs)


def test_a_failed_executor_task_becomes_that_shops_error(sandbox: Sandbox) -> None:
    ok, doomed = make_key("ok"), make_key("doomed")
    ids = seed_customers(sandbox, ok, [T0, T0 + 1])
    seed_customers(sandbox, doomed, [T0])
    with _FailingShopExecutor(2) as pool:
        result = fetch.fetch_customers(
            ctx_for(sandbox.url), [shop(1, ok), shop(2, doomed)], executor=pool, progress=False
        )
    assert sorted(result.frame["stripe_customer_id"]) == sorted(ids)
    assert list(result.errors) == ["2"]
    assert result.errors["2"] == "RuntimeError: worker for this task died"


@pytest.fixture
def junk_server() -> Iterator[tuple[str, list[bytes]]]:
    """An HTTP server answering 200 with whatever JSON body is next in its list."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Request-Id", "req_junk")
            self.end_headers()
            self.wfile.write(bodies[0] if bodies else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", bodies
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "body",
    [
        b"null",  # not an object: stripe-python itself fails with a TypeError
        b"[]",
        b'{"object": "list", "data": [{"id": "cus_1"}], "has_more": true}',  # no created
        b'{"object": "list", "data": "cus_1", "has_more": true}',
    ],
    ids=["null", "array", "no-created", "data-not-a-list"],
)
def test_a_malformed_answer_is_a_shop_error_not_a_crash_or_a_hang(
    junk_server: tuple[str, list[bytes]], body: bytes
) -> None:
    url, bodies = junk_server
    bodies.append(body)
    job = job_for(5, make_key("junk"), url)
    box: list[Any] = []
    worker = threading.Thread(target=lambda: box.append(fetch.run_shop_job(job)), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the listing hangs on a malformed page"
    assert box, "run_shop_job raised instead of reporting the shop's error"
    [out] = box
    assert out.error and out.rows == []
    assert "\n" not in out.error
