"""A day of Stripe changes planted in the demo, to show what ``ops.refresh()`` picks up.

Made through stripe-python against the demo's sandbox, in the first shop with a
test key, as that shop's own activity would be: a customer changes their email,
one is deleted, a new visitor becomes a customer nobody links, a subscription is
canceled. Each emits its event in that shop's stream only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import stripe

if TYPE_CHECKING:
    from opskit.ops import Ops

__all__ = ["plant_changes"]


def plant_changes(ops: Ops, api_base: str) -> list[str]:
    """Make the changes; returns one line per change made (no secret in them)."""
    shops = [
        s
        for s in ops.ctx.db.shop_objects().values()
        if s.key_info.usable and s.key_info.mode == "test"
    ]
    if not shops:
        return []
    shop = shops[0]
    assert shop.stripe_secret_key is not None
    client = stripe.StripeClient(shop.stripe_secret_key.strip(), base_addresses={"api": api_base})
    listed = client.v1.customers.list(params={"limit": 100}).data
    live = {c.id: c for c in listed}
    accounts = ops.accounts(shop.id)
    linked = [str(c) for c in accounts["stripe_customer_id"].dropna().unique() if str(c) in live]
    done: list[str] = []
    if linked:
        cid = linked[0]
        client.v1.customers.update(cid, params={"email": "changed.address@example.net"})
        done.append(f"shop {shop.id}: customer {cid} changed their email")
    if len(linked) > 1:
        client.v1.customers.delete(linked[1])
        done.append(f"shop {shop.id}: customer {linked[1]} was deleted")
    new = client.v1.customers.create(params={"email": "new.visitor@example.org"})
    done.append(f"shop {shop.id}: customer {new.id} signed up (no account links it)")
    subs = client.v1.subscriptions.list(params={"status": "active", "limit": 10}).data
    mine = [s for s in subs if s.customer not in linked[1:2]]
    if mine:
        client.v1.subscriptions.cancel(mine[0].id)
        done.append(f"shop {shop.id}: subscription {mine[0].id} was canceled")
    return done
