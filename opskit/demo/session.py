"""A whole demo session: a sandbox populated from the seed and the database that matches it.

Every entry point (``opskit demo``, ``opskit.demo.start()``, ``opskit.connect()``
on the demo database, ``make lab``, a notebook kernel) goes through here, so a
database and the sandbox holding its Stripe ids always belong together (see
:mod:`opskit.demo.home`): the process that starts a world owns it and records its
sandbox beside the database; others attach to that sandbox and never re-seed.
"""

from __future__ import annotations

import atexit
import sys
import threading
from dataclasses import dataclass, field

from opskit.backend.own_tables import reset_own_tables
from opskit.demo import home, shopbackend
from opskit.demo.marker import check_rebuildable
from opskit.demo.money import plant_money
from opskit.demo.world import (
    SEED,
    build_plan,
    populate_other_mode,
    populate_stripe,
    write_database,
)
from opskit.ops import Ops, open_ops
from opskit.sandbox import Sandbox


@dataclass
class DemoSession:
    """A demo world's database and its sandbox, with an Ops connected to both.

    ``sandbox`` is the running :class:`~opskit.sandbox.Sandbox` when this process
    owns the world, None when it attached to another process's; ``api_base`` is
    the sandbox's URL either way.
    """

    sandbox: Sandbox | None
    ops: Ops
    api_base: str
    world: home.World | None = None
    owner: bool = True
    _stopped: bool = field(default=False, repr=False)

    @property
    def url(self) -> str:
        """Where the sandbox listens (same as ``api_base``)."""
        return self.api_base

    def stop(self) -> None:
        """Stop the sandbox and give the world up (owner); forget it (attached). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.ops.ctx.db.engine.dispose()
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.owner and self.world is not None:
            _owned.pop(self.world.lock_path, None)
            home.disown(self.world)

    def __enter__(self) -> DemoSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _world(url: str | None, world: str | None) -> home.World:
    if url is not None and world is not None:
        raise ValueError("pass url or world, not both")
    if url is not None:
        return home.world_for_url(url)
    return home.named_world(world) if world else home.default_world()


def start(
    url: str | None = None,
    seed: int | None = None,
    *,
    port: int = 0,
    world: str | None = None,
    shape: str = "shop-backend",
) -> DemoSession:
    """Start a fresh sandbox, populate it from ``seed`` and rebuild the world's database.

    ``shape``: ``shop-backend`` (the default: the backend opskit serves, UUID ids,
    emails in ``accounts.name``, snapshots, products and orders; see
    :mod:`opskit.demo.shopbackend`) or ``reference`` (opskit's first schema:
    integer ids, an email column, subscription fields in details; see
    :mod:`opskit.demo.world`).

    ``url``: the database to (re)build (default: the default world's SQLite file in
    the data dir); ``world``: a named separate world instead. The sandbox's URL is
    recorded beside the database while the session runs, so ``opskit.connect()``
    and the CLI in other processes use it.

    Raises :class:`~opskit.demo.marker.NotADemoDatabase` (nothing dropped or
    written) when ``url`` is a database the demo did not build: it has tables and no
    demo marker (``opskit_demo_world``, written by every demo build); only an empty
    database or a demo's is rebuilt.

    Raises :class:`~opskit.demo.home.DemoWorldBusy` when another process owns the
    world: its database is in use and is not re-seeded (attach with
    :func:`attach_or_start` or ``opskit.connect()``, or pass another ``world``).
    """
    if shape not in ("shop-backend", "reference"):
        raise ValueError(f"unknown demo shape {shape!r}: use shop-backend or reference")
    place = _world(url, world)
    db_url = url or place.url
    if place.lock_path in _owned:  # this process's
        raise place.busy_error()
    if not (place.lock_path.exists() and place.owned_elsewhere()):  # (not another's world)
        # Before the lock file, the sandbox or any write: only an empty database or one a
        # demo built is re-seeded (NotADemoDatabase names the URL; nothing is touched).
        check_rebuildable(db_url)
    if not home.own(place):  # another process's
        raise place.busy_error()
    sandbox = Sandbox(port=port)
    try:
        api_base = sandbox.start()
        # The seeded world is the shops' past: its objects are there, but no shop's
        # event stream holds their creation (README: "seeded objects emit no events"),
        # so a refresh sees only what happens after; changes made later (the demo's
        # planted day, opskit.demo.changes) emit their events as usual.
        with sandbox.seeding():
            if shape == "reference":
                seed = SEED if seed is None else seed
                plan = build_plan(seed)
                populate_stripe(plan, api_base)
                populate_other_mode(plan, sandbox.seed_other_mode)
                write_database(db_url, plan)
            else:
                seed = shopbackend.SEED if seed is None else seed
                sb_plan = shopbackend.build_plan(seed)
                shopbackend.populate(sb_plan, sandbox)
                shopbackend.write_database(db_url, sb_plan)
            ops = open_ops(db_url, stripe_api_base=api_base)
            # The world was rebuilt: opskit's own rows about the previous one (audit, open
            # intents, cursors, copies, deliveries) go too; only this database's.
            reset_own_tables(ops.ctx.db)
            plant_money(ops, sandbox)  # orders and payments with every money status
        place.write_record(api_base, seed)
    except BaseException:
        sandbox.stop()
        home.disown(place)
        raise
    session = DemoSession(sandbox, ops, api_base, place, owner=True)
    _owned[place.lock_path] = session
    return session


def attach(url: str | None = None, *, world: str | None = None) -> DemoSession | None:
    """The world's running sandbox (another process's, or this one's) as a session; else None.

    The session returned does not own the world: stopping it stops nothing.
    """
    place = _world(url, world)
    mine = _owned.get(place.lock_path)
    if mine is not None and not mine._stopped:
        ops = open_ops(url or place.url, stripe_api_base=mine.api_base)
        return DemoSession(None, ops, mine.api_base, place, owner=False)
    api_base = place.running_sandbox()
    if api_base is None:
        return None
    ops = open_ops(url or place.url, stripe_api_base=api_base)
    return DemoSession(None, ops, api_base, place, owner=False)


_owned: dict[object, DemoSession] = {}  # lock path -> the session this process owns
_kept: dict[str, DemoSession] = {}
_kept_lock = threading.Lock()


def attach_or_start(
    url: str | None = None, *, world: str | None = None, announce: bool = True
) -> DemoSession:
    """This process's session on the world: attached to its running sandbox, else started.

    A session started here lives as long as the process (stopped at exit) and is
    reused by later calls; ``announce`` prints one line on stderr saying where
    the sandbox runs and for how long.
    """
    key = f"{url}|{world}"
    with _kept_lock:
        kept = _kept.get(key)
        if kept is not None and not kept._stopped:
            return kept
        session = attach(url, world=world)
        if session is None:
            try:
                session = start(url, world=world)
            except home.DemoWorldBusy:  # its owner is still starting it: attach once up
                session = _wait_for_owner(url, world)
            if announce and session.owner:
                print(
                    f"opskit: demo data: started the local Stripe sandbox at {session.api_base} "
                    "for the demo database; it runs while this Python process does.",
                    file=sys.stderr,
                )
        _kept[key] = session
        if session.owner:
            atexit.register(session.stop)
        return session


def _wait_for_owner(url: str | None, world: str | None, timeout: float = 60.0) -> DemoSession:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = attach(url, world=world)
        if session is not None:
            return session
        time.sleep(0.25)
    raise _world(url, world).busy_error()
