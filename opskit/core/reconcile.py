"""Reconciliation: local accounts against each shop's own Stripe data.

Pure functions, frames in and report frames out: no I/O, no Stripe, no
database. Inputs follow the specs in :mod:`opskit.core.frames` (``SHOPS``,
``ACCOUNTS``, ``CUSTOMERS``, ``SUBSCRIPTIONS``); the reports follow
``CUSTOMER_REPORT`` and ``SUBSCRIPTION_REPORT``, one row per finding.

Everything is vectorized (merges, ``duplicated``, grouped joins in pyarrow):
there is no Python loop over accounts, customers or subscriptions, so a
million accounts reconcile in a few seconds.

Scope and normalization, shared by both reports:

- The report covers the shops in ``shops``. Accounts, customers and
  subscriptions of shops not listed there are ignored.
- A shop is configured when its ``mode`` is ``live`` or ``test``. Other shops
  yield only ``shop_not_configured`` rows; configured shops named in
  ``shop_errors`` yield only ``shop_error`` rows, and their Stripe rows (which
  may be partial) are ignored everywhere, including the ``wrong_shop`` lookup.
- Stripe ids are compared after trimming whitespace; a blank id counts as
  missing. Report columns show the trimmed ids.
- Free text that reaches ``detail`` from outside (shop errors, details errors)
  goes through :func:`opskit.common.keys.redact`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from opskit.common.ids import id_sort_key
from opskit.common.keys import redact
from opskit.core import subscription_status as sub_status
from opskit.core.frames import (
    CUSTOMER_REPORT,
    CUSTOMER_STATUSES,
    SUBSCRIPTION_REPORT,
    SUBSCRIPTION_STATUSES,
    Spec,
    conform,
    empty,
)
from opskit.core.normalize import email_keys, name_keys
from opskit.core.pairing import email_pairs

__all__ = [
    "ACTIVE_SUBSCRIPTION_STATUSES",
    "LIVE_SUBSCRIPTION_STATUSES",
    "normalize_email",
    "normalize_name",
    "reconcile_customers",
    "reconcile_subscriptions",
    "summary",
]

CONFIGURED_MODES = ("live", "test")
#: Two or more of these on one customer, none scheduled to end, are a double-billing
#: risk (``multiple_active``); the rules live in :mod:`opskit.core.subscription_status`.
ACTIVE_SUBSCRIPTION_STATUSES = tuple(sorted(sub_status.BILLING))
#: A subscription in one of these that no account records is ``orphan_in_stripe``.
LIVE_SUBSCRIPTION_STATUSES = tuple(sorted(sub_status.LIVE))

_KEYS = ["shop_id", "stripe_customer_id"]
_ID_COLUMNS = ("shop_id", "account_id")  # local ids: opaque text, integers sorted as numbers
_SUB_KEYS = ["shop_id", "stripe_subscription_id"]


# --------------------------------------------------------------------------- helpers


def normalize_email(s: pd.Series) -> pd.Series:
    """Emails as compared: :func:`opskit.core.normalize.email_keys` (the one email rule)."""
    return email_keys(s)


def normalize_name(s: pd.Series) -> pd.Series:
    """Names as compared: :func:`opskit.core.normalize.name_keys` (white space as a person
    reads it, case kept)."""
    return name_keys(s)


def _clean_id(s: pd.Series) -> pd.Series:
    """Trimmed id; blank or whitespace-only becomes <NA>."""
    s = s.str.strip()
    return s.where(s.str.len().fillna(0) > 0, pd.NA)


def _bool(s: pd.Series) -> np.ndarray:
    """A boolean-ish Series as a numpy bool array, <NA> as False."""
    return s.to_numpy(dtype=bool, na_value=False)


def _take(df: pd.DataFrame, spec: Mapping[str, str]) -> pd.DataFrame:
    """Only the columns ``spec`` names, cast to its dtypes; absent columns all-<NA>."""
    cols: dict[str, pd.Series] = {}
    for col, dtype in spec.items():
        if col in df.columns:
            s = df[col]
            if str(s.dtype) != dtype:
                s = s.astype(dtype)  # type: ignore[call-overload]
        else:
            s = pd.Series(pd.NA, index=df.index, dtype=dtype)  # type: ignore[call-overload]
        cols[col] = s
    return pd.DataFrame(cols).reset_index(drop=True)


def _merge(left: pd.DataFrame, right: pd.DataFrame, on: str | list[str], **kw: Any) -> pd.DataFrame:
    """``left.merge(right, ...)``, also when both sides are empty.

    pandas 3.1 fails to merge two empty pyarrow-backed string keys that have no
    chunks left after filtering ("cannot construct ChunkedArray from empty
    vector"); fresh empty columns have one chunk and merge fine.
    """
    if not len(left) and not len(right):
        keys = [on] if isinstance(on, str) else on
        left, right = (
            df.assign(**{k: pd.Series(dtype=df[k].dtype) for k in keys}) for df in (left, right)
        )
    return left.merge(right, on=on, **kw)


def _na(n: int, dtype: object) -> pd.Series:
    return pd.Series(pd.NA, index=pd.RangeIndex(n), dtype=dtype)  # type: ignore[call-overload]


def _const(n: int, value: str) -> pd.Series:
    return pd.Series(value, index=pd.RangeIndex(n), dtype="string")


def _piece(spec: Spec, status: str, cols: Mapping[str, object], n: int) -> pd.DataFrame:
    """Report rows of one status: ``cols`` (Series or scalars) plus typed <NA> for the rest."""
    dtype = spec["status"]
    assert isinstance(dtype, pd.CategoricalDtype)
    code = list(dtype.categories).index(status)
    out: dict[str, object] = {}
    for col, col_dtype in spec.items():
        if col == "status":
            out[col] = pd.Categorical.from_codes(np.full(n, code, dtype=np.int8), dtype=dtype)
        elif col in cols:
            v = cols[col]
            if isinstance(v, pd.Series):
                v = v.reset_index(drop=True)
                if str(v.dtype) != str(col_dtype):
                    v = v.astype(col_dtype)  # type: ignore[call-overload]
            elif isinstance(v, str):
                v = _const(n, v).astype(col_dtype)  # type: ignore[call-overload]
            out[col] = v
        else:
            out[col] = _na(n, col_dtype)
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _assemble(
    spec: Spec, pieces: Iterable[pd.DataFrame], sort_by: list[str], shops: pd.DataFrame
) -> pd.DataFrame:
    """Concatenate the non-empty pieces, name the shops, sort (<NA> last), conform to ``spec``."""
    parts = [p for p in pieces if len(p)]
    if not parts:
        return empty(spec)
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    names = shops.drop_duplicates("shop_id")
    where = pd.Index(names["shop_id"]).get_indexer(out["shop_id"])
    out["shop_name"] = _gather(names["shop_name"], where)
    table = pa.table(
        {k: pa.array(id_sort_key(out[k]) if k in _ID_COLUMNS else out[k]) for k in sort_by}
    )
    order = pc.sort_indices(table, sort_keys=[(k, "ascending", "at_end") for k in sort_by])
    out = out.take(order.to_numpy()).reset_index(drop=True)
    return conform(out, spec)


def _gather(s: pd.Series, pos: np.ndarray) -> pd.Series:
    """``s`` at positions ``pos``; -1 gives <NA>. Keeps the dtype."""
    return pd.Series(s.array.take(pos, allow_fill=True), index=pd.RangeIndex(len(pos)))


def _like(df: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus typed all-<NA> columns for those of ``template`` it lacks."""
    df = df.reset_index(drop=True)
    missing = {
        c: pd.Series(pd.NA, index=df.index, dtype=template[c].dtype)
        for c in template.columns
        if c not in df.columns
    }
    return df.assign(**missing)


def _key_codes(frames: list[pd.DataFrame], keys: list[str]) -> list[np.ndarray]:
    """Joint int64 codes of the ``keys`` columns across ``frames``: equal keys, equal codes.

    -1 where any key is <NA>. Integer keys make the lookups and ``duplicated``
    calls that follow cheap, instead of hashing strings again each time.
    """
    lengths = [len(f) for f in frames]
    combined = np.zeros(sum(lengths), dtype=np.int64)
    for k in keys:
        col = pd.concat([f[k].reset_index(drop=True) for f in frames], ignore_index=True)
        codes, uniques = pd.factorize(col)
        codes = codes.astype(np.int64)
        combined = np.where((combined < 0) | (codes < 0), -1, combined * len(uniques) + codes)
    return np.split(combined, np.cumsum(lengths)[:-1])


def _dedupe(
    df: pd.DataFrame, key: np.ndarray, prefer: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """Keep one row per ``key`` (rows where ``prefer`` is True first), in the original order."""
    if not pd.Series(key).duplicated().any():
        return df, key
    order = np.argsort(~prefer, kind="stable")
    keep = np.sort(order[~pd.Series(key[order]).duplicated().to_numpy()])
    return df.iloc[keep].reset_index(drop=True), key[keep]


def _join_by(
    frame: pd.DataFrame, keys: list[str], value: str, out: str, sep: str = ", "
) -> pd.DataFrame:
    """One row per ``keys`` group: ``out`` = the group's ``value``s joined by ``sep``,
    in ``frame`` order, plus ``out + '_n'`` = how many there are. Vectorized in pyarrow."""
    if not len(frame):
        res = frame[keys].iloc[:0].copy()
        res[out] = pd.Series(dtype="string")
        res[out + "_n"] = pd.Series(dtype="Int64")
        return res
    arrays = {k: pa.array(frame[k]) for k in keys}
    arrays["_v"] = pa.array(frame[value].astype("string")).cast(pa.string())
    grouped = pa.table(arrays).group_by(keys, use_threads=False).aggregate([("_v", "list")])
    lists = grouped.column("_v_list")
    res = pd.DataFrame(
        {k: pd.Series(grouped.column(k).to_pandas(), dtype=frame[k].dtype) for k in keys}
    )
    joined = pc.binary_join(lists, sep)
    res[out] = pd.Series(joined.to_pandas(), dtype="string")
    res[out + "_n"] = pd.Series(pc.list_value_length(lists).to_pandas(), dtype="Int64")
    return res


def _shop_states(shops: pd.DataFrame, shop_errors: Mapping[str, str] | None) -> pd.DataFrame:
    """shop_id, shop_name, problem_status (<NA> when usable) and problem_detail per shop."""
    s = _take(
        shops,
        {"shop_id": "string", "shop_name": "string", "mode": "string", "key_problem": "string"},
    )
    s = s[s["shop_id"].notna()].drop_duplicates("shop_id", ignore_index=True)
    mode = s["mode"].str.strip().str.lower()
    configured = _bool(mode.isin(CONFIGURED_MODES))
    errors = {str(k): redact(str(v)) for k, v in (shop_errors or {}).items()}
    failed = _bool(s["shop_id"].isin(list(errors))) & configured

    default_problem = np.where(
        _bool(mode == "none"),
        "shop has no Stripe secret key",
        "shop's Stripe secret key is unusable",
    )
    problem = s["key_problem"].fillna(pd.Series(default_problem, dtype="string"))
    error_text = pd.Series(
        [errors.get(str(i), "") for i in s["shop_id"]], index=s.index, dtype="string"
    )  # one entry per shop, not per account
    s["problem_status"] = pd.Series(
        np.where(~configured, "shop_not_configured", np.where(failed, "shop_error", "")),
        dtype="string",
    ).replace("", pd.NA)
    s["problem_detail"] = problem.where(~configured, error_text).where(~configured | failed, pd.NA)
    return s[["shop_id", "shop_name", "problem_status", "problem_detail"]]


_SHOP_ACTIONS = {
    "shop_not_configured": "set a valid Stripe secret key for the shop",
    "shop_error": "check the shop's Stripe access, then rerun",
}


def _shop_rows(
    spec: Spec, states: pd.DataFrame, accounts: pd.DataFrame, account_cols: Mapping[str, str]
) -> list[pd.DataFrame]:
    """shop_not_configured / shop_error rows: one per account, or one with no account."""
    pieces = []
    for status in ("shop_not_configured", "shop_error"):
        bad = states[_bool(states["problem_status"] == status)]
        if not len(bad):
            continue
        acc = accounts[_bool(accounts["shop_id"].isin(bad["shop_id"]))]
        rows = _merge(bad, acc, on="shop_id", how="left")
        cols: dict[str, object] = {
            "shop_id": rows["shop_id"],
            "detail": rows["problem_detail"],
            "suggested_action": _SHOP_ACTIONS[status],
        }
        cols.update({out: rows[src] for out, src in account_cols.items()})
        pieces.append(_piece(spec, status, cols, len(rows)))
    return pieces


# --------------------------------------------------------------------------- customers


# In a row's detail: the answer depends on a shop whose Stripe failed (exit code 2).
INCOMPLETE = "could not be asked (Stripe failed)"


def reconcile_customers(
    shops: pd.DataFrame,
    accounts: pd.DataFrame,
    customers: pd.DataFrame,
    shop_errors: Mapping[str, str] | None = None,
    *,
    other_shops: pd.DataFrame | None = None,
    other_mode: Mapping[Any, Mapping[str, str]] | None = None,
    compare_name: bool = True,
) -> pd.DataFrame:
    """Compare each account's linked Stripe customer with that shop's Stripe customers.

    ``other_shops`` (shop_id, shop_name of shops outside the report): ``customers``
    rows of those shops are used only to tell ``wrong_shop`` from
    ``missing_in_stripe``; they are never reported themselves. ``other_mode``
    (shop_id -> {customer id: Stripe's 404 message}): linked ids the shop's
    Stripe answered "a similar object exists in live mode, but a test mode key
    was used" (or the reverse) for; they are ``mode_mismatch``, never
    ``missing_in_stripe``, with Stripe's message in ``detail``. ``compare_name``
    False: the backend keeps no person's name (shop-backend), so only the email
    (the account's ``email`` column, i.e. ``accounts.name`` there) is compared.

    Returns a ``CUSTOMER_REPORT`` frame, one row per finding, sorted by shop_id,
    account_id (<NA> last), stripe_customer_id. Per account, the first rule
    that applies wins: shop_not_configured / shop_error (the whole shop),
    no_customer_id, duplicate_link, deleted_in_stripe, match / mismatch,
    mode_mismatch, wrong_shop, missing_in_stripe. Then one orphan_in_stripe row per
    non-deleted customer of a usable shop that no account of that shop links.
    """
    spec = CUSTOMER_REPORT
    states = _shop_states(shops, shop_errors)
    acc = _take(
        accounts,
        {
            "account_id": "string",
            "shop_id": "string",
            "email": "string",
            "name": "string",
            "stripe_customer_id": "string",
            "details_error": "string",
        },
    )
    acc = acc[_bool(acc["shop_id"].isin(states["shop_id"]))]
    acc["stripe_customer_id"] = _clean_id(acc["stripe_customer_id"])

    pieces = _shop_rows(
        spec,
        states,
        acc,
        {
            "account_id": "account_id",
            "stripe_customer_id": "stripe_customer_id",
            "local_email": "email",
            "local_name": "name",
        },
    )

    ok = states[states["problem_status"].isna()][["shop_id", "shop_name"]]
    acc = acc[_bool(acc["shop_id"].isin(ok["shop_id"]))]

    cus = _take(
        customers,
        {
            "shop_id": "string",
            "stripe_customer_id": "string",
            "email": "string",
            "name": "string",
            "deleted": "boolean",
        },
    )
    owners, owner_names = _outside_owners(cus, ok, other_shops)
    cus = cus[_bool(cus["shop_id"].isin(ok["shop_id"]))]
    cus["stripe_customer_id"] = _clean_id(cus["stripe_customer_id"])
    cus = cus[cus["stripe_customer_id"].notna()].reset_index(drop=True)
    cus = cus.rename(columns={"email": "stripe_email", "name": "stripe_name"})
    cus["deleted"] = _bool(cus["deleted"])

    unlinked = acc[acc["stripe_customer_id"].isna()].reset_index(drop=True)
    linked = acc[acc["stripe_customer_id"].notna()].reset_index(drop=True)
    linked = linked.rename(columns={"email": "local_email", "name": "local_name"})
    a_key, c_key = _key_codes([linked, cus], _KEYS)
    cus, c_key = _dedupe(cus, c_key, prefer=~cus["deleted"].to_numpy())
    pos = pd.Index(c_key).get_indexer(a_key)
    found = pos >= 0
    c_deleted = cus["deleted"].to_numpy()
    deleted = found & c_deleted[np.where(found, pos, 0)] if len(cus) else found
    dup = pd.Series(a_key).duplicated(keep=False).to_numpy()
    for col in ("stripe_email", "stripe_name"):
        linked[col] = _gather(cus[col], pos)

    # orphans: Stripe customers of usable shops that no account of that shop links
    linked_somewhere = np.zeros(len(cus), dtype=bool)
    linked_somewhere[pos[found]] = True
    orphans = cus[~linked_somewhere & ~c_deleted]
    pairs = _orphan_pairs(orphans, unlinked, linked)

    pieces.append(_no_customer_id_rows(spec, unlinked, pairs))
    pieces.append(_orphan_rows(spec, orphans, pairs))
    pieces.append(_duplicate_rows(spec, linked[dup], found[dup], deleted[dup]))
    pieces.append(_deleted_rows(spec, linked[deleted & ~dup]))
    pieces.extend(_compare_rows(spec, linked[found & ~deleted & ~dup], compare_name))
    lookup = pd.concat([cus[_KEYS], owners], ignore_index=True) if len(owners) else cus
    names = pd.concat([ok, owner_names], ignore_index=True) if len(owner_names) else ok
    pieces.extend(
        _not_found_rows(
            spec, linked[~found & ~dup], lookup, names, other_mode, failed=shop_errors or {}
        )
    )
    return _assemble(spec, pieces, ["shop_id", "account_id", "stripe_customer_id"], states)


def _outside_owners(
    cus: pd.DataFrame, ok: pd.DataFrame, other_shops: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Customers of shops outside the report, and those shops' names, for wrong_shop only."""
    if other_shops is None or other_shops.empty:
        return cus.iloc[:0][_KEYS], ok.iloc[:0]
    names = _take(other_shops, {"shop_id": "string", "shop_name": "string"})
    names = names[~_bool(names["shop_id"].isin(ok["shop_id"]))].reset_index(drop=True)
    rows = cus[_bool(cus["shop_id"].isin(names["shop_id"]))][_KEYS].copy()
    rows["stripe_customer_id"] = _clean_id(rows["stripe_customer_id"])
    return rows[rows["stripe_customer_id"].notna()].reset_index(drop=True), names


def _account_cols(rows: pd.DataFrame, stripe: bool = True) -> dict[str, object]:
    cols: dict[str, object] = {
        c: rows[c] for c in ("shop_id", "account_id", "stripe_customer_id", "local_email")
    }
    cols["local_name"] = rows["local_name"]
    if stripe:
        cols["stripe_email"] = rows["stripe_email"]
        cols["stripe_name"] = rows["stripe_name"]
    return cols


def _orphan_pairs(
    orphans: pd.DataFrame, unlinked: pd.DataFrame, linked: pd.DataFrame
) -> pd.DataFrame:
    """:func:`opskit.core.pairing.email_pairs` of the orphans with every account of their shop:
    unlinked ones (link candidates) and linked ones (the orphan is a duplicate customer)."""
    accounts = pd.concat(
        [
            unlinked[["shop_id", "account_id", "email", "stripe_customer_id"]],
            linked[
                ["shop_id", "account_id", "local_email", "stripe_customer_id", "stripe_email"]
            ].rename(columns={"local_email": "email", "stripe_email": "linked_email"}),
        ],
        ignore_index=True,
    )
    return email_pairs(
        orphans[["shop_id", "stripe_customer_id", "stripe_email"]].rename(
            columns={"stripe_email": "email"}
        ),
        accounts,
    )


def _no_customer_id_rows(spec: Spec, unlinked: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    n = len(unlinked)
    rows = unlinked.reset_index(drop=True)
    err = rows["details_error"]
    has_err = _bool(err.notna())
    detail = _const(n, "account details have no stripe_customer_id")
    if has_err.any():
        redacted = err[has_err].map(redact, na_action="ignore").astype("string")
        detail[has_err] = "details could not be read: " + redacted
    # an orphan customer of the same shop with the same email is the likely link
    pairs = pairs[_bool(pairs["kind"] == "link")]
    cand = _join_by(
        pairs.sort_values(["shop_id", "account_id", "stripe_customer_id"], kind="stable"),
        ["shop_id", "account_id"],
        "stripe_customer_id",
        "_ids",
    )
    rows = _merge(rows, cand, on=["shop_id", "account_id"], how="left")
    count = rows["_ids_n"].fillna(0).to_numpy(dtype=np.int64)
    action = _const(n, "create a Stripe customer or link an existing one")
    action[count == 1] = "link to customer " + rows.loc[count == 1, "_ids"]
    action[count > 1] = "link to one of customers " + rows.loc[count > 1, "_ids"]
    action[has_err] = "fix the account's details JSON"
    cols: dict[str, object] = {
        "shop_id": rows["shop_id"],
        "account_id": rows["account_id"],
        "local_email": rows["email"],
        "local_name": rows["name"],
        "detail": detail,
        "suggested_action": action,
    }
    return _piece(spec, "no_customer_id", cols, n)


def _orphan_rows(spec: Spec, orphans: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    links = pairs[_bool(pairs["kind"] == "link")]
    dups = pairs[_bool(pairs["kind"] == "duplicate")]
    cand = _join_by(links, _KEYS, "account_id", "_ids")
    dups = dups.assign(
        _twin="customer "
        + dups["linked_customer_id"].fillna("?")
        + " (linked by account "
        + dups["account_id"].astype("string")
        + ")"
    )
    twins = _join_by(dups, _KEYS, "_twin", "_twins", sep="; ")
    rows = _merge(orphans, cand, on=_KEYS, how="left")
    rows = _merge(rows, twins, on=_KEYS, how="left")
    n = len(rows)
    count = rows["_ids_n"].fillna(0).to_numpy(dtype=np.int64)
    dup = rows["_twins_n"].fillna(0).to_numpy(dtype=np.int64) > 0
    action = _const(n, "review: no local account with this email")
    action[count == 1] = "link to account " + rows.loc[count == 1, "_ids"]
    action[count > 1] = "link to one of accounts " + rows.loc[count > 1, "_ids"]
    action[dup] = (
        "review: likely a duplicate of "
        + rows.loc[dup, "_twins"]
        + "; keep one customer per person"
    )
    detail = _const(n, "no account of this shop links this customer")
    detail[dup] = (
        "no account of this shop links this customer; same email as " + rows.loc[dup, "_twins"]
    )
    cols: dict[str, object] = {
        "shop_id": rows["shop_id"],
        "stripe_customer_id": rows["stripe_customer_id"],
        "stripe_email": rows["stripe_email"],
        "stripe_name": rows["stripe_name"],
        "detail": detail,
        "suggested_action": action,
    }
    return _piece(spec, "orphan_in_stripe", cols, n)


def _duplicate_rows(
    spec: Spec, rows: pd.DataFrame, found: np.ndarray, deleted: np.ndarray
) -> pd.DataFrame:
    rows = rows.reset_index(drop=True)
    n = len(rows)
    # pair each account with every other account of its group, then join their ids
    keyed = rows[[*_KEYS, "account_id"]].sort_values([*_KEYS, "account_id"], kind="stable")
    others = _merge(keyed, keyed, on=_KEYS, suffixes=("", "_other"))
    others = others[_bool(others["account_id"] != others["account_id_other"])]
    joined = _join_by(others, [*_KEYS, "account_id"], "account_id_other", "_others")
    rows = _merge(rows, joined, on=[*_KEYS, "account_id"], how="left")
    state = np.select(
        [found & deleted, found, ~found],
        ["; the customer is deleted in Stripe", "", "; the customer is not in this shop's Stripe"],
        "",
    )
    detail = "customer also linked by account " + rows["_others"].fillna("?") + state
    cols = _account_cols(rows)
    cols["detail"] = detail
    cols["suggested_action"] = "keep one account's link and clear the others"
    return _piece(spec, "duplicate_link", cols, n)


def _deleted_rows(spec: Spec, rows: pd.DataFrame) -> pd.DataFrame:
    cols = _account_cols(rows)
    cols["detail"] = "the linked customer is deleted in Stripe"
    cols["suggested_action"] = "clear the link or create a new customer"
    return _piece(spec, "deleted_in_stripe", cols, len(rows))


def _compare_rows(spec: Spec, rows: pd.DataFrame, compare_name: bool = True) -> list[pd.DataFrame]:
    email_diff = _bool(
        normalize_email(rows["local_email"]) != normalize_email(rows["stripe_email"])
    )
    name_diff = _bool(normalize_name(rows["local_name"]) != normalize_name(rows["stripe_name"]))
    name_diff &= compare_name
    same = ~(email_diff | name_diff)
    pieces = [_piece(spec, "match", _account_cols(rows[same]), int(same.sum()))]
    for mask, fields, what, verb in (
        (email_diff & ~name_diff, "email", "email", "differs"),
        (name_diff & ~email_diff, "name", "name", "differs"),
        (email_diff & name_diff, "email,name", "email and name", "differ"),
    ):
        cols = _account_cols(rows[mask])
        cols["mismatch_fields"] = fields
        cols["detail"] = f"local {what} {verb} from Stripe's"
        cols["suggested_action"] = f"update local {what} from Stripe"
        pieces.append(_piece(spec, "mismatch", cols, int(mask.sum())))
    return pieces


def _not_found_rows(
    spec: Spec,
    rows: pd.DataFrame,
    cus: pd.DataFrame,
    ok: pd.DataFrame,
    other_mode: Mapping[Any, Mapping[str, str]] | None = None,
    *,
    failed: Mapping[Any, str] | None = None,
) -> list[pd.DataFrame]:
    """mode_mismatch when the shop's Stripe says the id exists in the key's other mode;
    else wrong_shop when another usable shop has the id (the lowest shop_id wins); else
    missing_in_stripe. When another shop could not be asked (``failed``: its Stripe
    failed, in the run or only looked up), "missing" is not known: the detail says
    so (:data:`INCOMPLETE`) and no destructive fix is advised."""
    pieces: list[pd.DataFrame] = []
    if other_mode:
        said = {
            (str(shop), str(cid)): msg
            for shop, ids in other_mode.items()
            for cid, msg in ids.items()
        }
        message = pd.Series(
            [
                said.get((str(s), str(c)))
                for s, c in zip(rows["shop_id"], rows["stripe_customer_id"], strict=True)
            ],
            index=rows.index,
            dtype="string",
        )
        mm = _bool(message.notna())
        m = rows[mm]
        cols = _account_cols(m, stripe=False)
        cols["detail"] = message[mm].map(redact, na_action="ignore").astype("string")
        cols["suggested_action"] = (
            "keep the link: the customer exists in the other mode of this shop's Stripe "
            "account; check the shop's key (test vs live) before creating or clearing anything"
        )
        pieces.append(_piece(spec, "mode_mismatch", cols, len(m)))
        rows = rows[~mm]
    ids = rows["stripe_customer_id"]
    elsewhere = cus[_bool(cus["stripe_customer_id"].isin(ids.dropna().unique()))]
    owner = (
        elsewhere[_KEYS]
        .sort_values("shop_id", kind="stable")
        .drop_duplicates("stripe_customer_id")
        .merge(ok, on="shop_id", how="left")
        .rename(columns={"shop_id": "_owner", "shop_name": "_owner_name"})
    )
    rows = _merge(rows, owner, on="stripe_customer_id", how="left")
    wrong = _bool(rows["_owner"].notna())

    w = rows[wrong]
    cols = _account_cols(w, stripe=False)
    cols["detail"] = (
        "customer belongs to shop "
        + w["_owner"].astype("string")
        + " ("
        + w["_owner_name"].fillna("unnamed")
        + ")"
    )
    cols["suggested_action"] = "relink to a customer of this shop"
    wrong_piece = _piece(spec, "wrong_shop", cols, len(w))

    mi = rows[~wrong]
    cols = _account_cols(mi, stripe=False)
    cols["detail"] = "no such customer in this shop's Stripe account"
    cols["suggested_action"] = "clear the link or create a new customer"
    unasked = sorted(str(k) for k in (failed or {}))
    if unasked and len(mi):
        own = mi["shop_id"].astype("string")
        others = own.map(lambda sid: ", ".join(x for x in unasked if x != sid)).astype("string")
        partial = _bool(others.str.len() > 0)
        detail = pd.Series(cols["detail"], index=mi.index, dtype="string")
        action = pd.Series(cols["suggested_action"], index=mi.index, dtype="string")
        cols["detail"] = detail.where(
            ~partial,
            "not in this shop's Stripe account; shop(s) "
            + others
            + f" {INCOMPLETE}, so it may belong there",
        )
        cols["suggested_action"] = action.where(
            ~partial,
            "none yet: run again when shop(s) " + others + " answer; do not clear or replace "
            "the link",
        )
    return [*pieces, wrong_piece, _piece(spec, "missing_in_stripe", cols, len(mi))]


# --------------------------------------------------------------------------- subscriptions


def reconcile_subscriptions(
    shops: pd.DataFrame,
    accounts: pd.DataFrame,
    subscriptions: pd.DataFrame,
    shop_errors: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Compare the subscription each account records with that shop's Stripe subscriptions.

    A subscription is all its items (``stripe_price_ids``), its customer and its
    Stripe status, read through :mod:`opskit.core.subscription_status` (the one
    table of what each status means). Returns a ``SUBSCRIPTION_REPORT`` frame, one
    row per finding, sorted by shop_id, account_id, stripe_subscription_id (<NA> last):

    - shop_not_configured / shop_error: as in :func:`reconcile_customers`.
    - per account recording a stripe_subscription_id, the first that applies:
      missing_in_stripe; wrong_customer (the subscription's customer is not the
      customer the account links); multiple_active (below); status_drift (local
      subscription_status vs Stripe's; the detail also names a price
      difference); price_mismatch (the local stripe_price_id, when set, is none
      of the subscription's items' prices); match.
    - multiple_active: one row per *billing* subscription (active, trialing or
      past_due and not scheduled to end before it bills again:
      :func:`~opskit.core.subscription_status.counts_for_multiple_active`) of a
      customer with two or more. The account is the one recording it, else the
      lowest account id linking the customer.
    - orphan_in_stripe: a *live* subscription (every status but canceled and
      incomplete_expired: paused, unpaid and incomplete included) no account of
      the shop records; the account is the lowest account id linking its customer.

    Every row says when the subscription ends (``ends_at``: ended_at/canceled_at
    once ended, cancel_at or the period end when scheduled, <NA> when it renews).
    ``stripe_price_id`` is the item matching the recorded price, else the only
    item's price, else <NA> (several items: no single price to record).
    """
    spec = SUBSCRIPTION_REPORT
    states = _shop_states(shops, shop_errors)
    acc = _take(
        accounts,
        {
            "account_id": "string",
            "shop_id": "string",
            "stripe_customer_id": "string",
            "stripe_subscription_id": "string",
            "subscription_status": "string",
            "stripe_price_id": "string",
        },
    )
    acc = acc[_bool(acc["shop_id"].isin(states["shop_id"]))]
    for col in ("stripe_customer_id", "stripe_subscription_id", "stripe_price_id"):
        acc[col] = _clean_id(acc[col])
    acc["subscription_status"] = _clean_id(acc["subscription_status"])
    acc = acc.rename(
        columns={"subscription_status": "local_status", "stripe_price_id": "local_price_id"}
    )

    pieces = _shop_rows(
        spec,
        states,
        acc,
        {
            c: c
            for c in (
                "account_id",
                "stripe_customer_id",
                "stripe_subscription_id",
                "local_status",
                "local_price_id",
            )
        },
    )

    ok = states[states["problem_status"].isna()][["shop_id", "shop_name"]]
    acc = acc[_bool(acc["shop_id"].isin(ok["shop_id"]))]

    subs = _take(
        subscriptions,
        {
            "shop_id": "string",
            "stripe_subscription_id": "string",
            "stripe_customer_id": "string",
            "status": "string",
            "stripe_price_id": "string",
            "stripe_price_ids": "string",
            "cancel_at_period_end": "boolean",
            "cancel_at": _UTC,
            "current_period_end_at": _UTC,
            "ended_at": _UTC,
            "canceled_at": _UTC,
        },
    )
    subs = subs[_bool(subs["shop_id"].isin(ok["shop_id"]))]
    for col in ("stripe_subscription_id", "stripe_customer_id", "stripe_price_id"):
        subs[col] = _clean_id(subs[col])
    subs = subs[subs["stripe_subscription_id"].notna()].reset_index(drop=True)
    subs["stripe_price_ids"] = _clean_id(subs["stripe_price_ids"]).fillna(subs["stripe_price_id"])
    subs["_ends_at"] = sub_status.ends_at(
        subs["status"],
        subs["cancel_at_period_end"],
        subs["cancel_at"],
        subs["current_period_end_at"],
        subs["ended_at"],
        subs["canceled_at"],
    )
    subs = subs.rename(
        columns={"status": "stripe_status", "stripe_customer_id": "_stripe_customer"}
    )

    rec = acc[acc["stripe_subscription_id"].notna()].reset_index(drop=True)
    r_key, s_key = _key_codes([rec, subs], _SUB_KEYS)
    subs, s_key = _dedupe(subs, s_key, prefer=np.ones(len(subs), dtype=bool))

    (customer_key,) = _key_codes([subs], ["shop_id", "_stripe_customer"])
    billing = sub_status.counts_for_multiple_active(
        subs["stripe_status"],
        subs["cancel_at_period_end"],
        subs["cancel_at"],
        subs["current_period_end_at"],
    ).to_numpy(dtype=bool) & (customer_key >= 0)
    multi = np.zeros(len(subs), dtype=bool)
    multi[billing] = pd.Series(customer_key[billing]).duplicated(keep=False).to_numpy()
    live = sub_status.is_live(subs["stripe_status"]).to_numpy(dtype=bool)

    pos = pd.Index(s_key).get_indexer(r_key)
    found = pos >= 0
    for col in ("stripe_status", "stripe_price_ids", "_stripe_customer", "_ends_at"):
        rec[col] = _gather(subs[col], pos)
    rec["_price_ok"] = _recorded_price_among_items(rec).astype("boolean")
    rec["stripe_price_id"] = _item_price(rec["stripe_price_ids"]).where(
        ~_bool(rec["_price_ok"]) | _bool(rec["local_price_id"].isna()), rec["local_price_id"]
    )
    wrong = found & _bool(
        rec["_stripe_customer"].notna()
        & (
            rec["stripe_customer_id"].isna()
            | (rec["stripe_customer_id"] != rec["_stripe_customer"])
        )
    )
    rec_multi = found & ~wrong & (multi[np.where(found, pos, 0)] if len(subs) else found)
    recorded = np.zeros(len(subs), dtype=bool)
    recorded[pos[found]] = True
    # a subscription recorded on the wrong account still counts in its customer's billing group
    rightly = np.zeros(len(subs), dtype=bool)
    rightly[pos[found & ~wrong]] = True

    subs["stripe_price_id"] = _item_price(subs["stripe_price_ids"])
    pieces.append(_sub_missing_rows(spec, rec[~found]))
    pieces.append(_wrong_customer_rows(spec, rec[wrong]))
    pieces.extend(_sub_compare_rows(spec, rec[found & ~rec_multi & ~wrong]))

    # multiple_active: prefer the (lowest) account recording the subscription
    ma_rec = rec[rec_multi].sort_values("account_id", kind="stable").drop_duplicates(_SUB_KEYS)
    ma = pd.concat([ma_rec, _like(subs[multi & ~rightly], rec)], ignore_index=True)
    orphans = _like(subs[~recorded & live & ~multi], rec)

    # lowest account id of each shop linking each customer of those subscriptions
    wanted = pd.concat([ma["_stripe_customer"], orphans["_stripe_customer"]]).dropna().unique()
    linkers = (
        acc.loc[
            _bool(acc["stripe_customer_id"].isin(wanted)),
            ["shop_id", "stripe_customer_id", "account_id"],
        ]
        .sort_values("account_id", kind="stable")
        .drop_duplicates(["shop_id", "stripe_customer_id"])
        .rename(columns={"stripe_customer_id": "_stripe_customer", "account_id": "_linker"})
    )
    pieces.append(_multi_rows(spec, ma, linkers, ok))
    pieces.append(_sub_orphan_rows(spec, orphans, linkers, ok))
    return _assemble(spec, pieces, ["shop_id", "account_id", "stripe_subscription_id"], states)


_UTC = "datetime64[ns, UTC]"


def _item_price(price_ids: pd.Series) -> pd.Series:
    """The price of a one-item subscription; <NA> for several items (no single price)."""
    single = _bool(price_ids.str.count(",") == 0)
    return price_ids.where(single, pd.NA).astype("string")


def _recorded_price_among_items(rec: pd.DataFrame) -> pd.Series:
    """True where the account's local_price_id is one of the subscription's items' prices."""
    has = rec[["local_price_id", "stripe_price_ids"]].dropna()
    out = pd.Series(False, index=rec.index, dtype=bool)
    if not len(has):
        return out
    items = has["stripe_price_ids"].str.split(",").explode().str.strip()
    hit = items.astype("string") == has["local_price_id"].reindex(items.index)
    among = hit.fillna(False).astype(bool).groupby(level=0).any()
    out.loc[among.index] = among.to_numpy(dtype=bool)
    return out


def _sub_cols(rows: pd.DataFrame) -> dict[str, object]:
    cols: dict[str, object] = {
        c: rows[c]
        for c in (
            "shop_id",
            "account_id",
            "stripe_subscription_id",
            "local_status",
            "local_price_id",
        )
    }
    cols["stripe_customer_id"] = rows["_stripe_customer"].fillna(rows["stripe_customer_id"])
    cols["stripe_status"] = rows["stripe_status"]
    cols["stripe_price_id"] = rows["stripe_price_id"]
    cols["stripe_price_ids"] = rows["stripe_price_ids"]
    cols["ends_at"] = rows["_ends_at"]
    return cols


def _sub_missing_rows(spec: Spec, rows: pd.DataFrame) -> pd.DataFrame:
    cols = _sub_cols(rows)
    cols["detail"] = "no such subscription in this shop's Stripe account"
    cols["suggested_action"] = "clear the recorded subscription or recreate it"
    return _piece(spec, "missing_in_stripe", cols, len(rows))


def _wrong_customer_rows(spec: Spec, rows: pd.DataFrame) -> pd.DataFrame:
    cols = _sub_cols(rows)
    theirs = rows["_stripe_customer"].fillna("?")
    cols["detail"] = (
        "the subscription belongs to customer "
        + theirs
        + "; the account links "
        + rows["stripe_customer_id"].fillna("no customer")
    )
    cols["suggested_action"] = (
        "record this account's own subscription, or fix its customer link; never bill "
        "from here before checking who pays"
    )
    return _piece(spec, "wrong_customer", cols, len(rows))


def _sub_compare_rows(spec: Spec, rows: pd.DataFrame) -> list[pd.DataFrame]:
    local_status = rows["local_status"].str.lower().fillna("")
    stripe_status = rows["stripe_status"].str.strip().str.lower().fillna("")
    status_diff = _bool(local_status != stripe_status)
    price_diff = _bool(rows["local_price_id"].notna()) & ~_bool(rows["_price_ok"])
    same = ~status_diff & ~price_diff
    pieces = [_piece(spec, "match", _sub_cols(rows[same]), int(same.sum()))]

    def status_text(r: pd.DataFrame) -> pd.Series:
        return (
            "status: local "
            + r["local_status"].fillna("<none>")
            + ", Stripe "
            + r["stripe_status"].fillna("<none>")
        )

    def price_text(r: pd.DataFrame) -> pd.Series:
        return (
            "price: local "
            + r["local_price_id"]
            + ", Stripe items "
            + r["stripe_price_ids"].fillna("<none>")
        )

    d = rows[status_diff & ~price_diff]
    cols = _sub_cols(d)
    cols["detail"] = status_text(d)
    cols["suggested_action"] = "update local subscription_status from Stripe"
    pieces.append(_piece(spec, "status_drift", cols, len(d)))

    b = rows[status_diff & price_diff]
    cols = _sub_cols(b)
    cols["detail"] = status_text(b) + "; " + price_text(b)
    cols["suggested_action"] = "update local subscription_status and stripe_price_id from Stripe"
    pieces.append(_piece(spec, "status_drift", cols, len(b)))

    p = rows[price_diff & ~status_diff]
    cols = _sub_cols(p)
    cols["detail"] = price_text(p)
    several = _bool(p["stripe_price_id"].isna())
    action = _const(len(p), "update local stripe_price_id from Stripe")
    action[several] = "review: the recorded price is none of the subscription's items"
    cols["suggested_action"] = action
    pieces.append(_piece(spec, "price_mismatch", cols, len(p)))
    return pieces


def _multi_rows(
    spec: Spec, rows: pd.DataFrame, linkers: pd.DataFrame, ok: pd.DataFrame
) -> pd.DataFrame:
    rows = _merge(rows, linkers, on=["shop_id", "_stripe_customer"], how="left")
    rows["account_id"] = rows["account_id"].fillna(rows["_linker"])
    ids = _join_by(
        rows.sort_values(["shop_id", "_stripe_customer", "stripe_subscription_id"]),
        ["shop_id", "_stripe_customer"],
        "stripe_subscription_id",
        "_subs",
    )
    rows = _merge(rows, ids, on=["shop_id", "_stripe_customer"], how="left")
    cols = _sub_cols(rows)
    cols["detail"] = (
        "customer has "
        + rows["_subs_n"].astype("string")
        + " subscriptions that will bill again (active/trialing/past_due, not ending): "
        + rows["_subs"]
    )
    cols["suggested_action"] = "review for double billing; cancel the extra subscriptions"
    return _piece(spec, "multiple_active", cols, len(rows))


def _sub_orphan_rows(
    spec: Spec, rows: pd.DataFrame, linkers: pd.DataFrame, ok: pd.DataFrame
) -> pd.DataFrame:
    rows = _merge(rows, linkers, on=["shop_id", "_stripe_customer"], how="left")
    rows["account_id"] = rows["_linker"]
    rows["stripe_customer_id"] = rows["_stripe_customer"]
    n = len(rows)
    has = _bool(rows["account_id"].notna())
    action = _const(n, "review: no local account links this customer")
    action[has] = "record subscription on account " + rows.loc[has, "account_id"].astype("string")
    cols = _sub_cols(rows)
    cols["detail"] = (
        "live subscription (" + rows["stripe_status"].fillna("?") + ") recorded on no account"
    )
    cols["suggested_action"] = action
    return _piece(spec, "orphan_in_stripe", cols, n)


# --------------------------------------------------------------------------- summary


def summary(report: pd.DataFrame) -> pd.DataFrame:
    """Shop x status counts of a customer or subscription report.

    Indexed by (shop_id string, shop_name string); one Int64 column per status
    category in category order, zeros included, then ``total``.
    """
    dtype = report["status"].dtype if "status" in report.columns else None
    if isinstance(dtype, pd.CategoricalDtype):
        statuses = [str(c) for c in dtype.categories]
    else:  # a plain-string status column: infer which report it is
        subs = "stripe_subscription_id" in report.columns
        statuses = SUBSCRIPTION_STATUSES if subs else CUSTOMER_STATUSES
    keys = pd.DataFrame(
        {
            "shop_id": report["shop_id"].astype("string"),
            "shop_name": report["shop_name"].astype("string"),
            "status": pd.Categorical(report["status"].astype("string"), categories=statuses),
        }
    )
    index = pd.MultiIndex.from_arrays(
        [pd.array([], dtype="string"), pd.array([], dtype="string")], names=["shop_id", "shop_name"]
    )
    counts = pd.DataFrame(index=index, columns=statuses, dtype="Int64")
    if len(keys):
        grouped = (
            keys.groupby(["shop_id", "shop_name", "status"], observed=True, dropna=False)
            .size()
            .unstack("status", fill_value=0)
        )
        counts = grouped.reindex(columns=statuses, fill_value=0).astype("Int64")
        counts.columns = pd.Index(statuses)
        counts.index = pd.MultiIndex.from_arrays(
            [
                counts.index.get_level_values(0).astype("string"),
                counts.index.get_level_values(1).astype("string"),
            ],
            names=["shop_id", "shop_name"],
        )
    counts["total"] = counts.sum(axis=1).astype("Int64")
    if len(counts) > 1:  # integer shop ids in numeric order
        key = id_sort_key(pd.Series(counts.index.get_level_values(0)))
        counts = counts.iloc[key.argsort(kind="stable").to_numpy()]
    return counts
