"""Finding out what a Stripe write did when its answer never arrived.

Every object opskit creates carries ``metadata.opskit_key``: the idempotency key
of the call that created it (the call's first key, kept across retries under
new keys). When a write's answer is lost (a 5xx, a dropped connection, a killed
process), :func:`find_written` asks Stripe, with a strongly consistent list
(not search, which lags), whether that object exists:

* ``customer.create``: customers (of that email when there is one) created
  since the intent, tagged with the key;
* ``subscription.create``: the customer's subscriptions (``status="all"``)
  created since, tagged with the key; a live one is preferred;
* ``payment_intent.create``: the customer's payment intents created since,
  tagged with the key;
* ``subscription.cancel``: the subscription itself, canceled (or set to cancel
  at period end) means done;
* ``payment_intent.set_order_id``: the payment intent, holding the value means done.

The answer is the object as a plain dict, or None when Stripe has no such
object (the write did not happen). Stripe errors propagate: the outcome then
stays unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import stripe

__all__ = ["LOOKUP_ACTIONS", "TAG", "find_written", "tag_of"]

TAG = "opskit_key"
LOOKUP_ACTIONS = (
    "customer.create",
    "subscription.create",
    "payment_intent.create",
    "subscription.cancel",
    "payment_intent.set_order_id",
)
# Clock skew allowed between this machine and Stripe when listing "created since".
_SKEW = 600
# At most this many objects are scanned for a tag (10 pages): enough for any
# shop's writes of a few minutes; a miss then reads "not found", never a hang.
_SCAN = 1000
_ENDED = frozenset({"canceled", "incomplete_expired"})


def tag_of(obj: Any) -> str | None:
    """The ``opskit_key`` tag an object carries, if any."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else getattr(obj, "metadata", None)
    if meta is None:
        return None
    try:
        value = meta[TAG]
    except (KeyError, TypeError):
        return None
    return None if value is None else str(value)


def find_written(
    client: stripe.StripeClient,
    action: str,
    *,
    key: str,
    target: str,
    params: Mapping[str, Any],
    since: float,
) -> dict[str, Any] | None:
    """The object the write ``action`` tagged ``key`` left in Stripe, or None.

    ``target`` is the write's audit target (``account:<id>`` or
    ``subscription:<id>``), ``params`` its audited parameters, ``since`` the
    Unix time the intent was recorded. Raises ``ValueError`` for an action it
    cannot look up and Stripe's errors as they come.
    """
    gte = {"gte": max(0, int(since) - _SKEW)}
    if action == "customer.create":
        q: dict[str, Any] = {"limit": 100, "created": gte}
        if params.get("email"):
            q["email"] = params["email"]
        return _pick(client.v1.customers.list(params=q).auto_paging_iter(), key)  # type: ignore[arg-type]
    if action == "subscription.create":
        q = {"customer": params["customer"], "status": "all", "limit": 100, "created": gte}
        return _pick(client.v1.subscriptions.list(params=q).auto_paging_iter(), key)  # type: ignore[arg-type]
    if action == "payment_intent.create":
        q = {"customer": params["customer"], "limit": 100, "created": gte}
        return _pick(client.v1.payment_intents.list(params=q).auto_paging_iter(), key)  # type: ignore[arg-type]
    if action == "subscription.cancel":
        sid = target.split(":", 1)[1]
        try:
            sub = client.v1.subscriptions.retrieve(sid).to_dict()
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise
        at_period_end = bool(params.get("at_period_end"))
        done = sub.get("status") in _ENDED or (at_period_end and sub.get("cancel_at_period_end"))
        return sub if done else None
    if action == "payment_intent.set_order_id":
        pid = target.split(":", 1)[1]
        intent = client.v1.payment_intents.retrieve(pid).to_dict()
        meta = intent.get("metadata") or {}
        return intent if meta.get(str(params.get("key"))) == params.get("value") else None
    raise ValueError(f"no lookup for {action!r}")


def _pick(objects: Iterable[Any], key: str) -> dict[str, Any] | None:
    """The newest tagged object, a live one before a deleted or ended one."""
    best: dict[str, Any] | None = None
    for n, obj in enumerate(objects):
        if n >= _SCAN:
            break
        if tag_of(obj) != key:
            continue
        found = obj.to_dict()
        if not found.get("deleted") and found.get("status") not in _ENDED:
            return found  # lists are newest first
        best = best or found
    return best
