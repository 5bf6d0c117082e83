"""Rate limits and retries, through stripe-python's real HTTP path against the sandbox."""

from __future__ import annotations

import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from opskit import stripe_client
from opskit.common.exceptions import StripeRetriesExhausted
from opskit.common.models import Shop
from opskit.stripeapi.clients import client_for_shop, transport_of
from opskit.stripeapi.ratelimit import BucketRegistry, TokenBucket, default_burst
from opskit.stripeapi.transport import RetryPolicy, parse_retry_after


@pytest.fixture
def key(fresh_key: Any) -> str:
    """A new sk_test_ key: its own isolated store in the session sandbox."""
    return str(fresh_key() if callable(fresh_key) else fresh_key)


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    yield
    stripe_client.clear_clients()


def _shop(key: str, shop_id: int = 1) -> Shop:
    return Shop(id=shop_id, name=f"shop {shop_id}", stripe_secret_key=key)


def _statuses(sandbox: Any, key: str) -> list[int]:
    return [r.status for r in sandbox.requests(key)]


# --- token bucket and policy, no network --------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_spends_its_burst_then_paces_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(8)]
    assert waits[:3] == [0, 0, 0]
    assert clock.now == pytest.approx(0.5)  # 5 more tokens at 10/s
    assert all(w == pytest.approx(0.1) for w in waits[3:])


def test_bucket_refills_up_to_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=2, clock=clock, sleep=clock.sleep)
    clock.now = 100.0  # a long idle time saves up no more than the burst
    assert [bucket.try_acquire() for _ in range(3)] == [True, True, False]


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(5, burst=0.5)
    assert default_burst(20) == 2 and default_burst(90) == 9 and default_burst(3) == 1


def test_bucket_registry_shares_one_bucket_per_name() -> None:
    reg = BucketRegistry()
    a = reg.get("k", 20)
    assert reg.get("k", 50) is a and a.rate == 20  # default rate does not re-rate
    assert reg.get("k", 50, reset_rate=True) is a and a.rate == 50
    assert reg.get("other", 20) is not a


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after(later, now=now) == pytest.approx(30)
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1), (3, 2), (4, 4), (9, 4)]:
        samples = [policy.backoff(retry, rng) for _ in range(200)]
        assert min(samples) >= 0 and max(samples) <= ceiling
        assert max(samples) > ceiling * 0.8  # uses the whole range, not a fixed delay


# --- retries, through the real HTTP path -----------------------------------------------


def test_429_storm_all_succeed_within_the_bound(sandbox: Any, key: str) -> None:
    sandbox.configure(key=key, rate_limit=10, rate_mode="reject")
    client = client_for_shop(_shop(key), api_base=sandbox.url, rate_limit=100, max_retry_wait=20)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        created = list(
            pool.map(
                lambda i: client.v1.customers.create(params={"email": f"c{i}@example.com"}),
                range(24),
            )
        )
    elapsed = time.monotonic() - started
    assert len({c.id for c in created}) == 24
    statuses = _statuses(sandbox, key)
    assert statuses.count(429) >= 5, "the storm did not happen: nothing was retried"
    assert statuses.count(200) == 24
    assert elapsed < 20


def test_500s_are_retried_on_reads_but_a_write_comes_back_to_be_found_out(
    sandbox: Any, key: str
) -> None:
    client = client_for_shop(_shop(key), api_base=sandbox.url)
    sandbox.configure(key=key, fail_next=2)
    assert client.v1.customers.list().data == []
    assert _statuses(sandbox, key) == [500, 500, 200]
    # A write's 500 may have been carried out (Stripe saves and replays it for the key):
    # the transport does not resend it; opskit's writes look the object up instead.
    sandbox.inject_write_fault(key, "error_after")
    with pytest.raises(stripe.APIError):
        client.v1.customers.create(params={"email": "a@example.com"})
    assert _statuses(sandbox, key)[3:] == [500]
    # ... unless Stripe says it is safe (Stripe-Should-Retry: true: nothing was executed).
    sandbox.configure(key=key, fail_next=1)
    client.v1.customers.create(params={"email": "b@example.com"})
    assert _statuses(sandbox, key)[4:] == [500, 200]
    # A write whose connection was never made was not carried out: retried.
    port = _closed_port()
    shop = _shop(f"sk_test_{uuid.uuid4().hex}")
    down = client_for_shop(shop, api_base=f"http://127.0.0.1:{port}", max_retry_wait=0.3)
    with pytest.raises(StripeRetriesExhausted, match=r"attempts.*Connection refused"):
        down.v1.customers.create(params={"email": "a@example.com"})


def test_a_stalled_connection_costs_the_deadline_not_attempts_times_timeouts(
    sandbox: Any, key: str
) -> None:
    client = client_for_shop(
        _shop(key), api_base=sandbox.url, max_retry_wait=60, read_timeout=0.4, deadline=1.5
    )
    sandbox.configure(key=key, latency=3.0)
    started = time.monotonic()
    with pytest.raises(StripeRetriesExhausted, match="deadline of 1.5s") as info:
        client.v1.customers.list()
    elapsed = time.monotonic() - started
    assert 1.0 < elapsed < 2.5
    assert "ReadTimeout" in str(info.value) or "timed out" in str(info.value)


def test_dropped_connection_is_retried(sandbox: Any, key: str) -> None:
    client = client_for_shop(_shop(key), api_base=sandbox.url)
    created = client.v1.customers.create(params={"email": "d@example.com"})
    sandbox.configure(key=key, drop_next=1)
    assert client.v1.customers.retrieve(created.id).id == created.id
    assert _statuses(sandbox, key)[-2:] == [0, 200]


def test_404_is_not_retried(sandbox: Any, key: str) -> None:
    client = client_for_shop(_shop(key), api_base=sandbox.url)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert info.value.http_status == 404
    assert _statuses(sandbox, key) == [404]


def test_exhausted_wait_budget_raises_a_clear_error(sandbox: Any, key: str) -> None:
    client = client_for_shop(_shop(key), api_base=sandbox.url, max_retry_wait=1.0)
    sandbox.configure(key=key, fail_next=1000)
    started = time.monotonic()
    with pytest.raises(StripeRetriesExhausted) as info:
        client.v1.customers.list(params={"limit": 3})
    elapsed = time.monotonic() - started
    err = info.value
    attempts = len(sandbox.requests(key))
    assert attempts >= 2 and elapsed < 3
    assert err.http_status == 500
    text = str(err)
    assert f"after {attempts} attempts" in text
    assert "GET /v1/customers" in text and "HTTP 500" in text and "budget" in text
    assert "sk_test_…" in text  # which shop's key, masked
    if err.request_id:
        assert f"[request {err.request_id}]" in text


def test_attempt_limit_is_stripes_max_network_retries(sandbox: Any, key: str) -> None:
    client = client_for_shop(_shop(key), api_base=sandbox.url)
    sandbox.configure(key=key, fail_next=1000)
    with pytest.raises(StripeRetriesExhausted, match="after 3 attempts.*attempt limit"):
        client.v1.customers.list(options={"max_network_retries": 2})
    assert _statuses(sandbox, key) == [500, 500, 500]
    # no retries asked for: stripe's own error, untouched
    with pytest.raises(stripe.APIError):
        client.v1.customers.list(options={"max_network_retries": 0})
    assert len(sandbox.requests(key)) == 4


def test_retry_after_is_honoured(sandbox: Any, key: str) -> None:
    sandbox.configure(key=key, rate_limit=1, rate_mode="reject", retry_after=0.7)
    client = client_for_shop(_shop(key), api_base=sandbox.url, rate_limit=100)
    client.v1.customers.list()
    client.v1.customers.list()  # refused once, then waits Retry-After
    records = sandbox.requests(key)
    assert [r.status for r in records] == [200, 429, 200]
    assert records[2].at - records[1].at >= 0.7


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_reported_clearly() -> None:
    port = _closed_port()
    shop = _shop(f"sk_test_{uuid.uuid4().hex}")
    client = client_for_shop(shop, api_base=f"http://127.0.0.1:{port}", max_retry_wait=0.3)
    with pytest.raises(StripeRetriesExhausted) as info:
        client.v1.customers.retrieve("cus_1")
    text = str(info.value)
    assert f"cannot reach 127.0.0.1:{port} (Connection refused)" in text
    assert info.value.http_status is None
    assert isinstance(info.value.__cause__, stripe.APIConnectionError)


def test_client_side_limiter_keeps_a_shop_under_its_rate(sandbox: Any, key: str) -> None:
    rate, n = 25.0, 80
    client = client_for_shop(_shop(key), api_base=sandbox.url, rate_limit=rate)
    transport = transport_of(client)
    assert transport is not None and transport.limiter is not None
    burst = transport.limiter.burst
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client.v1.customers.list(params={"limit": 1}), range(n)))
    elapsed = time.monotonic() - started
    assert elapsed >= (n - burst) / rate
    stamps = sorted(r.at for r in sandbox.requests(key))
    # at the server: no one-second window holds much more than rate + burst requests
    # (50% slack: a loaded machine can bunch paced requests; unlimited would be ~n = 80)
    assert max(sum(1 for t in stamps if s <= t < s + 1) for s in stamps) <= rate * 1.5 + burst


def test_limiter_is_shared_by_all_clients_of_one_key(sandbox: Any, key: str) -> None:
    a = client_for_shop(_shop(key), api_base=sandbox.url)
    b = client_for_shop(_shop(key), api_base=sandbox.url + "/")
    other = client_for_shop(_shop(key), api_base="http://127.0.0.1:9")
    assert a is b and a is not other
    ta, to = transport_of(a), transport_of(other)
    assert ta is not None and to is not None and ta.limiter is to.limiter


def test_idempotent_replay_through_client_for_shop(sandbox: Any, key: str) -> None:
    client = client_for_shop(_shop(key), api_base=sandbox.url)
    idem = f"opskit-test-{uuid.uuid4().hex}"
    params: Any = {"email": "same@example.com", "name": "Same"}
    first = client.v1.customers.create(params=params, options={"idempotency_key": idem})
    second = client.v1.customers.create(params=params, options={"idempotency_key": idem})
    assert first.id == second.id
    listed = client.v1.customers.list(params={"limit": 10})
    assert [c.id for c in listed.data] == [first.id]


def test_many_threads_share_one_client_and_one_limiter(sandbox: Any, key: str) -> None:
    shop = _shop(key)
    seen: set[int] = set()
    lock = threading.Lock()

    def work(i: int) -> str:
        client = client_for_shop(shop, api_base=sandbox.url)
        with lock:
            seen.add(id(client))
        return str(client.v1.customers.create(params={"email": f"t{i}@example.com"}).id)

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(work, range(24)))
    assert len(seen) == 1 and len(set(ids)) == 24


def test_retry_after_beyond_the_budget_gives_up_at_once(sandbox: Any, key: str) -> None:
    sandbox.configure(key=key, rate_limit=1, rate_mode="reject", retry_after=30)
    client = client_for_shop(_shop(key), api_base=sandbox.url, rate_limit=100, max_retry_wait=2)
    client.v1.customers.list()
    started = time.monotonic()
    with pytest.raises(StripeRetriesExhausted, match="Retry-After 30s is beyond") as info:
        client.v1.customers.list()
    assert time.monotonic() - started < 1
    assert info.value.http_status == 429 and "after 1 attempt in" in str(info.value)
    assert _statuses(sandbox, key) == [200, 429]
