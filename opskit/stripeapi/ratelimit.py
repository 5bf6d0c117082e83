"""A thread-safe, blocking token bucket, and one bucket per Stripe key.

Stripe limits requests per account (per key here: every shop has its own
account). opskit keeps each shop under its limit on the client side so that a
bulk run across threads does not spend its time in 429 backoff.

The bucket uses reservations: :meth:`TokenBucket.acquire` takes a token under
the lock (the count may go negative) and sleeps, outside the lock, until that
token is due. Waiters are served in arrival order and no thread spins.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

__all__ = ["BucketRegistry", "TokenBucket", "default_burst", "key_fingerprint"]


def default_burst(rate: float) -> float:
    """Tokens a fresh bucket holds: a tenth of a second's worth, at least one.

    Small on purpose: burst plus one second of steady rate stays within Stripe's
    per-second limits (20 + 2 <= 25 in test mode, 90 + 9 <= 100 live).
    """
    return max(1.0, rate * 0.1)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; safe across threads."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._rate = 0.0
        self._burst = 0.0
        self._set(rate, burst)
        self._tokens = self._burst
        self._last = clock()

    def _set(self, rate: float, burst: float | None) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        burst = default_burst(rate) if burst is None else burst
        if not burst >= 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self._rate = float(rate)
        self._burst = float(burst)

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the rate (and burst) for every thread sharing this bucket."""
        with self._lock:
            self._refill()
            self._set(rate, burst)
            self._tokens = min(self._tokens, self._burst)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; returns the seconds waited."""
        with self._lock:
            self._refill()
            self._tokens -= 1.0
            wait = -self._tokens / self._rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait

    def drain(self) -> None:
        """Spend every saved-up token: the next request waits one interval.

        A worker process calls this when it takes over a key from another process
        (see :func:`opskit.stripeapi.fetch.run_shop_job`): the other process may have
        just used the key at full rate, and this bucket knows nothing of it.
        """
        with self._lock:
            self._refill()
            self._tokens = min(self._tokens, 0.0)

    def try_acquire(self) -> bool:
        """Take one token if one is available now; never waits."""
        with self._lock:
            self._refill()
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate:g}/s, burst={self._burst:g})"


def key_fingerprint(key: str) -> str:
    """A stable, non-reversible name for a key, for use as a dictionary key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


class BucketRegistry:
    """One :class:`TokenBucket` per name (a key fingerprint), created on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def get(self, name: str, rate: float, *, reset_rate: bool = False) -> TokenBucket:
        """The bucket for ``name``; created at ``rate``, re-rated when ``reset_rate``."""
        with self._lock:
            bucket = self._buckets.get(name)
            if bucket is None:
                bucket = self._buckets[name] = TokenBucket(rate)
                return bucket
        if reset_rate and bucket.rate != rate:
            bucket.set_rate(rate)
        return bucket

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
