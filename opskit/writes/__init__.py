"""The writes: sync plans, Stripe writes, the live-mode guard, idempotency keys.

Holds: ``sync`` (proposed local changes and applying them), ``actions`` (creating
customers, payment intents, subscriptions; cancelling), ``guard`` (live-key
confirmation decided at write time), ``idempotency`` (keys derived from a call).
May import: ``opskit.backend``, ``opskit.stripeapi``, ``opskit.core``, ``opskit.common``.
"""
