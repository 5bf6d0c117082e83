"""Foreground serving for the CLI (``python -m opskit.sandbox`` / ``opskit sandbox``)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from opskit.sandbox.server import Sandbox


def serve_forever(
    port: int,
    keys: list[str] | None = None,
    latency: float = 0.0,
    rate_limit: float | None = None,
    rate_mode: str = "pace",
) -> None:
    """Serve on 127.0.0.1:``port`` until Ctrl-C or SIGTERM; never prints keys."""
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    sb = Sandbox(keys=keys, port=port, latency=latency, rate_limit=rate_limit, rate_mode=rate_mode)
    try:
        url = sb.start()
        print(f"opskit sandbox listening on {url}", flush=True)
        while not done.wait(0.5):
            pass
    finally:
        sb.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
