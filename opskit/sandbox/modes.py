"""Test mode and live mode of one Stripe account: Stripe's "similar object exists" 404.

At Stripe, one account has a test-mode and a live-mode key, and their objects
are separate: retrieving a live-mode customer with the test key answers 404
``resource_missing`` with the message "No such customer: 'cus_…'; a similar
object exists in live mode, but a test mode key was used to make this
request." (and the reverse with a live key).

The sandbox models that with the smallest faithful mechanism: the keys
``sk_test_<rest>`` and ``sk_live_<rest>`` (also ``rk_``) are the two modes of
one account, each with its own store. When a request with one of them is
answered 404 ``resource_missing`` for an id that the other mode's store holds,
the message says so, as Stripe's does. Objects get into the other mode's
store with :meth:`opskit.sandbox.Sandbox.seed_other_mode` (the live key itself
need not be accepted by the sandbox).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

__all__ = ["other_mode_key", "with_other_mode_message"]

_MODES = {"test": "live", "live": "test"}
_KEY = re.compile(r"^(sk|rk)_(test|live)_(.+)$")
_NO_SUCH = re.compile(r"^No such ([a-z_]+): '([^']+)'$")


def other_mode_key(key: str) -> str | None:
    """``sk_live_X`` for ``sk_test_X`` and back; None for anything else."""
    m = _KEY.match(key)
    if m is None:
        return None
    return f"{m.group(1)}_{_MODES[m.group(2)]}_{m.group(3)}"


def with_other_mode_message(
    stores: Mapping[str, Any], key: str, resp: web.StreamResponse
) -> web.StreamResponse:
    """``resp``, or Stripe's "a similar object exists in <other> mode" 404 in its place."""
    if resp.status != 404 or not isinstance(resp, web.Response):
        return resp
    twin = other_mode_key(key)
    store = stores.get(twin) if twin else None
    if store is None:
        return resp
    try:
        body = json.loads(bytes(resp.body or b""))  # type: ignore[arg-type]
        err = dict(body["error"])
    except (ValueError, KeyError, TypeError):
        return resp
    m = _NO_SUCH.match(str(err.get("message", "")))
    if err.get("code") != "resource_missing" or m is None:
        return resp
    kind, object_id = m.groups()
    if store.get(f"{kind}:{object_id}") is None:
        return resp
    mode = _KEY.match(key).group(2)  # type: ignore[union-attr]
    err["message"] = (
        f"No such {kind}: '{object_id}'; a similar object exists in {_MODES[mode]} mode, "
        f"but a {mode} mode key was used to make this request."
    )
    out = web.Response(
        body=json.dumps({"error": err}).encode(),
        status=404,
        content_type="application/json",
    )
    return out
