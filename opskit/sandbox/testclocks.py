"""Test clocks (``/v1/test_helpers/test_clocks``) as Stripe runs them, within the sandbox's reach.

- create (``frozen_time`` required, ``name``), retrieve, list, delete (its customers
  are deleted and their subscriptions canceled, as at Stripe), and ``advance``;
- a customer created with ``test_clock`` belongs to it, and so do its
  subscriptions; Stripe leaves such objects out of customer and subscription
  lists unless the list names the clock (``test_clock=clock_...``), and the
  sandbox does the same;
- objects on a clock are created at the clock's frozen time; advancing it moves
  their time: subscription periods roll over (one invoice per period, paid with
  the default payment method, else ``past_due``), trials end, ``cancel_at`` and
  ``cancel_at_period_end`` take effect, and an ``incomplete`` subscription
  older than 23 hours becomes ``incomplete_expired`` (its invoice voided).

The clock is ``ready`` again as soon as ``advance`` answers (Stripe takes a few
seconds in ``advancing``).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web
from localstripe import resources as ls
from localstripe.errors import UserError

from opskit.sandbox import subscriptions as subs

EXPIRE_INCOMPLETE_AFTER = 23 * 3600
CLOCK_LIFETIME = 30 * 86400


class TestClock:
    """One clock; stored in the key's store as ``test_clock:<id>`` (indexed like the rest)."""

    object = "test_helpers.test_clock"

    def __init__(self, frozen_time: int, name: str | None) -> None:
        self.id = "clock_" + secrets.token_hex(12)
        self.created = int(time.time())
        self.frozen_time = int(frozen_time)
        self.name = name

    def export(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "deletes_after": self.created + CLOCK_LIFETIME,
            "frozen_time": self.frozen_time,
            "livemode": False,
            "name": self.name,
            "status": "ready",
            "status_details": {},
        }


def get_clock(clock_id: Any, param: str = "test_clock") -> TestClock:
    clock = subs.store().get("test_clock:" + str(clock_id)) if clock_id else None
    if clock is None:
        raise UserError(
            404,
            f"No such test_clock: '{clock_id}'",
            {"code": "resource_missing", "param": param},
        )
    return clock  # type: ignore[no-any-return]


def clock_time(clock_id: str | None) -> int | None:
    """The frozen time of ``clock_id`` (None for no clock)."""
    if not clock_id:
        return None
    clock = subs.store().get("test_clock:" + clock_id)
    return clock.frozen_time if clock is not None else None


def on_clock(obj: Any, wanted: Any) -> bool:
    """List filter: no ``test_clock`` asked -> objects on no clock; else that clock's."""
    mine = obj.__dict__.get("test_clock")
    return mine is None if wanted is None else mine == wanted


# ---------------------------------------------------------------- advancing


def _period_end(sub: Any) -> int:
    return subs.item_period(sub.items._list[0])[1]


def _renew(sub: Any, until: int) -> None:
    """Roll ``sub``'s periods forward to ``until``, billing each new period."""
    while sub.status in ("active", "trialing", "past_due") and _period_end(sub) <= until:
        end = _period_end(sub)
        if sub.cancel_at is not None and sub.cancel_at <= end:
            subs.cancel(sub, reason="cancellation_requested", at=sub.cancel_at)
            return
        plan = sub.items._list[0].plan
        new_end = subs.add_interval(end, plan.interval, plan.interval_count)
        for si in sub.items._list:
            si._period_start, si._period_end = end, new_end
        if sub.status == "trialing":
            sub.status = "active"
        _bill(sub, end)


def _bill(sub: Any, at: int) -> None:
    inv = ls.Invoice(
        customer=sub.customer, subscription=sub.id, items=list(sub.items._list), date=at
    )
    inv.billing_reason = "subscription_cycle"
    inv._finalize()
    if inv.total <= 0:
        inv._on_payment_success()
        return
    pm = subs.payment_method_for(sub)
    if pm is None:
        sub.status = "past_due"
        return
    pi = ls.PaymentIntent(
        amount=inv.total, currency=inv.currency, customer=sub.customer, payment_method=pm.id
    )
    inv.payment_intent = pi.id
    pi.invoice = inv.id
    pi._confirm(on_failure_now=lambda: None)
    sub.status = "active" if inv.status == "paid" else "past_due"


def advance(clock: TestClock, to: int) -> None:
    for key in [k for k in subs.store() if k.startswith("subscription:")]:
        sub = subs.store().get(key)
        if sub is None or sub.__dict__.get("test_clock") != clock.id or sub.status in subs.ENDED:
            continue
        if sub.status == "incomplete" and to - sub.created >= EXPIRE_INCOMPLETE_AFTER:
            subs.expire(sub, at=sub.created + EXPIRE_INCOMPLETE_AFTER)
            continue
        if sub.trial_end is not None and sub.status == "trialing" and sub.trial_end <= to:
            sub.status = "active"
        cancel_at = sub.cancel_at
        if cancel_at is not None and cancel_at <= to and cancel_at < _period_end(sub):
            subs.cancel(sub, reason="cancellation_requested", at=cancel_at)
            continue
        _renew(sub, to)
    clock.frozen_time = to


# ---------------------------------------------------------------- handlers


async def clock_create(request: web.Request) -> web.StreamResponse:
    data = await subs.body(request)
    subs.expand_list(data)
    subs.check_params(data, {"frozen_time", "name"})
    if data.get("frozen_time") in (None, ""):
        raise subs.missing_param("frozen_time")
    clock = TestClock(subs.to_int(data["frozen_time"], "frozen_time"), data.get("name") or None)
    subs.store()["test_clock:" + clock.id] = clock
    return subs.json_response(clock.export())


async def clock_retrieve(request: web.Request) -> web.StreamResponse:
    return subs.json_response(get_clock(request.match_info["id"], "id").export())


async def clock_list(request: web.Request) -> web.StreamResponse:
    from opskit.sandbox.stores import iter_objects

    data = subs.query(request)
    limit = subs.to_int(data.pop("limit", 10), "limit")
    data.pop("starting_after", None)
    data.pop("ending_before", None)
    subs.expand_list(data)
    subs.check_params(data, set())
    clocks = list(iter_objects(subs.store(), "test_clock"))
    return subs.json_response(
        {
            "object": "list",
            "data": [c.export() for c in clocks[:limit]],
            "has_more": len(clocks) > limit,
            "url": "/v1/test_helpers/test_clocks",
        }
    )


async def clock_delete(request: web.Request) -> web.StreamResponse:
    clock = get_clock(request.match_info["id"], "id")
    st = subs.store()
    for key in [k for k in st if k.startswith("customer:")]:
        cus = st.get(key)
        if cus is not None and cus.__dict__.get("test_clock") == clock.id:
            ls.Customer._api_delete(cus.id)
            subs.cancel_customer_subscriptions(cus.id)
    del st["test_clock:" + clock.id]
    return subs.json_response({"id": clock.id, "object": TestClock.object, "deleted": True})


async def clock_advance(request: web.Request) -> web.StreamResponse:
    clock = get_clock(request.match_info["id"], "id")
    data = await subs.body(request)
    subs.expand_list(data)
    subs.check_params(data, {"frozen_time"})
    if data.get("frozen_time") in (None, ""):
        raise subs.missing_param("frozen_time")
    to = subs.to_int(data["frozen_time"], "frozen_time")
    if to <= clock.frozen_time:
        raise subs.invalid(
            "frozen_time", "The frozen_time must be after the test clock's current frozen_time."
        )
    advance(clock, to)
    return subs.json_response(clock.export())


def add_routes(app: web.Application) -> None:
    r = app.router
    base = "/v1/test_helpers/test_clocks"
    r.add_post(base, clock_create)
    r.add_get(base, clock_list)
    r.add_get(base + "/{id}", clock_retrieve)
    r.add_delete(base + "/{id}", clock_delete)
    r.add_post(base + "/{id}/advance", clock_advance)
