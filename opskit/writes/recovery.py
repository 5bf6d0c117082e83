"""Recovery: resolve Stripe writes whose outcome opskit never recorded.

Every Stripe write commits an intent (``pending``) before its request
(:mod:`opskit.backend.audit`). A process killed mid-write, a database that
failed after Stripe answered, or an answer lost with Stripe unreachable leaves
that intent ``pending`` or ``unknown``. :func:`recover` asks Stripe about each
one (by the ``opskit_key`` tag the write put in the object's metadata, see
:mod:`opskit.writes.lookup`) and records the outcome on the intent:

* found: ``ok`` with the object's id; for ``customer.create`` and
  ``subscription.create`` the account's details then get the link the write
  would have stored, when they still hold what the write expected (audited
  ``account.set_details`` as usual; already linked counts as done);
* not found: ``error``, "not written" (nothing happened at Stripe);
* Stripe or the shop unusable now: left open, reported, tried again next time.

``ops.recover()`` and ``opskit recover`` call it. Recovery never concludes "not
written" for an intent whose request may still be in flight: every intent records
its writer (``host:pid:start``) and until when its request may run (the writer's
``Settings.request_deadline`` plus a margin), and :mod:`opskit.writes.writers`
decides from them (a live writer within its deadline is left alone whatever
``older_than`` says; a writer that is gone is resolved at once). Intents younger
than ``older_than`` seconds (default: the deadline plus the margin) are left alone
too; an intent without a writer record (an older opskit's) is judged by that age
only. Should a writer complete ``ok`` after recovery closed its intent as not
written, the row becomes ``ok`` and says both (:func:`opskit.backend.audit.complete`).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import stripe
from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit
from opskit.common.context import Context
from opskit.common.exceptions import InputError, OpskitError
from opskit.common.stripe_errors import describe_error
from opskit.core import frames
from opskit.writes import actions, writers
from opskit.writes.lookup import LOOKUP_ACTIONS, TAG, find_written

__all__ = ["check_older_than", "default_older_than", "recover"]

log = logging.getLogger(__name__)


def default_older_than(ctx: Context) -> float:
    """The default age below which intents are left alone: the writer's deadline + margin."""
    return float(ctx.settings.request_deadline) + writers.MARGIN


def check_older_than(older_than: float | None) -> None:
    """Refuse a negative or non-finite ``older_than`` (:class:`InputError`)."""
    if older_than is None:
        return
    if not isinstance(older_than, int | float) or not math.isfinite(older_than) or older_than < 0:
        raise InputError(
            f"older_than {older_than!r} is not a number of seconds >= 0",
            guidance="Give an age in seconds (0: every intent whose writer is gone); leave it "
            "out for the default (the write deadline plus a margin).",
        )


def recover(
    ctx: Context,
    *,
    actor: str = "opskit",
    older_than: float | None = None,
    dry_run: bool = False,
) -> pd.DataFrame:
    """Resolve every open Stripe-write intent against Stripe; a frames.RECOVERY frame.

    One row per intent (oldest first): ``audit_id``, ``at``, ``shop_id``,
    ``action``, ``target``, ``idempotency_key`` (from the audit row),
    ``outcome`` (``ok`` found in Stripe / ``error`` not in Stripe, not written /
    ``unknown`` could not be found out now), ``result`` (the Stripe object's id
    when found), ``detail`` (what was done, or why not). ``dry_run`` asks Stripe
    but records nothing. Intents left alone (younger than ``older_than`` seconds,
    default :func:`default_older_than`; or whose request may still be in flight)
    have no row: ``audit_log(outcome=["pending", "unknown"])`` still lists them.
    Raises :class:`InputError` for a negative ``older_than``, else only what
    reading the audit table raises.
    """
    check_older_than(older_than)
    age = default_older_than(ctx) if older_than is None else float(older_than)
    intents = _records(audit.open_intents(ctx.db, older_than=age))
    recorded = audit.intent_writers(ctx.db, [int(i["audit_id"]) for i in intents])
    now = datetime.now(UTC)
    settled = [
        i
        for i in intents
        if not writers.may_be_in_flight(int(i["audit_id"]), *recorded.get(int(i["audit_id"]),
                                                                           (None, None)), now)
    ]  # fmt: skip
    rows = [_resolve(ctx, intent, actor=actor, dry_run=dry_run) for intent in settled]
    if not rows:
        return frames.empty(frames.RECOVERY)
    return frames.conform(pd.DataFrame(rows), frames.RECOVERY)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()}
        for row in df.to_dict(orient="records")
    ]


def _resolve(ctx: Context, intent: dict[str, Any], *, actor: str, dry_run: bool) -> dict[str, Any]:
    row = {
        k: intent.get(k)
        for k in ("audit_id", "at", "shop_id", "action", "target", "idempotency_key")
    }
    action = str(intent["action"])
    key = intent.get("idempotency_key")
    if action not in LOOKUP_ACTIONS or not key:
        return row | {"outcome": "unknown", "detail": f"opskit cannot look up {action!r}"}
    try:
        params = json.loads(intent.get("params") or "{}")
        shop = ctx.db.shop(intent["shop_id"])
        client = actions._client(ctx, shop)
        found = find_written(
            client,
            action,
            key=_tag_key(str(key)),
            target=str(intent.get("target") or ""),
            params=params,
            since=pd.Timestamp(intent["at"]).timestamp(),
        )
    except (stripe.StripeError, OpskitError, ValueError, KeyError, SQLAlchemyError) as exc:
        return row | {"outcome": "unknown", "detail": f"not found out now: {describe_error(exc)}"}
    how = "dry run, nothing recorded: " if dry_run else ""
    if found is None:
        detail = "not in Stripe: the write did not happen"
        if action == "subscription.cancel":
            detail = "the subscription is not canceled in Stripe: the cancel did not happen"
        if not dry_run:
            _complete(ctx, intent, "error", None, f"recover: {detail}", error="not written")
        return row | {"outcome": "error", "detail": how + detail}
    oid = str(found.get("id"))
    detail = f"found {oid} in Stripe by its {TAG} tag"
    if not dry_run:
        _complete(ctx, intent, "ok", oid, f"recover: {detail}")
        detail += _finish_locally(ctx, shop, intent, params, found, actor)
    return row | {"outcome": "ok", "result": oid, "detail": how + detail}


def _tag_key(key: str) -> str:
    """The tag the write's objects carry: the call's first key, without a step suffix."""
    base, _, step = key.rpartition(":")
    return base if base and (step.startswith("attempt") or step.startswith("redo")) else key


def _complete(
    ctx: Context,
    intent: dict[str, Any],
    outcome: str,
    result: str | None,
    resolution: str,
    *,
    error: str | None = None,
) -> None:
    audit.complete(
        ctx.db,
        int(intent["audit_id"]),
        outcome=outcome,
        result=result,
        error=error,
        resolution=resolution,
    )


def _finish_locally(
    ctx: Context,
    shop: Any,
    intent: dict[str, Any],
    params: dict[str, Any],
    found: dict[str, Any],
    actor: str,
) -> str:
    """Store the link a create would have stored; a note on what was done."""
    action = str(intent["action"])
    target = str(intent.get("target") or "")
    if action not in ("customer.create", "subscription.create") or not target.startswith(
        "account:"
    ):
        return ""
    account_id = target.split(":", 1)[1]
    oid = str(found["id"])
    write = actions._Write(
        ctx,
        actor=actor,
        shop=shop,
        action=action,
        target=target,
        params=params,
        idempotency_key=intent.get("idempotency_key"),
    )
    write.recorded_id = int(intent["audit_id"])
    if action == "customer.create":
        changes: dict[str, str | None] = {"stripe_customer_id": oid}
        expect: dict[str, str | None] = {"stripe_customer_id": params.get("replaces")}
    else:
        changes = {
            "stripe_subscription_id": oid,
            "subscription_status": str(found.get("status")),
            "stripe_price_id": actions._price_of(found) or params.get("price"),
        }
        expect = {
            "stripe_subscription_id": params.get("replaces"),
            "stripe_customer_id": params.get("customer"),
        }
    try:
        write.store_details(account_id, changes, expect=expect, stripe_id=oid)  # type: ignore[arg-type]
    except OpskitError as exc:
        log.warning("recover: %s found but not linked: %s", oid, exc.message)
        return f"; not linked in account {account_id}'s details: {exc.message}"
    return f"; linked in account {account_id}'s details"
