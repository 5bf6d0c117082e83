"""Pytest fixtures for the local Stripe sandbox (listed in tests/conftest.py)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

import pytest
import stripe

from opskit.sandbox import Sandbox


def make_key(prefix: str = "t") -> str:
    """A unique, well-formed test key, so each test gets its own isolated store."""
    clean = re.sub(r"[^A-Za-z0-9]", "", prefix)
    return f"sk_test_{clean}{secrets.token_hex(8)}"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A started Sandbox accepting any ``sk_test_`` key; stopped at session end."""
    sb = Sandbox()
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def fresh_key() -> str:
    """A new ``sk_test_<hex>`` key (its own empty store); use make_key() for more."""
    return make_key("t")


@pytest.fixture
def stripe_client(sandbox: Sandbox) -> Callable[[str], stripe.StripeClient]:
    """``stripe_client(key)`` -> a StripeClient talking to the session sandbox."""

    def make(key: str) -> stripe.StripeClient:
        return stripe.StripeClient(key, base_addresses={"api": sandbox.url})

    return make
