"""Stripe's idempotency semantics, and write faults whose outcome the client cannot see.

What Stripe does (https://docs.stripe.com/api/idempotent_requests), and so the sandbox:

- A ``POST`` with an ``Idempotency-Key`` saves its result (status and body) once the
  endpoint started executing, **including 500 errors**, and any later request
  with the same key (same API key, within 24 hours) gets that result replayed,
  with ``Idempotent-Replayed: true`` and ``Original-Request: <its request id>``.
  A request refused before executing (authentication, validation of the
  parameters, rate limit, a key in use) saves nothing, so it may be retried.
- The same key with other parameters (or another endpoint) is answered 400
  ``idempotency_error``.
- A second request with a key whose first request is still running is answered
  409 (``idempotency_key_in_use``, ``Stripe-Should-Retry: true``).
- Keys are at most 255 characters; ``GET`` and ``DELETE`` ignore them.

Write faults (for tests of "indeterminate write" recovery): the next ``count``
``POST`` requests of an API key

- ``"error_after"``: execute (the object is created), then answer ``status``
  (500) and save that answer under the request's idempotency key, as when
  Stripe fails after its write: every retry with the same key gets the same 500;
- ``"error_before"``: execute nothing, answer ``status`` and save it (Stripe
  failed after it started executing, before writing);
- ``"drop_after"``: execute, save the real answer, then drop the connection
  without answering (a timeout or reset as the client sees it).

Use :meth:`opskit.sandbox.Sandbox.inject_write_fault` or ``POST
/_sandbox/write_faults`` with JSON ``{"key": ..., "kind": ..., "count": 1,
"status": 500}``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 255
WRITE_FAULT_KINDS = ("error_after", "error_before", "drop_after")


@dataclass
class Saved:
    """One saved result: replayed verbatim for the same key and parameters."""

    fingerprint: tuple[Any, ...]
    status: int
    body: bytes
    content_type: str
    request_id: str
    at: float = field(default_factory=time.time)


def saves(status: int) -> bool:
    """Whether a response of ``status`` is saved (the endpoint started executing).

    Successes, declines (402) and server errors are; authentication (401),
    parameter validation (400/404), key conflicts (409) and rate limits (429)
    happen before execution and are not.
    """
    return status < 400 or status == 402 or status >= 500


class Ledger:
    """Saved results and keys in flight of one API key's store (each key is its own account)."""

    def __init__(self) -> None:
        self.saved: dict[str, Saved] = {}
        self.in_flight: set[str] = set()

    def lookup(self, idem: str, now: float | None = None) -> Saved | None:
        """The saved result for ``idem``, or None (none, or older than 24 hours)."""
        saved = self.saved.get(idem)
        if saved is None:
            return None
        if (now if now is not None else time.time()) - saved.at >= TTL_SECONDS:
            del self.saved[idem]
            return None
        return saved

    def save(self, idem: str, saved: Saved) -> None:
        self.saved[idem] = saved

    def clear(self) -> None:
        self.saved.clear()

    def age(self, seconds: float) -> int:
        """Make every saved result ``seconds`` older (to test the 24-hour window)."""
        for saved in self.saved.values():
            saved.at -= seconds
        return len(self.saved)


@dataclass
class WriteFault:
    kind: str
    status: int = 500


class WriteFaults:
    """Pending write faults per API key (written from any thread, taken on the loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[WriteFault]] = {}

    def add(self, api_key: str, kind: str, count: int = 1, status: int = 500) -> None:
        if kind not in WRITE_FAULT_KINDS:
            raise ValueError(f"kind must be one of {WRITE_FAULT_KINDS}")
        if not 500 <= int(status) <= 599:
            raise ValueError("status must be a 5xx status")
        if int(count) < 0:
            raise ValueError("count must be zero or more")
        with self._lock:
            self._pending.setdefault(api_key, []).extend(
                WriteFault(kind, int(status)) for _ in range(int(count))
            )

    def take(self, api_key: str) -> WriteFault | None:
        with self._lock:
            pending = self._pending.get(api_key)
            if not pending:
                return None
            return pending.pop(0)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self, api_key: str) -> int:
        with self._lock:
            return len(self._pending.get(api_key, ()))


def mismatch_error(idem: str) -> dict[str, Any]:
    return {
        "type": "idempotency_error",
        "message": "Keys for idempotent requests can only be used with the same parameters "
        f"they were first used with. Try using a key other than '{idem}' if you meant to "
        "execute a different request.",
    }


def in_use_error(idem: str) -> dict[str, Any]:
    return {
        "type": "invalid_request_error",
        "code": "idempotency_key_in_use",
        "message": "There is currently another in-progress request using this idempotent key "
        "(that probably means you submitted twice, and the other request is still going "
        f"through): {idem}. Please try again later.",
    }


def too_long_error(idem: str) -> dict[str, Any]:
    return {
        "type": "invalid_request_error",
        "message": f"Invalid Idempotency-Key: it must be at most {MAX_KEY_LENGTH} characters "
        f"(yours has {len(idem)}).",
    }


def injected_error() -> dict[str, Any]:
    return {
        "type": "api_error",
        "message": "An unknown error occurred (injected by opskit sandbox).",
    }
