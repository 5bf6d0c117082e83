"""The seeded demo world: a sandbox populated from one seed and the database that matches it.

Holds: ``world`` (the plan, the Stripe side created over HTTP, the database rows)
and ``session`` (a running sandbox plus an :class:`~opskit.Ops` on the matching
database). May import: the public API layer (``opskit.ops``), everything below
it, and ``opskit.sandbox`` (the demo and the tests are the sandbox's only users).
"""

from opskit.demo.session import DemoSession, start
from opskit.demo.world import (
    SEED,
    DemoAccount,
    DemoPlan,
    DemoShop,
    build_plan,
    database_rows,
    ensure_database,
    populate_stripe,
    write_database,
)
from opskit.sandbox import Sandbox, serve_forever

__all__ = [
    "SEED",
    "DemoAccount",
    "DemoPlan",
    "DemoSession",
    "DemoShop",
    "Sandbox",
    "build_plan",
    "database_rows",
    "ensure_database",
    "populate_stripe",
    "serve_forever",
    "start",
    "write_database",
]
