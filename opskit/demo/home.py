"""Where a demo world lives: its database, the sandbox it talks to, and who owns it.

A demo world is a database plus the running sandbox whose Stripe ids it holds;
one without the other is meaningless (the sandbox keeps its store in memory), so
they are kept together:

* ``<dir>/demo.sqlite``        the database
* ``<dir>/demo.sandbox.json``  the sandbox serving it: URL, owner pid, seed, start time
* ``<dir>/demo.lock``          held (``flock``) by the one process that owns the world

Only the owner (the process holding the lock) writes the database from the seed
or serves its sandbox; any other process attaches: it reads the record and talks
to that sandbox, and never re-seeds a database another process is using. The lock
goes when its process ends, however it ends, so a stale record is recognised.

The default world is ``<data dir>/demo/`` (``OPSKIT_DATA_DIR``, else the per-user
data dir); :func:`named_world` gives others (``<data dir>/demo-<name>/``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from opskit.common.config import data_dir
from opskit.common.exceptions import ConfigurationError

__all__ = [
    "DemoNotRunning",
    "DemoWorldBusy",
    "World",
    "default_world",
    "named_world",
    "world_for_url",
]

START_HINT = (
    "Start it with `opskit demo --serve` in another shell (it keeps running), "
    "or in Python: ops = opskit.connect() starts it for that session."
)


class DemoWorldBusy(ConfigurationError):
    """Another process owns this demo world (its sandbox is running): it is not re-seeded."""


class DemoNotRunning(ConfigurationError):
    """A demo world's database, whose Stripe (the local sandbox) is not running."""

    default_guidance = START_HINT


@dataclass(frozen=True)
class World:
    """One demo world: the database and, beside it, the sandbox record and the owner's lock."""

    database: Path | None  # the SQLite file; None for a database elsewhere (PostgreSQL)
    record: Path  # <stem>.sandbox.json: where its sandbox listens
    lock_path: Path  # <stem>.lock: held by the owning process

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the world's SQLite database."""
        if self.database is None:
            raise ValueError("this world's database is not a SQLite file")
        return f"sqlite:///{self.database}"

    def read_record(self) -> dict[str, Any] | None:
        """The recorded sandbox (``url``, ``pid``, ``seed``, ``started_at``), or None."""
        try:
            data = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("url"), str) else None

    def running_sandbox(self) -> str | None:
        """The URL of this world's sandbox when its owner is alive and it answers, else None."""
        record = self.read_record()
        if record is None or not self.owned_elsewhere():
            return None
        return record["url"] if _answers(record["url"]) else None

    def owned_elsewhere(self) -> bool:
        """True while another process holds the world's lock."""
        if _held.get(self.lock_path) is not None:
            return False  # this process owns it
        lock = WorldLock(self.lock_path)
        if lock.acquire():
            lock.release()
            return False
        return True

    def write_record(self, sandbox_url: str, seed: int) -> None:
        """Record the sandbox beside the database (owner only), atomically."""
        doc = {
            "url": sandbox_url,
            "pid": os.getpid(),
            "seed": seed,
            "database": str(self.database) if self.database else None,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        tmp = self.record.with_name(f".{self.record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.record)

    def clear_record(self) -> None:
        self.record.unlink(missing_ok=True)

    def busy_error(self) -> DemoWorldBusy:
        record = self.read_record() or {}
        where = f" (sandbox {record['url']})" if record.get("url") else ""
        pid = f"process {record['pid']}" if record.get("pid") else "another process"
        return DemoWorldBusy(
            f"the demo world {self.record.parent} is in use by {pid}{where}; "
            "it is not re-seeded under it",
            guidance="Use it as it is: opskit.connect() attaches to its sandbox. Or start "
            "a separate world: opskit.demo.start(world='scratch').",
        )


def _world_in(folder: Path) -> World:
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "demo.sqlite"
    return World(db, db.with_suffix(".sandbox.json"), db.with_suffix(".lock"))


def default_world() -> World:
    """The world ``opskit.connect()``, ``opskit demo`` and ``make lab`` share."""
    return _world_in(data_dir() / "demo")


def named_world(name: str) -> World:
    """A separate world ``<data dir>/demo-<name>/`` (a scratch copy, a notebook kernel's)."""
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-")
    if not clean:
        raise ValueError(f"world name {name!r} has no usable characters")
    return _world_in(data_dir() / f"demo-{clean}")


def world_for_url(url: str) -> World:
    """The world of a database URL: files beside a SQLite file, else in the data dir."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        db = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        db.parent.mkdir(parents=True, exist_ok=True)
        return World(db, db.with_suffix(".sandbox.json"), db.with_suffix(".lock"))
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    folder = data_dir() / "worlds" / digest
    folder.mkdir(parents=True, exist_ok=True)
    return World(None, folder / "demo.sandbox.json", folder / "demo.lock")


def is_demo_database(url: str) -> bool:
    """True when ``url`` is a demo world's SQLite database (a sandbox record or lock beside it)."""
    if not url.startswith("sqlite:///"):
        return False
    db = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return db.with_suffix(".sandbox.json").exists() or db.with_suffix(".lock").exists()


# -- the owner's lock ----------------------------------------------------------------------

_held: dict[Path, WorldLock] = {}


class WorldLock:
    """An exclusive, non-blocking ``flock`` on the world's lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock if free; False (at once) when another process holds it."""
        if sys.platform == "win32":  # pragma: no cover - opskit's machines are POSIX
            return True
        import fcntl

        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()  # closing the descriptor drops the flock


def own(world: World) -> bool:
    """Make this process the world's owner; False when another process already is."""
    if world.lock_path in _held:
        return True
    lock = WorldLock(world.lock_path)
    if not lock.acquire():
        return False
    _held[world.lock_path] = lock
    return True


def disown(world: World) -> None:
    """Give the world up: its record goes, then the lock."""
    lock = _held.pop(world.lock_path, None)
    if lock is not None:
        world.clear_record()
        lock.release()


def _answers(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        return False  # a demo sandbox is always on loopback
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", parts.port), timeout):
        return True
    return False
