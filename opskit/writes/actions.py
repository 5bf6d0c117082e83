"""Stripe writes for ad-hoc fixes: customers, payment intents, subscriptions.

Every function here

1. validates its input before any request (amounts, currency, account, shop,
   the account's customer) and raises a clear error when it cannot go on;
2. derives an idempotency key (:mod:`opskit.writes.idempotency`) from the action, the
   shop, the target and the parameters plus the caller's ``nonce``, so
   repeating a call (double click, re-run cell, retried request) replays the
   first answer instead of writing twice;
3. refuses live-key writes without confirmation (:mod:`opskit.writes.guard`);
4. audits every attempted write, Stripe's and the database's, ok or not
   (:mod:`opskit.backend.audit`);
5. returns the Stripe object as a plain dict.

Input errors raised before anything is attempted (unknown account or shop, bad
amount, no customer) are audited as ``refused`` too, with no request sent
(:mod:`opskit.writes.refusals`). A call that returns an earlier result (Stripe
replayed an identical request, or the call was already done) returns it with
``replayed=True`` (:func:`mark_replayed`) and audits ``already_done``.

Multi-step writes (Stripe, then the account's details) cannot share one
transaction. When the Stripe step succeeds and the database step fails, the
Stripe object's id is already in the audit log (its ``*.create`` row) and
:class:`PartialWrite` says so: calling again with the same arguments replays
the same Stripe object (same idempotency key, for 24 hours at Stripe) and
stores it; ``ops.sync_plan()`` also proposes the link for a certain match.

Objects opskit creates carry ``metadata.opskit_account_id`` and
``metadata.opskit_call`` (a fingerprint of the call): repeating a completed
``create_customer``/``create_subscription`` returns the object already linked
instead of refusing (a no-op, audited as such).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
import stripe
from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit, writeback
from opskit.common.context import Context
from opskit.common.exceptions import (
    AuditUnavailable,
    DuplicateCustomer,
    InputError,
    OpskitError,
    PartialWrite,
    StripeCustomerMissing,
    StripeRetriesExhausted,
    UnknownSubscription,
    WriteOutcomeUnknown,
)
from opskit.common.ids import id_list
from opskit.common.keys import redact
from opskit.common.models import Account, Shop, parse_details
from opskit.common.stripe_errors import describe_error
from opskit.common.stripe_modes import other_mode, stripe_message
from opskit.core import subscription_status
from opskit.core.money import format_money, validate_amount
from opskit.stripeapi.clients import client_for_shop, client_limits
from opskit.writes import inflight, writers
from opskit.writes.guard import check_live_write
from opskit.writes.idempotency import derive_key, step_key
from opskit.writes.lookup import TAG, find_written
from opskit.writes.refusals import audited
from opskit.writes.same_email import same_email_customers

__all__ = [
    "PartialWrite",
    "UnknownSubscription",
    "cancel_subscription",
    "create_customer",
    "create_payment_intent",
    "create_subscription",
]

log = logging.getLogger(__name__)

# Subscription statuses after which a new subscription is not a double charge.
_ENDED = subscription_status.ENDED


def _load_account(ctx: Context, account_id: Any) -> tuple[Account, dict[str, Any]]:
    """The account and its details; unreadable details refuse the write up front."""
    account, raw = ctx.db.account(account_id)
    details, problem = parse_details(raw)
    if problem is not None and raw is not None:
        raise writeback.DetailsUnreadable(
            f"account {account.id}: {problem}; opskit will not write to it"
        )
    return account, details


def _customer_id(account: Account, details: Mapping[str, Any], purpose: str) -> str:
    cid = details.get("stripe_customer_id")
    if not cid:
        raise StripeCustomerMissing(
            f"account {account.id} (shop {account.shop_id}) has no stripe_customer_id in its "
            f"details: cannot {purpose}",
            guidance=f"Create the customer first: ops.create_customer({account.id}), "
            "or link an existing one (ops.sync_plan() proposes certain links).",
        )
    return str(cid)


def _client(ctx: Context, shop: Shop) -> stripe.StripeClient:
    s = ctx.settings
    return client_for_shop(shop, api_base=ctx.api_base, **client_limits(s))


def mark_replayed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with ``replayed=True``: the write returned an earlier result, wrote nothing.

    Every idempotent write marks what it returns this way when the result is an
    earlier one (Stripe replayed an identical request's answer, or the call had
    already been done); its audit row says ``already_done`` (and how, in
    ``resolution`` or ``params``). A result without the key is a new write.
    """
    return {**obj, "replayed": True}


def _request_id(obj: Any) -> str | None:
    resp = getattr(obj, "last_response", None)
    return getattr(resp, "request_id", None) if resp is not None else None


def _replayed(obj: Any) -> bool:
    """True when Stripe answered from its idempotency cache (``Idempotent-Replayed``)."""
    headers = getattr(getattr(obj, "last_response", None), "headers", None) or {}
    return any(
        str(k).lower() == "idempotent-replayed" and str(v).lower() == "true"
        for k, v in headers.items()
    )


def _is_missing(exc: stripe.StripeError) -> bool:
    return exc.http_status == 404 or getattr(exc, "code", None) == "resource_missing"


def _made_by(obj: Any) -> str | None:
    """The ``opskit_call`` fingerprint opskit left in an object's metadata, if any."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else getattr(obj, "metadata", None)
    if meta is None:
        return None
    try:
        return str(meta["opskit_call"])
    except (KeyError, TypeError):
        return None


class _Write:
    """One audited write: shop, action, target, params and key fixed; outcome per step."""

    def __init__(
        self,
        ctx: Context,
        *,
        actor: str,
        shop: Shop,
        action: str,
        target: str,
        params: Mapping[str, Any],
        idempotency_key: str | None,
    ) -> None:
        if not isinstance(actor, str) or not actor.strip():
            raise InputError(
                f"actor {actor!r} is not a name",
                guidance="Pass actor='your.name' so the audit log says who wrote.",
            )
        self.ctx, self.actor, self.shop = ctx, actor, shop
        self.action, self.target = action, target
        self.params, self.key = dict(params), idempotency_key
        self.intent_id: int | None = None  # the open intent of the request being sent
        self.recorded_id: int | None = None  # the audit row of the last outcome, if written
        # A write with a local step (create, then link in details) keeps its Stripe
        # outcome open until that step commits, in the same transaction: a kill in
        # between leaves the intent open for `opskit recover`, which links it.
        self.defer_ok = False
        self.held: dict[str, Any] | None = None

    def begin(self, key: str) -> int:
        """Commit the intent of sending this write under ``key``; refuse if it cannot be.

        Raises :class:`AuditUnavailable` (nothing sent) when the database will not
        take the row: a lock held past its timeout, a read-only role, a bad table name.
        """
        until = datetime.now(UTC) + timedelta(
            seconds=float(self.ctx.settings.request_deadline) + writers.MARGIN
        )  # the request's own deadline, from now: recover leaves the intent alone till then
        if self.intent_id is not None and key == self.key:
            # claimed before the checks (create_customer): sent under it, from now on
            with contextlib.suppress(SQLAlchemyError):  # the claim's own time still holds
                audit.extend_intent(self.ctx.db, self.intent_id, until)
            return self.intent_id
        self.key = key
        try:
            self.intent_id = audit.begin_intent(
                self.ctx.db,
                actor=self.actor,
                shop_id=self.shop.id,
                action=self.action,
                target=self.target,
                params=self.params,
                idempotency_key=key,
                writer=writers.identity(),
                in_flight_until=until,
            )
        except (SQLAlchemyError, OpskitError) as exc:
            reason = exc.message if isinstance(exc, OpskitError) else _db_error(exc)
            raise AuditUnavailable(
                f"{self.action} on {self.target} in shop {self.shop.id}: its audit record "
                f"could not be written ({reason}); nothing was sent to Stripe"
            ) from exc
        return self.intent_id

    def refuse(self, exc: OpskitError) -> OpskitError:
        """Record ``exc`` as this write's ``refused`` outcome; returns it for ``raise``."""
        self.record("refused", error=exc.message)
        return exc

    def record(
        self,
        outcome: str,
        *,
        result: str | None = None,
        error: str | BaseException | None = None,
        request_id: str | None = None,
        action: str | None = None,
        params: Mapping[str, Any] | None = None,
        conn: sa.Connection | None = None,
        resolution: str | None = None,
    ) -> int | None:
        """Complete the open intent, else append a row; a failing audit never hides the outcome.

        Returns the audit_id holding the outcome, or None when it could not be written
        (an open intent then stays ``pending`` for ``opskit recover``).
        """
        if request_id is None and isinstance(error, stripe.StripeError):
            request_id = error.request_id
        if self.defer_ok and outcome == "ok" and self.intent_id is not None and action is None:
            self.held = {
                "outcome": "ok", "result": result, "stripe_request_id": request_id,
                "resolution": resolution, "params": params,
            }  # fmt: skip
            return self.intent_id
        if self.intent_id is not None and action is None and conn is None:
            intent, self.intent_id = self.intent_id, None
            try:
                audit.complete(
                    self.ctx.db, intent, outcome=outcome, result=result, error=error,
                    stripe_request_id=request_id, resolution=resolution, params=params,
                )  # fmt: skip
                self.recorded_id = intent
            except SQLAlchemyError as exc:
                log.error(
                    "could not record the outcome of %s on %s (audit_id %s stays pending; "
                    "opskit recover resolves it; result %s): %s",
                    self.action, redact(self.target), intent, redact(str(result)),
                    redact(_db_error(exc)),
                )  # fmt: skip
                self.recorded_id = None
            return self.recorded_id
        try:
            self.recorded_id = audit.append(
                self.ctx.db,
                actor=self.actor,
                shop_id=self.shop.id,
                action=action or self.action,
                target=self.target,
                params=self.params if params is None else params,
                idempotency_key=self.key if action is None else None,
                outcome=outcome,
                result=result,
                error=error,
                stripe_request_id=request_id,
                conn=conn,
            )
            return self.recorded_id
        except (SQLAlchemyError, OpskitError) as exc:
            if conn is not None:
                raise  # inside a transaction: let it roll back with the write
            log.error(
                "could not audit %s on %s (result %s): %s",
                self.action,
                redact(self.target),
                redact(str(result)),
                redact(exc.message if isinstance(exc, OpskitError) else _db_error(exc)),
            )
            self.recorded_id = None
            return None

    def guard(self, confirm: bool) -> None:
        check_live_write(
            self.ctx,
            self.shop,
            confirm=confirm,
            actor=self.actor,
            action=self.action,
            target=self.target,
            params=self.params,
            idempotency_key=self.key,
        )

    def client(self) -> stripe.StripeClient:
        try:
            return _client(self.ctx, self.shop)
        except OpskitError as exc:  # StripeNotConfigured
            self.record("error", error=exc)
            raise

    def store_details(
        self,
        account_id: Any,
        changes: Mapping[str, str | None],
        *,
        expect: Mapping[str, str | None],
        stripe_id: str,
    ) -> None:
        """Write ``changes`` into the account's details with its audit row, or PartialWrite."""
        db = self.ctx.db
        target = f"account:{account_id}"
        params = {"changes": dict(changes), "expect": dict(expect), "stripe_id": stripe_id}
        held, intent = self.held, self.intent_id
        self.held, self.defer_ok = None, False
        try:
            with db.engine.begin() as conn:
                wrote = writeback.write_details(
                    db, conn, account_id, changes, expect=expect, shop_id=self.shop.id
                )
                done = params | ({"already_done": True} if wrote.already else {})
                audit.append(
                    db, actor=self.actor, shop_id=self.shop.id, action="account.set_details",
                    target=target, params=done, outcome="ok", result=stripe_id, conn=conn,
                )  # fmt: skip
                if held is not None and intent is not None:
                    audit.complete(db, intent, conn=conn, **held)
            if held is not None and intent is not None:
                self.intent_id, self.recorded_id = None, intent
        except (SQLAlchemyError, OpskitError) as exc:
            reason = exc.message if isinstance(exc, OpskitError) else _db_error(exc)
            if held is not None and intent is not None:  # Stripe's outcome, on its own
                self.record(
                    "ok", result=held["result"], request_id=held["stripe_request_id"],
                    resolution=held["resolution"], params=held["params"],
                )  # fmt: skip
            audit_id = None
            try:
                audit_id = audit.append(
                    db, actor=self.actor, shop_id=self.shop.id, action="account.set_details",
                    target=target, params=params, outcome="error", result=stripe_id,
                    error=reason,
                )  # fmt: skip
            except SQLAlchemyError:
                log.error("could not audit the failed details write of %s", target)
            raise PartialWrite(
                f"{self.action} succeeded in shop {self.shop.id}'s Stripe account ({stripe_id}) "
                f"but storing it in account {account_id}'s details failed: {reason}. "
                + self.where_recorded(audit_id)
            ) from exc

    def where_recorded(self, details_audit_id: int | None = None) -> str:
        """Where the Stripe id is recorded, claiming only rows that were written."""
        rows = []
        if self.recorded_id is not None:
            rows.append(f"the {self.action} row, audit_id {self.recorded_id}")
        if details_audit_id is not None:
            rows.append(f"the failed details write, audit_id {details_audit_id}")
        if rows:
            return "It is recorded in ops.audit_log() (" + "; ".join(rows) + ")."
        return "The audit log could not record it either: note the id."


def _replacing_write(
    ctx: Context,
    action: str,
    shop: Any,
    account_id: Any,
    params: dict[str, Any],
    *,
    replaces: str | None,
    nonce: str | None,
    actor: str,
) -> tuple[str, dict[str, Any], _Write]:
    """(call fingerprint, audited params, write) for a create that may replace a link.

    The call's fingerprint ignores what it replaces; the idempotency key does not, so
    a new object for a dangling link never replays the old (deleted or ended) one.
    """
    target = f"account:{account_id}"
    call = derive_key(action, shop.id, target, params, nonce)
    key_params = {**params, "replaces": replaces}
    key = derive_key(action, shop.id, target, key_params, nonce)
    write = _Write(
        ctx, actor=actor, shop=shop, action=action, target=target,
        params=key_params, idempotency_key=key,
    )  # fmt: skip
    return call, key_params, write


def _db_error(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _write_options(key: str) -> Any:
    """Per-request options of a write: its key, and no retry by the transport.

    The transport may retry a write only where nothing was carried out (429, a
    connection never made); everything else comes back here to be found out.
    """
    return {"idempotency_key": key}


def _error_result(exc: BaseException) -> str | None:
    """The object a refused write still made (a declined payment's intent id), if any."""
    if isinstance(exc, stripe.StripeError) and isinstance(exc.json_body, dict):
        err = exc.json_body.get("error") or {}
        pi = err.get("payment_intent") if isinstance(err, dict) else None
        return pi.get("id") if isinstance(pi, dict) else None
    return None


def _outcome_unknown(exc: BaseException) -> bool:
    """True when the request may have been carried out although no answer says so.

    A 5xx (Stripe saves the result of a request once it starts executing, a 500
    included, and replays it for the same key) or a connection lost after the
    request was sent. A 429, a connect failure and any 4xx were not carried out.
    """
    if isinstance(exc, stripe.APIConnectionError):
        return True
    if isinstance(exc, StripeRetriesExhausted):
        return exc.http_status is not None and exc.http_status >= 500
    if isinstance(exc, stripe.StripeError):
        return exc.http_status is None or exc.http_status >= 500
    return False


# Stepped keys tried when a replayed answer no longer holds; past that, something is wrong.
_MAX_REDO = 5
# Sends under new keys after an unknown outcome that a lookup showed did not happen.
_MAX_UNKNOWN = 3
_UNKNOWN_PAUSE = 0.5  # seconds before the next key's send, doubled per attempt


def _send(
    write: _Write,
    send: Callable[[str], Any],
    holds: Callable[[dict[str, Any]], bool],
    *,
    params: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """Send one Stripe write, recorded before and after, and find out what a lost answer did.

    Per send: the intent is committed first (:meth:`_Write.begin`; refused with
    :class:`AuditUnavailable` when it cannot be), then ``send(key)`` runs and the
    intent is completed with the outcome (``ok`` with the object id, ``error``).

    **Unknown outcome** (a 5xx or a dropped connection): Stripe is asked whether
    the object exists (:func:`opskit.writes.lookup.find_written`, by the
    ``opskit_key`` tag); found, it is the answer (audited ``ok`` with how it was
    found in ``resolution``); not found, the intent is closed as ``error`` and the
    write is sent again under a new key (``key:attempt2``, ...), since Stripe would
    replay a saved 500 for the old one; when the lookup itself fails the intent is
    left ``unknown`` and :class:`WriteOutcomeUnknown` is raised (``opskit recover``
    finds out later).

    **Stale replay**: Stripe replays the first answer to a key for 24 hours, even
    when what it did was undone since (the customer deleted, the cancellation
    reverted). A replayed answer is kept only when ``holds(answer)`` says it is
    still true in Stripe; otherwise the write is sent again under a stepped key
    (``key:redo1``, ...), deterministic, so a retried cell still replays.
    """
    base = write.key or ""
    redo, unknown = 0, 1
    key = base
    while True:
        started = time.time()
        write.begin(key)
        try:
            with writers.sending(write.intent_id):  # recover leaves it alone meanwhile
                obj = send(key)
            answer, request_id, replayed = obj.to_dict(), _request_id(obj), _replayed(obj)
        except (stripe.StripeError, OpskitError) as exc:
            if not _outcome_unknown(exc):
                write.record("error", error=exc, result=_error_result(exc))
                raise
            found = _find_out(write, exc, base, started, params)
            if found is not None:
                return found, None
            if unknown >= _MAX_UNKNOWN:
                raise
            time.sleep(_UNKNOWN_PAUSE * 2 ** (unknown - 1))
            unknown += 1
            key = step_key(base, f"attempt{unknown}")
            continue
        try:
            still = not replayed or holds(answer)
        except (stripe.StripeError, OpskitError) as exc:
            write.record(
                "ok", result=str(answer.get("id")), request_id=request_id,
                resolution=f"replayed; checking that it still holds failed: {describe_error(exc)}",
            )  # fmt: skip
            raise
        if still and replayed:  # the answer to an earlier identical call: said so
            write.record(
                "ok", result=str(answer.get("id")), request_id=request_id,
                params={**write.params, "already_done": True, "replayed": True},
                resolution="replayed: Stripe returned its answer to an earlier identical "
                "request (same idempotency key); nothing new was written",
            )  # fmt: skip
            return mark_replayed(answer), request_id
        if still:
            write.record("ok", result=str(answer.get("id")), request_id=request_id)
            return answer, request_id
        write.record(
            "error",
            result=str(answer.get("id")),
            request_id=request_id,
            error="Stripe replayed an answer that no longer holds; nothing new was written",
            resolution="sending again under a new key",
        )
        log.info("%s on %s: replay no longer holds; sending again", write.action, write.target)
        redo += 1
        if redo > _MAX_REDO:
            break
        key = step_key(base, f"redo{redo}")
    stuck = InputError(
        f"{write.action} on {write.target}: Stripe keeps replaying answers that no longer "
        "hold; nothing new was written",
        guidance="Call again with a nonce='...' of your choice to make it a new request.",
    )
    write.record("error", error=stuck.message)
    raise stuck


def _find_out(
    write: _Write,
    exc: BaseException,
    tag: str,
    started: float,
    params: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """After an unknown outcome: the object Stripe has for this write, or None (not written).

    Records what it found on the open intent; raises :class:`WriteOutcomeUnknown`
    when Stripe cannot be asked either.
    """
    what = describe_error(exc)
    try:
        client = _client(write.ctx, write.shop)
        found = find_written(
            client,
            write.action,
            key=tag,
            target=write.target,
            params=write.params if params is None else params,
            since=started,
        )
    except (stripe.StripeError, OpskitError, ValueError) as look:
        write.record(
            "unknown",
            error=exc,
            resolution=f"answer lost; looking it up failed too: {describe_error(look)}",
        )
        raise WriteOutcomeUnknown(
            f"{write.action} on {write.target} in shop {write.shop.id}: Stripe's answer was "
            f"lost ({what}) and asking Stripe whether it happened failed "
            f"({describe_error(look)}); recorded as unknown"
        ) from exc
    if found is not None:
        oid = str(found.get("id"))
        write.record(
            "ok",
            result=oid,
            resolution=f"answer lost ({what}); found {oid} in Stripe by its {TAG} tag",
        )
        log.info("%s on %s: answer lost, found %s by tag", write.action, write.target, oid)
        return found
    write.record(
        "error",
        error=exc,
        resolution=f"answer lost; not in Stripe (looked up by its {TAG} tag): not written",
    )
    return None


def current_link(
    write: _Write, client: stripe.StripeClient, existing: str
) -> dict[str, Any] | None:
    """The customer an account links now, before a write replaces or keeps it; None if gone.

    The one place the rule is decided for every write that may replace a link
    (:func:`create_customer`, :func:`opskit.writes.link.link_customer`): a link to a
    customer of the key's other mode (``mode_mismatch``) is never replaced, whatever
    ``force`` says (refused, audited; see :func:`_retrieve`).
    """
    return _retrieve(write, lambda: client.v1.customers.retrieve(existing))


def _retrieve(write: _Write, fn: Any) -> dict[str, Any] | None:
    """A read before a write: the object as a dict, or None when Stripe says 404.

    A 404 here is an answer, not a failure (a dangling link), so it is not
    audited; any other failure is audited as the write's error and re-raised
    (after a send, by :func:`_send`, on the send's own intent).
    A 404 saying the object exists in the key's other mode ("a similar object
    exists in live mode, but a test mode key was used") is not absence: the
    write is refused (audited), whatever ``force`` says, and Stripe's message kept.
    """
    try:
        return fn().to_dict()  # type: ignore[no-any-return]
    except stripe.InvalidRequestError as exc:
        mode = other_mode(exc)
        if mode is not None:
            refused = InputError(
                f"{write.action} on {write.target} in shop {write.shop.id}: Stripe says "
                f"{stripe_message(exc)!r}; the linked object exists in {mode} mode, so it is "
                "not missing; nothing written",
                guidance=f"Check the shop's key: the link is a {mode}-mode object. Use the "
                f"shop's {mode} key, or clear the link yourself if it is really wrong.",
            )
            write.record("refused", error=redact(refused.message), request_id=exc.request_id)
            raise refused from None
        if _is_missing(exc):
            return None
        if write.intent_id is None:
            write.record("error", error=exc)
        raise
    except (stripe.StripeError, OpskitError) as exc:
        if write.intent_id is None:
            write.record("error", error=exc)
        raise


# -- customers --------------------------------------------------------------------------------


@audited("customer.create", "account_id")
def create_customer(
    ctx: Context,
    account_id: Any,
    *,
    email: str | None = None,
    name: str | None = None,
    actor: str = "opskit",
    confirm: bool = False,
    nonce: str | None = None,
    force: bool = False,
    allow_duplicate: bool = False,
) -> dict[str, Any]:
    """Create the account's customer in its shop's Stripe account and link it in details.

    Sends the email only, as shop-backend's checkout does: ``email`` defaults to
    the account's (``accounts.name`` on shop-backend); ``name`` is sent when given,
    or on backends that keep a person's name (``Schema.account_name``). opskit
    adds its own tags in ``metadata`` (``opskit_account_id``, ``opskit_call``) so a
    repeated call finds what it made. Details that are empty (NULL, JSON null,
    ``{}``) are written to; unreadable ones are refused. Refused when the account
    already links a customer that exists (not deleted) in the shop's Stripe
    account, unless ``force=True`` (the link is then replaced); repeating the
    very call that created the linked customer returns it unchanged.

    Refused with :class:`~opskit.common.exceptions.DuplicateCustomer` (audited,
    nothing created) when the shop's Stripe already has a customer with the
    account's email (opskit's email rule) that no account of the shop links
    (:func:`opskit.writes.same_email.same_email_customers`): the error names it
    (``customer_ids``); link it with :func:`opskit.writes.link.link_customer`
    (``ops.link_customer``), or pass ``allow_duplicate=True`` to create another.

    Concurrent creates for one shop and email (any process) run one after the
    other (:mod:`opskit.writes.inflight`): the intent is committed before the
    same-email check, which waits for earlier open intents of that email; one still
    open after ``inflight.IN_FLIGHT_WAIT`` seconds (its process may have died:
    ``opskit recover``) refuses with ``DuplicateCustomer`` (no ``customer_ids``,
    the intent's audit_id in the message). An account linked while it waited is
    refused (``InputError``). A link to the key's other mode is never replaced,
    ``force`` or not (:func:`current_link`).
    """
    account, details = _load_account(ctx, account_id)
    shop = ctx.db.shop(account.shop_id)  # type: ignore[arg-type]
    existing = details.get("stripe_customer_id")
    existing = str(existing) if existing else None
    aid = str(account.id)
    # The backend's way: the email only (shop-backend keeps it in accounts.name); a
    # person's name only when asked, or when the backend has a name column of its own.
    address = email if email is not None else account.email
    params: dict[str, Any] = {
        # As a person reads it: no white space around it (a pasted "  Bob@X.IO ").
        "email": address.strip() if isinstance(address, str) else address,
        "name": name if name is not None else account.name if ctx.db.schema.account_name else None,
    }
    call, key_params, write = _replacing_write(
        ctx, "customer.create", shop, aid, params, replaces=existing, nonce=nonce, actor=actor
    )
    write.guard(confirm)
    if not params["email"]:
        exc0 = InputError(
            f"account {aid} has no email (its email column is empty); no customer created",
            guidance="Fill in the account's email in the backend first, or pass email=...",
        )
        raise write.refuse(exc0)
    client = write.client()
    if existing:
        current = current_link(write, client, existing)
        if current is not None and not current.get("deleted"):
            if _made_by(current) == call:
                write.record("ok", result=existing, params={**key_params, "already_done": True})
                return mark_replayed(current)
            if not force:
                exc2 = InputError(
                    f"account {aid} already links customer {existing}, which exists in shop "
                    f"{shop.id}'s Stripe account; nothing created",
                    guidance="Pass force=True to create a new customer and replace the link.",
                )
                raise write.refuse(exc2)
    if not allow_duplicate:
        # Claim first: the intent, committed, is what a concurrent create for the same
        # email (another account, another process) waits for before its own check.
        write.begin(write.key or "")
        _wait_for_earlier_creates(write, account, params["email"])
        _refuse_linked_meanwhile(write, aid, existing)
        _refuse_duplicate(write, client, account, params["email"], call)
    metadata = {"opskit_account_id": str(aid), "opskit_call": call, TAG: write.key}
    body = {k: v for k, v in params.items() if v is not None} | {"metadata": metadata}
    write.defer_ok = True  # the outcome commits with the link
    customer, _ = _send(
        write,
        lambda k: client.v1.customers.create(params=body, options=_write_options(k)),  # type: ignore[arg-type]
        lambda c: _alive(_retrieve(write, lambda: client.v1.customers.retrieve(c["id"]))),
    )
    write.store_details(
        aid,
        {"stripe_customer_id": customer["id"]},
        expect={"stripe_customer_id": existing},
        stripe_id=customer["id"],
    )
    return customer


def _refuse_duplicate(
    write: _Write, client: stripe.StripeClient, account: Account, email: str, call: str
) -> None:
    """Refuse (audited) when the shop's Stripe has an unlinked customer of this email."""
    try:
        same = same_email_customers(client, write.ctx.db, account, email=email, skip_call=call)
    except (stripe.StripeError, OpskitError) as exc:
        write.record("error", error=exc)
        raise
    if not same:
        return
    ids = [str(c["id"]) for c in same]
    more = f" (and {', '.join(ids[1:])})" if len(ids) > 1 else ""
    stored = same[0].get("email")  # as the customer has it (Ann@X.io vs the account's ann@x.io)
    refused = DuplicateCustomer(
        f"account {account.id}: shop {write.shop.id}'s Stripe account already has customer "
        f"{ids[0]}{more} with the email {stored!r} (the account's {email!r} by opskit's "
        "email rule), and no account links it; nothing created",
        customer_ids=ids,
        guidance=f"Link it: ops.link_customer({str(account.id)!r}, {ids[0]!r}, actor=...); "
        "or pass allow_duplicate=True to create a second customer anyway.",
    )
    raise write.refuse(refused)


def _refuse_linked_meanwhile(write: _Write, aid: str, existing: str | None) -> None:
    """Refuse (audited) when the account's link changed since this call read it.

    An earlier create (another call for this account, waited for) may have linked a
    customer: creating one more would only fail to be stored, a duplicate in Stripe.
    """
    try:
        _, now = _load_account(write.ctx, aid)
    except OpskitError as exc:
        write.record("error", error=exc)
        raise
    linked = now.get("stripe_customer_id")
    linked = str(linked) if linked else None
    if linked == existing:
        return
    refused = InputError(
        f"account {aid} links customer {linked} now (linked while this call waited for "
        f"another create of the same email); nothing created",
        guidance="Look at the account again: it may need no new customer. To replace the "
        "link, call create_customer again with force=True.",
    )
    raise write.refuse(refused)


def _wait_for_earlier_creates(write: _Write, account: Account, email: str) -> None:
    """Wait until no earlier ``customer.create`` for this shop and email is in flight.

    Earlier: an open intent (pending/unknown) with a lower audit_id than this write's
    own, claimed one, for another call (another account, or the same account with
    other parameters) whose email is the same by opskit's email rule. Waits up to
    :data:`opskit.writes.inflight.IN_FLIGHT_WAIT` seconds; still open then (a slow
    write, or one whose process died: only ``opskit recover`` closes its intent), refused with
    :class:`DuplicateCustomer` naming it, nothing sent.
    """
    mine = write.intent_id
    if mine is None:
        return
    deadline = time.monotonic() + inflight.IN_FLIGHT_WAIT
    while True:
        try:
            earlier = inflight.in_flight_creates(
                write.ctx.db, write.shop.id, email, before=mine, key=write.key
            )
        except (SQLAlchemyError, OpskitError) as exc:
            write.record("error", error=exc if isinstance(exc, OpskitError) else _db_error(exc))
            raise
        if not earlier:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    first = earlier[0]
    refused = DuplicateCustomer(
        f"account {account.id}: another customer.create for the email {email!r} in shop "
        f"{write.shop.id} is in flight or was interrupted (audit_id {first['audit_id']}, "
        f"{first['target']}, by {first['actor']}); nothing created, so as not to make a "
        "second customer for the same person",
        customer_ids=[],
        guidance="Wait a moment and try again; if that write's process died, run "
        "`opskit recover` first (it finds and links the customer it may have made).",
    )
    raise write.refuse(refused)


# -- payment intents --------------------------------------------------------------------------


@audited("payment_intent.create", "account_id")
def create_payment_intent(
    ctx: Context,
    account_id: Any,
    amount: int,
    currency: str,
    *,
    description: str | None = None,
    payment_method: str | None = None,
    confirm_payment: bool = False,
    actor: str = "opskit",
    confirm: bool = False,
    idempotency_key: str | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent for the account's customer; ``amount`` in integer minor units.

    ``confirm_payment=True`` confirms it in the same request (with
    ``payment_method``). ``confirm`` is the live-mode confirmation. The same
    arguments give the same idempotency key: a second call returns the first
    intent. Two intended equal payments need distinct ``nonce`` values (or
    explicit ``idempotency_key`` values).
    """
    value, cur = validate_amount(amount, currency)
    account, details = _load_account(ctx, account_id)
    customer = _customer_id(account, details, f"take a payment of {format_money(value, cur)}")
    shop = ctx.db.shop(account.shop_id)  # type: ignore[arg-type]
    aid = str(account.id)
    params: dict[str, Any] = {
        "amount": value,
        "currency": cur,
        "customer": customer,
        "description": description,
        "payment_method": payment_method,
        "confirm": True if confirm_payment else None,
    }
    key = idempotency_key or derive_key(
        "payment_intent.create", shop.id, f"account:{aid}", params, nonce
    )
    write = _Write(
        ctx, actor=actor, shop=shop, action="payment_intent.create", target=f"account:{aid}",
        params=params, idempotency_key=key,
    )  # fmt: skip
    write.guard(confirm)
    client = write.client()
    body = {k: v for k, v in params.items() if v is not None}
    body["metadata"] = {"opskit_account_id": str(aid), TAG: key}
    intent, _ = _send(
        write,
        lambda k: client.v1.payment_intents.create(params=body, options=_write_options(k)),  # type: ignore[arg-type]
        lambda _: True,
    )
    return intent


# -- subscriptions ----------------------------------------------------------------------------


@audited("subscription.create", "account_id")
def create_subscription(
    ctx: Context,
    account_id: Any,
    price_id: str | Sequence[str] | None = None,
    *,
    products: Any = None,
    interval: str = "month",
    payment_behavior: str | None = None,
    actor: str = "opskit",
    confirm: bool = False,
    nonce: str | None = None,
    trial_period_days: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Subscribe the account's customer to one or several prices; one item per price.

    ``price_id``: a Stripe price id, or a list of them. Or ``products``: local
    product ids (str, int or UUID; one or a list) plus ``interval`` (``month`` or
    ``year``), resolved as shop-backend does, by the lookup keys
    ``monthly-<product id>`` / ``yearly-<product id>`` (``Schema.lookup_key_formats``)
    in the shop's Stripe account; a key that resolves to no price is an
    :class:`InputError` before anything is created. ``payment_behavior=
    "default_incomplete"``: the backend's checkout: the subscription starts
    ``incomplete`` until its first invoice is paid (``latest_invoice`` names it).

    On backends that record subscriptions in details (``Schema.subscription_fields``)
    details get ``stripe_subscription_id``, ``subscription_status`` and
    ``stripe_price_id`` (the first item's); shop-backend records nothing locally:
    only the Stripe write (audited). Refused when the customer has any live
    subscription in Stripe (every status but canceled and incomplete_expired, see
    :mod:`opskit.core.subscription_status`), recorded on the account or not: a
    double-billing risk, unless ``force=True``. Stripe is asked (the customer's
    subscriptions are listed), not the local record. Repeating the very call
    that created one returns it unchanged.
    """
    if (price_id is None) == (products is None):
        raise InputError(
            "pass price_id (one or several Stripe prices) or products (local product ids), "
            "not both and not neither"
        )
    if payment_behavior is not None and payment_behavior not in _PAYMENT_BEHAVIORS:
        raise InputError(
            f"payment_behavior {payment_behavior!r} is not one of "
            f"{', '.join(sorted(_PAYMENT_BEHAVIORS))}"
        )
    price_ids: list[str] = []
    if price_id is not None:
        for pid in [price_id] if isinstance(price_id, str) else list(price_id):
            if not isinstance(pid, str) or not pid.strip():
                raise InputError(f"price id {pid!r} is not a Stripe price id")
            price_ids.append(pid.strip())
        if not price_ids:
            raise InputError("no price given")
    if trial_period_days is not None and (
        isinstance(trial_period_days, bool)
        or not isinstance(trial_period_days, int)
        or trial_period_days < 1
    ):
        raise InputError(f"trial_period_days {trial_period_days!r} is not a positive integer")
    lookup_keys = _lookup_keys(ctx, products, interval) if products is not None else []
    account, details = _load_account(ctx, account_id)
    customer = _customer_id(account, details, "create a subscription")
    shop = ctx.db.shop(account.shop_id)
    aid = str(account.id)
    records = ctx.db.schema.subscription_fields
    recorded = details.get("stripe_subscription_id") if records else None
    recorded = str(recorded) if recorded else None
    params: dict[str, Any] = {
        "customer": customer,
        "price": price_ids[0] if len(price_ids) == 1 else (price_ids or None),
        "lookup_keys": lookup_keys or None,
        "payment_behavior": payment_behavior,
        "trial_period_days": trial_period_days,
    }
    call, key_params, write = _replacing_write(
        ctx, "subscription.create", shop, aid, params, replaces=recorded, nonce=nonce, actor=actor
    )
    write.guard(confirm)
    client = write.client()
    if lookup_keys:
        price_ids = _resolve_lookup_keys(write, client, lookup_keys)
    # The double-billing guard asks Stripe, not the local record: every subscription
    # of the customer, recorded anywhere or nowhere.
    live = [
        s
        for s in _customer_subscriptions(write, client, customer)
        if subscription_status.is_live_one(s)
    ]
    for current in live:
        if _made_by(current) == call:  # this very call made it: done, and recorded here
            write.record("ok", result=current["id"], params={**key_params, "already_done": True})
            if recorded != current["id"]:  # its local step had failed: complete it now
                write.store_details(
                    aid,
                    {
                        "stripe_subscription_id": current["id"],
                        "subscription_status": str(current.get("status")),
                        "stripe_price_id": _price_of(current) or params["price"],
                    },
                    expect={"stripe_subscription_id": recorded, "stripe_customer_id": customer},
                    stripe_id=current["id"],
                )
            return mark_replayed(current)
    if live and not force:
        listed = ", ".join(f"{s['id']} ({s.get('status')})" for s in live)
        exc2 = InputError(
            f"customer {customer} of account {aid} already has {len(live)} live "
            f"subscription(s) in shop {shop.id}'s Stripe account: {listed}; a second "
            "subscription would bill the customer twice; nothing created",
            guidance="Cancel it first (ops.cancel_subscription), or pass force=True.",
        )
        raise write.refuse(exc2)
    body: dict[str, Any] = {
        "customer": customer,
        "items": [{"price": p} for p in price_ids],
        "metadata": {"opskit_account_id": str(aid), "opskit_call": call, TAG: write.key},
    }
    if trial_period_days is not None:
        body["trial_period_days"] = trial_period_days
    if payment_behavior is not None:
        body["payment_behavior"] = payment_behavior
    write.defer_ok = records  # the outcome commits with the link, where there is one
    sub, _ = _send(
        write,
        lambda k: client.v1.subscriptions.create(params=body, options=_write_options(k)),  # type: ignore[arg-type]
        lambda x: _not_ended(_retrieve(write, lambda: client.v1.subscriptions.retrieve(x["id"]))),
    )
    if records:
        write.store_details(
            aid,
            {
                "stripe_subscription_id": sub["id"],
                "subscription_status": str(sub.get("status")),
                "stripe_price_id": _price_of(sub) or price_ids[0],
            },
            expect={"stripe_subscription_id": recorded, "stripe_customer_id": customer},
            stripe_id=sub["id"],
        )
    return sub


_PAYMENT_BEHAVIORS = frozenset(
    {"allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete"}
)


def _lookup_keys(ctx: Context, products: Any, interval: str) -> list[str]:
    """The lookup keys naming ``products`` at ``interval`` (shop-backend's scheme)."""
    formats = dict(ctx.db.schema.lookup_key_formats)
    if interval not in formats:
        raise InputError(
            f"interval {interval!r} has no lookup key format; use one of {', '.join(formats)}"
        )
    try:
        ids = id_list(products) or []
    except TypeError as exc:
        raise InputError(f"products: {exc}") from None
    if not ids:
        raise InputError("no product given")
    return [formats[interval].format(product_id=pid.lower()) for pid in ids]


def _resolve_lookup_keys(write: _Write, client: stripe.StripeClient, keys: list[str]) -> list[str]:
    """Price ids for ``keys`` (``Price.list(lookup_keys=...)``), in the order of ``keys``."""
    try:
        page = client.v1.prices.list(params={"lookup_keys": keys, "limit": 100}).to_dict()
    except (stripe.StripeError, OpskitError) as exc:
        write.record("error", error=exc)
        raise
    found = {p.get("lookup_key"): p["id"] for p in page.get("data") or [] if p.get("active", True)}
    missing = [k for k in keys if k not in found]
    if missing:
        refused = InputError(
            f"no active price in shop {write.shop.id}'s Stripe account has lookup key "
            f"{', '.join(missing)}; nothing created",
            guidance="Create the product's price with that lookup key, or pass price_id.",
        )
        raise write.refuse(refused)
    return [found[k] for k in keys]


def _customer_subscriptions(
    write: _Write, client: stripe.StripeClient, customer: str
) -> list[dict[str, Any]]:
    """Every subscription of ``customer`` in the shop's Stripe account (``status="all"``).

    A failure is audited as the write's error and re-raised: without this answer
    a new subscription could bill the customer twice.
    """
    try:
        page = client.v1.subscriptions.list(
            params={"customer": customer, "status": "all", "limit": 100}
        )
        return [s.to_dict() for s in page.auto_paging_iter()]
    except (stripe.StripeError, OpskitError) as exc:
        write.record("error", error=exc)
        raise


def _alive(obj: Mapping[str, Any] | None) -> bool:
    return obj is not None and not obj.get("deleted")


def _not_ended(sub: Mapping[str, Any] | None) -> bool:
    return sub is not None and sub.get("status") not in _ENDED


def _price_of(sub: Mapping[str, Any]) -> str | None:
    try:
        item = sub["items"]["data"][0]
    except (KeyError, IndexError, TypeError):
        return None
    price = item.get("price") or item.get("plan")
    pid = price.get("id") if price is not None else None
    return str(pid) if pid else None


@audited("subscription.cancel", "subscription_id")
def cancel_subscription(
    ctx: Context,
    subscription_id: str,
    *,
    shop_id: Any,
    at_period_end: bool = True,
    actor: str = "opskit",
    confirm: bool = False,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Cancel a subscription in ``shop_id``'s Stripe account, at period end or now.

    A subscription of another shop is 404 in this shop's account:
    :class:`UnknownSubscription`. Cancelling what is already canceled (or
    already set to cancel at period end) changes nothing and returns it. The
    account of the shop recording the subscription, if any, gets the new
    ``subscription_status``.
    """
    if not isinstance(subscription_id, str) or not subscription_id.strip():
        raise InputError(f"subscription id {subscription_id!r} is not a Stripe subscription id")
    sid = subscription_id.strip()
    shop = ctx.db.shop(shop_id)
    params = {"at_period_end": bool(at_period_end)}
    key = derive_key("subscription.cancel", shop.id, f"subscription:{sid}", params, nonce)
    write = _Write(
        ctx, actor=actor, shop=shop, action="subscription.cancel", target=f"subscription:{sid}",
        params=params, idempotency_key=key,
    )  # fmt: skip
    write.guard(confirm)
    client = write.client()
    try:
        current = client.v1.subscriptions.retrieve(sid).to_dict()
    except stripe.InvalidRequestError as exc:
        if not _is_missing(exc):
            write.record("error", error=exc)
            raise
        mode = other_mode(exc)
        where = (
            f"exists only in {mode} mode of shop {shop.id}'s Stripe account (Stripe: "
            f"{stripe_message(exc)!r})"
            if mode
            else f"is not in shop {shop.id}'s Stripe account"
        )
        missing = UnknownSubscription(
            f"subscription {sid} {where} (404 [request {exc.request_id}]); nothing canceled"
        )
        write.record("error", error=missing.message, request_id=exc.request_id)
        raise missing from None
    except (stripe.StripeError, OpskitError) as exc:
        write.record("error", error=exc)
        raise
    status = current.get("status")
    if status in _ENDED or (at_period_end and current.get("cancel_at_period_end")):
        write.record("ok", result=sid, params={**params, "already_done": True})
        sub = mark_replayed(current)
    elif at_period_end:
        sub, _ = _send(
            write,
            lambda k: client.v1.subscriptions.update(
                sid, params={"cancel_at_period_end": True}, options=_write_options(k)
            ),
            lambda _: bool(
                (_retrieve(write, lambda: client.v1.subscriptions.retrieve(sid)) or {}).get(
                    "cancel_at_period_end"
                )
            ),
        )
    else:
        sub, _ = _send(
            write,
            lambda k: client.v1.subscriptions.cancel(sid, options=_write_options(k)),
            lambda _: (
                not _not_ended(_retrieve(write, lambda: client.v1.subscriptions.retrieve(sid)))
            ),
        )
    _record_status(ctx, write, sid, str(sub.get("status")))
    return sub


def _record_status(ctx: Context, write: _Write, sid: str, status: str) -> None:
    """Set subscription_status on the one account of the shop recording ``sid``."""
    try:
        accounts = ctx.db.load_accounts([write.shop.id])  # type: ignore[list-item]
    except (OpskitError, SQLAlchemyError) as exc:  # Stripe already changed: say so, audited
        reason = exc.message if isinstance(exc, OpskitError) else _db_error(exc)
        write.record("error", result=sid, error=f"could not read accounts: {reason}")
        raise PartialWrite(
            f"{write.action} succeeded in shop {write.shop.id}'s Stripe account ({sid}) "
            f"but reading the local accounts to record it failed: {reason}"
        ) from exc
    mine = accounts[accounts["stripe_subscription_id"].eq(sid).fillna(False).astype(bool)]
    if len(mine) != 1:
        return  # no account (or several: a human decides) records it
    row = mine.iloc[0]
    old = row["subscription_status"]
    old = None if pd.isna(old) else str(old)
    if old == status:
        return
    write.store_details(
        str(row["account_id"]),
        {"subscription_status": status},
        expect={"subscription_status": old, "stripe_subscription_id": sid},
        stripe_id=sid,
    )
