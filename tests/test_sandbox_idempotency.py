"""Stripe's idempotency semantics, write faults, declines and error shapes in the sandbox.

Through stripe-python 16's real client (and raw HTTP where the client hides headers).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from opskit.sandbox import Sandbox

Client = Callable[[str], stripe.StripeClient]


def _post(url: str, key: str, data: str, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(
        url,
        data=data.encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


def _customers(c: stripe.StripeClient) -> list[str]:
    return [x.id for x in c.v1.customers.list(params={"limit": 100}).data]


def test_500_after_the_write_is_saved_and_replayed(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    sandbox.inject_write_fault(fresh_key, "error_after")
    opts: Any = {"idempotency_key": "create-1"}
    with pytest.raises(stripe.APIError) as first:
        c.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    [made] = _customers(c)  # the write happened although the client saw a 500
    with pytest.raises(stripe.APIError) as again:
        c.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    assert again.value.http_status == 500
    assert again.value.headers["Idempotent-Replayed"] == "true"
    assert again.value.headers["Original-Request"] == first.value.request_id
    assert _customers(c) == [made]
    # Another key executes again.
    c.v1.customers.create(params={"email": "a@example.com"}, options={"idempotency_key": "k2"})
    assert len(_customers(c)) == 2


def test_500_before_the_write_is_saved_and_creates_nothing(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    sandbox.inject_write_fault(fresh_key, "error_before")
    opts: Any = {"idempotency_key": "create-2"}
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            c.v1.customers.create(params={"email": "b@example.com"}, options=opts)
    assert _customers(c) == []


def test_saved_500_tells_the_client_not_to_retry(sandbox: Sandbox, fresh_key: str) -> None:
    """Stripe-Should-Retry: false on a saved 500, so stripe-python's own retries stop."""
    c = stripe.StripeClient(fresh_key, base_addresses={"api": sandbox.url}, max_network_retries=3)
    sandbox.inject_write_fault(fresh_key, "error_after")
    with pytest.raises(stripe.APIError) as e:
        c.v1.customers.create(params={"email": "r@example.com"})
    assert e.value.headers["Stripe-Should-Retry"] == "false"
    posts = [r for r in sandbox.requests(fresh_key) if r.method == "POST"]
    assert [r.status for r in posts] == [500]
    # A 500 refused before executing (not saved) is retried by the client.
    sandbox.configure(key=fresh_key, fail_next=1)
    assert c.v1.customers.create(params={"email": "s@example.com"}).id
    posts = [r for r in sandbox.requests(fresh_key) if r.method == "POST"]
    assert [r.status for r in posts] == [500, 500, 200]


def test_dropped_connection_after_the_write_replays_the_saved_answer(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    sandbox.inject_write_fault(fresh_key, "drop_after")
    opts: Any = {"idempotency_key": "create-3"}
    with pytest.raises(stripe.APIConnectionError):
        c.v1.customers.create(params={"email": "d@example.com"}, options=opts)
    [made] = _customers(c)
    again = c.v1.customers.create(params={"email": "d@example.com"}, options=opts)
    assert again.id == made and _customers(c) == [made]


def test_write_fault_control_endpoint(sandbox: Sandbox, fresh_key: str) -> None:
    body = json.dumps({"key": fresh_key, "kind": "error_before", "count": 2}).encode()
    req = urllib.request.Request(
        sandbox.url + "/_sandbox/write_faults",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read()) == {"pending": 2}
    status, _, _ = _post(sandbox.url + "/v1/customers", fresh_key, "email=x%40example.com")
    assert status == 500
    sandbox.reset_config()
    status, _, _ = _post(sandbox.url + "/v1/customers", fresh_key, "email=x%40example.com")
    assert status == 200
    with pytest.raises(ValueError):
        sandbox.inject_write_fault(fresh_key, "explode")


def test_same_key_other_params_or_endpoint_is_an_idempotency_error(
    stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    opts: Any = {"idempotency_key": "k"}
    c.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        c.v1.customers.create(params={"email": "b@example.com"}, options=opts)
    with pytest.raises(stripe.IdempotencyError):
        c.v1.products.create(params={"name": "a@example.com"}, options=opts)


def test_validation_errors_are_not_saved(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    opts: Any = {"idempotency_key": "v"}
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter"):
        c.v1.subscriptions.create(params={"customer": "cus_x", "plan": "p"}, options=opts)  # type: ignore[typeddict-unknown-key]
    # Nothing executed, nothing saved: the key is free for the corrected request.
    assert c.v1.customers.create(params={"email": "v@example.com"}, options=opts).id


def test_saved_results_expire_after_24_hours(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    c = stripe_client(fresh_key)
    opts: Any = {"idempotency_key": "day"}
    first = c.v1.customers.create(params={"email": "a@example.com"}, options=opts)
    assert c.v1.customers.create(params={"email": "a@example.com"}, options=opts).id == first.id
    sandbox.pipeline.store_for(fresh_key).idempotency.age(23 * 3600)
    assert c.v1.customers.create(params={"email": "a@example.com"}, options=opts).id == first.id
    sandbox.pipeline.store_for(fresh_key).idempotency.age(3600)
    assert c.v1.customers.create(params={"email": "a@example.com"}, options=opts).id != first.id


def test_concurrent_use_of_one_key_is_409(sandbox: Sandbox, fresh_key: str) -> None:
    sandbox.configure(key=fresh_key, latency=0.4)
    results: list[int] = []

    def send() -> None:
        status, headers, body = _post(
            sandbox.url + "/v1/customers",
            fresh_key,
            "email=c%40example.com",
            {"Idempotency-Key": "busy"},
        )
        results.append(status)
        if status == 409:
            assert body["error"]["code"] == "idempotency_key_in_use"
            assert headers["Stripe-Should-Retry"] == "true"

    threads = [threading.Thread(target=send) for _ in range(2)]
    threads[0].start()
    threading.Event().wait(0.1)
    threads[1].start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]
    # Once the first finished, the same key replays its result.
    status, headers, _ = _post(
        sandbox.url + "/v1/customers",
        fresh_key,
        "email=c%40example.com",
        {"Idempotency-Key": "busy"},
    )
    assert status == 200 and headers["Idempotent-Replayed"] == "true"


def test_overlong_idempotency_key_is_refused(sandbox: Sandbox, fresh_key: str) -> None:
    status, _, body = _post(
        sandbox.url + "/v1/customers", fresh_key, "email=x", {"Idempotency-Key": "k" * 256}
    )
    assert status == 400 and "255" in body["error"]["message"]


def test_decline_card_declines_with_payment_intent(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    card = {"number": "4000000000000002", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
    pm = c.v1.payment_methods.create(params={"type": "card", "card": card})
    with pytest.raises(stripe.CardError) as e:
        c.v1.payment_intents.create(
            params={"amount": 500, "currency": "eur", "payment_method": pm.id, "confirm": True}
        )
    err = e.value.error
    assert err is not None
    assert e.value.code == "card_declined" and err.decline_code == "generic_decline"
    assert err.payment_intent is not None
    pi = c.v1.payment_intents.retrieve(err.payment_intent.id)
    assert pi.status == "requires_payment_method" and pi.amount == 500
    assert err.doc_url == "https://stripe.com/docs/error-codes/card-declined"
    assert f"/test/logs/{e.value.request_id}?t=" in err.request_log_url
    assert err.payment_method is not None and err.payment_method.id == pm.id


def test_every_error_body_has_a_request_log_url(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    with pytest.raises(stripe.InvalidRequestError) as e:
        c.v1.customers.retrieve("cus_missing")
    err = e.value.error
    assert err is not None and err.code == "resource_missing"
    assert err.doc_url == "https://stripe.com/docs/error-codes/resource-missing"
    assert e.value.request_id in err.request_log_url
