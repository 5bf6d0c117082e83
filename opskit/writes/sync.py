"""Pulling Stripe's state into local account details: a plan first, then an audited apply.

:func:`build_plan` is pure: report frames in, a :data:`frames.SYNC_PLAN` frame
out, nothing read or written. It proposes only changes whose target is certain:

* subscription ``status_drift``: ``subscription_status`` := Stripe's status;
* subscription ``price_mismatch`` (or ``status_drift`` with a price
  difference, when the account records a price): ``stripe_price_id`` :=
  Stripe's price;
* subscription ``orphan_in_stripe``: ``stripe_subscription_id`` (plus its
  status and price) := Stripe's, when exactly one account of the shop links
  the customer and that account records no subscription yet;
* customer ``orphan_in_stripe``: ``stripe_customer_id`` := the customer's id,
  when exactly one unlinked account of the shop has that email (the one email
  rule, :mod:`opskit.core.normalize`, paired by :mod:`opskit.core.pairing` as the
  report does), no account links another customer with that email (then it is
  likely a duplicate customer) and no other orphan customer claims that account;
* customer ``deleted_in_stripe``: ``stripe_customer_id`` removed
  (``new_value`` <NA>).

Everything else (``shop_error``, ``shop_not_configured``, ``duplicate_link``,
``wrong_shop``, ``multiple_active``, ``missing_in_stripe``, mismatched names or
emails) needs a human and gets no row. Accounts whose details are unreadable
get no row either (apply would refuse them); NULL details count as ``{}``.
When two findings propose different values for one account's key, neither is
proposed.

:func:`apply_plan` writes a plan (or any filtered part of it) in one
transaction per shop; see its docstring.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Hashable
from typing import Any

import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit, writeback
from opskit.backend.schema import DETAIL_KEYS
from opskit.common.context import Context
from opskit.common.exceptions import InputError, OpskitError, StaleWrite, UnknownAccount
from opskit.common.ids import id_sort_key
from opskit.common.keys import redact
from opskit.common.models import ID_KEYS, detail_text, parse_details, stripe_id_problem
from opskit.core import frames
from opskit.core.pairing import email_pairs

__all__ = ["ACTION", "apply_plan", "build_plan"]

log = logging.getLogger(__name__)

ACTION = "sync.set_detail"
_REQUIRED = ("shop_id", "account_id", "key", "old_value", "new_value")


# -- planning (pure) -----------------------------------------------------------------------


def _na(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _s(value: Any) -> str | None:
    return None if _na(value) else str(value)


def build_plan(
    customer_report: pd.DataFrame,
    subscription_report: pd.DataFrame,
    accounts: pd.DataFrame,
    *,
    keys: Collection[str] = DETAIL_KEYS,
    snapshots: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Proposed details changes (frames.SYNC_PLAN), sorted by shop, account and key.

    ``old_value`` is the account's current details value in ``accounts`` (the
    frame :meth:`opskit.Ops.accounts` returns), so :func:`apply_plan` can
    refuse rows that changed since. ``keys``: the details keys the backend uses
    (``Schema.details_keys``); a change to any other key is never proposed.
    ``snapshots`` (:func:`opskit.core.snapshots.snapshot_plan` rows): the
    backend's own sync of stale or missing Customer snapshots, two rows per
    account (``stripe_customer`` and ``stripe_synced_at``).
    """
    allowed = set(keys)
    # Empty details (NULL, JSON null, {}) are an empty object to apply, so they are plannable.
    # An account id two rows share (row_error says so) is never planned: one UPDATE by
    # that id would write both rows.
    ok = (
        accounts["details_error"].isna() & ~accounts["account_id"].duplicated(keep=False)
        if len(accounts)
        else None
    )
    readable = accounts[ok] if ok is not None else accounts
    by_id: dict[str, dict[Any, Any]] = {
        str(r["account_id"]): r for r in readable.to_dict("records") if not _na(r["account_id"])
    }
    proposals: list[dict[str, Any]] = []

    def propose(account_id: Any, key: str, new: str | None, reason: str, status: str) -> None:
        if key not in allowed or _na(account_id) or str(account_id) not in by_id:
            return
        acc = by_id[str(account_id)]
        old = _detail_text(acc, key)
        if old == new:
            return
        proposals.append(
            {
                "shop_id": acc["shop_id"],
                "account_id": str(account_id),
                "key": key,
                "old_value": old,
                "new_value": new,
                "reason": reason,
                "source_status": status,
            }
        )

    _plan_customers(customer_report, by_id, propose)
    _plan_subscriptions(subscription_report, by_id, propose)
    if snapshots is not None and len(snapshots):
        for r in snapshots.to_dict("records"):
            propose(r["account_id"], r["key"], _s(r["new_value"]), r["reason"], r["source_status"])
    return _resolve(proposals)


def _detail_text(acc: dict[Any, Any], key: str) -> str | None:
    """The account's current value of ``key`` as details text (what apply compares)."""
    if key == "stripe_synced_at":  # the frame parses it; the plan carries the stored text
        details, _ = parse_details(_s(acc.get("details")))
        return detail_text(details.get(key))
    return _s(acc.get(key))


def _plan_customers(report: pd.DataFrame, by_id: dict[str, dict[Any, Any]], propose: Any) -> None:
    if not len(report):
        return
    status = report["status"].astype("string")
    for r in report[status == "deleted_in_stripe"].to_dict("records"):
        cid = _s(r["stripe_customer_id"])
        propose(
            r["account_id"],
            "stripe_customer_id",
            None,
            f"customer {cid} is deleted in the shop's Stripe account: remove the link",
            "deleted_in_stripe",
        )
    # Pair orphans with accounts by the one email rule (the report's own pairing): a link
    # is certain when the orphan has exactly one unlinked candidate and no account
    # links a customer with its email (else it is likely a duplicate customer).
    orphans = report[status == "orphan_in_stripe"]
    if not len(orphans) or not by_id:
        return
    accounts = pd.DataFrame.from_records(
        [
            {
                "shop_id": _s(acc.get("shop_id")),
                "account_id": aid,
                "email": _s(acc.get("email")),
                "stripe_customer_id": _s(acc.get("stripe_customer_id")),
            }
            for aid, acc in by_id.items()
        ]
    )
    seen = report[report["account_id"].notna() & report["stripe_email"].notna()]
    # keyed by text: local ids are opaque (by_id's own keys are used for the pairing)
    linked_email = {
        str(a): e for a, e in zip(seen["account_id"], seen["stripe_email"], strict=True)
    }
    accounts["linked_email"] = [linked_email.get(str(a)) for a in by_id]
    accounts["account_id"] = pd.Series(list(by_id), dtype="object")
    pairs = email_pairs(
        pd.DataFrame(
            {
                "shop_id": orphans["shop_id"].map(_s),
                "stripe_customer_id": orphans["stripe_customer_id"],
                "email": orphans["stripe_email"],
            }
        ),
        accounts,
    )
    emails = dict(zip(orphans["stripe_customer_id"], orphans["stripe_email"], strict=True))
    claims: dict[str, list[str]] = {}
    for cid, group in pairs.groupby("stripe_customer_id", sort=True):
        kinds = list(group["kind"])
        if kinds.count("link") == 1 and "duplicate" not in kinds:
            aid = str(group.loc[group["kind"] == "link", "account_id"].iloc[0])
            claims.setdefault(aid, []).append(str(cid))
    for aid, found in claims.items():
        if len(found) != 1:  # two Stripe customers share the email: not certain
            continue
        cid = found[0]
        propose(
            aid,
            "stripe_customer_id",
            cid,
            f"Stripe customer {cid} is linked by no account; this is the shop's only "
            f"unlinked account with email {_s(emails.get(cid))}",
            "orphan_in_stripe",
        )


def _plan_subscriptions(
    report: pd.DataFrame, by_id: dict[str, dict[Any, Any]], propose: Any
) -> None:
    if not len(report):
        return
    status = report["status"].astype("string")
    for r in report[status == "status_drift"].to_dict("records"):
        new = _s(r["stripe_status"])
        if new is not None:
            propose(
                r["account_id"],
                "subscription_status",
                new,
                f"subscription {_s(r['stripe_subscription_id'])} is {new} in Stripe",
                "status_drift",
            )
    # A status_drift row may also carry a price difference (reconcile names both in
    # its detail); a price is only compared when the account records one.
    priced = (status == "price_mismatch") | (
        (status == "status_drift") & report["local_price_id"].notna()
    )
    for r in report[priced.fillna(False).astype(bool)].to_dict("records"):
        new = _s(r["stripe_price_id"])
        if new is not None and new != _s(r["local_price_id"]):
            propose(
                r["account_id"],
                "stripe_price_id",
                new,
                f"subscription {_s(r['stripe_subscription_id'])} is on price {new} in Stripe",
                str(r["status"]),
            )
    # Accounts by (shop, customer id).
    by_customer: dict[tuple[str, str], list[str]] = {}
    for aid, acc in by_id.items():
        cid = _s(acc.get("stripe_customer_id"))
        if cid and not _na(acc.get("shop_id")):
            by_customer.setdefault((str(acc["shop_id"]), cid), []).append(aid)
    orphans: dict[str, list[dict[Any, Any]]] = {}
    for r in report[status == "orphan_in_stripe"].to_dict("records"):
        cid, sid = _s(r["stripe_customer_id"]), _s(r["stripe_subscription_id"])
        if cid is None or sid is None or _na(r["shop_id"]):
            continue
        owners = by_customer.get((str(r["shop_id"]), cid), [])
        if len(owners) == 1:
            orphans.setdefault(owners[0], []).append(r)
    for aid, subs in orphans.items():
        if len(subs) != 1 or not _na(by_id[aid].get("stripe_subscription_id")):
            continue  # several subscriptions, or one is recorded already: a human decides
        r = subs[0]
        sid = _s(r["stripe_subscription_id"])
        cid = _s(r["stripe_customer_id"])
        why = f"subscription {sid} of customer {cid} is recorded by no account"
        propose(aid, "stripe_subscription_id", sid, why, "orphan_in_stripe")
        if _s(r["stripe_status"]) is not None:
            propose(aid, "subscription_status", _s(r["stripe_status"]), why, "orphan_in_stripe")
        if _s(r["stripe_price_id"]) is not None:
            propose(aid, "stripe_price_id", _s(r["stripe_price_id"]), why, "orphan_in_stripe")


def _resolve(proposals: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (account, key); conflicting proposals cancel each other."""
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    conflicted: set[tuple[str, str]] = set()
    for p in proposals:
        k = (p["account_id"], p["key"])
        if k in chosen and chosen[k]["new_value"] != p["new_value"]:
            conflicted.add(k)
        chosen.setdefault(k, p)
    rows = [p for k, p in chosen.items() if k not in conflicted]
    if not rows:
        return frames.empty(frames.SYNC_PLAN)
    df = frames.conform(pd.DataFrame(rows), frames.SYNC_PLAN)
    order = pd.DataFrame(
        {
            "s": id_sort_key(df["shop_id"]),
            "a": id_sort_key(df["account_id"]),
            "k": df["key"],
        }
    )
    return df.loc[order.sort_values(["s", "a", "k"], kind="stable").index].reset_index(drop=True)


# -- applying --------------------------------------------------------------------------------


def _validate(plan: pd.DataFrame, keys: Collection[str]) -> pd.DataFrame:
    if not isinstance(plan, pd.DataFrame):
        raise InputError(f"a sync plan is a DataFrame, not {type(plan).__name__}")
    missing = [c for c in _REQUIRED if c not in plan.columns]
    if missing:
        raise InputError(
            f"the plan has no column {', '.join(map(repr, missing))}",
            guidance="Pass the frame ops.sync_plan() returned, or rows filtered from it.",
        )
    try:
        df = frames.conform(plan, frames.SYNC_PLAN)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the plan's columns do not fit the sync plan's dtypes: {exc}") from None
    for col in ("shop_id", "account_id", "key"):
        if df[col].isna().any():
            raise InputError(f"the plan has rows without {col}")
    unknown = sorted(set(df["key"]) - set(keys))
    if unknown:
        raise InputError(
            f"the plan changes details key(s) {', '.join(map(repr, unknown))}; "
            f"this backend uses only {', '.join(keys)}",
            guidance="Keys the backend does not use are never written "
            "(Schema.details_keys says which it uses).",
        )
    for row in df[df["key"].isin(ID_KEYS) & df["new_value"].notna()].itertuples(index=False):
        why = stripe_id_problem(str(row.key), str(row.new_value))
        if why:  # the one rule of every loader: never written, so never read back as a link
            raise InputError(f"the plan would write account {row.account_id}'s {why}")
    dup = df.duplicated(["account_id", "key"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise InputError(
            f"the plan changes account {first['account_id']} key {first['key']!r} more than once"
        )
    return df


def apply_plan(ctx: Context, plan: pd.DataFrame, *, actor: str) -> pd.DataFrame:
    """Write a plan: one transaction per shop, audited; returns frames.SYNC_RESULT.

    Per row, in plan order within its shop, the account's details are read
    again (locked on PostgreSQL) and the row's ``old_value`` compared with
    the current value:

    * equal: the change is merged into details and an audit row
      (``sync.set_detail``, outcome ok) joins the same transaction -> ``applied``;
    * already holding ``new_value`` (the row was applied before, e.g. by a run
      that crashed after committing, or by a concurrent identical run): nothing
      written, audited ok with ``already_done`` -> ``already_applied`` (success);
    * different: nothing written, audited as refused -> ``stale``; the shop's
      other rows still apply;
    * unknown account, account now in another shop, details not a JSON
      object -> ``error`` (audited), nothing written for that row.

    A database error rolls the shop's whole transaction back: all its rows
    become ``error`` (and are audited as such afterwards); other shops are
    unaffected. An empty plan returns an empty result.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise InputError(
            f"actor {actor!r} is not a name",
            guidance="Pass actor='your.name' so the audit log says who wrote.",
        )
    df = _validate(plan, ctx.db.schema.details_keys)
    if df.empty:
        return frames.empty(frames.SYNC_RESULT)
    out = df.copy()
    out["outcome"] = pd.array([None] * len(df), dtype="string")
    out["audit_id"] = pd.array([None] * len(df), dtype="Int64")
    out["detail"] = pd.array([None] * len(df), dtype="string")
    audit.ensure_table(ctx.db)  # outside the shop transactions: DDL never rolls back with them
    for shop_id, rows in df.groupby("shop_id", sort=True):
        for idx, outcome, audit_id, detail in _apply_shop(ctx, str(shop_id), rows, actor):
            out.loc[idx, ["outcome", "audit_id", "detail"]] = [outcome, audit_id, detail]
    return frames.conform(out, frames.SYNC_RESULT)


def _params(row: Any) -> dict[str, Any]:
    return {"key": row.key, "old": _short(row.old_value), "new": _short(row.new_value)}


def _short(value: Any, limit: int = 200) -> str | None:
    """A value for the audit row: a long snapshot is cut (the row keeps the trail, not the copy)."""
    text = _s(value)
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _apply_shop(
    ctx: Context, shop_id: str, rows: pd.DataFrame, actor: str
) -> list[tuple[Hashable, str, int | None, str | None]]:
    db = ctx.db
    results: list[tuple[Hashable, str, int | None, str | None]] = []
    try:
        with db.engine.begin() as conn:
            for row in rows.itertuples():
                target = f"account:{row.account_id}"
                try:
                    wrote = writeback.write_details(
                        db,
                        conn,
                        str(row.account_id),
                        {str(row.key): _s(row.new_value)},
                        expect={str(row.key): _s(row.old_value)},
                        shop_id=shop_id,
                    )
                except StaleWrite as exc:
                    aid = audit.append(
                        db, actor=actor, shop_id=shop_id, action=ACTION, target=target,
                        params=_params(row), outcome="refused", error=f"stale: {exc.message}",
                        conn=conn,
                    )  # fmt: skip
                    results.append((row.Index, "stale", aid, exc.message))
                    continue
                except (UnknownAccount, writeback.DetailsUnreadable, InputError) as exc:
                    aid = audit.append(
                        db, actor=actor, shop_id=shop_id, action=ACTION, target=target,
                        params=_params(row), outcome="error", error=exc.message, conn=conn,
                    )  # fmt: skip
                    results.append((row.Index, "error", aid, exc.message))
                    continue
                params = _params(row) | ({"already_done": True} if wrote.already else {})
                aid = audit.append(
                    db, actor=actor, shop_id=wrote.shop_id, action=ACTION, target=target,
                    params=params, outcome="ok", conn=conn,
                )  # fmt: skip
                if wrote.already:
                    results.append((row.Index, "already_applied", aid, "already in details"))
                else:
                    results.append((row.Index, "applied", aid, None))
    except (SQLAlchemyError, OpskitError) as exc:
        reason = _first_line(exc)
        detail = f"shop {shop_id}: transaction rolled back, nothing written: {reason}"
        log.warning("sync for shop %s rolled back: %s", shop_id, reason)
        results = []
        for row in rows.itertuples():
            failed_id: int | None
            try:
                failed_id = audit.append(
                    db, actor=actor, shop_id=shop_id, action=ACTION,
                    target=f"account:{row.account_id}", params=_params(row),
                    outcome="error", error=detail,
                )  # fmt: skip
            except SQLAlchemyError:  # the database is gone: the result frame still says why
                failed_id = None
            results.append((row.Index, "error", failed_id, detail))
    return results


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, OpskitError):
        return exc.message
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}")
