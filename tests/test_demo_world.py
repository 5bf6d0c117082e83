"""The demo is one self-contained world: the database and the sandbox holding its Stripe
ids belong together, whichever entry point started it, and nothing re-seeds a database
another process is using. Real subprocesses (`opskit demo`, `opskit demo --serve`, the
README's first example) on a fresh data dir, as a new user meets them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import opskit
from opskit import demo
from opskit.demo import home

ROOT = Path(__file__).resolve().parents[1]


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    env["OPSKIT_DATA_DIR"] = str(data)
    return env


def _digest(path: Path) -> str:
    """The seeded identity of a demo database: every account's details (the Stripe ids a
    re-seed would replace). Not the file's bytes: reports may add opskit's own tables."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT id, details FROM accounts ORDER BY id").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def readme_first_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, flags=re.S)
    assert match, "README has no python block"
    return match.group(1)


def test_readme_first_example_runs_as_written_after_make_demo(tmp_path: Path) -> None:
    env = _env(tmp_path / "data")
    # What `make demo` leaves behind (tests/test_cli.py runs `opskit demo` itself): the
    # world's database and lock, its sandbox gone with the command.
    world = tmp_path / "data" / "demo"
    world.mkdir(parents=True)
    (world / "demo.lock").write_text("")
    started = time.monotonic()
    # The block exactly as written, then a line that reports what it produced.
    facts = (
        "\nimport json\nprint('FACTS ' + json.dumps({"
        "'statuses': sorted(set(report.status.astype(str))),"
        "'errors': sorted(set(report[report.status == 'shop_error'].shop_name)),"
        "'links': int(subs.dashboard_url.notna().sum()),"
        "'amounts': int(subs.unit_amount.notna().sum()),"
        "'intent': [intent['id'][:3], int(intent['amount']), intent['currency']],"
        "'api_base': ops.ctx.api_base}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", readme_first_example() + facts],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    # It talked to the demo's own sandbox, and said so in one line: no Stripe, no retries.
    notes = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and "started the local Stripe sandbox" in notes[0], proc.stderr
    got = json.loads(proc.stdout.rsplit("FACTS ", 1)[1])
    assert got["api_base"].startswith("http://127.0.0.1:")
    assert {"match", "wrong_shop", "orphan_in_stripe"} <= set(got["statuses"])
    assert got["errors"] == ["Legacy Outlet"]  # only the demo's live-key shop, by design
    assert got["links"] > 0 and got["amounts"] > 0
    assert got["intent"] == ["pi_", 1999, "usd"]
    assert took < 90


def test_nothing_reseeds_a_world_in_use_and_everyone_uses_its_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("OPSKIT_DATA_DIR", str(data))
    env = _env(data)
    world = demo.default_world()
    serve = subprocess.Popen(
        [sys.executable, "-m", "opskit", "demo", "--serve", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while world.read_record() is None and time.monotonic() < deadline:
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
            time.sleep(0.2)
        record = world.read_record()
        assert record is not None and record["url"].startswith("http://127.0.0.1:")
        assert record["pid"] == serve.pid
        assert world.database is not None
        before = _digest(world.database)

        # Another entry point in another process: refused, not re-seeded under it.
        with pytest.raises(demo.DemoWorldBusy, match=str(serve.pid)) as info:
            demo.start()
        assert "opskit.connect()" in info.value.guidance
        assert _digest(world.database) == before
        # ... and connect() uses the running world's sandbox, as recorded.
        ops = opskit.connect()
        assert ops.ctx.api_base == record["url"]
        report = ops.reconcile_customers(progress=False)
        errors = set(report.loc[report["status"].eq("shop_error"), "shop_name"])
        assert errors == {"Legacy Outlet"}  # the live key only; the test shops all answered
        assert "wrong_shop" in set(report["status"].astype(str))
        assert _digest(world.database) == before  # read, not re-seeded
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=30)  # also closes its stderr pipe
    assert world.read_record() is None  # the owner cleared its record on the way out

    # No sandbox now: a short-lived command says in one line how to start it, at once.
    started = time.monotonic()
    cli = subprocess.run(
        [sys.executable, "-m", "opskit", "reconcile"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 3
    lines = [line for line in cli.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "opskit demo --serve" in lines[0]
    assert time.monotonic() - started < 30  # no 20-second retries against api.stripe.com
    with pytest.raises(demo.DemoNotRunning):
        opskit.connect(demo="attach")
    local = opskit.connect(demo="local")  # reading the database needs no Stripe
    assert len(local.shops()) == 7


def test_a_stale_record_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A world whose owner died (record left behind, lock gone) is not attached to."""
    monkeypatch.setenv("OPSKIT_DATA_DIR", str(tmp_path / "data"))
    world = demo.named_world("crashed")
    world.record.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 999999}))
    assert world.running_sandbox() is None
    assert demo.attach(world="crashed") is None
    assert home.own(world)  # free to take over
    try:
        assert world.running_sandbox() is None  # ours now: nobody else's to attach to
    finally:
        home.disown(world)
    assert world.read_record() is None
