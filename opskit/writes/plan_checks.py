"""A sync plan is checked row by row before it is applied: an edited file writes nothing false.

``opskit sync --plan-out plan.csv`` writes a file a person reviews and may edit
(or filter) before ``opskit sync --apply plan.csv``. :func:`apply_checked` holds
each row to the rules :func:`opskit.writes.sync.build_plan` (and
:func:`opskit.core.snapshots.snapshot_plan`) plan by, asking the shop's own
Stripe account now, and applies only the rows that pass:

* ``stripe_customer_id`` set: a customer id (``cus_...``) that exists, not
  deleted, in *that shop's* Stripe account, has the account's email (opskit's
  email rule), and that no other account of the shop links (nor another row of
  the plan). Removed (<NA>): only when the linked customer is deleted or gone
  in the shop's Stripe account.
* ``stripe_customer`` (the Customer snapshot): a JSON object whose ``id`` is
  the account's link (after the plan's own link row, if any), equal to the
  Customer Stripe returns now, re-read: an edited snapshot, or one Stripe has
  changed since the plan, is refused (make a new plan). Never removed.
* ``stripe_synced_at``: an ISO-8601 time with a zone, after 2000 and not in the
  future (``infinity``, ``0000-00-00`` and free text are refused). Never removed.
  A snapshot and its time are one sync: neither is applied without the other.
* ``stripe_subscription_id`` / ``stripe_price_id``: the loaders' one id rule
  (:func:`opskit.common.models.stripe_id_problem`); ``subscription_status``: one of
  Stripe's subscription statuses.

A refused row gets outcome ``refused`` with the reason in ``detail`` and a
``refused`` audit row (``sync.set_detail``); every other row of the same account
is refused with it (nothing half-written); the other accounts' rows are applied
by :func:`opskit.writes.sync.apply_plan` (one transaction per shop, checked
against ``old_value``). A shop whose Stripe cannot be asked now refuses the rows
that need it, with Stripe's reason. Structural problems (a missing column, an
unknown key) still raise :class:`~opskit.common.exceptions.InputError`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit
from opskit.common.context import Context
from opskit.common.exceptions import InputError, OpskitError
from opskit.common.models import ID_KEYS, stripe_id_problem
from opskit.core import frames
from opskit.core.normalize import email_key
from opskit.core.snapshots import differing_fields
from opskit.core.subscription_status import STATUSES
from opskit.stripeapi import fetch
from opskit.writes import sync

__all__ = ["apply_checked", "check_plan"]

log = logging.getLogger(__name__)

_CUSTOMER_ID = re.compile(r"cus_[A-Za-z0-9_]+")
_PAIR = ("stripe_customer", "stripe_synced_at")
_SKEW = timedelta(minutes=5)


def _s(value: Any) -> str | None:
    return None if value is None or value is pd.NA or value != value else str(value)


def check_plan(ctx: Context, plan: pd.DataFrame) -> dict[Hashable, str]:
    """Row index -> why that row of ``plan`` (a conformed SYNC_PLAN) must not be applied."""
    reasons: dict[Hashable, str] = {}
    if plan.empty:
        return reasons
    parts, unreadable = [], {}
    for shop_id in sorted({str(s) for s in plan["shop_id"]}):
        try:  # shop by shop: an unknown shop never lets the others' rows go unchecked
            parts.append(ctx.db.load_accounts([shop_id]))
        except (OpskitError, SQLAlchemyError) as exc:
            unreadable[shop_id] = (
                exc.message if isinstance(exc, OpskitError) else type(exc).__name__
            )
    for row in plan.itertuples():
        if str(row.shop_id) in unreadable:
            reasons[row.Index] = f"shop {row.shop_id}: {unreadable[str(row.shop_id)]}"
    if not parts:
        return reasons
    accounts = pd.concat(parts, ignore_index=True)
    acc = {
        str(a): r for a, r in zip(accounts["account_id"], accounts.to_dict("records"), strict=True)
    }
    links = _links(plan, acc)
    live, failed = _ask_stripe(ctx, plan, acc, links)
    planned_links: dict[tuple[str, str], list[str]] = {}
    for row in plan.itertuples():
        if row.key == "stripe_customer_id" and _s(row.new_value):
            planned_links.setdefault((str(row.shop_id), str(row.new_value).strip()), []).append(
                str(row.account_id)
            )
    for row in plan.itertuples():
        account = acc.get(str(row.account_id))
        if row.Index in reasons or account is None or str(account["shop_id"]) != str(row.shop_id):
            continue  # apply_plan says "unknown account" / "now in another shop"
        why = _check_row(row, account, acc, links, live, failed, planned_links)
        if why:
            reasons[row.Index] = why
    _keep_syncs_whole(plan, reasons)
    return reasons


def _links(plan: pd.DataFrame, acc: dict[str, dict[str, Any]]) -> dict[str, str | None]:
    """Account id -> its customer link once the plan's own link row is applied."""
    out = {a: _s(r.get("stripe_customer_id")) for a, r in acc.items()}
    for row in plan.itertuples():
        if row.key == "stripe_customer_id" and str(row.account_id) in out:
            out[str(row.account_id)] = _s(row.new_value)
    return out


def _ask_stripe(
    ctx: Context, plan: pd.DataFrame, acc: dict[str, dict[str, Any]], links: dict[str, str | None]
) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, str]]:
    """The customers the rows name, as each shop's Stripe has them now; failed shops."""
    wanted: dict[str, set[str]] = {}
    for row in plan.itertuples():
        if row.key not in ("stripe_customer_id", "stripe_customer"):
            continue
        ids = {_s(row.new_value) if row.key == "stripe_customer_id" else None,
               links.get(str(row.account_id)),
               _s((acc.get(str(row.account_id)) or {}).get("stripe_customer_id"))}  # fmt: skip
        wanted.setdefault(str(row.shop_id), set()).update(
            i.strip() for i in ids if i and _CUSTOMER_ID.fullmatch(i.strip())
        )
    if not wanted:
        return {}, {}
    shops = {sid: s for sid, s in ctx.db.shop_objects().items() if sid in wanted}
    failed = {sid: "the shop has no usable Stripe key" for sid in wanted if sid not in shops}
    if not shops:
        return {}, failed
    result = fetch.fetch_customers(
        ctx, list(shops.values()), link_ids={s: sorted(i) for s, i in wanted.items()},
        progress=False,
    )  # fmt: skip
    failed.update({str(k): str(v) for k, v in result.errors.items()})
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for r in result.frame.to_dict("records"):
        key = (str(r["shop_id"]), str(r["stripe_customer_id"]))
        if key not in live or not r["deleted"]:
            live[key] = r
    return live, failed


def _check_row(
    row: Any,
    account: dict[str, Any],
    acc: dict[str, dict[str, Any]],
    links: dict[str, str | None],
    live: dict[tuple[str, str], dict[str, Any]],
    failed: dict[str, str],
    planned_links: dict[tuple[str, str], list[str]],
) -> str | None:
    key, shop, aid = str(row.key), str(row.shop_id), str(row.account_id)
    new = _s(row.new_value)
    if key in ID_KEYS and new is not None:  # the loaders' one id rule first
        problem = stripe_id_problem(key, new)
        if problem:
            return problem
    if key == "subscription_status" and new is not None:
        return None if new in STATUSES else f"{new!r} is not a Stripe subscription status"
    if key == "stripe_synced_at":
        return _check_time(new)
    if key not in ("stripe_customer_id", "stripe_customer"):
        return None
    if shop in failed:
        return f"shop {shop}'s Stripe could not be asked now ({failed[shop]}); apply it again later"
    if key == "stripe_customer_id":
        return _check_link(shop, aid, new, account, acc, live, planned_links)
    return _check_snapshot(shop, new, links.get(aid), live)


def _check_link(
    shop: str,
    aid: str,
    new: str | None,
    account: dict[str, Any],
    acc: dict[str, dict[str, Any]],
    live: dict[tuple[str, str], dict[str, Any]],
    planned_links: dict[tuple[str, str], list[str]],
) -> str | None:
    if new is None:  # the planner removes a link only to a customer deleted in Stripe
        old = _s(account.get("stripe_customer_id"))
        found = live.get((shop, old or ""))
        if old and found is not None and not found["deleted"]:
            return (
                f"customer {old} exists in shop {shop}'s Stripe account: a link is removed "
                "only when its customer is deleted"
            )
        return None
    cid = new.strip()
    if not _CUSTOMER_ID.fullmatch(cid):
        return f"{new!r} is not a Stripe customer id (cus_...)"
    found = live.get((shop, cid))
    if found is None or found["deleted"]:
        state = "is deleted in" if found is not None else "is not in"
        return f"customer {cid} {state} shop {shop}'s Stripe account"
    others = sorted(
        {a for a, r in acc.items() if a != aid and _s(r.get("stripe_customer_id")) == cid}
        | {a for a in planned_links.get((shop, cid), []) if a != aid}
    )
    if others:
        return f"customer {cid} is linked by account {', '.join(others)} of shop {shop}"
    if email_key(found.get("email")) != email_key(account.get("email")):
        return (
            f"customer {cid}'s email is not account {aid}'s: the plan links only a customer "
            "with the account's email (ops.link_customer(..., force=True) after checking)"
        )
    return None


def _check_snapshot(
    shop: str, new: str | None, link: str | None, live: dict[tuple[str, str], dict[str, Any]]
) -> str | None:
    if new is None:
        return "a Customer snapshot is never removed by a sync plan"
    try:
        stored = json.loads(new)
    except ValueError:
        return "the snapshot is not JSON"
    if not isinstance(stored, dict):
        return "the snapshot is not a JSON object"
    sid = _s(stored.get("id"))
    if not link or sid != link:
        return f"the snapshot is of customer {sid}, but the account links {link or 'none'}"
    found = live.get((shop, link))
    if found is None or found["deleted"] or _s(found.get("stripe_object")) is None:
        return f"customer {link} is not (or no longer) in shop {shop}'s Stripe account"
    now = json.loads(str(found["stripe_object"]))
    if stored != now:
        fields = differing_fields(stored, now) or ["fields outside the compared ones"]
        return (
            f"the snapshot differs from customer {link} as Stripe has it now "
            f"({', '.join(fields)}): edited, or changed in Stripe since; make a new plan"
        )
    return None


def _check_time(new: str | None) -> str | None:
    if new is None:
        return "stripe_synced_at is never removed by a sync plan"
    try:
        when = datetime.fromisoformat(new.strip())
    except ValueError:
        return f"{new!r} is not an ISO-8601 time"
    if when.tzinfo is None:
        return f"{new!r} has no time zone (the backend writes UTC, e.g. +00:00)"
    if when < datetime(2000, 1, 1, tzinfo=UTC) or when > datetime.now(UTC) + _SKEW:
        return f"{new!r} is not a time a snapshot can have been taken"
    return None


def _keep_syncs_whole(plan: pd.DataFrame, reasons: dict[Hashable, str]) -> None:
    """An account with a refused row, or a snapshot without its time: refuse all its rows."""
    by_account: dict[str, list[Any]] = {}
    for row in plan.itertuples():
        by_account.setdefault(str(row.account_id), []).append(row)
    for aid, rows in by_account.items():
        keys = {str(r.key) for r in rows}
        if (set(_PAIR) & keys) and not set(_PAIR) <= keys:
            lone = next(k for k in _PAIR if k in keys)
            other = next(k for k in _PAIR if k != lone)
            for r in rows:
                if str(r.key) == lone and r.Index not in reasons:
                    reasons[r.Index] = (
                        f"{lone} without {other}: a snapshot and its time are one sync"
                    )
        refused = [r for r in rows if r.Index in reasons]
        if refused:
            first = refused[0]
            for r in rows:
                if r.Index not in reasons:
                    reasons[r.Index] = (
                        f"not applied with account {aid}'s refused {first.key} row "
                        f"({reasons[first.Index]})"
                    )


def _ids_blanked(plan: Any) -> Any:
    """``plan`` with its Stripe-id values blanked (for checking the plan's shape only)."""
    if not isinstance(plan, pd.DataFrame) or not {"key", "new_value"} <= set(plan.columns):
        return plan
    blank = plan.copy()
    blank.loc[blank["key"].isin(ID_KEYS), "new_value"] = None
    return blank


def apply_checked(ctx: Context, plan: pd.DataFrame, *, actor: str) -> pd.DataFrame:
    """:func:`check_plan`, audit the refused rows, apply the rest (SYNC_RESULT, plan order)."""
    if not isinstance(actor, str) or not actor.strip():
        raise InputError(
            f"actor {actor!r} is not a name",
            guidance="Pass actor='your.name' so the audit log says who wrote.",
        )
    # The plan's shape first (columns, keys, one row per account and key); a malformed
    # Stripe id is a refused row here (reported, the rest applied), not a refused plan.
    sync._validate(_ids_blanked(plan), ctx.db.schema.details_keys)
    df = frames.conform(plan, frames.SYNC_PLAN).reset_index(drop=True)
    if df.empty:
        return frames.empty(frames.SYNC_RESULT)
    reasons = check_plan(ctx, df)
    ok = df[~df.index.isin(list(reasons))]
    applied = sync.apply_plan(ctx, ok, actor=actor) if len(ok) else frames.empty(frames.SYNC_RESULT)
    out = df.copy()
    out["outcome"] = pd.array([None] * len(df), dtype="string")
    out["audit_id"] = pd.array([None] * len(df), dtype="Int64")
    out["detail"] = pd.array([None] * len(df), dtype="string")
    for pos, idx in enumerate(ok.index):
        out.loc[idx, ["outcome", "audit_id", "detail"]] = applied.iloc[pos][
            ["outcome", "audit_id", "detail"]
        ].tolist()
    if reasons:
        audit.ensure_table(ctx.db)
    for row in df[df.index.isin(list(reasons))].itertuples():
        why = reasons[row.Index]
        audit_id: int | None = None
        try:
            audit_id = audit.append(
                ctx.db, actor=actor, shop_id=row.shop_id, action=sync.ACTION,
                target=f"account:{row.account_id}", params=sync._params(row),
                outcome="refused", error=why,
            )  # fmt: skip
        except (SQLAlchemyError, OpskitError) as exc:
            log.error("could not audit the refused row of account %s: %s", row.account_id, exc)
        out.loc[row.Index, ["outcome", "audit_id", "detail"]] = ["refused", audit_id, why]
    return frames.conform(out, frames.SYNC_RESULT)
