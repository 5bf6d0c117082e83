"""The backend-compatible Stripe helper, and one ``StripeClient`` per shop.

Backend-compatible (same names and meaning as ``server/services/stripe_client.py``)::

    configure_for_shop(shop)           # sets stripe.api_key from the shop's key; returns stripe
    get_customer_id(account)           # account.details["stripe_customer_id"]
    fetch_customer(shop, customer_id)  # configure + retrieve, as a plain dict

``configure_for_shop`` is the one place opskit sets the global ``stripe.api_key``,
because its contract says so. Everything else goes through
:func:`client_for_shop`: one ``stripe.StripeClient`` per (key, api_base), with
the key passed explicitly, shared safely by any number of threads, rate limited
per key and retrying 429/5xx/network failures (see :mod:`opskit.stripeapi.transport`).

``shop`` and ``account`` may be ORM rows, mappings, pandas rows or opskit's own
:class:`~opskit.common.models.Shop` / :class:`~opskit.common.models.Account`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import stripe

from opskit.common.config import ALLOW_LIVE_KEYS_ELSEWHERE_ENV, STRIPE_API_BASE_ENV, Settings
from opskit.common.exceptions import (
    ConfigurationError,
    StripeCustomerMissing,
    StripeNotConfigured,
)
from opskit.common.keys import classify_secret_key, mask_key
from opskit.common.models import Shop, as_account, as_shop
from opskit.common.urls import safe_url
from opskit.stripeapi.ratelimit import BucketRegistry, key_fingerprint
from opskit.stripeapi.transport import LimitedRetryingClient, RetryPolicy

__all__ = [
    "StripeCustomerMissing",
    "check_live_destination",
    "StripeNotConfigured",
    "clear_clients",
    "client_for_shop",
    "client_limits",
    "configure_for_shop",
    "fetch_customer",
    "get_customer_id",
    "shop_key",
    "shop_mode",
    "transport_of",
]

_DEFAULTS = Settings()


def _describe(shop: Shop) -> str:
    name = f" ({shop.name})" if shop.name else ""
    return f"shop {shop.id}{name}"


def shop_key(shop: Any) -> str:
    """The shop's usable secret key, whitespace stripped, or :class:`StripeNotConfigured`.

    Accepts ``sk_live_``, ``sk_test_`` and restricted ``rk_`` keys; refuses a
    publishable ``pk_`` key, a malformed value and a missing one. The message
    names the shop, never the key.
    """
    obj = as_shop(shop)
    if obj is None:
        raise StripeNotConfigured("No shop given (shop is None): there is no Stripe key to use.")
    info = obj.key_info
    if not info.usable:
        shown = f" [{info.masked}]" if info.masked and info.mode == "invalid" else ""
        raise StripeNotConfigured(
            f"Stripe is not configured for {_describe(obj)}: {info.problem}{shown}."
        )
    raw = obj.stripe_secret_key
    assert raw is not None  # usable implies present
    return str(raw).strip()


def shop_mode(shop: Any) -> str:
    """``live``, ``test``, ``none`` (no key) or ``invalid``; never raises."""
    obj = as_shop(shop)
    return "none" if obj is None else obj.key_info.mode


# --- backend-compatible helper -------------------------------------------------


def configure_for_shop(shop: Any) -> ModuleType:
    """Set the global ``stripe.api_key`` to the shop's secret key; return the ``stripe`` module.

    As the backend's helper: ``stripe_mod = configure_for_shop(shop)`` then
    ``stripe_mod.Customer.retrieve(...)``. Raises :class:`StripeNotConfigured`
    when shop is None or has no usable key (opskit also refuses a publishable
    ``pk_`` key or a malformed one there). Prefer :func:`client_for_shop` in new
    code: the global is shared by every thread of the process.
    """
    stripe.api_key = shop_key(shop)
    return stripe


def get_customer_id(account: Any) -> Any:
    """``account.details["stripe_customer_id"]``, as the backend's helper returns it.

    Raises :class:`StripeCustomerMissing` when the details are missing (None, SQL
    NULL, JSON null), not a JSON object, or hold no truthy ``stripe_customer_id``
    (absent, None, ""), exactly where the backend's helper raises. Details given as
    JSON text (a text column) are parsed first.
    """
    acc = as_account(account)
    customer_id = acc.details.get("stripe_customer_id")
    if not customer_id:
        raise StripeCustomerMissing(f"Account {acc.id} has no stripe_customer_id linked")
    return customer_id


def _default_api_base() -> str | None:
    env = os.environ.get(STRIPE_API_BASE_ENV)
    if env:
        return env
    if stripe.api_base and stripe.api_base != stripe.DEFAULT_API_BASE:
        return stripe.api_base  # the backend pointed the global at another server
    return None


def fetch_customer(shop: Any, customer_id: str, *, api_base: str | None = None) -> dict[str, Any]:
    """Configure for the shop, retrieve the customer, return it as a plain dict.

    Sets the global ``stripe.api_key`` as the backend helper does, but retrieves
    through :func:`client_for_shop` with the shop's key passed explicitly, so
    concurrent calls for different shops cannot cross keys. Stripe errors are
    not translated (``stripe.InvalidRequestError`` for an unknown id, ...);
    only a request that kept failing past the retry budget raises
    :class:`~opskit.common.exceptions.StripeRetriesExhausted`.

    ``api_base``: where to send the request; default ``OPSKIT_STRIPE_API_BASE``,
    else ``stripe.api_base`` when the backend changed it, else Stripe itself.
    """
    configure_for_shop(shop)
    client = client_for_shop(shop, api_base=api_base or _default_api_base())
    customer = client.v1.customers.retrieve(customer_id)
    return customer.to_dict()


# --- one client per shop ---------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    client: stripe.StripeClient
    transport: LimitedRetryingClient


_clients: dict[tuple[str, str | None], _Entry] = {}
_clients_lock = threading.Lock()
_buckets = BucketRegistry()


def _default_rate(key: str) -> float:
    live = classify_secret_key(key).mode == "live"
    return _DEFAULTS.live_rate_limit if live else _DEFAULTS.test_rate_limit


def client_for_shop(
    shop: Any,
    *,
    api_base: str | None = None,
    rate_limit: float | None = None,
    max_retry_wait: float | None = None,
    read_timeout: float | None = None,
    deadline: float | None = None,
    connect_timeout: float | None = None,
) -> stripe.StripeClient:
    """The shop's own ``stripe.StripeClient``, cached per (key, api_base).

    Never reads or sets the global ``stripe.api_key``. Safe to share across
    threads. Requests are limited per key (one token bucket per key for the
    whole process, default 20/s for test keys and 90/s for live ones) and
    retried as :mod:`opskit.stripeapi.transport` describes. ``api_base`` None means
    Stripe itself; otherwise e.g. the sandbox's ``http://127.0.0.1:PORT``.

    ``rate_limit``, ``max_retry_wait``, ``connect_timeout`` and ``read_timeout``
    (seconds per attempt) and ``deadline`` (wall-clock seconds per call, attempts
    and sleeps included) given explicitly also apply to the cached client (and to
    every thread using that key), the last setting wins. Callers holding
    :class:`~opskit.common.config.Settings` pass ``**client_limits(settings)``, so
    reads and writes alike honour the configured bounds.
    """
    key = shop_key(shop)
    base = api_base.rstrip("/") if api_base else None
    check_live_destination(key, base, shop=shop)
    fingerprint = key_fingerprint(key)
    rate = rate_limit if rate_limit is not None else _default_rate(key)
    bucket = _buckets.get(fingerprint, rate, reset_rate=rate_limit is not None)
    with _clients_lock:
        entry = _clients.get((fingerprint, base))
        if entry is None:
            policy = _policy(RetryPolicy(), max_retry_wait, read_timeout, deadline, connect_timeout)
            transport = LimitedRetryingClient(
                limiter=bucket, policy=policy, label=mask_key(key) or ""
            )
            client = stripe.StripeClient(
                key,
                base_addresses={"api": base} if base else None,
                http_client=transport,
                max_network_retries=policy.max_attempts - 1,
            )
            entry = _clients[(fingerprint, base)] = _Entry(client, transport)
            return client
    wanted = _policy(
        entry.transport.policy, max_retry_wait, read_timeout, deadline, connect_timeout
    )
    if wanted != entry.transport.policy:
        entry.transport.policy = wanted
    return entry.client


def _policy(
    policy: RetryPolicy,
    max_retry_wait: float | None,
    read_timeout: float | None,
    deadline: float | None,
    connect_timeout: float | None = None,
) -> RetryPolicy:
    changes: dict[str, Any] = {
        name: float(value)
        for name, value in (
            ("max_retry_wait", max_retry_wait),
            ("read_timeout", read_timeout),
            ("deadline", deadline),
            ("connect_timeout", connect_timeout),
        )
        if value is not None
    }
    return dataclasses.replace(policy, **changes) if changes else policy


def client_limits(settings: Settings) -> dict[str, float]:
    """The per-request bounds of ``settings`` as :func:`client_for_shop` keywords.

    ``max_retry_wait`` (seconds of backoff), ``connect_timeout`` and ``read_timeout``
    (seconds per attempt), ``deadline`` (``Settings.request_deadline``: wall-clock
    seconds per call). One place, so every read and write path passes the same bounds.
    """
    return {
        "max_retry_wait": settings.max_retry_wait,
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "deadline": settings.request_deadline,
    }


def _is_stripe(base: str) -> bool:
    parts = urlsplit(base)
    host = (parts.hostname or "").lower()
    return parts.scheme == "https" and (host == "stripe.com" or host.endswith(".stripe.com"))


def check_live_destination(key: str, base: str | None, *, shop: Any = None) -> None:
    """Refuse to send a live key anywhere but Stripe itself over TLS.

    ``base`` None is Stripe (``https://api.stripe.com``). A live key with any other
    base (a sandbox, a proxy, plain ``http://``) raises :class:`ConfigurationError`
    before a byte is sent, unless ``OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE=1`` says that
    base is trusted; plain ``http://`` is refused even then, except to this machine
    (127.0.0.1 / localhost: a local TLS-terminating proxy).
    """
    if base is None or classify_secret_key(key).mode != "live" or _is_stripe(base):
        return
    parts = urlsplit(base)
    local = (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")
    allowed = os.environ.get(ALLOW_LIVE_KEYS_ELSEWHERE_ENV, "").strip().lower() in (
        "1",
        "true",
        "yes",
    )
    if allowed and (parts.scheme == "https" or local):
        return
    obj = as_shop(shop)
    who = _describe(obj) if obj is not None else "this shop"
    why = "over plain http" if parts.scheme != "https" else "to a server that is not Stripe"
    raise ConfigurationError(
        f"{who} has a live Stripe key [{mask_key(key)}]; opskit will not send it {why} "
        f"({safe_url(base)}); nothing was sent",
        guidance="Unset OPSKIT_STRIPE_API_BASE / stripe_api_base to talk to Stripe itself, "
        f"or, for a trusted https proxy, set {ALLOW_LIVE_KEYS_ELSEWHERE_ENV}=1.",
    )


def transport_of(client: stripe.StripeClient) -> LimitedRetryingClient | None:
    """The :class:`LimitedRetryingClient` behind a client made by :func:`client_for_shop`."""
    with _clients_lock:
        for entry in _clients.values():
            if entry.client is client:
                return entry.transport
    return None


def clear_clients() -> None:
    """Forget every cached client and rate-limit bucket (tests, key rotation)."""
    with _clients_lock:
        for entry in _clients.values():
            entry.transport.close()
        _clients.clear()
    _buckets.clear()
