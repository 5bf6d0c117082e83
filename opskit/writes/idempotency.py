"""Idempotency keys derived from what a write means, so a retried cell cannot write twice.

A key is ``opskit-v1-`` plus the sha256 of a canonical JSON document holding the
action, the shop, the target and the parameters (``None`` values left out, so
adding an optional parameter later does not change existing keys), plus the
caller's optional ``nonce``. The same call gives the same key; Stripe (and the
sandbox) then replays the first answer instead of creating a second object.

Stripe forgets keys after 24 hours. Two *intended* identical writes within that
window (say, two equal charges to one customer) need different nonces.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["PREFIX", "canonical_json", "derive_key", "step_key"]

PREFIX = "opskit-v1-"


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ``None`` entries of mappings dropped."""
    return json.dumps(_drop_none(value), sort_keys=True, separators=(",", ":"), default=str)


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def derive_key(
    action: str,
    shop_id: Any,
    target: str,
    params: Mapping[str, Any],
    nonce: str | None = None,
) -> str:
    """The idempotency key of one write; deterministic across processes and machines."""
    doc = {
        "action": action,
        "shop_id": shop_id,
        "target": target,
        "params": dict(params),
        "nonce": nonce,
    }
    return PREFIX + hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def step_key(key: str, step: str) -> str:
    """A key for a later step of a multi-step write (``create`` then ``confirm``)."""
    return f"{key}:{step}"
