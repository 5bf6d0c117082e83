"""The CLI as a scheduler meets it: real subprocesses, piped (never a TTY), against the sandbox.

One output file per --out (or the documented {report} naming), a shop filter that
touches only what it must and is silent under -q, comma lists, Ctrl-C as exit 130
with a line, friendly errors for common URL forms, no progress bars when piped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
import stripe
from typer.testing import CliRunner

from opskit.backend.db import create_reference_tables
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

LIVE_KEY = "sk_live_" + "Sch3duled" * 3  # well-formed; the sandbox answers 401


def _backend(sandbox: Sandbox, tmp_path: Path) -> tuple[str, dict[str, str], str]:
    """Shops 1 and 2 (test keys), 3 (a live key): shop 1 has one link found nowhere
    in its own Stripe, one that belongs to shop 2. Returns (url, env, shop 1's key)."""
    url = f"sqlite:///{tmp_path / 'backend.sqlite'}"
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    keys = [make_key("sched1"), make_key("sched2")]
    ids = []
    for key in keys:
        client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
        ids.append(client.v1.customers.create({"email": "a@example.com", "name": "A"}).id)
    shops = [
        {"id": 1, "name": "One", "stripe_secret_key": keys[0]},
        {"id": 2, "name": "Two", "stripe_secret_key": keys[1]},
        {"id": 3, "name": "Live", "stripe_secret_key": LIVE_KEY},
    ]
    accounts = [
        {"id": 10, "shop_id": 1, "email": "a@example.com", "name": "A",
         "details": {"stripe_customer_id": ids[0]}},
        {"id": 11, "shop_id": 1, "email": "b@example.com", "name": "B",
         "details": {"stripe_customer_id": "cus_NowhereAtAll1"}},
        {"id": 12, "shop_id": 1, "email": "c@example.com", "name": "C",
         "details": {"stripe_customer_id": ids[1]}},
        {"id": 20, "shop_id": 2, "email": "a@example.com", "name": "A",
         "details": {"stripe_customer_id": ids[1]}},
    ]  # fmt: skip
    insert(url, shops, accounts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    env.update(
        OPSKIT_DATABASE_URL=url,
        OPSKIT_STRIPE_API_BASE=sandbox.url,
        OPSKIT_DATA_DIR=str(tmp_path / "data"),
    )
    return url, env, keys[0]


def opskit(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as a scheduler runs it: a process of its own, output piped."""
    return subprocess.run(
        [sys.executable, "-m", "opskit", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )  # fmt: skip


def in_process(*args: str, env: dict[str, str]) -> object:
    """The same command in this process (cheaper), for the cases a pipe does not change."""
    return CliRunner().invoke(app, list(args), env=env)


def test_one_file_per_out_or_the_documented_naming(sandbox: Sandbox, tmp_path: Path) -> None:
    _, env, _ = _backend(sandbox, tmp_path)
    proc = opskit("reconcile", "--out", "all.csv", "-q", env=env, cwd=tmp_path)
    assert proc.returncode == 3  # not a silent all-customers.csv + all-subscriptions.csv
    assert proc.stdout == "" and "{report}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("all*"))

    proc = opskit("reconcile", "--out", "all-{report}.csv", "-q", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr  # the live shop failed
    assert sorted(p.name for p in tmp_path.glob("all*")) == [
        "all-customers.csv",
        "all-subscriptions.csv",
    ]
    help_text = in_process("reconcile", "--help", env=env).output  # type: ignore[attr-defined]
    assert "{report}" in help_text and "130" in help_text


def test_shop_filter_touches_only_what_it_must_and_is_quiet(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    _, env, key1 = _backend(sandbox, tmp_path)
    before = sandbox.request_count(LIVE_KEY)
    proc = opskit("reconcile", "--shop", "1", "-q", "--out", "r.json", env=env, cwd=tmp_path)
    assert proc.stdout == "" and proc.stderr == ""  # -q: nothing, not even a lookup's 401
    assert proc.returncode == 1  # drift in shop 1; the live shop was not part of the run
    assert sandbox.request_count(LIVE_KEY) == before  # never called
    text = (tmp_path / "r.json").read_text()
    assert "wrong_shop" in text  # shop 2 (test key) was still asked about the lost link
    assert "missing_in_stripe" in text

    # A live shop in the run is its shop_error: its key never goes to a plain-http sandbox.
    proc = opskit("reconcile", "--shop", "1,3", env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert sandbox.request_count(LIVE_KEY) == before
    assert "Stripe customers" not in proc.stderr  # piped: no progress bar


def test_comma_lists_and_repeats_are_the_same(sandbox: Sandbox, tmp_path: Path) -> None:
    _, env, _ = _backend(sandbox, tmp_path)
    a = opskit("reconcile", "--shop", "1,2", "--out", "a.json", "-q", env=env, cwd=tmp_path)
    out_b = str(tmp_path / "b.json")
    b = in_process("reconcile", "-s", "2", "-s", "1", "--out", out_b, "-q", env=env)
    assert a.returncode == b.exit_code == 1, a.stderr  # type: ignore[attr-defined]
    for name in ("a.json", "b.json"):
        text = (tmp_path / name).read_text()
        assert '"shop_id":"1"' in text.replace(" ", "") and '"shop_id":"2"' in text.replace(" ", "")
        assert '"shop_id":3' not in text.replace(" ", "")
    bad = in_process("reconcile", "--shop", "1,99", env=env)
    assert bad.exit_code == 3 and "99" in bad.output  # type: ignore[attr-defined]


def test_ctrl_c_is_exit_130_with_a_line(sandbox: Sandbox, tmp_path: Path) -> None:
    _, env, key1 = _backend(sandbox, tmp_path)
    sandbox.configure(key1, latency=3.0)  # shop 1's listing hangs long enough to interrupt
    start = sandbox.request_count(key1)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opskit", "reconcile", "--shop", "1", "--out", "r.html"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while sandbox.request_count(key1) == start and time.monotonic() < deadline:
            time.sleep(0.05)  # wait until it is talking to Stripe
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        sandbox.configure(key1, latency=0.0)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [lines[0]] and "interrupted" in lines[0]  # one line, no traceback
    assert not (tmp_path / "r.html").exists()  # nothing half-written


def test_common_url_forms_get_a_friendly_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    env["OPSKIT_DATA_DIR"] = str(tmp_path / "data")
    proc = opskit(
        "reconcile", "--database-url", "postgres://ops:hunter2@db.internal/shop", env=env,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 3
    assert "postgresql+psycopg://ops:***@db.internal/shop" in proc.stderr
    assert "Can't load plugin" not in proc.stderr and "hunter2" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    other = in_process("shops", "--database-url", "postgresql+psycopg2://ops@db/shop", env=env)
    assert other.exit_code == 3  # type: ignore[attr-defined]
    assert "postgresql+psycopg://ops@db/shop" in other.output  # type: ignore[attr-defined]
