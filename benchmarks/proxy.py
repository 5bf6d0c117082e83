"""The sandbox in a child process, driven through a pipe (benchmarks only).

Stripe runs on other machines; a sandbox in the benchmark's own process would
share its GIL with the client and measure Python's lock instead of opskit. The
child owns an ordinary :class:`opskit.sandbox.Sandbox`; :class:`RemoteSandbox`
forwards ``seed``, ``configure``, ``request_count`` and ``reset_log`` to it.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any

from opskit.sandbox import Sandbox


def _serve(conn: Connection, kwargs: dict[str, Any]) -> None:
    with Sandbox(**kwargs) as sb:
        conn.send(sb.url)
        while True:
            method, args, kw = conn.recv()
            if method == "stop":
                conn.send(None)
                return
            try:
                if method == "request_times":
                    times: dict[str, list[float]] = {}
                    for r in sb.requests(*args, **kw):
                        times.setdefault(r.public()["key"], []).append(r.at)
                    conn.send(("ok", times))
                    continue
                conn.send(("ok", getattr(sb, method)(*args, **kw)))
            except Exception as exc:  # noqa: BLE001 - handed back to the caller
                conn.send(("error", repr(exc)))


class RemoteSandbox:
    """``with RemoteSandbox(latency=..., rate_limit=...) as sb: sb.url, sb.seed(...)``."""

    def __init__(self, **kwargs: Any) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, kwargs), daemon=True)
        self.url = ""

    def __enter__(self) -> RemoteSandbox:
        self._proc.start()
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.send(("stop", (), {}))
        self._conn.recv()
        self._proc.join(timeout=10)

    def _call(self, method: str, *args: Any, **kw: Any) -> Any:
        self._conn.send((method, args, kw))
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"sandbox.{method} failed: {value}")
        return value

    def seed(self, key: str, kind: str, objects: list[dict[str, Any]]) -> list[str]:
        return list(self._call("seed", key, kind, objects))

    def configure(self, **kw: Any) -> None:
        self._call("configure", **kw)

    def request_count(self, key: str | None = None) -> int:
        return int(self._call("request_count", key))

    def reset_log(self) -> None:
        self._call("reset_log")

    def request_times(self, key: str | None = None) -> dict[str, list[float]]:
        """Arrival times of the logged requests, by masked key (never the raw key)."""
        return dict(self._call("request_times", key))
