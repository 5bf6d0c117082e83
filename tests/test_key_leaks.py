"""No raw Stripe key in anything opskit prints, logs, raises or returns.

Runs the representative Stripe operations with stripe-python's own logging at
DEBUG (its logger and its console output), then checks every captured text.
"""

from __future__ import annotations

import functools
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import stripe

from opskit import stripe_client
from opskit.common.exceptions import StripeNotConfigured, StripeRetriesExhausted
from opskit.common.models import Shop, as_shop
from opskit.common.stripe_errors import describe_error
from opskit.stripeapi.clients import (
    client_for_shop,
    configure_for_shop,
    fetch_customer,
    transport_of,
)
from tests.leakcheck import assert_no_secrets, exception_texts


@pytest.fixture
def key(fresh_key: Any) -> str:
    """A new sk_test_ key: its own isolated store in the session sandbox."""
    return str(fresh_key() if callable(fresh_key) else fresh_key)


@pytest.fixture(autouse=True)
def _restore_global(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(stripe, "api_key", None)
    yield
    stripe_client.clear_clients()


def test_checker_fails_when_a_key_is_present() -> None:
    key = f"sk_test_{uuid.uuid4().hex}"
    assert_no_secrets(["sk_test_…" + key[-4:], "nothing here"], [key])
    with pytest.raises(AssertionError, match="secret key material in text #1"):
        assert_no_secrets(["fine", f"Bearer {key}"], [key])
    with pytest.raises(AssertionError):  # a truncated key leaks too
        assert_no_secrets([key[:20]], [key])
    with pytest.raises(AssertionError):  # and so does the secret part alone
        assert_no_secrets([key[len("sk_test_") :]], [key])
    with pytest.raises(AssertionError) as info:  # the failure message does not repeat it
        assert_no_secrets([f"x {key} y"], [key])
    assert_no_secrets([str(info.value)], [key])


def test_checker_walks_exception_chains() -> None:
    key = f"sk_live_{uuid.uuid4().hex}"
    try:
        try:
            raise ValueError(f"inner {key}")
        except ValueError as inner:
            raise RuntimeError("outer, clean") from inner
    except RuntimeError as exc:
        texts = exception_texts(exc)
    with pytest.raises(AssertionError):
        assert_no_secrets(texts, [key])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_key_leaks_from_representative_operations(
    sandbox: Any,
    key: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stripe, "log", "debug")  # stripe-python also prints to stderr
    monkeypatch.setenv("OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE", "1")  # a live key to the sandbox
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="stripe")
    caplog.set_level(logging.DEBUG, logger="opskit")

    live_key = f"sk_live_{uuid.uuid4().hex}"  # the sandbox answers 401 to live keys
    pk_key = f"pk_test_{uuid.uuid4().hex}"
    odd_key = f"sk_test_{uuid.uuid4().hex}-{uuid.uuid4().hex[:6]}"  # malformed
    down_key = f"sk_test_{uuid.uuid4().hex}"
    keys = [key, live_key, pk_key, odd_key, down_key]

    returned: list[Any] = []
    raised: list[BaseException] = []

    def run(fn: Callable[[], Any]) -> None:
        try:
            returned.append(fn())
        except Exception as exc:  # every failure is part of what we inspect
            raised.append(exc)

    good = Shop(id=1, name="Good", stripe_secret_key=f"  {key} ")
    live = {"id": 2, "name": "Live", "stripe_secret_key": live_key}
    returned += [good, repr(good), str(good), as_shop(live)]

    # unusable keys
    for bad in (pk_key, odd_key, f" {pk_key}\n"):
        row = {"id": 3, "stripe_secret_key": bad}
        run(functools.partial(configure_for_shop, row))
        run(functools.partial(client_for_shop, row))
    run(lambda: configure_for_shop(None))

    # a client and what hangs off it
    client = client_for_shop(good, api_base=sandbox.url)
    returned += [client, transport_of(client), client.v1.customers]
    created = client.v1.customers.create(params={"email": "leak@example.com"})
    returned.append(created)

    # success and 404 through the backend helper
    run(lambda: fetch_customer(good, created.id, api_base=sandbox.url))
    run(lambda: fetch_customer(good, "cus_nope", api_base=sandbox.url))
    # invalid key: 401 from the server
    run(lambda: fetch_customer(live, "cus_1", api_base=sandbox.url))
    # retries exhausted: 500s, then a closed port
    sandbox.configure(key=key, fail_next=1000)
    run(lambda: client_for_shop(good, api_base=sandbox.url, max_retry_wait=0.3).v1.customers.list())
    sandbox.configure(key=key, fail_next=0)
    down = {"id": 4, "stripe_secret_key": down_key}
    down_base = f"http://127.0.0.1:{_closed_port()}"
    run(lambda: client_for_shop(down, api_base=down_base, max_retry_wait=0.2).v1.balance.retrieve())

    # the operations really happened, and were really logged
    assert len(returned) >= 8
    kinds = {type(e) for e in raised}
    assert {
        StripeNotConfigured,
        stripe.InvalidRequestError,
        stripe.AuthenticationError,
        StripeRetriesExhausted,
    } <= kinds
    assert any(r.name.startswith("stripe") for r in caplog.records)
    assert any(r.name == "opskit.stripeapi.transport" for r in caplog.records)
    auth = next(e for e in raised if isinstance(e, stripe.AuthenticationError))
    assert describe_error(auth).startswith("AuthenticationError (401): Invalid API Key provided")

    captured = capsys.readouterr()
    texts: list[object] = [captured.out, captured.err, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(x) for x in returned] + [str(x) for x in returned]
    for exc in raised:
        texts += exception_texts(exc)
        texts.append(describe_error(exc))
        texts.append(repr(getattr(exc, "__dict__", {})))
    assert "Post details" in captured.err  # stripe's console debug output was captured
    assert_no_secrets(texts, keys)
