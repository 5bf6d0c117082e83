"""The API version of the request being served (``Stripe-Version``), for version-shaped answers.

Stripe answers each request in the version it names (else the account's default);
stripe-python 16 always names ``2026-10-28.endive``. The sandbox's default, for
requests that name none, is that same pinned version. Shapes that changed on the
way matter to opskit's users: at 2025-03-31.basil a subscription's period moved to
its items and an invoice's ``payment_intent`` moved to ``payments`` /
``confirmation_secret``; a client pinned to an older version (the backend's
``stripe`` module, say) still sees the old shapes.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import date

PINNED = "2026-10-28.endive"
BASIL = "2025-03-31"  # subscription periods on items; invoice.payment_intent removed

_VERSION_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(\.[a-z]+)?$")

current: ContextVar[str] = ContextVar("stripe_version", default=PINNED)


def valid(version: str) -> bool:
    """True for a well-formed version (``YYYY-MM-DD[.name]``, a real date, 2011 or later).

    Newer than the pinned version is accepted (answered in the pinned shapes), so a
    stripe-python release pinning a later version keeps working against the sandbox.
    """
    m = _VERSION_RE.match(version)
    if not m:
        return False
    try:
        date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return False
    return version[:10] >= "2011-01-01"


def at_least(date: str) -> bool:
    """True when the request's version is ``date`` or newer."""
    return current.get()[:10] >= date[:10]
