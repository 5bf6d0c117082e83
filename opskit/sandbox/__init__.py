"""A local multi-tenant Stripe sandbox built on localstripe (test keys only).

>>> from opskit.sandbox import Sandbox
>>> with Sandbox() as sb:  # doctest: +SKIP
...     client = stripe.StripeClient("sk_test_shop1", base_addresses={"api": sb.url})
"""

from __future__ import annotations

from opskit.sandbox.control import RequestRecord
from opskit.sandbox.serve import serve_forever
from opskit.sandbox.server import Sandbox

__all__ = ["RequestRecord", "Sandbox", "serve_forever"]
