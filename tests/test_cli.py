"""The `opskit` command, through typer's CliRunner and as a real subprocess.

Small backends are built against the session sandbox (a shop whose accounts all
match, one with drift, one whose live key the sandbox rejects); one subprocess
runs the full `opskit demo` on a fresh data dir, as `make demo` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import stripe
from typer.testing import CliRunner

from opskit.backend.db import create_reference_tables
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

LIVE_KEY = "sk_live_" + "R3jected" * 3  # well-formed; the sandbox answers 401
REPO = Path(__file__).resolve().parents[1]

Backend = Callable[..., tuple[str, list[str]]]


@pytest.fixture
def backend(sandbox: Sandbox, tmp_path: Path) -> Backend:
    """``backend(drift=False, failed=False)`` -> (sqlite url, the CLI's connection args)."""

    def make(
        *, drift: bool = False, failed: bool = False, deleted: bool = False
    ) -> tuple[str, list[str]]:
        url = f"sqlite:///{tmp_path / 'backend.sqlite'}"
        engine = sa.create_engine(url)
        create_reference_tables(engine)
        engine.dispose()
        key = make_key("cli")
        client = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
        shops = [{"id": 1, "name": "Northwind", "stripe_secret_key": key}]
        accounts = []
        for i in range(3):
            email, name = f"user{i}@example.com", f"User {i}"
            cus = client.v1.customers.create({"email": email, "name": name})
            accounts.append(
                {"id": 10 + i, "shop_id": 1, "email": email, "name": name,
                 "details": {"stripe_customer_id": cus.id, "plan_note": "vip"}}
            )  # fmt: skip
        if deleted:
            client.v1.customers.delete(accounts[0]["details"]["stripe_customer_id"])
        if drift:
            accounts.append({"id": 20, "shop_id": 1, "email": "new@example.com", "details": {}})
        if failed:
            shops.append({"id": 2, "name": "Legacy", "stripe_secret_key": LIVE_KEY})
            accounts.append({"id": 30, "shop_id": 2, "email": "old@example.com", "details": {}})
        insert(url, shops, accounts)
        return url, ["--database-url", url, "--stripe-api-base", sandbox.url]

    return make


def run(*args: str, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(app, list(args), env=env)


# -- exit codes ----------------------------------------------------------------------------------


def test_exit_0_when_everything_matches(backend: Backend, tmp_path: Path) -> None:
    _, conn = backend()
    out = tmp_path / "report.html"
    result = run("reconcile", *conn, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.is_file() and "<svg" in out.read_text()
    assert f"Wrote {out}" in result.stdout
    assert "Result: all match (exit 0)" in result.stdout
    assert "Customers: 3 rows, 3 match, 0 findings" in result.stdout


def test_exit_1_on_drift(backend: Backend) -> None:
    _, conn = backend(drift=True)
    result = run("reconcile", *conn, "--report", "customers")
    assert result.exit_code == 1, result.output
    assert "no_customer_id 1" in result.stdout  # the summary table
    assert "20" in result.stdout and "no_customer_id" in result.stdout  # the finding
    assert "Subscriptions" not in result.stdout


def test_exit_2_when_a_shop_fails_wins_over_drift(backend: Backend, tmp_path: Path) -> None:
    """As a subprocess, configured through the environment only."""
    url, conn = backend(drift=True, failed=True)
    env = {**os.environ, "OPSKIT_DATABASE_URL": url, "OPSKIT_STRIPE_API_BASE": conn[-1]}
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "opskit", "reconcile", "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "shop_error" in proc.stdout and "a shop failed" in proc.stdout
    assert "Stripe customers" not in proc.stderr  # piped: no progress bar
    for text in (proc.stdout, proc.stderr, out.read_text()):
        assert LIVE_KEY not in text and LIVE_KEY[8:] not in text


def test_shop_not_configured_is_drift(backend: Backend, tmp_path: Path) -> None:
    url, conn = backend()
    insert(url, [{"id": 5, "name": "Pop-up", "stripe_secret_key": None}])
    assert run("reconcile", *conn, "--shop", "5").exit_code == 1
    assert run("reconcile", *conn, "--shop", "1").exit_code == 0


# -- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet", "html", "json"])
def test_every_format_from_the_command(backend: Backend, tmp_path: Path, fmt: str) -> None:
    _, conn = backend(drift=True)
    out = tmp_path / ("report-{report}.out" if fmt in ("csv", "parquet") else "report.out")
    result = run("reconcile", *conn, "--out", str(out), "--format", fmt, "--quiet")
    assert result.exit_code == 1, result.output
    if fmt in ("csv", "parquet"):  # one file per report, named as asked
        path = tmp_path / "report-customers.out"
        df = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert sorted(df["status"].astype(str)) == ["match"] * 3 + ["no_customer_id"]
        if fmt == "parquet":
            assert str(df["account_id"].dtype) == "string"
            assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    else:
        assert out.stat().st_size > 0


# -- human output --------------------------------------------------------------------------------


def test_quiet_prints_nothing(backend: Backend, tmp_path: Path) -> None:
    _, conn = backend(drift=True)
    result = run("reconcile", *conn, "--quiet", "--out", str(tmp_path / "r-{report}.csv"))
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr == ""
    assert sorted(p.name for p in tmp_path.glob("r-*")) == [
        "r-customers.csv",
        "r-subscriptions.csv",
    ]


def test_shops_are_masked(backend: Backend) -> None:
    url, conn = backend(failed=True)
    result = run("shops", "--database-url", url)
    assert result.exit_code == 0, result.output
    assert "sk_live_…" in result.stdout and "Legacy" in result.stdout
    assert LIVE_KEY[8:] not in result.output


# -- bad input: one line, exit 3, no traceback -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--shop", "99"], "opskit shops"),
        (["--shop", "x"], "--shop"),
        (["--out", "/nonexistent/dir/r.html"], "does not exist"),
        (["--out", "r.html", "--format", "xls"], "unknown format"),
        (["--out", "r.xls"], "suffix"),
        (["--out", "r.html", "--format", "csv"], "does not match the suffix"),
        (["--report", "invoices"], "unknown report"),
        (["--executor", "dask://no-port"], "invalid executor"),
        (["--executor", "dask://127.0.0.1:9"], "cannot reach the dask scheduler"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_input_exits_3(backend: Backend, args: list[str], expect: str) -> None:
    _, conn = backend()
    result = run("reconcile", *conn, *args, env={"OPSKIT_DASK_TIMEOUT": "0.5"})
    assert result.exit_code == 3, result.output
    assert expect in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and result.stdout == ""


def test_unreachable_database_exits_3(tmp_path: Path) -> None:
    for url in (
        "postgresql+psycopg://nobody@127.0.0.1:9/x",
        "nosuchdb://x",
        f"sqlite:///{tmp_path}/no/x.db",
        "",  # --database-url "$UNSET" in a cron job: never the demo database instead
        "  ",
    ):
        result = run("reconcile", "--database-url", url)
        assert result.exit_code == 3, (url, result.output)
        assert "OPSKIT_DATABASE_URL" in result.stderr or "URL" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback_and_keeps_the_exit_code(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, conn = backend()
    result = run("reconcile", *conn, "--shop", "99", "--debug")
    assert result.exit_code == 3  # usage error, as without --debug (not 1, the drift code)
    assert "Traceback" in result.stderr and "UnknownShop" in result.stderr
    monkeypatch.setenv("OPSKIT_DEBUG", "1")
    assert run("reconcile", *conn, "--shop", "99").exit_code == 3
    assert run("reconcile", *conn, "--no-such-option").exit_code == 3
    monkeypatch.setattr("opskit.ops.Ops.reconcile", lambda *a, **k: 1 / 0)  # a bug
    broken = run("reconcile", *conn)
    assert broken.exit_code == 4 and "ZeroDivisionError" in broken.stderr


# -- sync and audit ----------------------------------------------------------------------------


def test_sync_plan_then_apply_then_audit(backend: Backend, tmp_path: Path) -> None:
    url, conn = backend(deleted=True)
    plan = tmp_path / "plan.csv"
    result = run("sync", *conn, "--plan-out", str(plan))
    assert result.exit_code == 1, result.output  # changes proposed
    df = pd.read_csv(plan)
    assert df[["account_id", "key", "source_status"]].values.tolist() == [
        [10, "stripe_customer_id", "deleted_in_stripe"]
    ]
    assert run("sync", *conn, "--apply", str(plan)).exit_code == 3  # no --actor
    # Applying asks the shop's Stripe (is the customer really deleted?): the sandbox.
    result = run("sync", *conn, "--apply", str(plan), "--actor", "ana")
    assert result.exit_code == 0, result.output
    assert "Applied 1 of 1" in result.stdout
    again = run("sync", *conn, "--apply", str(plan), "--actor", "ana")
    # Applied already (a re-run after a crash): success, said so, nothing written twice.
    assert again.exit_code == 0 and "already applied" in again.stdout, again.output
    log = run("audit", "--database-url", url)
    assert log.exit_code == 0 and "ana" in log.stdout and "sync.set_detail" in log.stdout


def test_sync_needs_one_mode() -> None:
    result = run("sync")
    assert result.exit_code == 3 and "--plan-out" in result.stderr


@pytest.mark.parametrize("name", ["plan.xlsx", "plan.html", "plan.json"])
def test_sync_plan_only_in_a_format_apply_reads(
    backend: Backend, tmp_path: Path, name: str
) -> None:
    """A plan --apply cannot read is refused up front, not after the run."""
    _, conn = backend(deleted=True)
    result = run("sync", *conn, "--plan-out", str(tmp_path / name))
    assert result.exit_code == 3, result.output
    assert ".csv" in result.stderr and not (tmp_path / name).exists()


# -- the demo, as `make demo` runs it ---------------------------------------------------------


def test_demo_on_a_fresh_machine(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    env["OPSKIT_DATA_DIR"] = str(tmp_path / "data")  # nothing there yet
    proc = subprocess.run(
        [sys.executable, "-m", "opskit", "demo", "--out", "demo.html"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in ("Northwind Coffee", "Legacy Outlet", "Corner Kiosk"):
        assert name in out
    assert "sk_test_…" in out  # masked keys only
    for text in ("Customers: findings", "Subscriptions: findings", "multiple_active", "wrong_shop",
                 "Sync plan (dry run, nothing written)", "Reconcile would exit 2",
                 "Since the last refresh", "deleted_in_stripe"):  # fmt: skip
        assert text in out
    assert (tmp_path / "demo.html").stat().st_size > 10_000
    world = tmp_path / "data" / "demo"  # one folder per demo world
    assert (world / "demo.sqlite").is_file()
    assert not (world / "demo.sandbox.json").exists()  # the sandbox stopped with the command


def test_help_documents_the_exit_codes() -> None:
    result = run("reconcile", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "shop_not_configured counts as drift" in text and "OPSKIT_DATABASE_URL" in text


def test_sandbox_command_serves_until_terminated() -> None:
    key = make_key("cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "opskit", "sandbox", "--port", "0", "--keys", key],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.split()[-1]
        client = stripe.StripeClient(key, base_addresses={"api": url})
        assert client.v1.customers.create({"email": "a@example.com"}).id.startswith("cus_")
        with pytest.raises(stripe.AuthenticationError):
            stripe.StripeClient(make_key("other"), base_addresses={"api": url}).v1.customers.list()
    finally:
        proc.terminate()
        rest, err = proc.communicate(timeout=10)
    assert key not in line + rest + err  # keys are never echoed
