"""The sandbox's per-key event streams, /v1/events and signed webhook delivery."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe
from aiohttp import web

from opskit.sandbox import Sandbox
from tests.fixtures_sandbox import make_key

Client = Callable[[str], stripe.StripeClient]


def _card(client: stripe.StripeClient, customer: str) -> str:
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": customer})
    client.v1.customers.update(
        customer, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    return pm.id


def _types(sandbox: Sandbox, key: str) -> list[str]:
    return [e["type"] for e in reversed(sandbox.events(key))]


def test_each_write_emits_its_event_into_its_own_key_only(
    sandbox: Sandbox, stripe_client: Client
) -> None:
    key, other = make_key("evA"), make_key("evB")
    c = stripe_client(key)
    cus = c.v1.customers.create(params={"email": "a@example.com"})
    c.v1.customers.update(cus.id, params={"name": "Ann"})
    pm = _card(c, cus.id)
    price = c.v1.prices.create(
        params={
            "unit_amount": 500,
            "currency": "eur",
            "recurring": {"interval": "month"},
            "product_data": {"name": "Plan"},
        }
    )
    sub = c.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}]})
    c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    c.v1.subscriptions.cancel(sub.id)
    pi = c.v1.payment_intents.create(
        params={
            "amount": 1200,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm,
            "confirm": True,
        }
    )
    c.v1.customers.delete(cus.id)

    types = _types(sandbox, key)
    for wanted in (
        "customer.created",
        "customer.updated",
        "price.created",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "payment_intent.created",
        "payment_intent.succeeded",
        "charge.succeeded",
        "customer.deleted",
    ):
        assert wanted in types, (wanted, types)
    assert types[0] == "customer.created" and types[-1] == "customer.deleted"
    assert sandbox.events(other) == []  # nothing crosses keys

    events = sandbox.events(key)
    by_type = {e["type"]: e for e in reversed(events)}  # last of each type
    upd = next(e for e in reversed(events) if e["type"] == "customer.updated")
    assert upd["data"]["previous_attributes"] == {"name": None}
    assert upd["data"]["object"]["name"] == "Ann" and upd["data"]["object"]["id"] == cus.id
    sub_upd = by_type["customer.subscription.updated"]
    assert sub_upd["data"]["previous_attributes"]["cancel_at_period_end"] is False
    assert by_type["customer.subscription.deleted"]["data"]["object"]["status"] == "canceled"
    assert by_type["payment_intent.succeeded"]["data"]["object"]["id"] == pi.id
    for e in events:
        assert e["object"] == "event" and e["id"].startswith("evt_") and e["livemode"] is False
        assert isinstance(e["created"], int) and e["request"]["id"].startswith("req_")
        assert "account" not in e  # a shop's own account: events name no account


def test_events_list_filters_and_pages_newest_first(
    sandbox: Sandbox, stripe_client: Client
) -> None:
    key = make_key("evlist")
    c = stripe_client(key)
    sandbox.event_clock(key, pin=1_800_000_000)
    first = [c.v1.customers.create(params={"email": f"a{i}@example.com"}).id for i in range(5)]
    sandbox.event_clock(key, pin=1_800_000_100)
    for cid in first[:3]:
        c.v1.customers.update(cid, params={"name": "x"})
    c.v1.customers.delete(first[4])
    sandbox.event_clock(key, unpin=True)

    all_events = list(c.v1.events.list(params={"limit": 2}).auto_paging_iter())
    assert len(all_events) == 9 and len({e.id for e in all_events}) == 9
    created = [e.created for e in all_events]
    assert created == sorted(created, reverse=True)

    late = c.v1.events.list(params={"created": {"gt": 1_800_000_000}, "limit": 100})
    assert sorted(e.type for e in late.data) == ["customer.deleted"] + ["customer.updated"] * 3
    early = c.v1.events.list(params={"created": {"lte": 1_800_000_000}, "limit": 100})
    assert {e.type for e in early.data} == {"customer.created"} and len(early.data) == 5

    two = c.v1.events.list(params={"types": ["customer.deleted", "customer.created"], "limit": 100})
    assert sorted({e.type for e in two.data}) == ["customer.created", "customer.deleted"]
    assert len(two.data) == 6
    star = c.v1.events.list(params={"type": "customer.*", "limit": 100})
    assert len(star.data) == 9
    assert c.v1.events.retrieve(all_events[0].id).id == all_events[0].id

    with pytest.raises(stripe.InvalidRequestError):
        c.v1.events.list(params={"types": [f"t{i}" for i in range(21)]})
    with pytest.raises(stripe.InvalidRequestError):
        c.v1.events.retrieve("evt_nope")


def test_same_second_bursts_scrambled_still_page_completely(
    sandbox: Sandbox, stripe_client: Client
) -> None:
    key = make_key("evburst")
    c = stripe_client(key)
    sandbox.event_clock(key, pin=1_800_000_500, scrambled=True)
    ids = [c.v1.customers.create(params={"email": f"b{i}@example.com"}).id for i in range(30)]
    sandbox.event_clock(key, unpin=True)
    listed = list(c.v1.events.list(params={"limit": 7}).auto_paging_iter())
    assert sorted(e.data.object.id for e in listed) == sorted(ids)
    assert {e.created for e in listed} == {1_800_000_500}
    # Newest-first within one second follows no insertion order once scrambled.
    assert [e.data.object.id for e in reversed(listed)] != ids


def test_events_older_than_thirty_days_are_gone(sandbox: Sandbox, stripe_client: Client) -> None:
    key = make_key("evold")
    c = stripe_client(key)
    c.v1.customers.create(params={"email": "old@example.com"})
    assert len(sandbox.events(key)) == 1
    sandbox.event_clock(key, offset=31 * 86400)
    c.v1.customers.create(params={"email": "new@example.com"})
    listed = c.v1.events.list(params={"limit": 100}).data
    assert [e.data.object.email for e in listed] == ["new@example.com"]


# ---------------------------------------------------------------- webhooks


class Receiver:
    """A loopback aiohttp server recording what it receives."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._runner: web.AppRunner | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def hook(request: web.Request) -> web.Response:
            self.got.append((dict(request.headers), await request.read()))
            return web.Response(status=self.status)

        async def setup() -> None:
            app = web.Application()
            app.router.add_post("/hook", hook)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}/hook"

        self.loop.run_until_complete(setup())
        ready.set()
        self.loop.run_forever()
        assert self._runner is not None
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_webhooks_are_signed_per_key_and_verify_with_stripe_python(
    sandbox: Sandbox, stripe_client: Client, receiver: Receiver
) -> None:
    key, other = make_key("whA"), make_key("whB")
    secret = "whsec_" + "a" * 32
    sandbox.add_webhook_endpoint(key, receiver.url, secret)
    c = stripe_client(key)
    cus = c.v1.customers.create(params={"email": "w@example.com"})
    stripe_client(other).v1.customers.create(params={"email": "other@example.com"})
    _wait_for(lambda: len(receiver.got) == 1)
    headers, body = receiver.got[0]
    event = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
    assert event.type == "customer.created" and event.data.object.id == cus.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], "whsec_other")
    assert sandbox.pending_webhooks(key) == []
    assert [a.status for a in sandbox.webhook_attempts(key)] == [200]


def test_held_deliveries_come_late_reordered_duplicated_or_expired(
    sandbox: Sandbox, stripe_client: Client, receiver: Receiver
) -> None:
    key = make_key("whHold")
    secret = "whsec_" + "b" * 32
    sandbox.add_webhook_endpoint(key, receiver.url, secret, hold=True, events=["customer.updated"])
    c = stripe_client(key)
    cus = c.v1.customers.create(params={"email": "h@example.com"})
    for name in ("one", "two", "three"):
        c.v1.customers.update(cus.id, params={"name": name})
    assert receiver.got == [] and len(sandbox.pending_webhooks(key)) == 3
    attempts = sandbox.deliver_webhooks(key, order="reverse", duplicate=True)
    assert [a.status for a in attempts] == [200] * 6
    names = [e["data"]["object"]["name"] for e in receiver.events()]
    assert names == ["three", "three", "two", "two", "one", "one"]

    c.v1.customers.update(cus.id, params={"name": "four"})
    old = int(time.time()) - 3600
    sandbox.deliver_webhooks(key, timestamp=old)
    headers, body = receiver.got[-1]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)  # too old


def test_failed_deliveries_stay_pending_and_rotation_signs_with_both(
    sandbox: Sandbox, stripe_client: Client
) -> None:
    key = make_key("whFail")
    r = Receiver(status=500)
    try:
        old, new = "whsec_" + "c" * 32, "whsec_" + "d" * 32
        ep = sandbox.add_webhook_endpoint(key, r.url, old)
        c = stripe_client(key)
        c.v1.customers.create(params={"email": "f@example.com"})
        _wait_for(lambda: len(r.got) == 1)
        _wait_for(lambda: len(sandbox.webhook_attempts(key)) == 1)
        assert len(sandbox.pending_webhooks(key)) == 1  # a 500 is not a delivery
        r.status = 200
        sandbox.roll_webhook_secret(key, ep, new)
        sandbox.deliver_webhooks(key)
        assert sandbox.pending_webhooks(key) == []
        headers, body = r.got[-1]
        assert headers["Stripe-Signature"].count("v1=") == 2
        for secret in (old, new):
            stripe.Webhook.construct_event(body, headers["Stripe-Signature"], secret)
    finally:
        r.stop()
    with pytest.raises(ValueError, match="127.0.0.1"):
        sandbox.add_webhook_endpoint(key, "http://example.com/hook", "whsec_x")
