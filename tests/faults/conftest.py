"""The fault suite's tally: every fault run is counted, and printed at the end of the session.

A test calls ``tally.run(name, fn, timeout=...)``: ``fn`` returns ``("right", why)`` or
``("shop_error", reason)`` when opskit did the right thing, ``("wrong", why)`` when not;
running past ``timeout`` counts as ``hung``, an unexpected exception as ``crashed``.
``tally.count("secrets_seen", n)`` and ``tally.count("unrecorded", n)`` add what leak
and record checks found. Each test asserts its own runs; the summary makes the totals
visible in ``make test`` (and fails the session if a bad count slipped through).
"""

from __future__ import annotations

import collections
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

BAD = ("wrong", "hung", "crashed", "secrets_seen", "unrecorded")


@dataclass
class Tally:
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    bad: list[str] = field(default_factory=list)
    measures: dict[str, str] = field(default_factory=dict)

    def run(self, name: str, fn: Callable[[], tuple[str, str]], *, timeout: float = 30.0) -> str:
        """Run one fault scenario in a thread; its verdict, counted."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["verdict"] = fn()
            except BaseException:  # noqa: BLE001 - a crash is a verdict here
                box["crash"] = traceback.format_exc(limit=3)

        t = threading.Thread(target=target, daemon=True, name=f"fault:{name}")
        t.start()
        t.join(timeout)
        self.counts["runs"] += 1
        if t.is_alive():
            verdict, why = "hung", f"still running after {timeout:g}s"
        elif "crash" in box:
            verdict, why = "crashed", box["crash"].strip().splitlines()[-1]
        else:
            verdict, why = box["verdict"]
        self.counts[verdict] += 1
        if verdict == "shop_error":
            self.reasons[why.split(":")[0][:60]] += 1
        if verdict in BAD:
            self.bad.append(f"{name}: {verdict}: {why}")
        return verdict

    def count(self, what: str, n: int = 1, why: str = "") -> None:
        self.counts[what] += n
        if n and what in BAD:
            self.bad.append(f"{what} x{n}: {why}")

    def assert_clean(self) -> None:
        assert not self.bad, "\n".join(self.bad)


_TALLY = Tally()


@pytest.fixture
def tally() -> Iterator[Tally]:
    before = len(_TALLY.bad)
    yield _TALLY
    new = _TALLY.bad[before:]
    assert not new, "\n".join(new)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    c = _TALLY.counts
    if not c["runs"] and not _TALLY.measures:
        return
    tr = terminalreporter
    tr.section("fault suite")
    tr.write_line(
        f"runs {c['runs']}, right {c['right']}, shop_error {c['shop_error']}, "
        f"wrong {c['wrong']}, hung {c['hung']}, crashed {c['crashed']}, "
        f"secrets seen {c['secrets_seen']}, writes without a record {c['unrecorded']}"
    )
    if _TALLY.reasons:
        tr.write_line(
            "shop_error reasons: " + "; ".join(f"{r} x{n}" for r, n in _TALLY.reasons.items())
        )
    for name, value in _TALLY.measures.items():
        tr.write_line(f"{name}: {value}")
    for line in _TALLY.bad:
        tr.write_line(f"BAD {line}")


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _TALLY.bad and exitstatus == 0:
        session.exitstatus = 1
