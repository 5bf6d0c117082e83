"""Per-key behaviour settings (latency, rate limits, faults) and the request log."""

from __future__ import annotations

import asyncio
import collections
import re
import threading
from dataclasses import dataclass, field
from typing import Any

RATE_MODES = ("pace", "reject")
_KEY_RE = re.compile(r"^(sk|rk)_test_[A-Za-z0-9]+$")


def mask(key: str | None) -> str:
    """Stripe's own masking: prefix, asterisks, last four characters."""
    if not key:
        return ""
    m = re.match(r"^([a-z]{2}_(?:test|live)_)", key)
    prefix = m.group(1) if m else ""
    # A short token would be given away whole by its last four characters.
    tail = key[-4:] if len(key) - len(prefix) > 8 else ""
    return f"{prefix}********{tail}"


def well_formed_test_key(key: str) -> bool:
    return bool(_KEY_RE.fullmatch(key))


@dataclass
class RequestRecord:
    """One served request. ``key`` is the raw key: internal use only, never printed."""

    key: str = field(repr=False)
    method: str
    path: str
    status: int  # 0 when the connection was dropped
    idempotency_key: str | None
    at: float
    # Names of the parameters sent (query and form body, flattened as on the wire:
    # "items[0][price]"), never their values: tests check them against Stripe's spec.
    params: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        return {
            "key": mask(self.key),
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "idempotency_key": self.idempotency_key,
            "at": self.at,
            "params": list(self.params),
        }


@dataclass
class KeyConfig:
    """Settings for one key (or the defaults); None means "inherit"."""

    latency: float | None = None
    rate_limit: float | None = None
    rate_mode: str | None = None
    retry_after: float | None = None


@dataclass
class KeyState:
    """Mutable per-key runtime state used by the middleware (event-loop thread)."""

    next_slot: float = 0.0  # pace mode: earliest start of the next request
    window: collections.deque[float] = field(default_factory=collections.deque)
    fail_next: int = 0
    fail_status: int = 500
    drop_next: int = 0


class Settings:
    """Thread-safe settings: written from any thread, read on the server loop."""

    def __init__(
        self,
        latency: float = 0.0,
        rate_limit: float | None = None,
        rate_mode: str = "pace",
    ) -> None:
        self._lock = threading.Lock()
        self._initial = KeyConfig(latency, rate_limit, rate_mode)
        self.default = KeyConfig(latency, rate_limit, rate_mode)
        self.per_key: dict[str, KeyConfig] = {}
        self.state: dict[str | None, KeyState] = {}
        self.log: list[RequestRecord] = []
        self.log_lock = threading.Lock()

    def configure(
        self,
        key: str | None = None,
        latency: float | None = None,
        rate_limit: float | None = None,
        rate_mode: str | None = None,
        fail_next: int | None = None,
        drop_next: int | None = None,
        fail_status: int = 500,
        retry_after: float | None = None,
    ) -> None:
        if rate_mode is not None and rate_mode not in RATE_MODES:
            raise ValueError(f"rate_mode must be one of {RATE_MODES}")
        with self._lock:
            cfg = self.default if key is None else self.per_key.setdefault(key, KeyConfig())
            if latency is not None:
                cfg.latency = max(0.0, float(latency))
            if rate_limit is not None:
                cfg.rate_limit = float(rate_limit)  # 0 disables
            if rate_mode is not None:
                cfg.rate_mode = rate_mode
            if retry_after is not None:
                cfg.retry_after = float(retry_after)
            st = self.state.setdefault(key, KeyState())
            if fail_next is not None:
                st.fail_next = int(fail_next)
                st.fail_status = int(fail_status)
            if drop_next is not None:
                st.drop_next = int(drop_next)

    def reset(self) -> None:
        with self._lock:
            i = self._initial
            self.default = KeyConfig(i.latency, i.rate_limit, i.rate_mode)
            self.per_key.clear()
            self.state.clear()

    def effective(self, key: str) -> KeyConfig:
        with self._lock:
            own = self.per_key.get(key)
            d = self.default
            if own is None:
                return KeyConfig(d.latency, d.rate_limit, d.rate_mode, d.retry_after)

            def pick(a: Any, b: Any) -> Any:
                return a if a is not None else b

            return KeyConfig(
                pick(own.latency, d.latency),
                pick(own.rate_limit, d.rate_limit),
                pick(own.rate_mode, d.rate_mode),
                pick(own.retry_after, d.retry_after),
            )

    def key_state(self, key: str) -> KeyState:
        with self._lock:
            return self.state.setdefault(key, KeyState())

    def take_fault(self, key: str) -> tuple[str, int] | None:
        """Consume one pending fault for ``key`` (own counter first, then global)."""
        with self._lock:
            for k in (key, None):
                st = self.state.get(k)
                if st is None:
                    continue
                if st.drop_next > 0:
                    st.drop_next -= 1
                    return ("drop", 0)
                if st.fail_next > 0:
                    st.fail_next -= 1
                    return ("fail", st.fail_status)
            return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            d = self.default
            return {
                "default": {
                    "latency": d.latency,
                    "rate_limit": d.rate_limit,
                    "rate_mode": d.rate_mode,
                    "retry_after": d.retry_after,
                },
                "keys": {
                    mask(k): {
                        "latency": c.latency,
                        "rate_limit": c.rate_limit,
                        "rate_mode": c.rate_mode,
                        "retry_after": c.retry_after,
                    }
                    for k, c in self.per_key.items()
                },
            }

    # request log
    def record(self, rec: RequestRecord) -> None:
        with self.log_lock:
            self.log.append(rec)

    def requests(self, key: str | None = None) -> list[RequestRecord]:
        with self.log_lock:
            return [r for r in self.log if key is None or r.key == key]

    def reset_log(self) -> None:
        with self.log_lock:
            self.log.clear()


async def throttle(cfg: KeyConfig, st: KeyState, loop: asyncio.AbstractEventLoop) -> bool:
    """Apply the rate limit; False when the request must be rejected (429).

    Pace mode books the next free slot synchronously (so concurrent requests
    queue in arrival order) and then sleeps outside any lock.
    """
    rate = cfg.rate_limit
    if not rate or rate <= 0:
        return True
    now = loop.time()
    if (cfg.rate_mode or "pace") == "pace":
        slot = max(now, st.next_slot)
        st.next_slot = slot + 1.0 / rate
        if slot > now:
            await asyncio.sleep(slot - now)
        return True
    # reject: sliding one-second window, like Stripe's per-second limits
    w = st.window
    while w and w[0] <= now - 1.0:
        w.popleft()
    if len(w) >= rate:
        return False
    w.append(now)
    return True
