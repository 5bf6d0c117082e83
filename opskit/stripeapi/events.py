"""Reading one shop's Stripe events, re-reading objects, and reading a shop in full.

Public functions (each shop with its own key, through :func:`shop_client`)::

    read_events(client, since, types)             -> (events oldest first, requests)
    retrieve_objects(client, kind, ids, workers)  -> ({id: object}, 404 ids, requests)
    read_shop(ctx, shop, link_ids, subscription_ids) -> ({"customer": [...], ...}, requests)
    verify_signature(payload, header, secrets, tolerance)  -> None (stripe-python checks)
    verify_delivery(payload, header, secrets, tolerance) -> the event (signature, then JSON)

``GET /v1/events`` lists newest first; :func:`read_events` pages with
``starting_after`` until ``has_more`` is false and returns the events oldest
first, deduplicated by id (a page boundary moving under new events can repeat one).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import stripe

from opskit.common.context import Context
from opskit.common.exceptions import OpskitError
from opskit.common.models import Shop
from opskit.core.event_checks import EventInvalid, parse_event
from opskit.stripeapi import fetch
from opskit.stripeapi.clients import client_for_shop, client_limits

__all__ = [
    "DeliveryRejected",
    "read_events",
    "read_shop",
    "retrieve_objects",
    "shop_client",
    "verify_delivery",
    "verify_signature",
]

StripeDict = dict[str, Any]
_SERVICES = {"customer": "customers", "subscription": "subscriptions"}


def shop_client(ctx: Context, shop: Shop) -> stripe.StripeClient:
    """The shop's own client, rate-limited for its key's mode (see ``client_for_shop``)."""
    s = ctx.settings
    rate = s.live_rate_limit if shop.key_info.mode == "live" else s.test_rate_limit
    return client_for_shop(shop, api_base=ctx.api_base, rate_limit=rate, **client_limits(s))


def read_events(
    client: stripe.StripeClient, since: int, types: Iterable[str]
) -> tuple[list[StripeDict], int]:
    """Every event with ``created >= since`` of the given types: (oldest first, requests)."""
    params: dict[str, Any] = {"created": {"gte": int(since)}, "types": list(types), "limit": 100}
    seen: dict[str, StripeDict] = {}
    requests = 0
    while True:
        page = client.v1.events.list(params=params)  # type: ignore[arg-type]
        requests += 1
        data = [e.to_dict() for e in page.data]
        for event in data:
            seen.setdefault(str(event["id"]), event)
        if not page.has_more or not data:
            break
        params = {**params, "starting_after": data[-1]["id"]}
    events = list(seen.values())
    # Newest first on the wire; ids are not ordered, so within one second keep the
    # wire order reversed (the best guess of creation order there is).
    events.reverse()
    events.sort(key=lambda e: int(e.get("created") or 0))
    return events, requests


def retrieve_objects(
    client: stripe.StripeClient, kind: str, ids: Collection[str], workers: int = 4
) -> tuple[dict[str, StripeDict], list[str], int]:
    """Re-read ``ids`` of ``kind`` (customer/subscription): found, 404s, requests made.

    A deleted customer comes back as Stripe's tombstone (``deleted: true``).
    """
    service = getattr(client.v1, _SERVICES[kind])

    def one(object_id: str) -> StripeDict | None:
        try:
            obj: StripeDict = service.retrieve(object_id).to_dict()
            return obj
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}, [], 0
    with ThreadPoolExecutor(max(1, min(workers, len(wanted))), "opskit-refetch") as pool:
        answers = list(pool.map(one, wanted))
    found = {i: a for i, a in zip(wanted, answers, strict=True) if a is not None}
    missing = [i for i, a in zip(wanted, answers, strict=True) if a is None]
    return found, missing, len(wanted)


def read_shop(
    ctx: Context,
    shop: Shop,
    link_ids: Collection[str] = (),
    subscription_ids: Collection[str] = (),
) -> tuple[dict[str, list[StripeDict]], int]:
    """One shop in full, as a reconciliation reads it: every customer (plus linked ids
    the listing lacks: deleted ones come back as tombstones) and every subscription
    (plus recorded ``subscription_ids`` the listing lacks: a test clock's), as frame
    rows (:func:`opskit.stripeapi.fetch.object_rows`) by kind.

    Raises :class:`ShopReadFailed` (secret-free) when a listing fails.
    """
    out: dict[str, list[StripeDict]] = {}
    requests = 0
    for kind, endpoint, ids in (
        ("customer", "customers", tuple(dict.fromkeys(link_ids))),
        ("subscription", "subscriptions", tuple(dict.fromkeys(subscription_ids))),
    ):
        outcome = fetch.run_shop_job(fetch.shop_job(ctx, endpoint, shop, retrieve_ids=ids))
        requests += outcome.requests
        if outcome.error is not None:
            raise ShopReadFailed(outcome.error, requests)
        out[kind] = list(outcome.rows)
    return out, requests


class ShopReadFailed(OpskitError):
    """A full read of one shop failed; the message is secret-free (see describe_error)."""

    def __init__(self, message: str, requests: int = 0) -> None:
        super().__init__(message)
        self.requests = requests


class DeliveryRejected(OpskitError):
    """A webhook delivery failed its signature, age or JSON check."""


def _signed_at(header: str) -> int:
    """The ``t=`` of a Stripe-Signature header (already verified to be there and signed)."""
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.strip().isdigit():
            return int(value)
    return 0


def verify_signature(
    payload: bytes, header: str | None, secrets: Iterable[str], tolerance: int = 300
) -> None:
    """Check a delivery's ``Stripe-Signature`` against ``secrets``; the body is not parsed.

    Uses stripe-python's own ``WebhookSignature.verify_header`` with an explicit
    ``tolerance`` (its low-level check skips the age test without one); every
    ``v1`` in the header is tried against every secret (rotation), and a
    timestamp more than ``tolerance`` in the future is refused too. Raises
    :class:`DeliveryRejected` (no signature, no valid signature, too old or too
    new); its message never holds a secret.
    """
    if not header:
        raise DeliveryRejected("no Stripe-Signature header")
    text = payload.decode("utf-8", "replace")
    ok = False
    reason = "no signing secret configured for this shop"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=tolerance)
            ok = True
            break
        except stripe.SignatureVerificationError as exc:
            msg = str(getattr(exc, "user_message", None) or exc)
            reason = (
                "signature timestamp outside the tolerance"
                if "tolerance" in msg
                else ("no valid signature for this shop's secrets")
            )
    if not ok:
        raise DeliveryRejected(reason)
    # stripe-python checks only the past; a timestamp from the future is as suspect.
    if _signed_at(header) > time.time() + tolerance:
        raise DeliveryRejected("signature timestamp outside the tolerance")


def verify_delivery(
    payload: bytes, header: str | None, secrets: Iterable[str], tolerance: int = 300
) -> StripeDict:
    """The event of a delivery signed with one of ``secrets``, as a plain dict.

    :func:`verify_signature` first (before the body is parsed), then the body
    must be a JSON object (:func:`opskit.core.event_checks.parse_event`: bounded
    nesting) with ``object: "event"`` and an id. Raises :class:`DeliveryRejected`
    (no signature, no valid signature, too old, not JSON, not an event); its
    message never holds a secret. The receiver checks the event further
    (:func:`opskit.core.event_checks.check_event`).
    """
    verify_signature(payload, header, secrets, tolerance)
    try:
        event = parse_event(payload)
    except EventInvalid as exc:
        raise DeliveryRejected(str(exc)) from None
    if event.get("object") != "event" or not event.get("id"):
        raise DeliveryRejected("body is not a Stripe event")
    return event
