"""Link an existing Stripe customer to an account (instead of creating a duplicate).

:func:`link_customer` writes ``details.stripe_customer_id`` only, after asking the
shop's Stripe that the customer exists there and is not deleted, has the account's
email (opskit's email rule) and is linked by no other account of the shop. The
details write and its audit row (action ``customer.link``) are one transaction, in
which "linked by no other account" is checked again while competing links of the same
customer wait (:func:`_serialize_links`); refusals are audited too. A link to the
key's other mode is never replaced (:func:`opskit.writes.actions.current_link`).
Nothing is written to Stripe, so no idempotency key and
no intent: repeating a link that holds is success (``already_done``).

:func:`same_email_offer` is what a face shows before creating a customer: the
customers :func:`create_customer <opskit.writes.actions.create_customer>` would
refuse to duplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
import stripe
from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit, writeback
from opskit.common.context import Context
from opskit.common.exceptions import InputError, OpskitError
from opskit.common.models import stripe_id_problem
from opskit.core.normalize import email_key
from opskit.writes.actions import (
    _db_error,
    _load_account,
    _retrieve,
    _Write,
    current_link,
    mark_replayed,
)
from opskit.writes.refusals import audited
from opskit.writes.same_email import same_email_customers

__all__ = ["link_customer", "same_email_offer"]


def same_email_offer(ctx: Context, account_id: Any) -> list[dict[str, Any]]:
    """The shop's customers with the account's email that no account links, oldest first.

    The same answer whether or not the account links a customer itself: for an
    unlinked account they are what :func:`create_customer
    <opskit.writes.actions.create_customer>` refuses to duplicate (link one instead);
    for a linked account they are likely duplicates of its customer (the reconcile
    report's ``orphan_in_stripe``), and linking one replaces the link
    (``link_customer(..., force=True)``). The account's own customer is never
    listed (it is linked). Empty when the account has no email. Raises
    :class:`~opskit.common.exceptions.DetailsUnreadable` for unreadable details,
    ``StripeNotConfigured`` for a shop without a usable key, and Stripe's errors.
    """
    from opskit.writes.actions import _client

    account, _details = _load_account(ctx, account_id)
    if not email_key(account.email):
        return []
    shop = ctx.db.shop(account.shop_id)  # type: ignore[arg-type]
    return same_email_customers(_client(ctx, shop), ctx.db, account)


@audited("customer.link", "account_id")
def link_customer(
    ctx: Context,
    account_id: Any,
    customer_id: str,
    *,
    actor: str = "opskit",
    confirm: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Store ``customer_id`` as the account's ``stripe_customer_id``; the customer as a dict.

    Checked in the shop's own Stripe account first; refused (audited, nothing
    written) when the customer is not there or deleted, when its email is not the
    account's, when another account of the shop links it, or when the account
    already links another customer; ``force=True`` links it anyway in the last
    three cases. A link to a customer of the key's other mode (``mode_mismatch``)
    is never replaced, ``force`` or not (``InputError``, as ``create_customer``).
    "Linked by no other account" is checked again inside the write's transaction,
    which concurrent links of the same customer wait for: of two at once, one is
    refused (``InputError``). A live key needs ``confirm=True``. Unreadable details are refused
    before anything (``DetailsUnreadable``). Linking the customer already linked
    returns it (audited ``ok`` with ``already_done``).
    """
    if (
        not isinstance(customer_id, str)
        or not customer_id.strip()
        or stripe_id_problem("stripe_customer_id", customer_id)
    ):
        why = stripe_id_problem("stripe_customer_id", customer_id) if customer_id else None
        shown = (
            repr(customer_id) if len(repr(customer_id)) <= 80 else repr(customer_id)[:77] + "..."
        )
        raise InputError(
            f"{shown} is not a Stripe customer id" + (f": {why}" if why else ""),
            guidance="Pass the customer's id as Stripe shows it: cus_...",
        )
    cid = customer_id.strip()
    account, details = _load_account(ctx, account_id)
    shop = ctx.db.shop(account.shop_id)  # type: ignore[arg-type]
    aid = str(account.id)
    existing = details.get("stripe_customer_id")
    existing = str(existing) if existing else None
    write = _Write(
        ctx, actor=actor, shop=shop, action="customer.link", target=f"account:{aid}",
        params={"customer": cid, "replaces": existing, "force": force or None},
        idempotency_key=None,
    )  # fmt: skip
    write.guard(confirm)
    client = write.client()
    customer = _retrieve(write, lambda: client.v1.customers.retrieve(cid))

    def refuse(message: str, guidance: str) -> None:
        exc = InputError(f"account {aid}: {message}; nothing linked", guidance=guidance)
        raise write.refuse(exc)

    if customer is None or customer.get("deleted"):
        refuse(
            f"customer {cid} is not in shop {shop.id}'s Stripe account"
            + (" (deleted)" if customer else ""),
            "Check the id and the shop: each shop has its own Stripe account.",
        )
    assert customer is not None
    if existing == cid:
        write.record("ok", result=cid, params={**write.params, "already_done": True})
        return mark_replayed(customer)
    if existing:
        # The same rule as create_customer's: a link to the key's other mode is never
        # replaced, force or not (refused and audited there).
        current_link(write, client, existing)
    if not force:
        if existing:
            refuse(
                f"it already links customer {existing}",
                "Pass force=True to replace the link.",
            )
        if email_key(customer.get("email")) != email_key(account.email):
            refuse(
                f"customer {cid}'s email {customer.get('email')!r} is not the account's "
                f"{account.email!r}",
                "Check that it is the same person; pass force=True to link it anyway.",
            )
        taken = _linked_by_others(ctx, shop.id, cid, aid)
        if taken:
            refuse(_taken_message(cid, taken), _TAKEN_GUIDANCE)
    audit.ensure_table(ctx.db)  # outside the transaction: DDL never joins (or locks) it
    taken = []
    try:
        with ctx.db.engine.begin() as conn:
            # Check and write in one transaction that competing links of this customer
            # wait for: the check above may be stale by now (another process linking
            # the same customer to another account at the same moment).
            _serialize_links(ctx, conn, shop.id, cid)
            taken = [] if force else _linked_by_others(ctx, shop.id, cid, aid)
            if taken:
                raise _Taken  # roll back (nothing written), then refuse outside
            wrote = writeback.write_details(
                ctx.db, conn, aid, {"stripe_customer_id": cid},
                expect={"stripe_customer_id": existing}, shop_id=shop.id,
            )  # fmt: skip
            done = {**write.params, **({"already_done": True} if wrote.already else {})}
            write.record("ok", result=cid, params=done, conn=conn)
    except _Taken:
        refuse(_taken_message(cid, taken), _TAKEN_GUIDANCE)
    except (SQLAlchemyError, OpskitError, stripe.StripeError) as exc:
        reason = exc.message if isinstance(exc, OpskitError) else _db_error(exc)  # type: ignore[arg-type]
        write.record("error", result=cid, error=reason)
        raise
    return customer


class _Taken(Exception):
    """Inside the link's transaction: another account links the customer now."""


_TAKEN_GUIDANCE = "One customer per account: link another, or pass force=True."


def _taken_message(cid: str, accounts: list[str]) -> str:
    return f"customer {cid} is already linked by account {', '.join(accounts)}"


def _linked_by_others(ctx: Context, shop_id: Any, cid: str, aid: str) -> list[str]:
    """The shop's accounts other than ``aid`` that link ``cid``, as committed now."""
    accounts = ctx.db.load_accounts([shop_id])
    accounts = accounts[accounts["stripe_customer_id"].eq(cid).fillna(False)]
    return [str(a) for a in accounts["account_id"] if str(a) != aid]


def _serialize_links(ctx: Context, conn: sa.Connection, shop_id: Any, cid: str) -> None:
    """Make ``conn``'s transaction the only one linking ``cid`` in ``shop_id`` until it ends.

    PostgreSQL: a transaction-level advisory lock on a hash of (shop, customer id),
    released by commit, rollback or a dropped connection (a killed process never
    keeps it). SQLite: ``BEGIN IMMEDIATE``, the database's write lock, taken before
    the re-check (waits up to the driver's busy timeout, 5 s, then fails as a
    database error: nothing linked). Other databases: the check stays optimistic.
    """
    dialect = ctx.db.dialect
    if dialect == "postgresql":
        digest = hashlib.sha256(f"opskit.customer.link\0{shop_id}\0{cid}".encode()).digest()
        lock = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock})
    elif dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
