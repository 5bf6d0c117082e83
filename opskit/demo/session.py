"""A whole demo session: a fresh sandbox, populated from the seed, and the database to match."""

from __future__ import annotations

from dataclasses import dataclass

from opskit.common.config import demo_database_url
from opskit.demo.world import SEED, build_plan, populate_stripe, write_database
from opskit.ops import Ops, open_ops
from opskit.sandbox import Sandbox


@dataclass
class DemoSession:
    """A running sandbox plus an Ops connected to the demo database that matches it."""

    sandbox: Sandbox
    ops: Ops

    def stop(self) -> None:
        self.sandbox.stop()

    def __enter__(self) -> DemoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(url: str | None = None, seed: int = SEED, *, port: int = 0) -> DemoSession:
    """Start a fresh sandbox, populate it from ``seed`` and rebuild the demo database to match."""
    url = url or demo_database_url()
    plan = build_plan(seed)
    sandbox = Sandbox(port=port)
    api_base = sandbox.start()
    try:
        populate_stripe(plan, api_base)
        write_database(url, plan)
        ops = open_ops(url, stripe_api_base=api_base)
    except BaseException:
        sandbox.stop()
        raise
    return DemoSession(sandbox, ops)
