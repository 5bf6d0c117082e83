"""``opskit.connect()``: where the database and Stripe are, with the defaults people expect."""

from __future__ import annotations

from typing import Literal

from opskit.backend.schema import Schema
from opskit.common.config import Settings
from opskit.common.exceptions import InputError
from opskit.demo import home as demo_home
from opskit.demo import session as demo_session
from opskit.demo import world as demo_world
from opskit.ops import Ops, open_ops

DemoMode = Literal["start", "attach", "local"]


def connect(
    url: str | None = None,
    schema: Schema | None = None,
    stripe_api_base: str | None = None,
    *,
    settings: Settings | None = None,
    demo: DemoMode = "start",
) -> Ops:
    """Open the backend database and say where Stripe requests go.

    ``url`` defaults to ``OPSKIT_DATABASE_URL``, else the embedded demo world's
    SQLite database in the per-user data directory. ``stripe_api_base`` defaults
    to ``OPSKIT_STRIPE_API_BASE``, else Stripe itself. ``settings`` tunes limits
    and safety; where it leaves the database URL or the Stripe base unset, the
    environment still supplies them.

    A demo database's Stripe is opskit's local sandbox, never Stripe itself: when
    no Stripe base is given, the demo world's running sandbox (recorded beside its
    database by whichever process started it) is used. When none runs, ``demo``
    decides: ``"start"`` (default) starts it in this process (one line on stderr;
    it stops when the process exits), ``"attach"`` raises
    :class:`~opskit.demo.home.DemoNotRunning` saying in one line how to start it,
    ``"local"`` opens the database for local reads only (``shops()``,
    ``accounts()``, ``audit_log()``).
    """
    if url is not None and not url.strip():
        # An empty --database-url "$UNSET" in a cron job must not report on demo data.
        raise InputError(
            "the database URL is empty",
            guidance="Give the backend's SQLAlchemy URL (postgresql+psycopg://user@host/db), "
            "or leave the option out to use the demo database.",
        )
    env = Settings.from_env()
    configured = url or (settings.database_url if settings else None) or env.database_url
    base_given = (
        stripe_api_base is not None
        or (settings is not None and settings.stripe_api_base is not None)
        or env.stripe_api_base is not None
    )
    if configured is None:
        target = demo_home.default_world().url
    elif demo_home.is_demo_database(configured):
        target = configured
    else:
        return open_ops(configured, schema, stripe_api_base, settings=settings)
    if base_given:  # the user says where Stripe is: only make sure the database exists
        demo_world.ensure_database(target)
        return open_ops(target, schema, stripe_api_base, settings=settings)
    url_arg = None if configured is None else target
    attached = demo_session.attach(url_arg)
    if attached is not None:
        return open_ops(target, schema, attached.api_base, settings=settings)
    if demo == "start":
        session = demo_session.attach_or_start(url_arg)
        return open_ops(target, schema, session.api_base, settings=settings)
    if demo == "attach":
        raise demo_home.DemoNotRunning(
            "this is the demo database, whose Stripe is opskit's local sandbox, and that "
            "sandbox is not running"
        )
    demo_world.ensure_database(target)
    return open_ops(target, schema, None, settings=settings)
