"""Whether a Stripe write's request may still be in flight: what recovery must never guess.

An open intent (``pending``) means either "the writer died" or "the writer is still
waiting for Stripe's answer". Concluding "not written" in the second case is false
(the request lands a moment later), so every intent records who sent it and until
when that writer may still be waiting:

* ``writer``: ``<host>:<pid>:<process start>`` of the sending process
  (:func:`identity`; the start time tells a reused pid apart);
* ``in_flight_until``: the intent's time plus the writer's own call deadline
  (``Settings.request_deadline``, retries included) plus :data:`MARGIN`.

:func:`may_be_in_flight` decides from them: in this process, exactly (the
requests being sent are registered around the send, :func:`sending`); in another
live process of this host, or on another host, until ``in_flight_until``; a
writer that is gone (same host, no such process) is not in flight. An intent
without a record (written by an older opskit) is judged by its age alone.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

__all__ = ["MARGIN", "identity", "may_be_in_flight", "sending"]

MARGIN = 30.0  # seconds past the writer's deadline before its request counts as over

_sending: set[int] = set()  # audit ids of intents whose request this process is sending
_lock = threading.Lock()


def _start_time(pid: int) -> str | None:
    """The process's start (clock ticks since boot, /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has finished
        return None
    return fields[19]


def identity(pid: int | None = None) -> str:
    """``<host>:<pid>:<start>`` of this process (or ``pid`` on this host)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or ''}"


@contextmanager
def sending(audit_id: int | None) -> Iterator[None]:
    """Mark ``audit_id``'s request as being sent by this process while inside."""
    if audit_id is None:
        yield
        return
    with _lock:
        _sending.add(audit_id)
    try:
        yield
    finally:
        with _lock:
            _sending.discard(audit_id)


def _alive(pid: int, start: str) -> bool:
    now = _start_time(pid)
    if now is not None:
        return not start or now == start
    if os.path.isdir("/proc"):
        return False  # no such process (or a zombie)
    try:  # pragma: no cover - opskit's machines have /proc
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def may_be_in_flight(
    audit_id: int, writer: str | None, until: datetime | None, now: datetime
) -> bool | None:
    """True when the intent's request may still reach Stripe; False when it cannot;
    None when the intent records no writer (judge it by its age)."""
    if not writer or until is None:
        return None
    parts = writer.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return now < until
    host, pid_text, start = parts
    pid = int(pid_text)
    if host == socket.gethostname() and pid == os.getpid() and start == (_start_time(pid) or ""):
        with _lock:
            return audit_id in _sending  # this process knows exactly
    if now >= until:
        return False  # past the writer's own deadline: its request is over
    if host == socket.gethostname():
        return _alive(pid, start)
    return True  # another host's writer, within its deadline
