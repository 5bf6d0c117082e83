"""The local Stripe sandbox, exercised through stripe-python 16's real HTTP client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from opskit.sandbox import Sandbox
from tests.fixtures_sandbox import make_key

Client = Callable[[str], stripe.StripeClient]


def _card_pm(c: stripe.StripeClient) -> Any:
    return c.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )


def _http(url: str, key: str | None = None, method: str = "GET", data: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = None
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null"), resp.headers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- isolation and auth


def test_keys_get_isolated_stores(stripe_client: Client) -> None:
    a, b = stripe_client(make_key("a")), stripe_client(make_key("b"))
    cus = a.v1.customers.create(params={"email": "x@example.com"})
    b.v1.customers.create(params={"email": "y@example.com"})
    with pytest.raises(stripe.InvalidRequestError) as exc:
        b.v1.customers.retrieve(cus.id)
    assert exc.value.http_status == 404
    assert exc.value.code == "resource_missing"
    assert f"No such customer: '{cus.id}'" in str(exc.value.user_message)
    ids_a = {c.id for c in a.v1.customers.list().data}
    ids_b = {c.id for c in b.v1.customers.list().data}
    assert ids_a == {cus.id} and len(ids_b) == 1 and not ids_a & ids_b


def test_responses_carry_request_id(sandbox: Sandbox, fresh_key: str) -> None:
    _, headers = _http(sandbox.url + "/v1/customers", fresh_key)
    assert headers["Request-Id"].startswith("req_")


@pytest.mark.parametrize(
    "bad", ["sk_live_" + "z" * 20 + "wxyz", "pk_test_abcdefgh1234", "sk_test_bad-key9876"]
)
def test_unknown_key_gets_401_with_masked_key(sandbox: Sandbox, bad: str) -> None:
    c = stripe.StripeClient(bad, base_addresses={"api": sandbox.url})
    with pytest.raises(stripe.AuthenticationError) as exc:
        c.v1.customers.list()
    msg = str(exc.value.user_message)
    assert bad not in msg and bad not in json.dumps(exc.value.json_body)
    assert msg.startswith("Invalid API Key provided: ") and msg.endswith(bad[-4:])
    assert "********" in msg


def test_listed_keys_mode() -> None:
    with Sandbox(keys=["sk_test_one", "sk_live_allowedlive1"]) as sb:
        ok = stripe.StripeClient("sk_live_allowedlive1", base_addresses={"api": sb.url})
        assert ok.v1.customers.list().data == []
        stripe.StripeClient("sk_test_one", base_addresses={"api": sb.url}).v1.customers.list()
        other = stripe.StripeClient("sk_test_two", base_addresses={"api": sb.url})
        with pytest.raises(stripe.AuthenticationError):
            other.v1.customers.list()


# ---------------------------------------------------------------- objects


def test_customer_update_delete_tombstone(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    pm = _card_pm(c)
    cus = c.v1.customers.create(
        params={
            "email": "t@example.com",
            "name": "T",
            "description": "d",
            "metadata": {"k": "v"},
            "payment_method": pm.id,
            "invoice_settings": {"default_payment_method": pm.id},
        }
    )
    upd = c.v1.customers.update(cus.id, params={"name": "T2", "metadata": {"k": "", "j": "w"}})
    assert upd.name == "T2" and upd.metadata.to_dict() == {"j": "w"}
    assert upd.invoice_settings.default_payment_method == pm.id
    deleted = c.v1.customers.delete(cus.id)
    assert deleted.deleted is True
    again = c.v1.customers.retrieve(cus.id)
    assert again.to_dict() == {"id": cus.id, "object": "customer", "deleted": True}
    assert c.v1.customers.list().data == []


def test_prices_and_subscriptions(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    prod = c.v1.products.create(params={"name": "Gold"})
    price = c.v1.prices.create(
        params={
            "unit_amount": 1500,
            "currency": "eur",
            "recurring": {"interval": "month"},
            "product": prod.id,
        }
    )
    assert price.object == "price" and price.id.startswith("price_")
    assert price.recurring.interval == "month" and price.unit_amount == 1500
    assert c.v1.prices.retrieve(price.id).product == prod.id
    assert [p.id for p in c.v1.prices.list().data] == [price.id]
    with pytest.raises(stripe.InvalidRequestError, match="No such price"):
        c.v1.prices.retrieve("price_missing")

    pm = _card_pm(c)
    cus = c.v1.customers.create(
        params={"payment_method": pm.id, "invoice_settings": {"default_payment_method": pm.id}}
    )
    sub = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id}], "metadata": {"a": "1"}}
    )
    assert sub.status == "active"
    assert sub["items"].data[0].price.id == price.id
    trial = c.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": price.id}], "trial_period_days": 7}
    )
    assert trial.status == "trialing"
    upd = c.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert upd.cancel_at_period_end is True
    canceled = c.v1.subscriptions.cancel(trial.id)
    assert canceled.status == "canceled"
    live = {s.id for s in c.v1.subscriptions.list(params={"customer": cus.id}).data}
    every = {s.id for s in c.v1.subscriptions.list(params={"status": "all"}).data}
    assert live == {sub.id} and every == {sub.id, trial.id}
    got = c.v1.subscriptions.retrieve(sub.id)
    assert got["items"].data[0].price.unit_amount == 1500


def test_payment_intents(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    pm = _card_pm(c)
    cus = c.v1.customers.create(params={"payment_method": pm.id})
    pi = c.v1.payment_intents.create(
        params={
            "amount": 1234,
            "currency": "eur",
            "customer": cus.id,
            "payment_method": pm.id,
            "confirm": True,
            "description": "order 1",
            "receipt_email": "r@example.com",
            "metadata": {"order": "1"},
        }
    )
    assert pi.status == "succeeded" and pi.description == "order 1"
    assert c.v1.payment_intents.retrieve(pi.id).amount == 1234
    listed = c.v1.payment_intents.list(params={"customer": cus.id}).data
    assert [p.id for p in listed] == [pi.id]


def test_customer_search(stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    a = c.v1.customers.create(
        params={"email": "s@example.com", "name": "Sam", "metadata": {"t": "1"}}
    )
    c.v1.customers.create(params={"email": "s@example.com", "name": "Other"})
    c.v1.customers.create(params={"email": "z@example.com", "name": "Sam"})
    res = c.v1.customers.search(params={"query": "email:'s@example.com' AND name:'Sam'"})
    assert res.object == "search_result" and [x.id for x in res.data] == [a.id]
    res = c.v1.customers.search(params={"query": "metadata['t']:'1'"})
    assert [x.id for x in res.data] == [a.id]
    res = c.v1.customers.search(params={"query": "email:'s@example.com'", "limit": 1})
    assert res.has_more is True and res.next_page
    both = list(
        c.v1.customers.search(
            params={"query": "email:'s@example.com'", "limit": 1}
        ).auto_paging_iter()
    )
    assert len(both) == 2


def test_idempotent_replay(sandbox: Sandbox, stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    opts: Any = {"idempotency_key": "order-42"}
    first = c.v1.customers.create(params={"email": "i@example.com"}, options=opts)
    second = c.v1.customers.create(params={"email": "i@example.com"}, options=opts)
    assert first.id == second.id
    assert len(c.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        c.v1.customers.create(params={"email": "other@example.com"}, options=opts)
    # Scoped per API key: another key may reuse the same idempotency key.
    other = stripe_client(make_key("o")).v1.customers.create(
        params={"email": "i@example.com"}, options=opts
    )
    assert other.id != first.id
    recs = sandbox.requests(fresh_key)
    assert [r.idempotency_key for r in recs if r.method == "POST"] == ["order-42"] * 3


# ---------------------------------------------------------------- lists


def test_lists_newest_first_with_filters_and_cursors(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    base = 1_700_000_000
    # 250 customers over 125 distinct seconds (pairs share a timestamp).
    ids = sandbox.seed(
        fresh_key,
        "customers",
        [{"email": f"u{i}@example.com", "created": base + i // 2} for i in range(250)],
    )
    newest_first = list(reversed(ids))  # ties: later insertion first
    c = stripe_client(fresh_key)
    page = c.v1.customers.list(params={"limit": 100})
    assert [x.id for x in page.data] == newest_first[:100] and page.has_more
    walked = [x.id for x in c.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    assert walked == newest_first

    flt = {"created": {"gte": base + 10, "lt": base + 60}}  # i in [20, 120)
    want = [cid for cid in newest_first if 20 <= ids.index(cid) < 120]
    got = [x.id for x in c.v1.customers.list(params={**flt, "limit": 30}).auto_paging_iter()]
    assert got == want
    # A cursor outside the filter range still counts by its own position.
    after = c.v1.customers.list(params={**flt, "limit": 5, "starting_after": ids[200]})
    assert [x.id for x in after.data] == want[:5]
    before = c.v1.customers.list(params={"limit": 3, "ending_before": ids[100]})
    assert [x.id for x in before.data] == [ids[103], ids[102], ids[101]] and before.has_more
    exact = c.v1.customers.list(params={"created": base + 5})
    assert {x.id for x in exact.data} == {ids[10], ids[11]}
    one = c.v1.customers.list(params={"email": "u7@example.com"})
    assert [x.id for x in one.data] == [ids[7]]


def test_seeded_subscriptions_list_like_created_ones(
    sandbox: Sandbox, stripe_client: Client, fresh_key: str
) -> None:
    [cus] = sandbox.seed(fresh_key, "customers", [{"email": "s@example.com"}])
    [price] = sandbox.seed(
        fresh_key,
        "prices",
        [{"unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}}],
    )
    sandbox.seed(
        fresh_key,
        "subscriptions",
        [
            {"customer": cus, "price": price, "created": 1_700_000_000},
            {"customer": cus, "price": price, "status": "canceled", "created": 1_700_000_100},
        ],
    )
    c = stripe_client(fresh_key)
    subs = c.v1.subscriptions.list(params={"customer": cus}).data
    assert len(subs) == 1 and subs[0].status == "active"
    assert subs[0]["items"].data[0].price.id == price
    assert len(c.v1.subscriptions.list(params={"status": "all"}).data) == 2
    assert c.v1.subscriptions.retrieve(subs[0].id).created == 1_700_000_000


def test_page_speed_on_100k_store(sandbox: Sandbox) -> None:
    key = make_key("big")
    t0 = time.perf_counter()
    ids = sandbox.seed(
        key,
        "customers",
        [{"email": f"b{i}@example.com", "created": 1_600_000_000 + i} for i in range(100_000)],
    )
    seeded = time.perf_counter() - t0
    url = f"{sandbox.url}/v1/customers?limit=100&starting_after={ids[50_000]}"
    _http(url, key)  # warm-up
    times = []
    for _ in range(5):
        t = time.perf_counter()
        body, _ = _http(url, key)
        times.append((time.perf_counter() - t) * 1000)
    assert [d["id"] for d in body["data"]] == ids[49_999:49_899:-1]
    print(f"\nseed 100k: {seeded:.2f} s; page of 100 at 100k: best {min(times):.1f} ms")
    assert min(times) < 100
    sandbox.clear(key)


# ---------------------------------------------------------------- behaviour injection


def test_latency_is_added_and_overlaps_across_keys(sandbox: Sandbox, stripe_client: Client) -> None:
    k1, k2 = make_key("l"), make_key("l")
    for k in (k1, k2):
        sandbox.configure(key=k, latency=0.3)
    t = time.perf_counter()
    stripe_client(k1).v1.customers.list()
    single = time.perf_counter() - t
    assert single >= 0.3
    t = time.perf_counter()
    threads = [
        threading.Thread(target=lambda k=k: stripe_client(k).v1.customers.list()) for k in (k1, k2)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    both = time.perf_counter() - t
    print(f"\nlatency 0.3 s: one request {single:.3f} s, two keys in parallel {both:.3f} s")
    assert both < 0.55


def test_pace_mode(sandbox: Sandbox, stripe_client: Client, fresh_key: str) -> None:
    sandbox.configure(key=fresh_key, rate_limit=20, rate_mode="pace")
    c = stripe_client(fresh_key)
    n = 10
    t = time.perf_counter()
    with_threads = [threading.Thread(target=c.v1.customers.list) for _ in range(n)]
    for th in with_threads:
        th.start()
    for th in with_threads:
        th.join()
    took = time.perf_counter() - t
    assert took >= (n - 1) / 20 - 0.01
    assert sandbox.request_count(fresh_key) == n
    assert all(r.status == 200 for r in sandbox.requests(fresh_key))


def test_reject_mode(sandbox: Sandbox, stripe_client: Client, fresh_key: str) -> None:
    sandbox.configure(key=fresh_key, rate_limit=3, rate_mode="reject", retry_after=1)
    c = stripe_client(fresh_key)
    for _ in range(3):
        c.v1.customers.list()
    with pytest.raises(stripe.RateLimitError) as exc:
        c.v1.customers.list()
    assert exc.value.http_status == 429
    assert exc.value.json_body is not None
    assert exc.value.json_body["error"]["code"] == "rate_limit"
    assert exc.value.headers is not None and exc.value.headers.get("Retry-After") == "1"


def test_fail_and_drop(sandbox: Sandbox, stripe_client: Client, fresh_key: str) -> None:
    c = stripe_client(fresh_key)
    sandbox.configure(key=fresh_key, fail_next=2)
    for _ in range(2):
        with pytest.raises(stripe.APIError) as exc:
            c.v1.customers.list()
        assert exc.value.http_status == 500
    c.v1.customers.list()
    sandbox.configure(key=fresh_key, drop_next=1)
    with pytest.raises(stripe.APIConnectionError):
        c.v1.customers.list()
    c.v1.customers.list()
    assert [r.status for r in sandbox.requests(fresh_key)] == [500, 500, 200, 0, 200]


def test_control_endpoint(sandbox: Sandbox, stripe_client: Client, fresh_key: str) -> None:
    cfg, _ = _http(
        sandbox.url + "/_sandbox/config", method="POST", data={"key": fresh_key, "fail_next": 1}
    )
    assert fresh_key not in json.dumps(cfg)
    c = stripe_client(fresh_key)
    with pytest.raises(stripe.APIError):
        c.v1.customers.list()
    log, _ = _http(f"{sandbox.url}/_sandbox/requests?key={fresh_key}")
    assert [r["status"] for r in log] == [500]
    assert fresh_key not in json.dumps(log)
    c.v1.customers.create()
    key2 = make_key("r")
    sandbox.configure(key=key2, latency=0.2)
    with pytest.raises(urllib.error.HTTPError):
        _http(sandbox.url + "/_sandbox/config", method="POST", data={"rate_mode": "nope"})
    before = sandbox.request_count()
    _http(sandbox.url + "/_sandbox/reset?what=config", method="POST", data={})
    assert sandbox.request_count() == before  # control calls are not logged
    t = time.perf_counter()
    stripe_client(key2).v1.customers.list()
    assert time.perf_counter() - t < 0.2


# ---------------------------------------------------------------- lifecycle


def test_stop_frees_the_port_and_is_idempotent() -> None:
    sb = Sandbox()
    url = sb.start()
    assert url == f"http://127.0.0.1:{sb.port}" and not url.endswith("/")
    sb.stop()
    sb.stop()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", sb.port))


def test_module_cli_subprocess() -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opskit.sandbox",
            "--port",
            str(port),
            "--keys",
            "sk_test_a,sk_test_b",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line == f"opskit sandbox listening on http://127.0.0.1:{port}"
            url = f"http://127.0.0.1:{port}"
            a = stripe.StripeClient("sk_test_a", base_addresses={"api": url})
            cus = a.v1.customers.create(params={"email": "cli@example.com"})
            assert [x.id for x in a.v1.customers.list().data] == [cus.id]
            found = a.v1.customers.search(params={"query": "email:'cli@example.com'"})
            assert [x.id for x in found.data] == [cus.id]
            b = stripe.StripeClient("sk_test_b", base_addresses={"api": url})
            assert b.v1.customers.list().data == []
            with pytest.raises(stripe.AuthenticationError):
                stripe.StripeClient("sk_test_c", base_addresses={"api": url}).v1.customers.list()
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "sk_test_a" not in out + err and "sk_test_b" not in out + err


def test_two_sandboxes_in_one_process_never_mix_stores(sandbox: Sandbox) -> None:
    # localstripe's store is one module global: a second Sandbox serving at the same
    # time (a demo next to a test fixture, two notebooks' panels) must not swap it
    # under the first one's handler. A tiny switch interval makes the race certain.
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    errors: list[str] = []
    created: dict[str, list[str]] = {"a": [], "b": []}
    try:
        with Sandbox() as other:
            clients = {
                "a": stripe.StripeClient(make_key("mixa"), base_addresses={"api": sandbox.url}),
                "b": stripe.StripeClient(make_key("mixb"), base_addresses={"api": other.url}),
            }

            def work(name: str) -> None:
                c = clients[name]
                for _ in range(60):
                    try:
                        cus = c.v1.customers.create(params={"email": f"{name}@example.com"})
                        created[name].append(cus.id)
                        c.v1.customers.retrieve(cus.id)
                    except stripe.StripeError as e:
                        errors.append(f"{name}: {e.user_message}")

            threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b", "a", "b")]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            listed = {
                n: sorted(
                    x.id for x in c.v1.customers.list(params={"limit": 100}).auto_paging_iter()
                )
                for n, c in clients.items()
            }
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert listed == {n: sorted(ids) for n, ids in created.items()}


def test_basic_auth_key_with_trailing_newline_is_not_accepted(sandbox: Sandbox) -> None:
    # "sk_test_x\n" is not a well-formed key (re's "$" also matches before a final
    # newline); it must not get a store of its own.
    import base64

    token = base64.b64encode(b"sk_test_basicnl1234\n:").decode()
    req = urllib.request.Request(
        sandbox.url + "/v1/customers", headers={"Authorization": f"Basic {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    exc.value.close()
    assert exc.value.code == 401
