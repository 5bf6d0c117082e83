"""The HTTP client opskit hands to every ``stripe.StripeClient``: limited and retrying.

stripe-python 16 retries nothing by default, never retries a 429 unless the
``Stripe-Should-Retry`` header asks for it, and ignores ``Retry-After``. opskit
needs all three for bulk runs, so :class:`LimitedRetryingClient` (a subclass of
stripe's default sync client, :class:`stripe.RequestsClient`) replaces stripe's
retry loop, ``request_with_retries``, which stripe's requestor calls once per
API call with the final headers. For every attempt it

1. takes a token from the key's :class:`~opskit.stripeapi.ratelimit.TokenBucket` (blocking,
   shared by all threads using that key);
2. sends the request with stripe's own ``RequestsClient.request``;
3. retries 429 (always: a rate-limited request was not processed), 5xx and
   retryable connection errors, plus anything Stripe marks
   ``Stripe-Should-Retry: true``; never other 4xx, nor anything Stripe marks
   ``Stripe-Should-Retry: false`` (except 429);
4. sleeps ``Retry-After`` when the answer has one (seconds or an HTTP date),
   else exponential backoff with full jitter.

Every attempt is bounded by ``connect_timeout`` and ``read_timeout`` and by what
is left of ``deadline``, the wall-clock budget of the whole call, so a stalled
connection costs at most the deadline, not attempts times the read timeout.
It gives up when the request's total backoff has used ``RetryPolicy.max_retry_wait``
(a backoff draw longer than what is left is cut short; a ``Retry-After``
longer than what is left ends the request at once), or when the attempt count
reaches the limit, and
raises :class:`opskit.common.exceptions.StripeRetriesExhausted` from inside stripe's
call: nothing between this client and the caller catches exceptions, so every
call made through :func:`opskit.stripeapi.clients.client_for_shop` gets it with no
wrapper at call sites. Retries reuse the very same headers, so a POST keeps its
``Idempotency-Key``.

Every client shares one ``requests`` session per process (:func:`shared_session`):
keep-alive connections are reused across shops, keys and the short-lived threads of
each listing (stripe's default is a new session, so a new connection, per thread),
and the proxy/CA settings of the environment are read once per host instead of
twice per request (about a fifth of the CPU of a page of 100 customers).

The attempt limit is stripe's own ``max_network_retries`` (retries = attempts
- 1), so ``options={"max_network_retries": 0}`` on one call still means "one
attempt": with no retries allowed the answer goes back to stripe unchanged and
stripe raises its usual ``RateLimitError``/``APIError``/``APIConnectionError``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
import stripe

from opskit.common.exceptions import StripeRetriesExhausted
from opskit.common.keys import redact
from opskit.stripeapi.ratelimit import TokenBucket

__all__ = ["LimitedRetryingClient", "RetryPolicy", "parse_retry_after", "shared_session"]

log = logging.getLogger(__name__)

Response = tuple[Any, int, Mapping[str, str]]


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may keep retrying."""

    max_attempts: int = 8  # first try included
    max_retry_wait: float = 60.0  # seconds of backoff (sleeps) per request, in total
    connect_timeout: float = 10.0  # seconds to open a connection, per attempt
    read_timeout: float = 30.0  # seconds to wait for the answer, per attempt
    deadline: float = 120.0  # wall-clock seconds for the whole call, attempts and sleeps
    base_delay: float = 0.5  # first backoff ceiling; doubles per retry
    max_delay: float = 8.0  # ceiling of one backoff sleep
    retry_after_jitter: float = 0.25  # added (uniform 0..this) to a Retry-After sleep

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(retry-1))]."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(0, retry - 1)))
        return (rng or random).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None:  # plain dicts are case-sensitive; requests' headers are not
        lower = name.lower()
        for k, v in headers.items():
            if k.lower() == lower:
                return v
    return value


def _never_sent(error: BaseException | None) -> bool:
    """True when the connection failed before the request was sent (refused, connect timeout)."""
    cause = error.__cause__ if error is not None else None
    if cause is None:
        return False
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return True
    return isinstance(cause, requests.exceptions.ConnectionError) and "NewConnectionError" in repr(
        cause
    )


def _retryable(
    response: Response | None, error: stripe.APIConnectionError | None, *, write: bool = False
) -> bool:
    """Whether to send the same request again.

    A write (POST) is sent again only when it was certainly not carried out: a 429,
    an answer marked ``Stripe-Should-Retry: true`` (a key in use by a concurrent
    request) or a connection never made. After a 5xx or a connection lost once
    the request was sent, its outcome is unknown: the caller finds it out
    (:func:`opskit.writes.actions._send`) instead of replaying a saved failure.
    """
    if response is None:
        if write:
            return _never_sent(error)
        return bool(error is not None and error.should_retry)
    _, status, headers = response
    if status == 429:
        return True
    should = (_header(headers, "Stripe-Should-Retry") or "").lower()
    if should == "true":
        return True
    if should == "false" or write:
        return False
    return status >= 500


def _stripe_message(body: Any) -> str:
    """The ``error.message`` (and code) of a Stripe error body, or ''."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    try:
        err = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        return ""
    if not isinstance(err, dict):
        return ""
    code = err.get("code") or err.get("type") or ""
    message = str(err.get("message") or "")
    text = f"{code}: {message}" if code and message else code or message
    return redact(text)[:300]


def _network_reason(error: BaseException | None) -> str:
    """'Connection refused', 'ReadTimeout', ...: short, from the underlying error."""
    cause = error.__cause__ if error is not None else None
    if cause is None:
        return "network error"
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(cause))
    if found:
        return found.group(1).strip()
    found = re.search(
        r"(RemoteDisconnected|ConnectionResetError|ReadTimeout|ConnectTimeout)", str(cause)
    )
    return found.group(1) if found else type(cause).__name__


def _close(response: Response | None) -> None:
    content = response[0] if response else None
    close = getattr(content, "close", None)
    if callable(close):
        close()


class _Session(requests.Session):
    """A ``requests.Session`` that reads the environment's proxy/CA settings once per host.

    ``requests`` scans ``os.environ`` on every request (``trust_env``); the answer
    for one scheme and host does not change while opskit runs.
    """

    def __init__(self) -> None:
        super().__init__()
        self._env: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._env_lock = threading.Lock()
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=128)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc, repr(proxies), stream, verify, cert)
        with self._env_lock:
            hit = self._env.get(key)
        if hit is None:
            hit = super().merge_environment_settings(url, proxies, stream, verify, cert)
            with self._env_lock:
                self._env[key] = hit
        return {**hit, "proxies": dict(hit.get("proxies") or {})}


_session: _Session | None = None
_session_lock = threading.Lock()


def shared_session() -> requests.Session:
    """The process's one ``requests`` session for Stripe calls (thread-safe use)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = _Session()
        return _session


class LimitedRetryingClient(stripe.RequestsClient):
    """stripe's requests-based client with a per-key rate limit and opskit's retry policy.

    ``label`` (a masked key) names the client in logs and errors. ``policy``
    may be replaced at any time; each request reads it once when it starts.
    """

    def __init__(
        self,
        *,
        limiter: TokenBucket | None = None,
        policy: RetryPolicy | None = None,
        label: str = "",
        timeout: float | tuple[float, float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("session", shared_session())
        self._local = threading.local()
        self.policy = policy or RetryPolicy()
        if timeout is None:
            timeout = (self.policy.connect_timeout, self.policy.read_timeout)
        super().__init__(timeout=timeout, **kwargs)
        self.limiter = limiter
        self.label = label
        self._sleep = sleep
        self._rng = rng or random.Random()

    # stripe's RequestsClient reads ``self._timeout`` for every request: per thread,
    # each attempt gets what is left of its call's deadline, never more.
    @property
    def _timeout(self) -> Any:
        return getattr(self._local, "timeout", None) or self._base_timeout

    @_timeout.setter
    def _timeout(self, value: Any) -> None:
        self._base_timeout = value

    def _attempt_timeout(self, remaining: float) -> tuple[float, float]:
        base = self._base_timeout
        connect, read = base if isinstance(base, tuple) else (base, base)
        policy = self.policy
        connect = min(connect or policy.connect_timeout, policy.connect_timeout)
        read = min(read or policy.read_timeout, policy.read_timeout)
        left = max(0.05, remaining)
        return (min(connect, left), min(read, left))

    def __repr__(self) -> str:
        return (
            f"LimitedRetryingClient(label={self.label!r}, limiter={self.limiter!r}, "
            f"policy={self.policy!r})"
        )

    # stripe's requestor calls these two; they replace HTTPClient's retry loop.
    def request_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        return self._send(method, url, headers, post_data, max_network_retries, stream=False)

    def request_stream_with_retries(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any = None,
        max_network_retries: int | None = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        return self._send(method, url, headers, post_data, max_network_retries, stream=True)

    def _attempt(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any, stream: bool
    ) -> tuple[Response | None, stripe.APIConnectionError | None]:
        try:
            if stream:
                return self.request_stream(method, url, headers, post_data), None
            return self.request(method, url, headers, post_data), None
        except stripe.APIConnectionError as exc:
            return None, exc

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        post_data: Any,
        max_network_retries: int | None,
        *,
        stream: bool,
    ) -> Any:
        policy = self.policy
        max_attempts = (
            max_network_retries + 1 if max_network_retries is not None else policy.max_attempts
        )
        started = time.monotonic()
        slept = 0.0
        attempt = 0
        write = method.lower() == "post"
        while True:
            if self.limiter is not None:
                self.limiter.acquire()
            attempt += 1
            left = policy.deadline - (time.monotonic() - started)
            self._local.timeout = self._attempt_timeout(left)
            try:
                response, error = self._attempt(method, url, headers, post_data, stream)
            finally:
                self._local.timeout = None
            if not _retryable(response, error, write=write) or max_attempts <= 1:
                if response is not None:
                    return response
                assert error is not None
                raise error
            status = response[1] if response else None
            rheaders = response[2] if response else None
            retry_after = parse_retry_after(_header(rheaders, "Retry-After"))
            if attempt >= max_attempts:
                self._exhausted(
                    method, url, attempt, started, slept, response, error, "attempt limit reached"
                )
            remaining = policy.max_retry_wait - slept
            left = policy.deadline - (time.monotonic() - started)
            if left <= 0.05:
                why = f"deadline of {policy.deadline:g}s reached"
                self._exhausted(method, url, attempt, started, slept, response, error, why)
            remaining = min(remaining, left - 0.05)
            if retry_after is not None and retry_after > remaining:
                why = f"Retry-After {retry_after:g}s is beyond the remaining wait budget"
                self._exhausted(method, url, attempt, started, slept, response, error, why)
            if remaining <= 0.001:
                why = f"wait budget of {policy.max_retry_wait:g}s used up"
                self._exhausted(method, url, attempt, started, slept, response, error, why)
            if retry_after is not None:
                jitter = self._rng.uniform(0.0, policy.retry_after_jitter)
                delay = min(retry_after + jitter, remaining)
            else:  # a long draw is cut to what is left: the last try comes at the deadline
                delay = min(policy.backoff(attempt, self._rng), remaining)
            if stream:
                _close(response)
            log.debug(
                "stripe %s %s for %s: %s, retry %d/%d in %.2fs",
                method.upper(),
                urlsplit(url).path,
                self.label or "?",
                status if status is not None else "connection error",
                attempt,
                max_attempts - 1,
                delay,
            )
            self._sleep(delay)
            slept += delay

    def _exhausted(
        self,
        method: str,
        url: str,
        attempts: int,
        started: float,
        slept: float,
        response: Response | None,
        error: stripe.APIConnectionError | None,
        why: str,
    ) -> NoReturn:
        elapsed = time.monotonic() - started
        path = urlsplit(url).path
        status: int | None = None
        request_id: str | None = None
        if response is not None:
            body, status, rheaders = response
            request_id = _header(rheaders, "Request-Id")
            detail = _stripe_message(body) if not hasattr(body, "read") else ""
            last = f"HTTP {status}" + (f" {detail}" if detail else "")
            _close(response)
        else:
            last = f"cannot reach {urlsplit(url).netloc} ({_network_reason(error)})"
        message = (
            f"Stripe {method.upper()} {path} for {self.label or 'this key'} gave up after "
            f"{attempts} attempt{'s' if attempts != 1 else ''} in {elapsed:.1f}s "
            f"({slept:.1f}s of backoff; {why}); last answer: {last}"
            + (f" [request {request_id}]" if request_id else "")
        )
        log.info("%s", message)
        exc = StripeRetriesExhausted(message, http_status=status, request_id=request_id)
        if error is not None:
            raise exc from error
        raise exc
