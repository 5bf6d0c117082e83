"""Kill -9 at random points of opskit's Stripe writes: a process of its own that forks one
child per write and SIGKILLs it after a random delay.

Each child connects to the database first and says so through a pipe; the
kill delay runs from there, so kill points fall in the write itself (the action
call: local reads, intent, request, outcome, details), uniformly over its duration
as measured by a first, unkilled write of each kind.

Run as ``python -m tests.faults.killer CONFIG.json``; prints one JSON line per write:
``{"i": .., "action": .., "actor": .., "delay": .., "killed": bool, "exit": ..}``.

opskit is imported once here, then each write runs in a forked child, so a kill point
costs milliseconds, not an interpreter start. The parent holds no database connection,
Stripe client or thread when it forks: each child opens its own.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from typing import Any

from opskit.backend import audit
from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.writes import actions


def _open(cfg: dict[str, Any]) -> Context:
    settings = Settings(
        database_url=cfg["db_url"], stripe_api_base=cfg["api_base"], max_retry_wait=2.0
    )
    ctx = Context(db=Database(cfg["db_url"]), settings=settings)
    ctx.db.shop_objects()  # connected and reflected: what follows is the write itself
    return ctx


def _write(ctx: Context, job: dict[str, Any]) -> None:
    actor = job["actor"]
    kind = job["action"]
    if kind == "customer.create":
        actions.create_customer(ctx, job["account"], actor=actor)
    elif kind == "payment_intent.create":
        actions.create_payment_intent(ctx, job["account"], 1500, "eur", actor=actor, nonce=actor)
    elif kind == "subscription.create":
        actions.create_subscription(
            ctx, job["account"], job["price"], actor=actor, trial_period_days=7
        )
    elif kind == "subscription.cancel":
        actions.cancel_subscription(
            ctx, job["subscription"], shop_id=job["shop"], at_period_end=False, actor=actor
        )
    else:
        raise ValueError(kind)


def main(path: str) -> None:
    with open(path) as f:
        cfg = json.load(f)
    # Opened (tables reflected, audit table checked) once, before any fork; its
    # connections are closed so each child opens its own, as a new process would.
    ctx = _open(cfg)
    audit.ensure_table(ctx.db)
    ctx.db.engine.dispose()
    rng = random.Random(cfg["seed"])
    durations: dict[str, float] = {}  # per action: how long a whole write takes here
    for job in cfg["jobs"]:
        calibrating = job["action"] not in durations
        # The first write of each kind runs to its end and is timed; the others are
        # killed at a point drawn uniformly over that duration (most of it).
        delay = 60.0 if calibrating else rng.uniform(0.0, 0.9 * durations[job["action"]])
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: open, say ready, one write, out without cleanup
            os.close(ready_r)
            code = 0
            try:
                with ctx.db.engine.connect():
                    pass  # connected: what follows is the write itself
                os.write(ready_w, b"1")
                _write(ctx, job)
            except BaseException as exc:  # noqa: BLE001 - reported, judged by the test
                sys.stderr.write(f"{job['actor']}: {type(exc).__name__}: {exc}\n")
                code = 3
            os._exit(code)
        os.close(ready_w)
        forked = time.monotonic()
        os.read(ready_r, 1)  # the write starts now (or the child failed to open)
        os.close(ready_r)
        started = time.monotonic()
        deadline = started + delay
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.001)
        else:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        if calibrating:
            durations[job["action"]] = time.monotonic() - started
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        exit_code = None if killed else os.WEXITSTATUS(status)
        line = {
            **job, "delay": round(delay, 4), "killed": killed, "exit": exit_code,
            "open_s": round(started - forked, 3), "ran_s": round(time.monotonic() - started, 3),
        }  # fmt: skip
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
