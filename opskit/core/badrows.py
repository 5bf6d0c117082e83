"""Rows the backend holds that opskit cannot fully read, as rows of the reports.

The loaders (:mod:`opskit.backend.db`, by the rules of :mod:`opskit.common.rows`)
never raise on a bad row: a shop row that cannot be used (NULL id, an id not of
its column's kind, an id two rows share) is listed by
``Database.unusable_shops()``; an account or order with a value that cannot be
read has it <NA>/NaT and says why in ``row_error``. This module puts both into a
report, so one bad row is one flagged row and every other row is unaffected:

- :func:`unusable_rows`: a ``shop_not_configured`` row per unusable shop row
  (both rows of a shared id), and per local row (account or order) that belongs
  to no usable shop: because of such a row, of its own shop id (``1.5``, NULL),
  or because its shop id names no shop at all; ``detail`` naming the reason.
  Exit code 1 (an analyst must fix the row), not a crash and not a failed shop.
- :func:`annotate`: rows of the report whose account/order has a ``row_error``
  keep their status and get the reason appended to ``detail``.

Pure: frames in, frames out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import pandas as pd

from opskit.core.frames import Spec, conform

__all__ = ["FIX_ROW", "annotate", "unusable_rows", "with_flagged"]

FIX_ROW = "fix the row in the backend (one row per shop id, ids of the column's kind), then rerun"
STATUS = "shop_not_configured"


def unusable_rows(
    spec: Spec,
    unusable: pd.DataFrame,
    local: pd.DataFrame,
    usable_shop_ids: Collection[str],
    *,
    key: str,
    columns: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``spec`` rows for unusable shop rows and the local rows that belong to no usable shop.

    ``unusable``: shop_id, shop_name, row_error (``Database.unusable_shops()``).
    ``local``: ACCOUNTS or ORDERS (``key``: ``account_id`` / ``order_id``) with
    ``row_error``; those whose shop is an unusable row, or whose own shop id could
    not be read, get a row. ``columns``: report column -> local column to copy.
    """
    columns = dict(columns or {})
    pieces: list[pd.DataFrame] = []
    if len(unusable):
        pieces.append(
            pd.DataFrame(
                {
                    "shop_id": unusable["shop_id"].astype("string"),
                    "shop_name": unusable["shop_name"].astype("string"),
                    "status": STATUS,
                    "detail": "the shop's row cannot be used: " + unusable["row_error"],
                    "suggested_action": FIX_ROW,
                }
            )
        )
    if len(local) and key in local.columns:
        shop = local["shop_id"].astype("string")
        own = local["row_error"].astype("string") if "row_error" in local else None
        bad_ids = set(unusable["shop_id"].dropna().astype(str)) if len(unusable) else set()
        of_bad_shop = shop.isin(bad_ids).fillna(False).astype(bool)
        no_shop = ~shop.isin(list(usable_shop_ids)).fillna(False).astype(bool)
        # Every row of no usable shop is flagged (never silently left out of a report):
        # its shop is an unusable row, its own shop id could not be read (NULL, 1.5,
        # text in an integer column), or its shop id names no shop row at all.
        hit = no_shop
        if hit.any():
            rows = local[hit]
            sid = rows["shop_id"].astype("string")
            reason = pd.Series(pd.NA, index=rows.index, dtype="string")
            if own is not None:
                reason = own[hit]
            shop_reason = sid.map(_reasons(unusable)).astype("string")
            about_shop = ("its shop " + sid + ": " + shop_reason).fillna(
                ("its shop id " + sid + " names no shop (no row of the shops table has it)").where(
                    ~of_bad_shop[hit]
                )
            )
            reason = (reason + "; " + about_shop).fillna(reason).fillna(about_shop)
            frame = {
                "shop_id": rows["shop_id"].astype("string"),
                key: rows[key].astype("string"),
                "status": STATUS,
                "detail": reason.fillna("its shop cannot be used"),
                "suggested_action": FIX_ROW,
            }
            frame.update({out: rows[src] for out, src in columns.items() if src in rows})
            pieces.append(pd.DataFrame(frame))
    if not pieces:
        return conform(pd.DataFrame(), spec)
    return conform(pd.concat(pieces, ignore_index=True), spec)


def _reasons(unusable: pd.DataFrame) -> dict[str, str]:
    if not len(unusable):
        return {}
    return dict(
        zip(
            unusable["shop_id"].astype(str),
            unusable["row_error"].astype(str),
            strict=True,
        )
    )


def annotate(report: pd.DataFrame, local: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``report`` with each row's local ``row_error`` appended to ``detail`` (status kept).

    ``keys``: the columns naming the local row in both frames (``shop_id``,
    ``account_id`` or ``order_id``). Rows already about an unusable shop are left
    as they are.
    """
    if not len(report) or "row_error" not in local.columns or not local["row_error"].notna().any():
        return report
    flagged = local[local["row_error"].notna()]
    reasons = {
        tuple(str(v) for v in k): str(r)
        for k, r in zip(
            flagged[list(keys)].itertuples(index=False, name=None),
            flagged["row_error"],
            strict=True,
        )
    }
    found = [
        reasons.get(tuple(str(v) for v in k))
        for k in report[list(keys)].itertuples(index=False, name=None)
    ]
    extra = pd.Series(found, index=report.index, dtype="string")
    if "status" in report.columns:
        extra = extra.mask(report["status"].astype("string").eq(STATUS).fillna(False))
    has = extra.notna()
    if not has.any():
        return report
    out = report.copy()
    detail = out["detail"].astype("string")
    joined = (detail + "; " + extra).fillna(extra)
    out["detail"] = detail.mask(has, joined)
    return out


def with_flagged(report: pd.DataFrame, flagged: pd.DataFrame) -> pd.DataFrame:
    """``report`` with ``flagged`` rows (same spec) appended at the end; attrs kept."""
    if not len(flagged):
        return report
    attrs = dict(report.attrs)
    flagged = conform(flagged, dict(report.dtypes.items()))
    out = pd.concat([report, flagged], ignore_index=True)
    out.attrs.update(attrs)
    return out
