"""What the notebooks call to get an :class:`~opskit.Ops`: the real backend or the demo.

>>> from opskit.faces.notebook import open_ops
>>> ops = open_ops()                      # doctest: +SKIP

* ``OPSKIT_DATABASE_URL`` set: :func:`opskit.connect` with it; Stripe requests go to
  ``OPSKIT_STRIPE_API_BASE`` when set, else to Stripe itself with each shop's own key.
  (``make lab`` sets both to its demo database and sandbox, shared by every notebook.)
* unset: a demo session for this kernel: a fresh local Stripe sandbox populated with
  the seeded demo data and a demo SQLite database of its own that matches it; both
  live as long as the kernel and are removed when it exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opskit.demo import DemoSession
    from opskit.ops import Ops

__all__ = ["close", "open_ops"]

_lock = threading.Lock()
_session: DemoSession | None = None
_db_file: Path | None = None


def open_ops() -> Ops:
    """The kernel's Ops: the configured backend, else this kernel's demo session."""
    import opskit
    from opskit.common.config import DATABASE_URL_ENV

    if os.environ.get(DATABASE_URL_ENV):
        return opskit.connect()
    return _demo().ops


def _demo() -> DemoSession:
    global _session, _db_file
    with _lock:
        if _session is None:
            from opskit import demo

            # One world per kernel: two notebooks open at once must not rebuild each other's data.
            _session = demo.start(world=f"kernel-{os.getpid()}")
            assert _session.world is not None
            _db_file = _session.world.database
            atexit.register(close)
        return _session


def close() -> None:
    """Stop this kernel's demo sandbox and delete its demo database (idempotent)."""
    global _session, _db_file
    with _lock:
        if _session is not None:
            _session.ops.ctx.db.engine.dispose()
            _session.stop()
            _session = None
        if _db_file is not None:
            _db_file.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the world's folder, once empty
                for leftover in _db_file.parent.glob("demo.*"):
                    leftover.unlink()
                _db_file.parent.rmdir()
            _db_file = None
