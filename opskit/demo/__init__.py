"""The seeded demo world: a sandbox populated from one seed and the database that matches it.

Holds: ``world`` (the plan, the Stripe side created over HTTP, the database rows),
``home`` (where a demo world lives: its database, the sandbox URL recorded
beside it, the owner's lock) and ``session`` (a running sandbox plus an
:class:`~opskit.Ops` on the matching database, started or attached to).
May import: the public API layer (``opskit.ops``), everything below it, and
``opskit.sandbox`` (the demo and the tests are the sandbox's only users).
"""

from opskit.demo.home import DemoNotRunning, DemoWorldBusy, World, default_world, named_world
from opskit.demo.marker import NotADemoDatabase
from opskit.demo.session import DemoSession, attach, attach_or_start, start
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
    "DemoNotRunning",
    "DemoPlan",
    "DemoSession",
    "DemoShop",
    "DemoWorldBusy",
    "NotADemoDatabase",
    "Sandbox",
    "World",
    "attach",
    "attach_or_start",
    "build_plan",
    "database_rows",
    "default_world",
    "ensure_database",
    "named_world",
    "populate_stripe",
    "serve_forever",
    "start",
    "write_database",
]
