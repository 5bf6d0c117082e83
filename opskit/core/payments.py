"""Orders against payments: which order each payment pays, as one row per finding.

Frames in, frames out, no I/O. The inputs are the backend's orders
(:data:`~opskit.core.frames.MONEY_ORDERS`) and each shop's payment intents
(:data:`~opskit.core.frames.PAYMENTS`); the output is a
:data:`~opskit.core.frames.PAYMENT_REPORT`.

How a payment is matched to an order
------------------------------------
Only *paid* payments (payment intent ``succeeded``) are matched; failed or
abandoned attempts never pay an order (they show in the daily overview's failed
charges). Payments of subscription invoices (``stripe_invoice_id`` set) are not
order payments: they are neither matched nor ``paid_no_order`` (they stay in the
ledger, the payouts and the daily overview).

1. **Exact**: a payment whose ``metadata["order_id"]`` names an order of the same
   shop pays that order (``match_method="metadata"``, score 1.0). When two payments
   name one order, the older pays it and the other is ``paid_no_order`` (a double
   payment). A metadata id naming no order of the shop makes the payment
   ``paid_no_order`` (the id is shown): it is never re-guessed.
2. **Scored**: every other paid payment is a candidate for the orders of the same
   shop created within ``window`` of it (either side) that share its account (the
   account whose details link the payment's customer), or, when either side has
   no account, that have exactly its amount. A candidate scores::

       0.45  same account (both known)
     + 0.35  x (1 - |paid - ordered| / (tolerance x ordered)), floored at 0; same currency only
     + 0.20  x (1 - |payment time - order time| / window)

   rounded to 4 decimals. Candidates below ``min_score`` (0.5) are dropped, so an
   unlinked payment needs its exact amount and a close time.
3. **Assignment** is greedy over candidates sorted by score (then order time,
   order id, payment time, payment id: deterministic), one payment per order and
   one order per payment. A candidate is taken only if no other candidate still
   open for the same order or the same payment scores within ``margin`` (0.05) of
   it; otherwise the order is ``ambiguous`` (its best candidate and the runner-up
   are named) and neither payment is given to it. The runner-up shown for a match
   is the order's next best candidate, whoever took it.

Statuses of a matched pair, first that applies: ``currency_mismatch``,
``disputed`` (an open or lost dispute), ``refunded`` (all of it),
``partially_refunded``, ``amount_mismatch`` (ordered != received), ``match``.
Unmatched: a paid payment is ``paid_no_order``; an order with status
``complete`` is ``order_unpaid`` (other unpaid orders are still open: no finding).
Shops without a key are ``shop_not_configured``, shops Stripe failed for
``shop_error`` (one row per order of the shop, or one row when it has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from opskit.core.frames import MONEY_ORDERS, PAYMENT_REPORT, PAYMENT_STATUSES, PAYMENTS, conform

__all__ = [
    "OPEN_DISPUTES",
    "MatchRules",
    "Matches",
    "match_orders",
    "money_summary",
    "reconcile_payments",
]

W_ACCOUNT, W_AMOUNT, W_TIME = 0.45, 0.35, 0.20
PAID = "succeeded"
COMPLETE = "complete"
# Dispute statuses that take (or may take) the money back; ``won`` and a closed
# inquiry (``warning_closed``) leave the payment whole.
OPEN_DISPUTES = frozenset(
    {"warning_needs_response", "warning_under_review", "needs_response", "under_review", "lost"}
)


@dataclass(frozen=True)
class MatchRules:
    """The knobs of scored matching (see the module docstring)."""

    window: timedelta = timedelta(days=2)
    margin: float = 0.05
    min_score: float = 0.5
    amount_tolerance: float = 0.10  # relative difference at which the amount part is 0


@dataclass
class Matches:
    """Positional results of :func:`match_orders` (row positions in its inputs)."""

    order_payment: np.ndarray  # payment position per order, -1 none
    order_score: np.ndarray  # float, nan when none
    order_method: np.ndarray  # object: "metadata" / "scored" / None
    order_runner: np.ndarray  # runner-up payment position, -1 none
    order_runner_score: np.ndarray
    order_ambiguous: np.ndarray  # bool
    payment_order: np.ndarray  # order position per payment, -1 none
    payment_ambiguous: np.ndarray  # bool: contested and given to no order
    payment_note: np.ndarray  # object: why a paid payment has no order (metadata cases)


def _codes(*columns: pd.Series) -> list[np.ndarray]:
    """Shared integer codes for equal values across ``columns`` (NA -> -1)."""
    joined = pd.concat([c.astype("string").reset_index(drop=True) for c in columns])
    codes, _ = pd.factorize(joined, use_na_sentinel=True)
    out, start = [], 0
    for c in columns:
        out.append(codes[start : start + len(c)].astype(np.int64))
        start += len(c)
    return out


def _rank(s: pd.Series, na_last: bool = False) -> np.ndarray:
    """Each value's position in sorted order (equal values share one): a sort key for text."""
    codes, uniques = pd.factorize(s.astype("string"), sort=True, use_na_sentinel=True)
    codes = codes.astype(np.int64)
    if na_last:
        codes[codes < 0] = len(uniques)
    return codes


def _ns_or_max(s: pd.Series) -> np.ndarray:
    values = pd.to_datetime(s, utc=True)
    out = values.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    out[values.isna().to_numpy()] = np.iinfo(np.int64).max
    return out


def _ns(s: pd.Series) -> np.ndarray:
    values = pd.to_datetime(s, utc=True)
    return values.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _int(s: pd.Series, fill: int = 0) -> np.ndarray:
    return s.astype("Int64").fillna(fill).to_numpy(dtype=np.int64)


def match_orders(
    orders: pd.DataFrame, payments: pd.DataFrame, rules: MatchRules | None = None
) -> Matches:
    """Match ``orders`` (MONEY_ORDERS) with the paid rows of ``payments`` (PAYMENTS).

    Deterministic for the same inputs in any row order; each payment pays at
    most one order and each order is paid by at most one payment.
    """
    rules = rules or MatchRules()
    n_o, n_p = len(orders), len(payments)
    res = Matches(
        order_payment=np.full(n_o, -1, np.int64),
        order_score=np.full(n_o, np.nan),
        order_method=np.full(n_o, None, object),
        order_runner=np.full(n_o, -1, np.int64),
        order_runner_score=np.full(n_o, np.nan),
        order_ambiguous=np.zeros(n_o, bool),
        payment_order=np.full(n_p, -1, np.int64),
        payment_ambiguous=np.zeros(n_p, bool),
        payment_note=np.full(n_p, None, object),
    )
    if n_o == 0 or n_p == 0:
        return res
    o_shop, p_shop = _codes(orders["shop_id"], payments["shop_id"])
    o_acc, p_acc = _codes(orders["account_id"], payments["account_id"])
    o_cur, p_cur = _codes(orders["currency"].str.lower(), payments["currency"].str.lower())
    o_amt = _int(orders["amount"], -1)
    received = payments["amount_received"].astype("Int64")
    p_amt = received.where(received > 0, payments["amount"].astype("Int64")).fillna(-1)
    p_amt = p_amt.to_numpy(dtype=np.int64)
    o_t, p_t = _ns(orders["created_at"]), _ns(payments["created_at"])
    o_key = orders["order_id"].astype("string").to_numpy(dtype=object, na_value="")
    p_key = (
        payments["stripe_payment_intent_id"].astype("string").to_numpy(dtype=object, na_value="")
    )
    paid = _paid(payments)
    p_rank = _rank(payments["stripe_payment_intent_id"])

    # 1. exact: metadata order id within the same shop; the oldest payment wins.
    has_meta = paid & payments["metadata_order_id"].notna().to_numpy(dtype=bool)
    scored_pool = paid & ~has_meta
    if has_meta.any():
        idx = np.flatnonzero(has_meta)
        idx = idx[np.lexsort((p_rank[idx], p_t[idx]))]
        # Only the payments that name an order are looked up: (shop, order id) -> row.
        meta_text = payments["metadata_order_id"].astype("string").to_numpy(dtype=object)
        wanted = {str(v) for v in meta_text[idx]}
        named = np.flatnonzero(orders["order_id"].astype("string").isin(wanted).to_numpy(bool))
        order_at: dict[tuple[int, str], int] = {}
        for pos in named.tolist():
            order_at.setdefault((int(o_shop[pos]), str(o_key[pos])), pos)
        target_pos = [
            float(order_at.get((int(p_shop[i]), str(meta_text[i])), np.nan)) for i in idx.tolist()
        ]
        for pos, t in zip(idx.tolist(), target_pos, strict=True):
            if t != t:  # NaN: no such order in this shop
                res.payment_note[pos] = (
                    f"metadata order_id {meta_text[pos]} is not an order of this shop"
                )
                continue
            o = int(t)
            if res.order_payment[o] >= 0:
                first = p_key[res.order_payment[o]]
                res.payment_note[pos] = (
                    f"metadata names order {o_key[o]}, already paid by {first} (double payment?)"
                )
                continue
            res.order_payment[o], res.payment_order[pos] = pos, o
            res.order_score[o], res.order_method[o] = 1.0, "metadata"

    # 2. candidates for the rest. An order whose amount could not be read (<NA>, its
    # row_error says why) is never scored: only a payment naming it can match it.
    o_free = np.flatnonzero((res.order_payment < 0) & orders["amount"].notna().to_numpy(dtype=bool))
    p_free = np.flatnonzero(scored_pool)
    if len(o_free) == 0 or len(p_free) == 0:
        return res
    of = pd.DataFrame(
        {"o": o_free, "shop": o_shop[o_free], "acc": o_acc[o_free], "amt": o_amt[o_free]}
    )
    pf = pd.DataFrame(
        {"p": p_free, "shop": p_shop[p_free], "acc": p_acc[p_free], "amt": p_amt[p_free]}
    )
    by_acc = of[of.acc >= 0].merge(pf[pf.acc >= 0], on=["shop", "acc"])[["o", "p"]]
    by_amt = of.merge(pf, on=["shop", "amt"], suffixes=("_o", "_p"))
    by_amt = by_amt[(by_amt.acc_o < 0) | (by_amt.acc_p < 0)][["o", "p"]]
    pairs = pd.concat([by_acc, by_amt], ignore_index=True)
    if len(pairs) == 0:
        return res
    o = pairs["o"].to_numpy(np.int64)
    p = pairs["p"].to_numpy(np.int64)
    window_ns = int(rules.window.total_seconds() * 1e9)
    dt = np.abs(p_t[p] - o_t[o])
    keep = dt <= window_ns
    o, p, dt = o[keep], p[keep], dt[keep]
    same_acc = (o_acc[o] >= 0) & (o_acc[o] == p_acc[p])
    same_cur = o_cur[o] == p_cur[p]
    base = np.maximum(o_amt[o], 1).astype(float)
    rel = np.abs(p_amt[p] - o_amt[o]) / base
    amount_part = np.where(same_cur, np.clip(1.0 - rel / rules.amount_tolerance, 0.0, 1.0), 0.0)
    time_part = 1.0 - dt / max(window_ns, 1)
    score = np.round(W_ACCOUNT * same_acc + W_AMOUNT * amount_part + W_TIME * time_part, 4)
    keep = score >= rules.min_score
    o, p, score = o[keep], p[keep], score[keep]
    if len(o) == 0:
        return res
    o_rank = _rank(orders["order_id"])
    order = np.lexsort((p_rank[p], p_t[p], o_rank[o], o_t[o], -score))
    o, p, score = o[order], p[order], score[order]

    # 3. assignment. Pairs alone on both sides need no competition check.
    o_deg = np.bincount(o, minlength=n_o)
    p_deg = np.bincount(p, minlength=n_p)
    alone = (o_deg[o] == 1) & (p_deg[p] == 1)
    res.order_payment[o[alone]] = p[alone]
    res.payment_order[p[alone]] = o[alone]
    res.order_score[o[alone]] = score[alone]
    res.order_method[o[alone]] = "scored"
    rest = ~alone
    _assign(res, o[rest], p[rest], score[rest], rules.margin)
    return res


def _assign(res: Matches, o: np.ndarray, p: np.ndarray, s: np.ndarray, margin: float) -> None:
    """Greedy assignment with the ambiguity rule, over pairs sorted best first."""
    if len(o) == 0:
        return
    by_order: dict[int, list[tuple[float, int]]] = {}
    by_pay: dict[int, list[tuple[float, int]]] = {}
    ol, pl, sl = o.tolist(), p.tolist(), s.tolist()
    for oi, pi, si in zip(ol, pl, sl, strict=True):
        by_order.setdefault(oi, []).append((si, pi))  # already best first
        by_pay.setdefault(pi, []).append((si, oi))
    taken_o: set[int] = set()
    taken_p: set[int] = set()
    ambiguous: set[int] = set()
    contested: set[int] = set()
    tol = margin - 1e-9
    for oi, pi, si in zip(ol, pl, sl, strict=True):
        if oi in taken_o or oi in ambiguous or pi in taken_p:
            continue
        rival: tuple[float, int, bool] | None = None  # (score, id, is_payment)
        for sc, other in by_order[oi]:
            if other != pi and other not in taken_p and abs(sc - si) < tol:
                rival = (sc, other, True)
                break
        if rival is None:
            for sc, other in by_pay[pi]:
                if other != oi and other not in taken_o and abs(sc - si) < tol:
                    rival = (sc, other, False)
                    break
        runner = next(((sc, x) for sc, x in by_order[oi] if x != pi), None)
        if rival is not None:
            ambiguous.add(oi)
            res.order_ambiguous[oi] = True
            res.order_payment[oi] = pi  # the best candidate, not a match
            res.order_score[oi] = si
            if rival[2]:
                res.order_runner[oi], res.order_runner_score[oi] = rival[1], rival[0]
                contested.add(rival[1])
            elif runner is not None:
                res.order_runner[oi], res.order_runner_score[oi] = runner[1], runner[0]
            contested.add(pi)
            continue
        taken_o.add(oi)
        taken_p.add(pi)
        res.order_payment[oi], res.payment_order[pi] = pi, oi
        res.order_score[oi], res.order_method[oi] = si, "scored"
        if runner is not None:
            res.order_runner[oi], res.order_runner_score[oi] = runner[1], runner[0]
    for pi in contested - taken_p:
        res.payment_ambiguous[pi] = True


# -- the report ------------------------------------------------------------------------------

_ACTIONS = {
    "amount_mismatch": "collect or refund the difference, or correct the order total",
    "currency_mismatch": "the payment is in another currency than the order: check the checkout",
    "partially_refunded": "record the partial refund on the order",
    "refunded": "mark the order refunded or cancelled in the backend",
    "disputed": "answer the dispute in the shop's Stripe dashboard before its due date",
    "ambiguous": "write the order id into the right payment's metadata "
    "(ops.payment_metadata_plan) so the next run matches exactly",
    "paid_no_order": "find the order this payment belongs to, or refund it",
    "order_unpaid": "collect the payment or reopen the order; do not ship",
    "shop_not_configured": "set a valid Stripe secret key for the shop",
    "shop_error": "retry later; if it persists, check the shop's key and Stripe's status",
}


def _s(values: Any) -> pd.Series:
    return pd.Series(values, dtype="string")


def reconcile_payments(
    shops: pd.DataFrame,
    orders: pd.DataFrame,
    payments: pd.DataFrame,
    errors: Mapping[Any, str] | None = None,
    rules: MatchRules | None = None,
) -> pd.DataFrame:
    """One :data:`PAYMENT_REPORT` row per order or paid payment (see the module docstring).

    ``shops``: the run's shops (SHOPS: shop_id, shop_name, mode); a shop whose
    ``mode`` is not live/test is ``shop_not_configured``. ``orders``: MONEY_ORDERS of
    those shops. ``payments``: PAYMENTS of the shops that answered. ``errors``:
    shop_id -> reason for the shops Stripe failed for (``shop_error``).
    Rows are sorted by shop, status, order time, order id and payment id.
    """
    orders = conform(orders, MONEY_ORDERS)
    payments = conform(payments, PAYMENTS)
    errors = {str(k): v for k, v in (errors or {}).items()}
    shop_ids = shops["shop_id"].astype("string")
    names = dict(zip(shop_ids, shops["shop_name"].astype("string"), strict=True))
    modes = dict(zip(shop_ids, shops["mode"].astype("string"), strict=True))
    unusable = {s for s, m in modes.items() if m not in ("live", "test")}
    failed = set(errors) - unusable
    in_run = set(shop_ids)
    orders = orders[orders["shop_id"].isin(in_run)].reset_index(drop=True)
    payments = payments[payments["shop_id"].isin(in_run - unusable - failed)].reset_index(drop=True)
    level = orders["shop_id"].isin(unusable | failed).to_numpy(dtype=bool)
    work = orders[~level].reset_index(drop=True)
    m = match_orders(work, payments, rules)
    parts = [
        _order_rows(work, payments, m),
        _payment_rows(payments, m),
        _shop_rows(orders[level], unusable, failed, errors, in_run),
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return conform(pd.DataFrame(), PAYMENT_REPORT)
    report = pd.concat(parts, ignore_index=True)
    report["shop_name"] = report["shop_id"].map(names).astype("string")
    report = conform(report, PAYMENT_REPORT)
    # Sorted by shop, status, order time, order id, payment id on integer keys (text
    # sorts cost seconds at a million rows); missing values last.
    keys = [
        _rank(report["stripe_payment_intent_id"], na_last=True),
        _rank(report["order_id"], na_last=True),
        _ns_or_max(report["order_created_at"]),
        report["status"].cat.codes.to_numpy(),
        _rank(report["shop_id"], na_last=True),
    ]
    return report.iloc[np.lexsort(keys)].reset_index(drop=True)


def _order_rows(orders: pd.DataFrame, payments: pd.DataFrame, m: Matches) -> pd.DataFrame:
    if not len(orders):
        return pd.DataFrame()
    pos = m.order_payment
    has = pos >= 0
    complete = (orders["status"].astype("string").str.lower() == COMPLETE).fillna(False)
    keep = has | complete.to_numpy(dtype=bool)
    sel = np.flatnonzero(keep)
    o = orders.iloc[sel].reset_index(drop=True)
    pp = pos[sel]
    matched = pp >= 0
    take = np.where(matched, pp, 0)
    pay = payments.iloc[take].reset_index(drop=True) if len(payments) else None

    def col(name: str, dtype: str) -> pd.Series:
        if pay is None:
            return pd.Series(pd.NA, index=range(len(o)), dtype=dtype)
        return pay[name].astype(dtype).where(matched, pd.NA)

    pi_id = col("stripe_payment_intent_id", "string")
    received = col("amount_received", "Int64")
    refunded = col("amount_refunded", "Int64")
    cur = col("currency", "string").str.lower()
    dispute = col("dispute_status", "string")
    amb = m.order_ambiguous[sel]
    o_cur = o["currency"].astype("string").str.lower()
    status = np.select(
        [
            amb,
            ~matched,
            (cur != o_cur).fillna(False).to_numpy(bool),
            dispute.isin(OPEN_DISPUTES).fillna(False).to_numpy(bool),
            ((refunded >= received) & (received > 0)).fillna(False).to_numpy(bool),
            (refunded > 0).fillna(False).to_numpy(bool),
            # an order amount that could not be read is never a match of any payment
            (received != o["amount"].astype("Int64")).fillna(True).to_numpy(bool),
        ],
        [
            "ambiguous",
            "order_unpaid",
            "currency_mismatch",
            "disputed",
            "refunded",
            "partially_refunded",
            "amount_mismatch",
        ],
        "match",
    )
    runner = m.order_runner[sel]
    runner_id = pd.Series(pd.NA, index=range(len(o)), dtype="string")
    if len(payments):
        ids = payments["stripe_payment_intent_id"].astype("string").to_numpy(dtype=object)
        runner_id = _s(np.where(runner >= 0, ids[np.where(runner >= 0, runner, 0)], None))
    score = pd.array(np.where(np.isnan(m.order_score[sel]), np.nan, m.order_score[sel]))
    out = pd.DataFrame(
        {
            "shop_id": o["shop_id"].astype("string"),
            "order_id": o["order_id"].astype("string"),
            "account_id": o["account_id"].astype("string"),
            "stripe_payment_intent_id": pi_id,
            "status": status,
            "match_method": _s(m.order_method[sel]),
            "score": pd.Series(score, dtype="Float64"),
            "runner_up_payment_intent_id": runner_id,
            "runner_up_score": pd.Series(m.order_runner_score[sel], dtype="Float64"),
            "order_status": o["status"].astype("string"),
            "order_amount": o["amount"].astype("Int64"),
            "paid_amount": received,
            "refunded_amount": refunded,
            "currency": cur.fillna(o_cur),
            "order_currency": o_cur,
            "fee": col("fee", "Int64"),
            "net": col("net", "Int64"),
            "dispute_status": dispute,
            "order_created_at": o["created_at"],
            "paid_at": col("created_at", "datetime64[ns, UTC]"),
        }
    )
    out.loc[out["status"] == "ambiguous", ["paid_amount", "refunded_amount", "fee", "net"]] = pd.NA
    out["detail"] = _order_detail(out)
    out["suggested_action"] = out["status"].map(_ACTIONS).astype("string")
    return out


def _order_detail(out: pd.DataFrame) -> pd.Series:
    """A one-line detail per finding, built only for the rows that need one."""
    detail = np.full(len(out), None, dtype=object)
    st = out["status"].to_numpy(dtype=object)

    def fmt(status: str, make: Any, *cols: str) -> None:
        idx = np.flatnonzero(st == status)
        if not len(idx):
            return
        values = [out[c].to_numpy(dtype=object, na_value=None)[idx] for c in cols]
        detail[idx] = [make(*row) for row in zip(*values, strict=True)]

    def num(x: Any) -> str:
        return "?" if x is None or x != x else f"{x:.3f}"

    fmt(
        "ambiguous",
        lambda a, s, b, r: f"candidates {a or '?'} (score {num(s)}) and {b or '?'} "
        f"(score {num(r)}) are within the margin",
        "stripe_payment_intent_id", "score", "runner_up_payment_intent_id", "runner_up_score",
    )  # fmt: skip
    idx = np.flatnonzero(st == "order_unpaid")
    detail[idx] = "order is complete but no successful payment of this shop matches it"
    fmt("amount_mismatch", lambda o, p, c: f"ordered {o}, received {p} ({c} minor units)",
        "order_amount", "paid_amount", "currency")  # fmt: skip
    fmt("currency_mismatch", lambda o, c: f"order in {o}, payment in {c}",
        "order_currency", "currency")  # fmt: skip
    for status in ("refunded", "partially_refunded"):
        fmt(status, lambda r, p: f"refunded {r} of {p}", "refunded_amount", "paid_amount")
    fmt("disputed", lambda d: f"dispute {d or '?'}", "dispute_status")
    return pd.Series(detail, index=out.index, dtype="string")


def _paid(payments: pd.DataFrame) -> np.ndarray:
    """Payments that may pay an order: succeeded, and not a subscription invoice's."""
    ok = (payments["status"].astype("string") == PAID).fillna(False)
    return (ok & payments["stripe_invoice_id"].isna()).to_numpy(dtype=bool)


def _payment_rows(payments: pd.DataFrame, m: Matches) -> pd.DataFrame:
    if not len(payments):
        return pd.DataFrame()
    paid = _paid(payments)
    free = paid & (m.payment_order < 0)
    named = set(m.order_payment[m.order_ambiguous].tolist())
    named_mask = (
        np.isin(np.arange(len(payments)), list(named)) if named else np.zeros(len(payments), bool)
    )
    ambiguous = free & m.payment_ambiguous & ~named_mask
    orphan = free & ~m.payment_ambiguous
    sel = np.flatnonzero(ambiguous | orphan)
    if not len(sel):
        return pd.DataFrame()
    p = payments.iloc[sel].reset_index(drop=True)
    is_amb = ambiguous[sel]
    note = pd.Series(m.payment_note[sel], dtype="string")
    default = np.where(
        is_amb,
        "a candidate of an ambiguous order (see its row); given to no order",
        "no order of this shop within the window matches its account or amount",
    )
    status = np.where(is_amb, "ambiguous", "paid_no_order")
    out = pd.DataFrame(
        {
            "shop_id": p["shop_id"].astype("string"),
            "order_id": pd.Series(pd.NA, index=p.index, dtype="string"),
            "account_id": p["account_id"].astype("string"),
            "stripe_payment_intent_id": p["stripe_payment_intent_id"].astype("string"),
            "status": status,
            "paid_amount": p["amount_received"].astype("Int64"),
            "refunded_amount": p["amount_refunded"].astype("Int64"),
            "currency": p["currency"].astype("string").str.lower(),
            "fee": p["fee"].astype("Int64"),
            "net": p["net"].astype("Int64"),
            "dispute_status": p["dispute_status"].astype("string"),
            "paid_at": p["created_at"],
            "detail": note.fillna(_s(default)),
        }
    )
    out["suggested_action"] = out["status"].map(_ACTIONS).astype("string")
    return out


def _shop_rows(
    orders: pd.DataFrame,
    unusable: set[str],
    failed: set[str],
    errors: Mapping[str, str],
    in_run: set[str],
) -> pd.DataFrame:
    rows: list[pd.DataFrame] = []
    for shop in sorted(unusable | failed):
        if shop not in in_run:
            continue
        status = "shop_not_configured" if shop in unusable else "shop_error"
        detail = (
            "the shop has no usable Stripe secret key: its payments could not be read"
            if status == "shop_not_configured"
            else str(errors.get(shop, "Stripe failed for this shop"))
        )
        mine = orders[orders["shop_id"] == shop]
        if len(mine):
            part = pd.DataFrame(
                {
                    "shop_id": mine["shop_id"].astype("string"),
                    "order_id": mine["order_id"].astype("string"),
                    "account_id": mine["account_id"].astype("string"),
                    "order_status": mine["status"].astype("string"),
                    "order_amount": mine["amount"].astype("Int64"),
                    "currency": mine["currency"].astype("string"),
                    "order_currency": mine["currency"].astype("string"),
                    "order_created_at": mine["created_at"],
                }
            )
        else:
            part = pd.DataFrame({"shop_id": _s([shop])})
        part["status"] = status
        part["detail"] = detail
        part["suggested_action"] = _ACTIONS[status]
        rows.append(part)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def money_summary(report: pd.DataFrame) -> pd.DataFrame:
    """Shop x status counts of a payment report (string shop ids), zeros included."""
    status = pd.Categorical(report["status"].astype("string"), categories=PAYMENT_STATUSES)
    keys = pd.DataFrame(
        {
            "shop_id": report["shop_id"].astype("string"),
            "shop_name": report["shop_name"].astype("string"),
            "status": status,
        }
    )
    counts = (
        keys.groupby(["shop_id", "shop_name", "status"], observed=False, dropna=False)
        .size()
        .unstack("status", fill_value=0)
    )
    counts = counts.reindex(columns=PAYMENT_STATUSES, fill_value=0).astype("Int64")
    counts = counts[counts.sum(axis=1) > 0] if len(counts) else counts
    counts["total"] = counts.sum(axis=1).astype("Int64")
    return counts
