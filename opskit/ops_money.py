"""The money methods of :class:`opskit.Ops`: orders, payments, refunds, disputes, payouts.

A mixin kept beside ``ops.py`` so the money has one home: each method reads the
shops' Stripe accounts through :func:`opskit.stripeapi.money.fetch_money`, the
backend's orders through ``Ops.orders()``, and hands frames to the pure core
(:mod:`opskit.core.payments`, :mod:`opskit.core.ledger`).

Periods: ``period="2026-11"`` (a month), ``"2026-11-05"`` (a day) or ``"2026"``
(a year), in UTC; or explicit ``since``/``until`` (tz-aware; naive means UTC).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from opskit.backend.db import shops_frame
from opskit.common.context import Context
from opskit.core import badrows, ledger
from opskit.core.frames import DAILY_OVERVIEW, MONEY_ORDERS, PAYMENT_REPORT, conform
from opskit.core.payments import MatchRules, reconcile_payments
from opskit.stripeapi.money import MoneyResult, fetch_money
from opskit.writes import payment_metadata

if TYPE_CHECKING:
    from opskit.common.models import Shop

__all__ = ["PERIOD_FORMS", "MoneyOps", "MoneyReport", "period_bounds"]

log = logging.getLogger(__name__)


PERIOD_FORMS = "a year (2026), a month (2026-11) or a day (2026-11-05), in UTC"
_BOUND_FORMS = "an ISO date or time (2026-11-05 or 2026-11-05T12:00:00, UTC unless it says)"


def period_bounds(
    period: str | None = None, since: Any = None, until: Any = None
) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """``(since, until)`` in UTC from a period (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``) or bounds.

    Pure (no I/O), so callers check their arguments with it before any request.
    Raises :class:`~opskit.InputError` naming the accepted forms for a period that
    is not a real year, month or day (``2026-13``, ``2026-02-30``, ``November``), a
    bound that is not a date or time, ``since`` after ``until``, or a period given
    together with bounds.
    """
    from opskit.common.exceptions import InputError

    if period is not None:
        if since is not None or until is not None:
            raise InputError(
                f"period {period!r} and since/until both given: say the money's time once",
                guidance=f"Pass either a period ({PERIOD_FORMS}) or since/until, not both.",
            )
        text = str(period).strip()
        try:
            if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", text):
                raise ValueError(text)
            parts = [int(p) for p in text.split("-")]
            start = pd.Timestamp(*parts, *[1] * (3 - len(parts)), tz="UTC")  # checks the calendar
        except (ValueError, TypeError, OverflowError):
            raise InputError(
                f"period {period!r} is not a year, month or day: use {PERIOD_FORMS}",
                guidance="Use e.g. 2026, 2026-11 or 2026-11-05.",
            ) from None
        step = {1: pd.DateOffset(years=1), 2: pd.DateOffset(months=1)}.get(
            len(parts), pd.DateOffset(days=1)
        )
        return start, start + step - pd.Timedelta(seconds=1)

    def ts(v: Any, name: str) -> pd.Timestamp | None:
        if v is None:
            return None
        try:
            t = pd.Timestamp(v)
            if pd.isna(t):
                raise ValueError(v)
        except (ValueError, TypeError, OverflowError):
            raise InputError(
                f"{name} {v!r} is not a date or time: use {_BOUND_FORMS}",
                guidance="Use e.g. 2026-11-01 or 2026-11-01T00:00:00Z.",
            ) from None
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    lo, hi = ts(since, "since"), ts(until, "until")
    if lo is not None and hi is not None and lo > hi:
        raise InputError(
            f"since {since!r} is after until {until!r}: nothing can fall between them",
            guidance="Swap them, or pass a period (e.g. 2026-11).",
        )
    return lo, hi


@dataclass
class MoneyReport:
    """Every money frame of one read (the CLI, the panel and the HTML report use it)."""

    payments: pd.DataFrame  # PAYMENT_REPORT
    payouts: pd.DataFrame  # PAYOUTS
    payout_report: pd.DataFrame  # PAYOUT_REPORT
    daily_overview: pd.DataFrame  # DAILY_OVERVIEW per shop
    daily_by_currency: pd.DataFrame  # DAILY_OVERVIEW across shops
    ledger: pd.DataFrame  # BALANCE_TRANSACTIONS
    requests: dict[str, int] = field(default_factory=dict)
    minimum: dict[str, int] = field(default_factory=dict)

    def frames(self) -> dict[str, pd.DataFrame]:
        """Name -> frame, in reading order (one sheet each in Excel)."""
        return {
            "payments": self.payments,
            "payouts": self.payouts,
            "payout_report": self.payout_report,
            "daily_overview": self.daily_overview,
            "daily_by_currency": self.daily_by_currency,
            "ledger": self.ledger,
        }


class MoneyOps:
    """Mixed into :class:`opskit.Ops`; needs ``ctx`` and ``_shop_list``."""

    ctx: Context

    def _shop_list(self, shop_ids: Any) -> list[Shop]:  # provided by Ops
        raise NotImplementedError

    # -- reading -------------------------------------------------------------------------

    def _read(
        self,
        shop_ids: Any,
        period: str | None,
        since: Any,
        until: Any,
        kinds: Iterable[str],
        executor: Executor | None,
        progress: bool,
        *,
        widen: pd.Timedelta | None = None,
        **kwargs: Any,
    ) -> _Read:
        """The preamble of every money method: the period's bounds, the shops, one read.

        ``widen`` reads that much before and after the period (payments near its edges);
        ``kwargs`` go to :func:`opskit.stripeapi.money.fetch_money`. A failed shop is
        logged here and is in ``result.errors``.
        """
        lo, hi = period_bounds(period, since, until)
        shops = self._shop_list(shop_ids)
        read_lo = lo if lo is None or widen is None else lo - widen
        read_hi = hi if hi is None or widen is None else hi + widen
        result = fetch_money(
            self.ctx,
            shops,
            since=None if read_lo is None else read_lo.to_pydatetime(),
            until=None if read_hi is None else read_hi.to_pydatetime(),
            kinds=tuple(kinds),
            executor=executor,
            progress=progress,
            **kwargs,
        )
        for shop_id, reason in result.errors.items():
            log.warning("opskit: Stripe failed for shop %s: %s", shop_id, reason)
        return _Read(lo, hi, read_lo, read_hi, shops, result)

    def _money_orders(self, shop_ids: Any) -> pd.DataFrame:
        """The backend's orders (``Ops.orders()``; empty when the mapping has none)."""
        loader = getattr(self, "orders")  # noqa: B009 - provided by Ops
        return conform(loader(shop_ids), MONEY_ORDERS)

    def _accounts(self, shop_ids: Any) -> pd.DataFrame:
        ids = None if shop_ids is None else [s.id for s in self._shop_list(shop_ids)]  # type: ignore[misc]
        return self.ctx.db.load_accounts(ids)  # type: ignore[arg-type]

    def payments(
        self,
        shop_ids: Any = None,
        since: Any = None,
        until: Any = None,
        *,
        period: str | None = None,
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Each shop's payment intents with their charge, fee, net, refunds and dispute.

        One ``PAYMENTS`` row per payment intent created in the period (columns and
        sources: :func:`opskit.core.ledger.payments_frame`); amounts in minor units.
        Failed shops: ``frame.attrs["shop_errors"]`` (shop_id -> reason).
        """
        res = self._read(
            shop_ids, period, since, until, ("intents", "charges", "disputes"), executor,
            progress, itemize=False, balance=False,
        ).result  # fmt: skip
        return _with_errors(ledger.payments_frame(res.shops, self._accounts(shop_ids)), res)

    def reconcile_payments(
        self,
        shop_ids: Any = None,
        since: Any = None,
        until: Any = None,
        *,
        period: str | None = None,
        orders: pd.DataFrame | None = None,
        rules: MatchRules | None = None,
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """One ``PAYMENT_REPORT`` row per order or paid payment of the period.

        Orders come from ``ops.orders()`` unless given (a MONEY_ORDERS frame);
        matching and statuses: :mod:`opskit.core.payments`. Payments up to the
        matching window outside the period are read so that orders near its
        edges still find theirs; rows are kept when the order (else the payment)
        falls in the period.
        """
        return self.money_report(
            shop_ids, since, until, period=period, orders=orders, rules=rules,
            executor=executor, progress=progress, only_payments=True,
        ).payments  # fmt: skip

    def payouts(
        self,
        shop_ids: Any = None,
        since: Any = None,
        until: Any = None,
        *,
        period: str | None = None,
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """One ``PAYOUTS`` row per payout created in the period, checked against its items.

        Automatic payouts are itemized from Stripe's ledger and ``check`` says
        whether the items' net equals the amount; manual payouts are flagged
        ``manual_not_itemizable`` (see :func:`opskit.core.ledger.payouts_frame`).
        """
        res = self._read(
            shop_ids, period, since, until, ("payouts",), executor, progress, balance=False
        ).result
        return _with_errors(ledger.payouts_frame(res.shops), res)

    def payout_items(
        self,
        payout_id: str | None = None,
        *,
        shop_ids: Any = None,
        period: str | None = None,
        since: Any = None,
        until: Any = None,
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """The ledger rows (``BALANCE_TRANSACTIONS``) each automatic payout paid out."""
        txns, payouts_, _, _ = self._payout_data(
            payout_id, shop_ids, period, since, until, executor, progress
        )
        return txns[txns["payout"].isin(payouts_["payout_id"])].reset_index(drop=True)

    def payout_report(
        self,
        payout_id: str | None = None,
        *,
        shop_ids: Any = None,
        period: str | None = None,
        since: Any = None,
        until: Any = None,
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """``PAYOUT_REPORT`` of one payout (``payout_id``) or of the payouts of a period.

        Per payout and reporting category: count, gross, fee, net; a
        ``manual_payout`` line per manual payout (Stripe cannot itemize it); for a
        period, an ``unpaid_balance`` line per shop and currency: the balance
        still in Stripe at the period's end (available and pending in ``detail``).
        """
        txns, payouts_, balances, hi = self._payout_data(
            payout_id, shop_ids, period, since, until, executor, progress
        )
        return ledger.payout_report(payouts_, txns, balances, period_end=hi)

    def _payout_data(
        self,
        payout_id: str | None,
        shop_ids: Any,
        period: str | None,
        since: Any,
        until: Any,
        executor: Executor | None,
        progress: bool,
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.Timestamp | None]:
        kinds: tuple[str, ...] = ("payouts",)  # items name their payments (sources expanded)
        ends = period is not None or until is not None  # the period has an end: its balance
        if payout_id is None and ends:
            kinds = (*kinds, "transactions")
        read = self._read(shop_ids, period, since, until, kinds, executor, progress)
        res, hi = read.result, read.hi
        payouts_ = ledger.payouts_frame(res.shops)
        if payout_id is not None:
            payouts_ = payouts_[payouts_["payout_id"] == str(payout_id)]
            if not len(payouts_):
                from opskit.common.exceptions import InputError

                raise InputError(
                    f"no payout {payout_id!r} in the shops read",
                    guidance="Check the id and the shop (ops.payouts() lists them).",
                )
        txns = ledger.balance_transactions_frame(res.shops)
        balances = None
        if payout_id is None and hi is not None:
            balances = ledger.end_balances(res.shops, txns, hi)
        return txns, payouts_.reset_index(drop=True), balances, hi

    def daily_overview(
        self,
        shop_ids: Any = None,
        since: Any = None,
        until: Any = None,
        *,
        period: str | None = None,
        by: str = "shop",
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """``DAILY_OVERVIEW`` per shop and UTC day (``by="currency"``: across shops).

        Sales, refunds, disputes, adjustments, fees, net, payouts, failed charges
        and the end-of-day balance, per currency, from the ledger (rows listed
        from ``since`` up to now, so each day's end balance is today's minus
        what came after).
        """
        report = self.money_report(
            shop_ids, since, until, period=period, executor=executor, progress=progress,
            only_overview=True,
        )  # fmt: skip
        return report.daily_overview if by == "shop" else report.daily_by_currency

    # -- everything at once --------------------------------------------------------------

    def money_report(
        self,
        shop_ids: Any = None,
        since: Any = None,
        until: Any = None,
        *,
        period: str | None = None,
        orders: pd.DataFrame | None = None,
        rules: MatchRules | None = None,
        executor: Executor | None = None,
        progress: bool = True,
        only_payments: bool = False,
        only_overview: bool = False,
    ) -> MoneyReport:
        """Every money frame of the period from one read of each shop (a :class:`MoneyReport`)."""
        rules = rules or MatchRules()
        if only_payments:
            kinds: tuple[str, ...] = ("intents", "charges", "disputes")
        elif only_overview:
            kinds = ("charges", "transactions")
        else:
            kinds = ("intents", "charges", "refunds", "disputes", "transactions", "payouts")
        read = self._read(
            shop_ids, period, since, until, kinds, executor, progress,
            widen=None if only_overview else pd.Timedelta(rules.window),
            balance=not only_payments, itemize="payouts" in kinds,
        )  # fmt: skip
        lo, hi, read_lo, read_hi = read.lo, read.hi, read.read_lo, read.read_hi
        shops, res = read.shops, read.result
        accounts = self._accounts(shop_ids)
        pay = ledger.payments_frame(res.shops, accounts)
        report = MoneyReport(
            payments=conform(pd.DataFrame(), PAYMENT_REPORT),
            payouts=ledger.payouts_frame(res.shops),
            payout_report=ledger.payout_report(
                ledger.payouts_frame([]), ledger.balance_transactions_frame([])
            ),
            daily_overview=conform(pd.DataFrame(), DAILY_OVERVIEW),
            daily_by_currency=conform(pd.DataFrame(), DAILY_OVERVIEW),
            ledger=ledger.balance_transactions_frame(res.shops),
            requests=res.requests,
            minimum=res.minimum,
        )
        if not only_overview:
            if orders is None:
                orders = self._money_orders(shop_ids)
            orders = conform(orders, MONEY_ORDERS)
            # An order whose time could not be read (row_error, NaT) is in every period:
            # flagged in its row, never silently left out.
            keep = orders["created_at"].isna() & orders["row_error"].notna()  # untimed
            inside = pd.Series(True, index=orders.index)
            if read_lo is not None:
                inside &= orders["created_at"] >= read_lo
            if read_hi is not None:
                inside &= orders["created_at"] <= read_hi
            orders = orders[keep | inside.fillna(False).astype(bool)]
            rep = reconcile_payments(
                shops_frame(shops).astype({"shop_id": "string"}), orders, pay, res.errors, rules
            )
            rep = badrows.annotate(rep, orders, ["shop_id", "order_id"])
            if shop_ids is None:  # the whole fleet: the shop rows opskit cannot use, too
                flagged = badrows.unusable_rows(
                    PAYMENT_REPORT,
                    self.ctx.db.unusable_shops(),
                    orders,
                    [str(s.id) for s in shops],
                    key="order_id",
                    columns={"account_id": "account_id", "order_status": "status"},
                )
                rep = badrows.with_flagged(rep, flagged)
            report.payments = _in_period(rep, lo, hi)
        if only_payments:
            return report
        txns = report.ledger
        balances_now = ledger.end_balances(res.shops, txns, pd.Timestamp.now(tz="UTC"))
        charges = _charges_frame(res)
        report.daily_overview = ledger.daily_overview(
            txns, charges, balances_now, since=lo, until=hi
        )
        report.daily_by_currency = ledger.daily_overview(
            txns, charges, balances_now, since=lo, until=hi, by="currency"
        )
        if not only_overview:
            pos = report.payouts
            if lo is not None:
                pos = pos[pos["created_at"] >= lo]
            if hi is not None:
                pos = pos[pos["created_at"] <= hi]
            report.payouts = pos.reset_index(drop=True)
            balances = ledger.end_balances(res.shops, txns, hi) if hi is not None else None
            report.payout_report = ledger.payout_report(pos, txns, balances, period_end=hi)
            if lo is not None:
                report.ledger = txns[txns["created_at"] >= lo]
            if hi is not None:
                report.ledger = report.ledger[report.ledger["created_at"] <= hi]
            report.ledger = report.ledger.reset_index(drop=True)
        return report

    # -- the metadata write plan ---------------------------------------------------------

    def payment_metadata_plan(
        self, report: pd.DataFrame | None = None, **kwargs: Any
    ) -> pd.DataFrame:
        """Proposed ``metadata["order_id"]`` writes for scored matches (a dry run: nothing written).

        ``report``: a payment report (else :meth:`reconcile_payments` with ``kwargs``).
        Once applied, the next run matches those payments exactly.
        """
        if report is None:
            report = self.reconcile_payments(**kwargs)
        return payment_metadata.build_plan(report)

    def apply_payment_metadata(
        self, plan: pd.DataFrame, *, actor: str, confirm: bool = False
    ) -> pd.DataFrame:
        """Write the plan's order ids into the payment intents: idempotent, audited, per row."""
        return payment_metadata.apply_plan(self.ctx, plan, actor=actor, confirm=confirm)


@dataclass(frozen=True)
class _Read:
    """One money read: the period's bounds, the bounds read, the shops and the result."""

    lo: pd.Timestamp | None
    hi: pd.Timestamp | None
    read_lo: pd.Timestamp | None
    read_hi: pd.Timestamp | None
    shops: list[Shop]
    result: MoneyResult


def _with_errors(frame: pd.DataFrame, res: MoneyResult) -> pd.DataFrame:
    """``frame`` with the failed shops in ``attrs["shop_errors"]`` (shop_id -> reason)."""
    frame.attrs["shop_errors"] = dict(res.errors)
    return frame


def _in_period(
    report: pd.DataFrame, lo: pd.Timestamp | None, hi: pd.Timestamp | None
) -> pd.DataFrame:
    when = report["order_created_at"].fillna(report["paid_at"])
    keep = when.isna()  # shop-level rows with no order carry no time: always kept
    inside = pd.Series(True, index=report.index)
    if lo is not None:
        inside &= when >= lo
    if hi is not None:
        inside &= when <= hi
    keep |= inside
    return report[keep].reset_index(drop=True)


def _charges_frame(res: MoneyResult) -> pd.DataFrame:
    rows = [
        {
            "shop_id": sm.shop_id,
            "status": c.get("status"),
            "amount": c.get("amount"),
            "currency": (c.get("currency") or "").lower(),
            "created_at": pd.Timestamp(int(c.get("created") or 0), unit="s", tz="UTC"),
        }
        for sm in res.shops
        for c in sm.charges
    ]
    cols = ["shop_id", "status", "amount", "currency", "created_at"]
    return pd.DataFrame(rows, columns=cols)
