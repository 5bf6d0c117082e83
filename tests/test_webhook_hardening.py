"""The webhook receiver and ops.changes() against hostile input (the attack trial's findings),
all against the sandbox and a receiver on 127.0.0.1, on shop-backend's tables (UUID shop ids).

- unauthenticated requests cannot fill the database (bounded storage of rejected deliveries);
- a signed body nested very deep, or over the size limit, is a stored rejection, not a 500;
- signed events are sanity-checked before they are applied (envelope, livemode, shape, times),
  and what can never be applied is rejected once, not failed and replayed forever;
- one odd stored event is a flagged row of ops.changes(), never its end;
- receive() takes str/int/UUID shop ids and str/bytes bodies; serve refuses a bad port;
- ops.changes(since=...) names the forms it accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import stripe
from typer.testing import CliRunner

import opskit
from opskit import webhooks
from opskit.backend.state import state_for
from opskit.common.exceptions import InputError
from opskit.common.times import since_time
from opskit.core import event_checks, frames
from opskit.core.events import UNREADABLE, finding_rows
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from opskit.writes.refresh import process_event
from tests import shopbackend
from tests.conftest import fresh_sqlite_url
from tests.fixtures_sandbox import make_key
from tests.test_refresh_snapshots import SnapWorld, connect, same_reports
from tests.test_webhooks import Running, _wait

SECRET = "whsec_" + "h" * 32


@pytest.fixture
def rx(sandbox: Sandbox, tmp_path: Path) -> Iterator[tuple[SnapWorld, opskit.Ops, Running]]:
    w = SnapWorld(sandbox, fresh_sqlite_url(tmp_path), n_shops=1, seed=5)
    w.customer(1)
    w.customer(1)
    ops = connect(w)
    ops.refresh(progress=False)
    webhooks.add_secret(ops, w.shops[1], SECRET)  # a uuid.UUID id
    running = Running(ops)
    try:
        yield w, ops, running
    finally:
        running.stop()


def _sign(body: bytes, secret: str = SECRET, t: int | None = None) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=t
    )
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def _rows(ops: opskit.Ops) -> list[dict[str, Any]]:
    return state_for(ops.ctx.db).delivery_rows()


def _db_file(ops: opskit.Ops) -> Path:
    return Path(str(ops.ctx.db.own_engine.url.database))


def _event(w: SnapWorld, etype: str, obj: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": etype,
        "created": int(time.time()),
        "livemode": False,
        "api_version": "2026-10-28",
        "data": {"object": obj},
        **over,
    }


def _customer(w: SnapWorld, n: int = 0) -> dict[str, Any]:
    return w.clients[1].v1.customers.retrieve(w.live[1][n]).to_dict()


# -- 5: storage for unauthenticated requests is bounded --------------------------------------


def test_unauthenticated_bodies_are_stored_bounded(rx) -> None:
    w, ops, r = rx
    db = _db_file(ops)
    before = db.stat().st_size
    big = os.urandom(512 * 1024).hex().encode()[: 1024 * 1024 - 100]  # just under 1 MiB
    junk = {"X-Junk": "j" * 4000, "Content-Type": "application/octet-stream"}
    answers = [r.post(f"not-a-shop-{i}", big, junk)[0] for i in range(12)]
    answers += [r.post(w.shops[1], big, {**junk, "Stripe-Signature": "t=1,v1=ab"})[0]]
    answers += [r.post(w.shops[1], big, _sign(big, "whsec_" + "f" * 32))[0]]  # forged
    assert answers == [404] * 12 + [400, 400]
    grown = db.stat().st_size - before
    assert grown < 256 * 1024, f"14 rejected 1 MiB bodies grew the database by {grown} bytes"
    rows = _rows(ops)
    assert len(rows) == 14 and {x["outcome"] for x in rows} == {"rejected"}
    digest = hashlib.sha256(big).hexdigest()
    for row in rows:
        assert bytes(row["body"]) == big[: webhooks.REJECTED_BODY_KEPT]
        assert (row["body_length"], row["body_sha256"]) == (len(big), digest)
        headers = json.loads(row["headers"])
        assert "X-Junk" not in headers and len(row["headers"]) < 2048
    assert "Stripe-Signature" in json.loads(rows[-1]["headers"])  # kept, to see what was sent
    # A delivery whose signature verified keeps its whole body.
    cus = _customer(w)
    body = json.dumps(_event(w, "customer.updated", cus)).encode()
    assert r.post(w.shops[1], body, _sign(body))[0] == 200
    _wait(lambda: _rows(ops)[-1]["outcome"] == "processed")
    assert bytes(_rows(ops)[-1]["body"]) == body and _rows(ops)[-1]["body_length"] == len(body)
    frame = webhooks.deliveries(ops)
    assert frame["body_length"].dtype == "Int64" and frame["body_length"].notna().all()


# -- 6: deep nesting and oversized bodies -----------------------------------------------------


@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")  # aiohttp's client
def test_signed_deep_and_oversized_bodies_are_stored_rejections(rx) -> None:
    w, ops, r = rx
    nested = "[" * 100_000 + "]" * 100_000
    deep = (
        '{"id":"evt_deep","object":"event","type":"customer.updated",'
        f'"created":{int(time.time())},"livemode":false,"data":{{"object":{nested}}}}}'
    ).encode()
    status, answer = r.post(w.shops[1], deep, _sign(deep))
    assert status == 400 and "nested deeper" in answer["error"]
    row = _rows(ops)[-1]
    assert (row["outcome"], row["status_code"]) == ("rejected", 400)
    assert bytes(row["body"]) == deep  # signed: kept whole, stored before it was parsed
    # Over the 1 MiB limit, signed or not: 413, stored bounded (length and prefix).
    huge = json.dumps(_event(w, "customer.updated", {**_customer(w), "x": "A" * 1_200_000}))
    status, answer = r.post(w.shops[1], huge.encode(), _sign(huge.encode()))
    assert status == 413 and "limit" in answer["error"]
    row = _rows(ops)[-1]
    assert (row["outcome"], row["status_code"]) == ("rejected", 413)
    assert row["body_length"] == len(huge) and len(bytes(row["body"])) <= 2048
    assert ops.changes().empty  # nothing applied
    assert webhooks.replay(ops).empty  # nothing to replay either


# -- 9: signed events are sanity-checked before they are applied ------------------------------


def test_signed_events_are_checked_before_they_are_applied(rx) -> None:
    w, ops, r = rx
    cus = _customer(w)
    now = int(time.time())
    bad = {
        "live event, test shop": _event(w, "customer.updated", {**cus, "livemode": True},
                                        livemode=True),
        "no customer": _event(w, "customer.subscription.updated", {
            "id": "sub_fake1", "object": "subscription", "status": "active", "items": "nope"}),
        "customer id 5": _event(w, "customer.subscription.created", {
            "id": "sub_fake2", "object": "subscription", "status": "active", "customer": 5,
            "items": {"object": "list", "data": []}}),
        "customer without id": _event(w, "customer.updated", {}),
        "created 1e30": _event(w, "customer.updated", cus, created=1e30),
        "created NaN": _event(w, "customer.updated", cus, created=float("nan")),
        "created text": _event(w, "customer.updated", cus, created="notanint"),
        "not an evt_ id": _event(w, "customer.updated", cus, id="x1"),
        "object is a text": _event(w, "customer.updated", "str"),  # type: ignore[arg-type]
    }  # fmt: skip
    for name, event in bad.items():
        body = json.dumps(event).encode()
        status, answer = r.post(w.shops[1], body, _sign(body))
        assert status == 400, (name, answer)
    assert (
        "live-mode event" in r.post(w.shops[1], *_signed(bad["live event, test shop"]))[1]["error"]
    )
    rows = _rows(ops)
    assert {x["outcome"] for x in rows} == {"rejected"} and all(x["reason"] for x in rows)
    # A created far in the future is not trusted as a version: the object is re-read.
    future = _event(w, "customer.updated", {**cus, "email": "future@x.io"}, created=now + 10**8)
    assert r.post(w.shops[1], *_signed(future))[0] == 200
    _wait(lambda: _rows(ops)[-1]["outcome"] == "processed")
    seen = ops.changes()
    row = seen[seen["event_id"] == future["id"]].iloc[0]
    assert row["outcome"] == "refetch" and "in the future" in row["outcome_detail"]
    assert row["created_at"] <= pd.Timestamp.now(tz="UTC")  # recorded at its receipt
    # ... so a real later change still applies (it used to read "stale").
    time.sleep(1.1)  # not the second of the re-read (that would be a tie: re-read again)
    w.clients[1].v1.customers.update(cus["id"], params={"email": "real-later@example.com"})
    real = next(
        e for e in w.sb.events(w.keys[1]) if e["type"] == "customer.updated"
    )  # newest first
    assert r.post(w.shops[1], *_signed(real))[0] == 200
    _wait(lambda: _rows(ops)[-1]["outcome"] == "processed")
    seen = ops.changes()
    assert seen.loc[seen["event_id"] == real["id"], "outcome"].item() == "applied"
    local = ops.reconcile(progress=False, source="refreshed")["customers"]
    assert local.loc[local["stripe_customer_id"] == cus["id"], "stripe_email"].item() == (
        "real-later@example.com"
    )
    same_reports(ops)  # the fabricated objects are nowhere in the refreshed report
    # Deliveries stored failed by an older receiver (no checks) are rejected on replay,
    # so `opskit webhooks replay` does not exit 2 forever.
    state = state_for(ops.ctx.db)
    for event in (bad["created 1e30"], bad["created NaN"]):
        state.record_delivery(
            shop_id=str(w.shops[1]), path="/old", headers={}, body=json.dumps(event).encode(),
            outcome="failed", reason="OverflowError",
        )  # fmt: skip
    again = webhooks.replay(ops)
    assert list(again["outcome"]) == ["rejected", "rejected"]
    assert webhooks.replay(ops).empty
    out = CliRunner().invoke(
        app, ["webhooks", "replay", "--database-url", w.url, "--stripe-api-base", w.sb.url]
    )
    assert out.exit_code == 0, out.output


def _signed(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, _sign(body)


def test_the_sandboxs_own_events_pass_the_checks(sandbox: Sandbox) -> None:
    """The checks never refuse what Stripe (here the sandbox) really sends."""
    key = make_key("hardening")
    c = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    cus = c.v1.customers.create(params={"email": "a@example.com"})
    c.v1.customers.update(cus.id, params={"name": "Ann"})
    pm = c.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    c.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    c.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
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
        params={"amount": 1200, "currency": "eur", "customer": cus.id, "payment_method": pm.id,
                "confirm": True}
    )  # fmt: skip
    c.v1.refunds.create(params={"payment_intent": pi.id, "amount": 200})
    c.v1.customers.delete(cus.id)
    events = sandbox.events(key)
    checked = {e["type"] for e in events}
    assert {"customer.subscription.created", "customer.deleted", "payment_intent.succeeded"} <= (
        checked
    )
    for e in events:
        body = json.dumps(e).encode()
        event = event_checks.parse_event(body)
        got = event_checks.check_event(event, mode="test", received_at=int(time.time()))
        assert got.future is None and got.event == e, e["type"]


# -- 7: one odd stored event never breaks ops.changes() ---------------------------------------


def test_an_odd_stored_event_is_a_row_of_changes_not_its_end(rx) -> None:
    w, ops, r = rx
    shop = ops.ctx.db.shop_objects()[str(w.shops[1])]
    now = int(time.time())
    empty = {"id": "evt_noid", "object": "event", "type": "customer.updated", "created": now,
             "livemode": False, "data": {"object": {}}}  # fmt: skip
    # Such rows exist (stored by an older receiver, or read by a refresh)...
    assert process_event(ops.ctx, shop, empty, source="webhook")[0] == "ignored"
    first = ops.changes(since=datetime.now(UTC) - timedelta(hours=1))  # was KeyError
    assert first.loc[first["event_id"] == "evt_noid", "outcome"].item() == "ignored"
    weird = {"id": "evt_weird", "type": "charge.refunded", "created": now, "data": ["x"]}
    process_event(ops.ctx, shop, weird, source="webhook")
    state = state_for(ops.ctx.db)
    with state.begin() as conn:  # a stored time pandas cannot hold
        conn.execute(
            state.events.update()
            .where(state.events.c.event_id == "evt_weird")
            .values(created=10**15)
        )
    seen = ops.changes(since=datetime.now(UTC) - timedelta(hours=1))
    noid = seen[seen["event_id"] == "evt_noid"].iloc[0]
    assert (noid["outcome"], noid["detail"]) == ("ignored", "the event names no object")
    odd = seen[seen["event_id"] == "evt_weird"].iloc[0]
    assert odd["status"] == UNREADABLE and "could not be read" in odd["detail"]
    assert pd.isna(odd["created_at"])
    assert list(seen.columns) == list(frames.CHANGES)
    # ...though the receiver now refuses such a delivery.
    status, answer = r.post(w.shops[1], *_signed(empty))
    assert status == 400 and "not a customer" in answer["error"]
    # The pure rule too: any processed item is a row or nothing, never an exception.
    rows = finding_rows(
        [
            {"shop_id": "s", "event": {"id": "evt_1", "type": "charge.refunded", "data": 5}},
            {"shop_id": "s", "event": {"id": "evt_2", "type": "customer.deleted"}},
            {"shop_id": "s", "event": "not a dict"},
        ],
        None,
        None,
        {},
    )
    got = dict(zip(rows["event_id"], rows["status"].fillna("-"), strict=True))
    assert got == {"evt_1": UNREADABLE, "evt_2": "-", "None": UNREADABLE}


# -- 13 and 12: the importable API and the CLI take what the README says ----------------------


def test_receive_takes_str_int_uuid_ids_and_str_bodies(rx) -> None:
    w, ops, _ = rx
    sid = w.shops[1]
    cus = _customer(w, 1)
    for n, shop_id in enumerate((sid, str(sid).upper(), f" {sid} ", sid)):
        event = _event(w, "customer.updated", {**cus, "name": f"N{n}"}, created=int(time.time()))
        text = json.dumps(event)
        headers: Any = _sign(text.encode())
        if n == 3:  # ASGI's raw header pairs, and a bytes body
            headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        d = webhooks.receive(ops, shop_id, text if n < 3 else text.encode(), headers)
        assert (d.status, d.body) == (200, {"received": True}), shop_id
        webhooks.process(ops, d)
    assert [x["outcome"] for x in _rows(ops)] == ["processed"] * 4
    assert webhooks.receive(ops, 12345, b"{}", {}).status == 404  # an int id: unknown here
    assert webhooks.receive(ops, uuid.uuid4(), "{}", {}).status == 404
    with pytest.raises(TypeError):
        webhooks.receive(ops, 1.5, b"{}", {})  # type: ignore[arg-type]
    assert len(webhooks.deliveries(ops, shop_ids=[sid])) == 4  # a UUID filter
    assert len(webhooks.list_secrets(ops)) == 1


def test_serve_refuses_a_port_out_of_range_before_listening(tmp_path: Path) -> None:
    url = fresh_sqlite_url(tmp_path)
    shopbackend.create(url)  # a database it could serve
    for port in ("99999", "-1"):
        out = CliRunner().invoke(
            app, ["webhooks", "serve", "--port", port, "--duration", "1", "--database-url", url]
        )
        assert out.exit_code == 3, out.output
        assert "not a TCP port" in out.output and "listening" not in out.output
    with pytest.raises(InputError):
        webhooks.serve(None, port=70000)  # type: ignore[arg-type]


# -- ops.changes(since=...) --------------------------------------------------------------------


def test_changes_since_names_the_forms_it_accepts(rx) -> None:
    _, ops, _ = rx
    with pytest.raises(InputError) as err:
        ops.changes(since="yesterday")
    assert "24h" in str(err.value.guidance) and "2026-11-28" in str(err.value.guidance)
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert since_time("24h", now=now) == now - timedelta(hours=24)
    assert since_time("7d", now=now) == now - timedelta(days=7)
    assert since_time("2 weeks", now=now) == now - timedelta(weeks=2)
    assert since_time(timedelta(minutes=5), now=now) == now - timedelta(minutes=5)
    assert since_time("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
    assert since_time("2026-11-28T06:00+01:00") == datetime(2026, 11, 28, 5, tzinfo=UTC)
    assert since_time(pd.Timestamp("2026-11-28 06:00")) == datetime(2026, 11, 28, 6, tzinfo=UTC)
    for bad in ("yesterday", "", "-3h", 5, 1.5):
        with pytest.raises(InputError):
            since_time(bad)
    assert len(ops.changes(since="1h")) == len(ops.changes())


def test_the_checks_use_the_schemas_enums_and_types() -> None:
    """The statuses, intervals and nullable text fields checked are the spec's (excerpt)."""
    spec = json.loads((Path(__file__).parent / "conformance" / "spec3-excerpt.json").read_text())
    schemas = spec["schemas"]
    sub = schemas["subscription"]["properties"]
    assert set(event_checks._SUBSCRIPTION_STATUSES) == set(sub["status"]["enum"])
    assert set(event_checks._INTERVALS) == set(
        schemas["recurring"]["properties"]["interval"]["enum"]
    )
    customer = schemas["customer"]["properties"]
    for field in ("email", "name", "description", "phone"):
        assert customer[field] == {"type": "string", "nullable": True}, field
    assert sub["cancel_at_period_end"]["type"] == "boolean"
    assert {"customer", "items", "status", "id", "livemode"} <= set(
        schemas["subscription"]["required"]
    )
