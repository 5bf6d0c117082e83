"""`opskit refresh` and `opskit webhooks ...` through typer's CliRunner against the sandbox."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa
import stripe
from typer.testing import CliRunner

from opskit.backend.db import create_reference_tables
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.test_refresh import World

SECRET = "whsec_" + "c" * 32


def _world(sandbox: Sandbox, tmp_path: Path) -> tuple[World, list[str]]:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    world = World(sandbox, url, n_shops=2, seed=11)
    world.new_customer(1)
    world.new_customer(2)
    return world, ["--database-url", url, "--stripe-api-base", sandbox.url]


def test_refresh_exit_codes_follow_reconcile(sandbox: Sandbox, tmp_path: Path) -> None:
    world, conn = _world(sandbox, tmp_path)
    runner = CliRunner()
    first = runner.invoke(app, ["refresh", *conn])
    assert first.exit_code == 0, first.output
    assert "full_read" in first.output and "no cursor yet" in first.output

    cid = world.customers[1][0]
    world.clients[1].v1.customers.update(cid, params={"email": "drifted@example.com"})
    drift = runner.invoke(app, ["refresh", *conn, "--out", str(tmp_path / "r.xlsx")])
    assert drift.exit_code == 1, drift.output
    assert "customer.updated" in drift.output
    assert (tmp_path / "r.xlsx").exists()

    sandbox.configure(key=world.keys[2], fail_next=100)
    try:
        failed = runner.invoke(app, ["refresh", *conn])
    finally:
        sandbox.configure(key=world.keys[2], fail_next=0)
    assert failed.exit_code == 2, failed.output
    assert world.keys[2] not in failed.output

    unknown = runner.invoke(app, ["refresh", *conn, "--shop", "99"])
    assert unknown.exit_code == 3


def test_a_bad_out_is_refused_before_any_event_is_read(sandbox: Sandbox, tmp_path: Path) -> None:
    """A one-table --out fails at once (exit 3), and the change is still there for the
    run that follows: the refusal spent no event."""
    world, conn = _world(sandbox, tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["refresh", *conn]).exit_code == 0
    cid = world.customers[1][0]
    world.clients[1].v1.customers.update(cid, params={"email": "moved@example.com"})
    for out in ("r.csv", "r.parquet"):
        bad = runner.invoke(app, ["refresh", *conn, "--report", "customers", "--out", out])
        assert bad.exit_code == 3, bad.output
        assert "{report}" in bad.output and "--report" not in bad.output.split("holds")[1]
        assert "customer.updated" not in bad.output  # nothing was read
    good = runner.invoke(app, ["refresh", *conn, "--out", str(tmp_path / "r-{report}.csv")])
    assert good.exit_code == 1, good.output
    changes = (tmp_path / "r-changes.csv").read_text()
    assert cid in changes and "customer.updated" in changes


def test_secrets_are_read_from_stdin_and_listed_masked(sandbox: Sandbox, tmp_path: Path) -> None:
    _, conn = _world(sandbox, tmp_path)
    db = conn[:2]
    runner = CliRunner()
    added = runner.invoke(app, ["webhooks", "secret", "add", "--shop", "1", *db], input=SECRET)
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["webhooks", "secret", "list", *db])
    assert "whsec_…cccc" in listed.output and SECRET not in listed.output
    bad = runner.invoke(app, ["webhooks", "secret", "add", "--shop", "1", *db], input="nope")
    assert bad.exit_code == 3
    for expires in ("yesterday", "2020-01-01"):  # unreadable, already past: usage errors
        late = runner.invoke(
            app,
            ["webhooks", "secret", "add", "--shop", "1", "--expires", expires, *db],
            input=SECRET,
        )
        assert late.exit_code == 3, late.output
        assert "--expires" in late.output and SECRET not in late.output
    assert listed.output.count("whsec_") == runner.invoke(
        app, ["webhooks", "secret", "list", *db]
    ).output.count("whsec_")  # nothing was added by the refused calls
    gone = runner.invoke(
        app, ["webhooks", "secret", "remove", "--shop", "1", "--secret", "whsec_…cccc", *db]
    )
    assert gone.exit_code == 0, gone.output
    assert "whsec_" not in runner.invoke(app, ["webhooks", "secret", "list", *db]).output


def test_serve_receives_and_replay_reports(sandbox: Sandbox, tmp_path: Path) -> None:
    world, conn = _world(sandbox, tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["refresh", *conn]).exit_code == 0
    runner.invoke(app, ["webhooks", "secret", "add", "--shop", "1", *conn[:2]], input=SECRET)
    import opskit
    from opskit import webhooks

    ops = opskit.connect(conn[1], stripe_api_base=sandbox.url)
    ready, stop = threading.Event(), threading.Event()
    port = _free_port()
    t = threading.Thread(
        target=webhooks.serve, args=(ops,), kwargs={"port": port, "ready": ready, "stop": stop}
    )
    t.start()
    try:
        assert ready.wait(20)
        world.sb.add_webhook_endpoint(
            world.keys[1], f"http://127.0.0.1:{port}/stripe/webhook/1", SECRET
        )
        world.clients[1].v1.customers.update(world.customers[1][0], params={"name": "via hook"})
        deadline = time.monotonic() + 20
        while "processed" not in set(webhooks.deliveries(ops)["outcome"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(20)
    shown = runner.invoke(app, ["webhooks", "deliveries", *conn[:2]], env={"COLUMNS": "300"})
    assert "customer.updated" in shown.output and "processed" in shown.output
    replayed = runner.invoke(app, ["webhooks", "replay", *conn])
    assert replayed.exit_code == 0 and "Replayed: 0" in replayed.output
    _ = stripe  # the sandbox clients above are stripe-python's own


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
