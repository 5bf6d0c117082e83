"""Stored Customer snapshots against the live customer (shop-backend's admin sync).

shop-backend's ``POST /admin/accounts/{id}/sync-stripe`` stores the whole Stripe
Customer in ``details["stripe_customer"]`` and the time in
``details["stripe_synced_at"]`` (ISO-8601 UTC). Analysts read that copy; this
module says whether it still tells the truth. Pure: frames in, frames out.

- :func:`compare_snapshots`: per linked account that keeps a snapshot,
  ``snapshot_status`` ``fresh`` (every field an analyst sees agrees with the
  live customer), ``stale`` (one differs: ``snapshot_fields`` names them, e.g.
  ``email,address``), or <NA> (no snapshot, or no live customer in this shop to
  compare with); ``synced_at`` is the parsed ``stripe_synced_at``.
- :func:`annotate`: those three columns onto a customer report.
- :func:`snapshot_plan`: the backend's own sync for stale or missing snapshots,
  as sync-plan rows: ``stripe_customer`` (the live Customer, JSON text) and
  ``stripe_synced_at`` (``now``, ISO-8601 UTC), two rows per account.
- :func:`follow_plan`: the same rows (:func:`sync_rows`) for the snapshots a
  customer event makes outdated (``ops.refresh()`` and the webhook receiver):
  written only where the event's state is newer than ``stripe_synced_at``.

The compared fields are :data:`SNAPSHOT_FIELDS` (our name -> path in the
Customer): the ones a person sees in the dashboard or an invoice. A snapshot of
another customer than the linked one differs in ``id``; a snapshot that is not
a JSON object is ``stale`` with ``unreadable``; a deleted live customer differs
in ``deleted`` only (a tombstone has no other fields).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from opskit.core.frames import SNAPSHOT_STATUSES, UTC_TIME

__all__ = [
    "SNAPSHOT_FIELDS",
    "SNAPSHOT_REPORT_COLUMNS",
    "annotate",
    "compare_snapshots",
    "follow_plan",
    "snapshot_plan",
    "sync_rows",
]

#: Fields compared, in report order: our name -> the path in Stripe's Customer.
SNAPSHOT_FIELDS: Mapping[str, tuple[str, ...]] = {
    "id": ("id",),
    "email": ("email",),
    "name": ("name",),
    "phone": ("phone",),
    "description": ("description",),
    "deleted": ("deleted",),
    "currency": ("currency",),
    "address": ("address",),
    "shipping": ("shipping",),
    "default_payment_method": ("invoice_settings", "default_payment_method"),
    "balance": ("balance",),
    "delinquent": ("delinquent",),
    "tax_exempt": ("tax_exempt",),
    "preferred_locales": ("preferred_locales",),
    "metadata": ("metadata",),
}

SNAPSHOT_REPORT_COLUMNS = ("snapshot_status", "snapshot_fields", "synced_at")
_KEYS = ["shop_id", "stripe_customer_id"]
_STATUS = pd.CategoricalDtype(SNAPSHOT_STATUSES)


def _loads(text: Any) -> Any:
    if text is None or text is pd.NA or (isinstance(text, float) and text != text):
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return _UNREADABLE


_UNREADABLE = object()


def _at(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    if isinstance(value, Mapping) and path[-1] != "metadata" and "id" in value and len(path) > 1:
        return value.get("id")  # an expanded object: compare its id
    if path == ("deleted",):
        return bool(value)
    if value in ({}, []) and path[-1] in ("metadata", "preferred_locales"):
        return None  # absent and empty read the same to a person
    return value


def differing_fields(stored: Any, live: Mapping[str, Any]) -> list[str]:
    """Names of :data:`SNAPSHOT_FIELDS` in which ``stored`` differs from ``live``."""
    if not isinstance(stored, Mapping):
        return ["unreadable"]
    if live.get("deleted"):
        return [] if stored.get("deleted") else ["deleted"]
    return [name for name, path in SNAPSHOT_FIELDS.items() if _at(stored, path) != _at(live, path)]


def _linked(accounts: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Accounts with their link, snapshot, time and the live customer of their own shop."""
    acc = pd.DataFrame(
        {
            "shop_id": accounts["shop_id"].astype("string"),
            "account_id": accounts["account_id"].astype("string"),
            "stripe_customer_id": accounts["stripe_customer_id"].astype("string").str.strip(),
            "stripe_customer": accounts.get(
                "stripe_customer", pd.Series(pd.NA, index=accounts.index, dtype="string")
            ).astype("string"),
            "synced_at": pd.to_datetime(
                accounts.get(
                    "stripe_synced_at", pd.Series(pd.NaT, index=accounts.index, dtype=UTC_TIME)
                ),
                utc=True,
            ).astype(UTC_TIME),
        }
    ).reset_index(drop=True)
    live = pd.DataFrame(
        {
            "shop_id": customers["shop_id"].astype("string"),
            "stripe_customer_id": customers["stripe_customer_id"].astype("string").str.strip(),
            "_live": customers.get(
                "stripe_object", pd.Series(pd.NA, index=customers.index, dtype="string")
            ).astype("string"),
            "_deleted": customers["deleted"].astype("boolean").fillna(False),
        }
    )
    live = live.sort_values("_deleted", kind="stable").drop_duplicates(_KEYS)
    if not len(acc):
        return acc.assign(_live=pd.Series(dtype="string"), _deleted=pd.Series(dtype="boolean"))
    return acc.merge(live, on=_KEYS, how="left")


def compare_snapshots(accounts: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """One row per account: ``shop_id``, ``account_id``, ``snapshot_status``
    (Categorical fresh/stale, <NA> when no snapshot or no live customer),
    ``snapshot_fields`` (string, comma-separated) and ``synced_at`` (UTC).

    ``accounts``: an ACCOUNTS frame (``stripe_customer`` JSON text and
    ``stripe_synced_at``); ``customers``: a CUSTOMERS frame (``stripe_object``).
    """
    rows = _linked(accounts, customers)
    status: list[str | None] = []
    fields: list[str | None] = []
    for stored_text, live_text in zip(rows["stripe_customer"], rows["_live"], strict=True):
        stored = _loads(stored_text)
        live = _loads(live_text)
        if stored is None or live is None or live is _UNREADABLE:
            status.append(None)
            fields.append(None)
            continue
        diff = differing_fields(None if stored is _UNREADABLE else stored, live)
        status.append("stale" if diff else "fresh")
        fields.append(",".join(diff) if diff else None)
    return pd.DataFrame(
        {
            "shop_id": rows["shop_id"],
            "account_id": rows["account_id"],
            "snapshot_status": pd.Categorical(status, dtype=_STATUS),
            "snapshot_fields": pd.array(fields, dtype="string"),
            "synced_at": rows["synced_at"],
        }
    )


def annotate(report: pd.DataFrame, snapshots: pd.DataFrame) -> pd.DataFrame:
    """The customer report with ``snapshot_status``, ``snapshot_fields`` and ``synced_at``
    filled in from :func:`compare_snapshots` on the rows that name an account."""
    out = report.copy()
    if not len(out) or not len(snapshots):
        return out
    keys = ["shop_id", "account_id"]
    left = out[keys].astype("string").reset_index(drop=True)
    snap = snapshots[[*keys, *SNAPSHOT_REPORT_COLUMNS]].dropna(subset=keys).drop_duplicates(keys)
    merged = left.merge(snap, on=keys, how="left")  # a left merge keeps the report's order
    out = out.reset_index(drop=True)
    out["snapshot_status"] = merged["snapshot_status"].astype(_STATUS)
    out["snapshot_fields"] = merged["snapshot_fields"].astype("string")
    out["synced_at"] = pd.to_datetime(merged["synced_at"], utc=True).astype(UTC_TIME)
    return out


def snapshot_plan(
    report: pd.DataFrame,
    accounts: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    now: datetime | None = None,
) -> pd.DataFrame:
    """The backend's own sync, proposed for each account whose snapshot is stale or missing.

    Only accounts the report shows linked to a live customer of their shop
    (``match`` or ``mismatch``) are synced; a deleted, missing or wrong-shop
    link is a human's call. Columns: ``shop_id``, ``account_id``, ``key``,
    ``new_value``, ``reason``, ``source_status`` (``snapshot_stale`` or
    ``snapshot_missing``); two rows per account: ``stripe_customer`` (the live
    Customer as JSON text) and ``stripe_synced_at`` (``now`` in ISO-8601 UTC, as
    the backend's endpoint writes it).
    """
    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat()
    if not len(report):
        return _empty_plan()
    status = report["status"].astype("string")
    linked = report[status.isin(["match", "mismatch"]).fillna(False).astype(bool)]
    snap = report.get("snapshot_status")
    wanted = linked[
        (snap is None)
        | linked["snapshot_status"].astype("string").isna()
        | (linked["snapshot_status"].astype("string") == "stale")
    ] if snap is not None else linked  # fmt: skip
    rows = _linked(accounts, customers).set_index(["shop_id", "account_id"])
    out: list[dict[str, Any]] = []
    for r in wanted.itertuples(index=False):
        key = (str(r.shop_id), str(r.account_id))
        if key not in rows.index:
            continue
        acc = rows.loc[key]
        live = acc["_live"]
        if live is pd.NA or live is None or bool(acc["_deleted"]):
            continue
        stale = str(getattr(r, "snapshot_status", "") or "") == "stale"
        why = (
            f"stored snapshot differs from customer {r.stripe_customer_id} in "
            f"{getattr(r, 'snapshot_fields', '') or 'its fields'}"
            if stale
            else f"no stored snapshot of customer {r.stripe_customer_id}"
        )
        source = "snapshot_stale" if stale else "snapshot_missing"
        out += sync_rows(key[0], key[1], str(live), stamp, f"sync: {why}", source)
    if not out:
        return _empty_plan()
    return pd.DataFrame(out, columns=list(PLAN_COLUMNS)).astype("string")


#: The columns of :func:`snapshot_plan` / :func:`follow_plan` rows.
PLAN_COLUMNS = ("shop_id", "account_id", "key", "new_value", "reason", "source_status")


def _empty_plan() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in PLAN_COLUMNS})


def sync_rows(
    shop_id: str,
    account_id: str,
    customer_text: str,
    stamp: str,
    reason: str,
    source: str,
    *,
    by: str = "sync",
) -> list[dict[str, Any]]:
    """The backend's sync of one account as two plan rows: ``stripe_customer`` := the
    Customer (JSON text) and ``stripe_synced_at`` := ``stamp`` (ISO-8601 UTC)."""
    return [
        {"shop_id": shop_id, "account_id": account_id, "key": "stripe_customer",
         "new_value": customer_text, "reason": reason, "source_status": source},
        {"shop_id": shop_id, "account_id": account_id, "key": "stripe_synced_at",
         "new_value": stamp, "reason": f"{by}: the time of this snapshot",
         "source_status": source},
    ]  # fmt: skip


def _text(value: Any) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return str(value)


def follow_plan(accounts: pd.DataFrame, states: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Snapshots that customer events make outdated, as :func:`sync_rows` plan rows.

    ``accounts``: an ACCOUNTS frame (the shops concerned). ``states``: one row per
    customer state learnt from an event: ``shop_id``, ``stripe_customer_id``,
    ``deleted`` (boolean), ``stripe_object`` (the Customer, JSON text), ``version``
    (Int64, Unix seconds: the event's ``created``, or when the customer was re-read)
    and optionally ``event_id``.

    The rule, per account of the state's shop that links the customer and keeps a
    snapshot (``stripe_customer`` or ``stripe_synced_at`` present):

    * the customer is deleted: nothing is written (the snapshot keeps the last
      state; the report says ``deleted_in_stripe``);
    * ``version`` is later than ``stripe_synced_at`` (an absent or unparsable time
      counts as older): rows ``stripe_customer`` := the state and
      ``stripe_synced_at`` := ``version`` as ISO-8601 UTC (when Stripe's state was
      this), ``source_status`` ``customer_event``;
    * ``version`` is the same second as ``stripe_synced_at`` and the state differs
      from the stored snapshot: written too. Time cannot order two states of one
      second, and such a state is never an event's payload: opskit re-reads the
      customer from Stripe when an event's second ties its copy (refresh and the
      receiver alike), so it is the live state, newer than the stored one;
    * else (an older event, or the same second and the same state): nothing.

    An account without a snapshot gets none (creating one is the admin sync's
    choice: ``ops.sync_plan()`` proposes it). Returns ``(rows, flagged)``:
    ``flagged`` has ``shop_id``, ``account_id``, ``stripe_customer_id``, ``reason``
    (strings) for accounts whose details are unreadable but mention the customer:
    never written.
    """
    flag_cols = ("shop_id", "account_id", "stripe_customer_id", "reason")
    no_flags = pd.DataFrame({c: pd.Series(dtype="string") for c in flag_cols})
    if not len(states) or not len(accounts):
        return _empty_plan(), no_flags
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for st in states.to_dict("records"):
        key = (str(st["shop_id"]), str(st["stripe_customer_id"]).strip())
        version = _text(st.get("version"))
        if version is None:
            continue
        st = {**st, "version": int(float(version))}
        if key not in newest or st["version"] > newest[key]["version"]:
            newest[key] = st
    readable = accounts["details_error"].isna()
    acc = accounts[readable]
    cids = acc["stripe_customer_id"].astype("string").str.strip()
    synced = pd.to_datetime(acc["stripe_synced_at"], utc=True)
    has_snapshot = acc["stripe_customer"].notna() | acc["stripe_synced_at"].notna()
    by_key: dict[tuple[str, str], list[int]] = {}
    for pos, (shop, cid, keeps) in enumerate(zip(acc["shop_id"], cids, has_snapshot, strict=True)):
        if keeps and cid is not pd.NA and cid:
            by_key.setdefault((str(shop), str(cid)), []).append(pos)
    out: list[dict[str, Any]] = []
    for key, st in newest.items():
        if bool(st.get("deleted")) or _text(st.get("stripe_object")) is None:
            continue
        at = datetime.fromtimestamp(st["version"], UTC)
        event = _text(st.get("event_id"))
        for pos in by_key.get(key, []):
            stored = synced.iloc[pos]
            if not pd.isna(stored) and at < stored:
                continue  # the stored snapshot is newer: an older event never wins
            if (
                not pd.isna(stored)
                and at == stored
                and _loads(acc["stripe_customer"].iloc[pos]) == _loads(st["stripe_object"])
            ):
                continue  # the same second and the same state: nothing to write
            why = f"customer {key[1]} changed in Stripe at {at.isoformat()}" + (
                f" (event {event})" if event else " (re-read)"
            )
            out += sync_rows(
                key[0], str(acc["account_id"].iloc[pos]), str(st["stripe_object"]),
                at.isoformat(), f"refresh: {why}", "customer_event", by="refresh",
            )  # fmt: skip
    flags: list[dict[str, Any]] = []
    bad = accounts[~readable]
    for shop, aid, raw, problem in zip(
        bad["shop_id"], bad["account_id"], bad["details"], bad["details_error"], strict=True
    ):
        text = _text(raw) or ""
        for s, cid in newest:
            if s == str(shop) and cid in text:
                flags.append(
                    {"shop_id": s, "account_id": str(aid), "stripe_customer_id": cid,
                     "reason": f"account {aid}: details unreadable ({problem}); its snapshot "
                               f"of customer {cid} is not written"}
                )  # fmt: skip
    rows = pd.DataFrame(out, columns=list(PLAN_COLUMNS)).astype("string") if out else _empty_plan()
    found = pd.DataFrame(flags, columns=list(flag_cols)).astype("string") if flags else no_flags
    return rows, found
