"""Customers the shop's Stripe already has for an account's email, that no account links.

Before opskit creates a customer it asks whether one is already there: a checkout
that created the customer but never stored the link, a customer made by hand in the
dashboard. Linking it keeps one customer per person; creating another makes the
duplicate the reconcile report then flags as ``orphan_in_stripe``.

"Same email" is opskit's one rule (:func:`opskit.core.normalize.email_key`: NFKC,
invisible characters removed, lower-case). Stripe's list filter on ``email`` is
exact and case-sensitive, so the account's email is asked for as stored (trimmed),
lower-cased and in its normalized form (one to three list requests, strongly
consistent, unlike search); every customer found is then compared by the rule. A
customer stored with other capitals than those three (``Ann@X.io`` for an account's
``ann@X.io``) is not found here; the reconcile report's orphan pairing, which reads
every customer, names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from opskit.backend.db import Database
from opskit.common.models import Account
from opskit.core.normalize import email_key

__all__ = ["same_email_customers"]

_PAGES = 3  # per spelling: 300 customers of one email is far past any real duplicate


def same_email_customers(
    client: stripe.StripeClient,
    db: Database,
    account: Account,
    *,
    email: str | None = None,
    skip_call: str | None = None,
) -> list[dict[str, Any]]:
    """The shop's customers with the account's email (``email`` overrides it) that no account
    of the shop links, oldest first, as plain dicts.

    Deleted customers are never listed by Stripe; customers made by the call
    fingerprinted ``skip_call`` (``metadata.opskit_call``: the same create, repeated
    after a crash or running concurrently) are left out. Stripe's errors propagate.
    """
    address = email if email is not None else account.email
    key = email_key(address)
    if not key:
        return []
    spellings = dict.fromkeys(s for s in (str(address).strip(), str(address).strip().lower(), key))
    found: dict[str, dict[str, Any]] = {}
    for spelling in spellings:
        page = client.v1.customers.list(params={"email": spelling, "limit": 100})
        for _ in range(_PAGES):
            for c in page.data:
                found.setdefault(str(c.id), c.to_dict())
            if not page.has_more:
                break
            page = client.v1.customers.list(
                params={"email": spelling, "limit": 100, "starting_after": page.data[-1].id}
            )
    if not found:
        return []
    accounts = db.load_accounts([account.shop_id])
    linked = set(accounts["stripe_customer_id"].dropna().astype(str))
    out = [
        c
        for cid, c in found.items()
        if cid not in linked
        and not c.get("deleted")
        and email_key(c.get("email")) == key
        and (skip_call is None or _call_of(c) != skip_call)
    ]
    return sorted(out, key=lambda c: (int(c.get("created") or 0), str(c.get("id"))))


def _call_of(customer: Mapping[str, Any]) -> str | None:
    meta = customer.get("metadata") or {}
    value = meta.get("opskit_call") if isinstance(meta, Mapping) else None
    return None if value is None else str(value)
