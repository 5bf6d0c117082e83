"""Signed webhook delivery to loopback URLs, per key, off unless configured.

An endpoint (``Sandbox.add_webhook_endpoint(key, url, secret)``) receives each
new event of that key's store as Stripe sends it: ``POST`` with the event JSON
as body, ``Content-Type: application/json; charset=utf-8`` and
``Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body" keyed with the
secret as-is>`` (one ``v1`` per secret when the endpoint rolls its secret and
keeps the old one for a while). The signing is done here, independently of
stripe-python, as Stripe's servers do it.

Delivery is at least once and not ordered, like Stripe's: a non-2xx answer or
a connection failure leaves the event pending, and :meth:`WebhookHub.deliver`
sends the pending ones again, in the order asked (``created``, ``reverse`` or
``shuffle``), optionally twice each (duplicates) or with an old timestamp
(expired signatures). With ``hold=True`` nothing is sent until ``deliver`` is
called: out-of-order and late delivery on demand.

Only 127.0.0.1, ::1 and localhost URLs are accepted: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from opskit.sandbox.control import mask

LOOPBACK = ("127.0.0.1", "::1", "localhost")
USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
ORDERS = ("created", "reverse", "shuffle")


def sign(body: bytes, secrets: list[str], timestamp: int) -> str:
    """The ``Stripe-Signature`` header value for ``body`` under each secret."""
    signed = str(timestamp).encode() + b"." + body
    parts = [f"t={timestamp}"]
    for secret in secrets:
        parts.append("v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)


@dataclass
class Endpoint:
    """One webhook endpoint of one key. Secrets are never shown (see ``__repr__``)."""

    id: str
    url: str
    secrets: list[str] = field(repr=False)
    enabled_events: frozenset[str] | None = None  # None: every event
    hold: bool = False

    def wants(self, event_type: str) -> bool:
        return self.enabled_events is None or event_type in self.enabled_events

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "secrets": [mask(s) for s in self.secrets],
            "enabled_events": sorted(self.enabled_events) if self.enabled_events else None,
            "hold": self.hold,
        }


@dataclass
class Attempt:
    """One delivery attempt (what the endpoint answered)."""

    endpoint_id: str
    event_id: str
    event_type: str
    status: int  # 0: no answer (connection failed)
    at: float
    timestamp: int  # the signed `t`


@dataclass
class _KeyHooks:
    endpoints: list[Endpoint] = field(default_factory=list)
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (endpoint id, event)
    attempts: list[Attempt] = field(default_factory=list)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        raise ValueError("webhook URLs must be http(s)://127.0.0.1, [::1] or localhost")
    return url


class WebhookHub:
    """Every key's endpoints, pending deliveries and attempts; thread-safe config."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[int, _KeyHooks] = {}  # id(store) -> hooks
        self._by_key: dict[str, int] = {}
        self._next = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timeout = 10.0

    def _hooks(self, store_id: int) -> _KeyHooks:
        with self._lock:
            return self._keys.setdefault(store_id, _KeyHooks())

    def add_endpoint(
        self,
        store: Any,
        url: str,
        secret: str | list[str],
        enabled_events: list[str] | None = None,
        hold: bool = False,
    ) -> Endpoint:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets or not all(isinstance(s, str) and s for s in secrets):
            raise ValueError("a webhook endpoint needs a non-empty signing secret")
        with self._lock:
            self._next += 1
            ep = Endpoint(
                id=f"we_sandbox{self._next}",
                url=check_url(url),
                secrets=secrets,
                enabled_events=frozenset(enabled_events) if enabled_events else None,
                hold=hold,
            )
            self._keys.setdefault(id(store), _KeyHooks()).endpoints.append(ep)
        return ep

    def roll_secret(
        self, store: Any, endpoint_id: str, new_secret: str, keep_old: bool = True
    ) -> None:
        """Sign with ``new_secret`` from now on (and the old ones too while ``keep_old``)."""
        for ep in self._hooks(id(store)).endpoints:
            if ep.id == endpoint_id:
                ep.secrets = [new_secret, *ep.secrets] if keep_old else [new_secret]
                return
        raise ValueError(f"no webhook endpoint {endpoint_id!r}")

    def endpoints(self, store: Any) -> list[Endpoint]:
        return list(self._hooks(id(store)).endpoints)

    def attempts(self, store: Any) -> list[Attempt]:
        return list(self._hooks(id(store)).attempts)

    def pending(self, store: Any) -> list[dict[str, Any]]:
        return [e for _, e in self._hooks(id(store)).pending]

    def forget(self, store: Any) -> None:
        with self._lock:
            self._keys.pop(id(store), None)

    # called by the events middleware, on the server loop
    def enqueue(self, store: Any, events: list[dict[str, Any]]) -> None:
        hooks = self._keys.get(id(store))
        if hooks is None or not hooks.endpoints:
            return
        auto: list[tuple[Endpoint, dict[str, Any]]] = []
        for event in events:
            targets = [ep for ep in hooks.endpoints if ep.wants(event["type"])]
            event["pending_webhooks"] = len(targets)
            for ep in targets:
                hooks.pending.append((ep.id, event))
                if not ep.hold:
                    auto.append((ep, event))
        if auto:
            asyncio.ensure_future(self._send_all(hooks, auto, None))

    async def _send_all(
        self,
        hooks: _KeyHooks,
        items: list[tuple[Endpoint, dict[str, Any]]],
        timestamp: int | None,
    ) -> list[Attempt]:
        out = []
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for ep, event in items:  # one at a time: the order asked is the order sent
                out.append(await self._send(session, hooks, ep, event, timestamp))
        return out

    async def _send(
        self,
        session: aiohttp.ClientSession,
        hooks: _KeyHooks,
        ep: Endpoint,
        event: dict[str, Any],
        timestamp: int | None,
    ) -> Attempt:
        body = json.dumps(event, indent=2).encode()
        t = int(time.time()) if timestamp is None else int(timestamp)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Stripe-Signature": sign(body, ep.secrets, t),
        }
        status = 0
        try:
            async with session.post(ep.url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = 0
        attempt = Attempt(ep.id, event["id"], event["type"], status, time.time(), t)
        hooks.attempts.append(attempt)
        if 200 <= status < 300:
            with contextlib.suppress(ValueError):  # a duplicate: already gone
                hooks.pending.remove((ep.id, event))
        return attempt

    async def deliver(
        self,
        store: Any,
        order: str = "created",
        duplicate: bool = False,
        timestamp: int | None = None,
        seed: int | None = None,
    ) -> list[Attempt]:
        """Send every pending delivery of ``store`` now (see the module docstring)."""
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}")
        hooks = self._hooks(id(store))
        by_id = {ep.id: ep for ep in hooks.endpoints}
        items = [(by_id[eid], ev) for eid, ev in hooks.pending if eid in by_id]
        if order == "reverse":
            items.reverse()
        elif order == "shuffle":
            random.Random(seed).shuffle(items)
        if duplicate:
            items = [x for item in items for x in (item, item)]
        return await self._send_all(hooks, items, timestamp)


class EventsControl:
    """Sandbox methods for events and webhooks (mixed into :class:`Sandbox`)."""

    pipeline: Any
    hub: WebhookHub
    _loop: asyncio.AbstractEventLoop | None
    events_muted: bool = False  # see seeding()

    @contextlib.contextmanager
    def seeding(self) -> Iterator[None]:
        """Inside: requests (any key) create and change objects but record no events.

        For seeding a world's past over the API (the demo's customers, cards,
        payments): that past is in the objects (``created``), never in a shop's
        event stream, so ``GET /v1/events``, webhooks and a refresh see only what
        happens after. Not reentrant across threads; the sandbox's owner seeds.
        """
        self.events_muted = True
        try:
            yield
        finally:
            self.events_muted = False

    def _on_loop(self, fn: Any) -> Any:  # provided by Sandbox
        raise NotImplementedError

    def _store(self, key: str) -> Any:
        if not self.pipeline.valid_key(key):
            raise ValueError("this sandbox does not accept that key")
        return self.pipeline.store_for(key)

    def events(self, key: str) -> list[dict[str, Any]]:
        """Every event of ``key``'s store, newest first (retention applied)."""
        from opskit.sandbox.events import log_of

        def read() -> list[dict[str, Any]]:
            return [e[3] for e in reversed(log_of(self._store(key)).visible())]

        return self._on_loop(read)  # type: ignore[no-any-return]

    def event_clock(
        self,
        key: str,
        *,
        pin: int | None = None,
        unpin: bool = False,
        offset: int | None = None,
        scrambled: bool | None = None,
    ) -> None:
        """Pin new events of ``key`` to one ``created`` second (a same-second burst), unpin,
        move the events' clock by ``offset`` seconds (retention), or list same-second
        events in no particular order (``scrambled``)."""
        from opskit.sandbox.events import log_of

        def change() -> None:
            log = log_of(self._store(key))
            if pin is not None:
                log.pinned = int(pin)
            if unpin:
                log.pinned = None
            if offset is not None:
                log.offset = int(offset)
            if scrambled is not None:
                log.scrambled = bool(scrambled)

        self._on_loop(change)

    def add_webhook_endpoint(
        self,
        key: str,
        url: str,
        secret: str | list[str],
        *,
        events: list[str] | None = None,
        hold: bool = False,
    ) -> str:
        """Deliver ``key``'s new events to ``url`` (loopback only), signed; returns its id."""
        store = self._on_loop(lambda: self._store(key))
        return self.hub.add_endpoint(store, url, secret, events, hold).id

    def roll_webhook_secret(
        self, key: str, endpoint_id: str, new_secret: str, *, keep_old: bool = True
    ) -> None:
        """Sign with ``new_secret`` from now on; ``keep_old``: with the old ones too."""
        store = self._on_loop(lambda: self._store(key))
        self.hub.roll_secret(store, endpoint_id, new_secret, keep_old)

    def deliver_webhooks(
        self,
        key: str,
        *,
        order: str = "created",
        duplicate: bool = False,
        timestamp: int | None = None,
        seed: int | None = None,
    ) -> list[Attempt]:
        """Send ``key``'s pending deliveries now; returns the attempts made."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the sandbox is not running")
        store = self._on_loop(lambda: self._store(key))
        fut = asyncio.run_coroutine_threadsafe(
            self.hub.deliver(store, order, duplicate, timestamp, seed), loop
        )
        return fut.result(timeout=120)

    def webhook_attempts(self, key: str) -> list[Attempt]:
        """Every delivery attempt to ``key``'s endpoints, oldest first."""
        store = self._on_loop(lambda: self._store(key))
        return self.hub.attempts(store)

    def pending_webhooks(self, key: str) -> list[dict[str, Any]]:
        """Events not yet acknowledged (2xx) by one of ``key``'s endpoints."""
        store = self._on_loop(lambda: self._store(key))
        return self.hub.pending(store)
