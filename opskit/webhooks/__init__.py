"""The webhook receiver: Stripe's deliveries per shop, checked, stored, applied.

Holds: ``receiver`` (an aiohttp app with one URL per shop, ``/stripe/webhook/<shop
id>``, and ``serve`` to run it on its own; ``receive``/``process`` for a backend
that mounts the route in its own framework, e.g. FastAPI),
``replay`` (re-processing stored deliveries), ``secrets`` (each shop's signing
secrets, several at once for rotation, never shown unmasked).
Sits between the demo and ``Ops``: it uses an :class:`~opskit.ops.Ops` for the
database and the shops' keys, and the writes' event processing.
May import: ``opskit.ops``, ``opskit.writes``, ``opskit.backend``, ``opskit.stripeapi``,
``opskit.core``, ``opskit.common``; never the faces, the reports or the sandbox.
"""

from opskit.webhooks.receiver import (
    MAX_BODY,
    REJECTED_BODY_KEPT,
    Delivery,
    check_serve_options,
    make_app,
    process,
    receive,
    serve,
)
from opskit.webhooks.replay import deliveries, replay
from opskit.webhooks.secrets import add_secret, list_secrets, remove_secret

__all__ = [
    "MAX_BODY",
    "REJECTED_BODY_KEPT",
    "Delivery",
    "add_secret",
    "check_serve_options",
    "deliveries",
    "list_secrets",
    "make_app",
    "process",
    "receive",
    "remove_secret",
    "replay",
    "serve",
]
