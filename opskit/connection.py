"""``opskit.connect()``: where the database and Stripe are, with the defaults people expect."""

from __future__ import annotations

from opskit.backend.schema import Schema
from opskit.common.config import Settings, demo_database_url
from opskit.demo import world as demo_world
from opskit.ops import Ops, open_ops


def connect(
    url: str | None = None,
    schema: Schema | None = None,
    stripe_api_base: str | None = None,
    *,
    settings: Settings | None = None,
) -> Ops:
    """Open the backend database and say where Stripe requests go.

    ``url`` defaults to ``OPSKIT_DATABASE_URL``, else the embedded demo SQLite
    database in the per-user data directory (created with the seeded demo data
    on first use). ``stripe_api_base`` defaults to ``OPSKIT_STRIPE_API_BASE``,
    else Stripe itself. ``settings`` tunes limits and safety; where it leaves the
    database URL or the Stripe base unset, the environment still supplies them.
    """
    if url is None:
        url = (settings.database_url if settings else None) or Settings.from_env().database_url
    if url is None:
        url = demo_database_url()
        demo_world.ensure_database(url)
    return open_ops(url, schema, stripe_api_base, settings=settings)
