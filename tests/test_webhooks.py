"""The webhook receiver against the sandbox's signed deliveries, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import stripe
from aiohttp import ClientSession, web

import opskit
from opskit import webhooks
from opskit.backend.db import create_reference_tables
from opskit.backend.state import state_for
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.test_refresh import World, _assert_same_reports, connect

SECRET1 = "whsec_" + "1" * 32
SECRET2 = "whsec_" + "2" * 32


class Running:
    """The receiver app served on a loopback port from a thread of its own."""

    def __init__(self, ops: opskit.Ops, tolerance: int = 300) -> None:
        self.loop = asyncio.new_event_loop()
        self.base = ""
        ready = threading.Event()
        self._runner: web.AppRunner | None = None

        async def start() -> None:
            self._runner = web.AppRunner(webhooks.make_app(ops, tolerance=tolerance))
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.base = f"http://127.0.0.1:{port}/stripe/webhook"

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()
            assert self._runner is not None
            self.loop.run_until_complete(self._runner.cleanup())
            self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(20)

    def url(self, shop_id: object) -> str:
        return f"{self.base}/{shop_id}"

    def post(self, shop_id: object, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        async def go() -> tuple[int, dict]:
            async with (
                ClientSession() as s,
                s.post(self.url(shop_id), data=body, headers=headers) as r,
            ):
                return r.status, await r.json()

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(20)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)


@pytest.fixture
def setup(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[World, opskit.Ops, Running]]:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    world = World(sandbox, url, n_shops=2, seed=3)
    world.new_customer(1)
    world.new_customer(2)
    ops = connect(world)
    ops.refresh(progress=False)  # the starting copy; webhooks keep it current from here
    webhooks.add_secret(ops, 1, SECRET1)
    webhooks.add_secret(ops, 2, SECRET2)
    running = Running(ops)
    try:
        yield world, ops, running
    finally:
        running.stop()


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _outcomes(ops: opskit.Ops) -> list[str]:
    return list(state_for(ops.ctx.db).deliveries_frame()["outcome"])


def _sign(body: bytes, secret: str, t: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=t)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def test_deliveries_keep_the_copy_current_and_are_stored(setup) -> None:
    world, ops, rx = setup
    world.sb.add_webhook_endpoint(world.keys[1], rx.url(1), SECRET1)
    c = world.clients[1]
    cid = world.customers[1][0]
    c.v1.customers.update(cid, params={"email": "hooked@example.com"})
    world.new_customer(1, link=False)  # an orphan, created through the API
    _wait(lambda: _outcomes(ops).count("processed") == 2)
    _assert_same_reports(ops)
    seen = ops.changes()
    hooked = seen[seen["source"] == "webhook"]
    assert {"customer.updated", "customer.created"} <= set(hooked["event_type"])
    assert set(hooked["report"].dropna()) == {"customers"}
    assert "orphan_in_stripe" in set(hooked["status"])  # findings filled on read
    # A later refresh finds the events already processed: nothing twice.
    again = ops.refresh(progress=False)
    assert not set(again.changes["event_id"]) & set(hooked["event_id"])


def test_duplicate_and_out_of_order_deliveries(setup) -> None:
    world, ops, rx = setup
    key = world.keys[1]
    world.sb.add_webhook_endpoint(key, rx.url(1), SECRET1, hold=True)
    c, cid = world.clients[1], world.customers[1][0]
    t = int(time.time())
    for i, name in enumerate(("first", "second", "third")):
        world.sb.event_clock(key, pin=t + 1 + i)  # distinct seconds, in this order
        c.v1.customers.update(cid, params={"name": name})
    world.sb.event_clock(key, unpin=True)
    world.sb.deliver_webhooks(key, order="reverse", duplicate=True)
    _wait(lambda: len([o for o in _outcomes(ops) if o != "accepted"]) == 6)
    assert sorted(_outcomes(ops)) == ["duplicate"] * 3 + ["processed"] * 3
    kinds = dict(zip(ops.changes()["event_id"], ops.changes()["outcome"], strict=True))
    # Processed as they come (in parallel): older ones arriving after a newer one are stale.
    assert "stale" in kinds.values() and set(kinds.values()) <= {"applied", "stale"}
    local = ops.reconcile(progress=False, source="refreshed")["customers"]
    assert local.loc[local["stripe_customer_id"] == cid, "stripe_name"].item() == "third"
    _assert_same_reports(ops)


def test_forged_unsigned_expired_wrong_shop_malformed_and_unknown_are_refused(setup) -> None:
    world, ops, rx = setup
    event = {
        "id": "evt_forged1",
        "object": "event",
        "type": "customer.deleted",
        "created": int(time.time()),
        "data": {"object": {"id": world.customers[1][0], "object": "customer"}},
    }
    body = json.dumps(event).encode()
    cases = {
        "forged": (1, body, _sign(body, "whsec_" + "9" * 32)),
        "unsigned": (1, body, {"Content-Type": "application/json"}),
        "expired": (1, body, _sign(body, SECRET1, t=int(time.time()) - 3600)),
        "from the future": (1, body, _sign(body, SECRET1, t=int(time.time()) + 1000)),
        "wrong shop": (2, body, _sign(body, SECRET1)),
        "malformed": (1, b"{not json", _sign(b"{not json", SECRET1)),
        "not an event": (1, b'{"id": 1}', _sign(b'{"id": 1}', SECRET1)),
        "unknown shop": (uuid.uuid4(), body, _sign(body, SECRET1)),
    }
    answers = {name: rx.post(*args) for name, args in cases.items()}
    assert {n: s for n, (s, _) in answers.items()} == {
        "forged": 400,
        "unsigned": 400,
        "expired": 400,
        "from the future": 400,
        "wrong shop": 400,
        "malformed": 400,
        "not an event": 400,
        "unknown shop": 404,
    }
    assert "outside the tolerance" in answers["expired"][1]["error"]
    assert "outside the tolerance" in answers["from the future"][1]["error"]
    assert "not JSON" in answers["malformed"][1]["error"]
    frame = state_for(ops.ctx.db).deliveries_frame()
    assert list(frame["outcome"]) == ["rejected"] * 8  # each stored, none applied
    assert ops.changes().query("source == 'webhook'").empty
    _assert_same_reports(ops)  # the customer was not "deleted" by the forgery
    # Nothing stored or answered holds a secret.
    state = state_for(ops.ctx.db)
    with state.engine.connect() as conn:
        dump = " ".join(str(r) for r in conn.execute(sa.select(state.deliveries)).all())
    assert SECRET1 not in dump and SECRET2 not in dump
    assert SECRET1 not in str(webhooks.list_secrets(ops))


def test_rotation_accepts_either_secret_while_both_are_configured(setup) -> None:
    world, ops, rx = setup
    key = world.keys[1]
    new = "whsec_" + "n" * 32
    ep = world.sb.add_webhook_endpoint(key, rx.url(1), SECRET1, hold=True)
    world.sb.roll_webhook_secret(key, ep, new)  # Stripe signs with both for a while
    webhooks.add_secret(ops, 1, new)
    assert webhooks.remove_secret(ops, 1, SECRET1) == 1  # the old one is retired here
    world.clients[1].v1.customers.update(world.customers[1][0], params={"name": "rolled"})
    attempts = world.sb.deliver_webhooks(key)
    assert [a.status for a in attempts] == [200]
    world.sb.roll_webhook_secret(key, ep, "whsec_" + "z" * 32, keep_old=False)
    world.clients[1].v1.customers.update(world.customers[1][0], params={"name": "again"})
    assert [a.status for a in world.sb.deliver_webhooks(key)][-1] == 400  # unknown secret
    listed = webhooks.list_secrets(ops)
    assert list(listed["secret"]) == ["whsec_…nnnn", "whsec_…2222"]  # shops 1 and 2


def test_a_failed_delivery_is_kept_and_replayed_later(setup) -> None:
    world, ops, rx = setup
    key = world.keys[1]
    world.sb.add_webhook_endpoint(key, rx.url(1), SECRET1, hold=True)
    state = state_for(ops.ctx.db)
    with state.begin() as conn:  # the copy was read an hour ago
        conn.execute(state.objects.update().values(version=state.objects.c.version - 3600))
    world.sb.event_clock(key, pin=int(time.time()) - 900)  # a late delivery: re-read first
    world.clients[1].v1.customers.update(world.customers[1][0], params={"name": "late"})
    world.sb.event_clock(key, unpin=True)
    world.sb.configure(key=key, fail_next=100)  # ...and that shop's Stripe is down
    try:
        assert [a.status for a in world.sb.deliver_webhooks(key)] == [200]  # answered at once
        _wait(lambda: _outcomes(ops) == ["failed"])
    finally:
        world.sb.configure(key=key, fail_next=0)
    replayed = webhooks.replay(ops)
    assert list(replayed["outcome"]) == ["processed"]
    assert _outcomes(ops) == ["processed"]
    assert webhooks.replay(ops).empty  # nothing left to replay
    _assert_same_reports(ops)


def test_receive_and_process_serve_any_web_framework(setup) -> None:
    """What a FastAPI route in the backend would call: receive, answer, then process."""
    world, ops, _ = setup
    cid = world.customers[1][0]
    world.clients[1].v1.customers.update(cid, params={"name": "framework"})
    event = next(e for e in world.sb.events(world.keys[1]) if e["type"] == "customer.updated")
    body = json.dumps(event).encode()
    delivery = webhooks.receive(ops, "1", body, _sign(body, SECRET1))
    assert (delivery.status, delivery.body) == (200, {"received": True})
    assert _outcomes(ops) == ["accepted"]  # stored before anything is applied
    webhooks.process(ops, delivery)
    assert _outcomes(ops) == ["processed"]
    again = webhooks.receive(ops, "1", body, _sign(body, SECRET1))  # Stripe retried it
    webhooks.process(ops, again)
    assert sorted(_outcomes(ops)) == ["duplicate", "processed"]
    _assert_same_reports(ops)
