"""The money report: every money frame of a period as files, a verdict and charts.

>>> frames = run_money(ops, period="2026-11")            # doctest: +SKIP
>>> write_money(frames, "month.xlsx")                     # one sheet per frame  # doctest: +SKIP
>>> money_outcome(frames)                                 # 0 / 1 / 2 as for reconcile

Sheets and HTML sections, in order: ``payments`` (orders against payments, one
row per finding, with its summary and chart), ``payouts`` (each payout and its
itemization check), ``payout_report`` (per payout and reporting category,
manual payouts, the unpaid balance), ``daily_overview`` (per shop and day),
``daily_by_currency`` (across shops) and ``ledger`` (the balance transactions).
A payout's own ``status`` column is named ``payout_status`` in files, so the
report's status filter and colours stay those of the payment findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from opskit.core.frames import PAYMENT_STATUSES
from opskit.reports import files

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from opskit.ops import Ops

__all__ = ["MONEY_HELP", "for_files", "money_chart", "money_outcome", "run_money", "write_money"]

MONEY_HELP = {s: files.STATUS_HELP[s] for s in PAYMENT_STATUSES}


def run_money(
    ops: Ops,
    period: str | None = None,
    shop_ids: Any = None,
    *,
    since: Any = None,
    until: Any = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Every money frame of the period from one read of each shop (name -> frame)."""
    report = ops.money_report(
        shop_ids, since, until, period=period, executor=executor, progress=progress
    )
    out = report.frames()
    out["payments"].attrs["requests"] = dict(report.requests)
    out["payments"].attrs["minimum_pages"] = dict(report.minimum)
    return out


def money_outcome(frames: Mapping[str, pd.DataFrame]) -> int:
    """0 every payment matches and every itemized payout adds up; 1 findings; 2 a shop failed."""
    code = files.outcome({"payments": frames["payments"]})
    payouts = frames.get("payouts")
    mismatch = payouts is not None and bool(
        (payouts["check"].astype("string") == "sum_mismatch").fillna(False).any()
    )
    if code == files.OK and mismatch:
        code = files.DRIFT
    return code


def for_files(frames: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames as report sections: a payout's ``status`` is named ``payout_status``."""
    out = {}
    for name, df in frames.items():
        out[name] = df.rename(columns={"status": "payout_status"}) if name != "payments" else df
    return out


def write_money(
    frames: Mapping[str, pd.DataFrame],
    path: str | Path,
    fmt: str | None = None,
    *,
    meta: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write the money frames (see :func:`opskit.reports.files.write_report` for formats)."""
    return files.write_report(for_files(frames), path, fmt, title="opskit money report", meta=meta)


def money_chart(daily: pd.DataFrame, shop_id: str, *, title: str | None = None) -> Figure:
    """One shop's days: sales, refunds, disputes, fees and payouts as bars, the balance as a line.

    One row of axes per currency (amounts are never added across currencies);
    values in minor units.
    """
    from matplotlib.figure import Figure

    mine = daily[daily["shop_id"].astype("string") == str(shop_id)]
    currencies = sorted(mine["currency"].dropna().unique()) or ["-"]
    fig = Figure(figsize=(9.5, 2.6 * len(currencies)), layout="constrained")
    axes = fig.subplots(len(currencies), 1, squeeze=False)[:, 0]
    series = [
        ("sales", "#4c9a5b", 1),
        ("refunds", "#e6a23c", 1),
        ("disputes", "#c0504d", 1),
        ("fees", "#8e5b9e", -1),
        ("payouts", "#4bacc6", -1),
    ]
    for ax, cur in zip(axes, currencies, strict=True):
        rows = mine[mine["currency"] == cur].sort_values("day")
        if not len(rows):
            ax.text(0.5, 0.5, "no money moved", transform=ax.transAxes, ha="center")
            continue
        days = rows["day"].dt.tz_convert(None)
        width = 0.8 / len(series)
        x = range(len(rows))
        for i, (name, color, sign) in enumerate(series):
            values = (rows[name].astype("Int64").fillna(0) * sign).to_numpy(dtype=float)
            ax.bar([v + i * width - 0.4 for v in x], values, width, color=color, label=name)
        ax.plot(list(x), rows["end_balance"].to_numpy(dtype=float), color="#243b53",
                marker="o", label="end balance")  # fmt: skip
        ax.set_xticks(list(x), labels=[d.strftime("%m-%d") for d in days], fontsize=8)
        ax.set_ylabel(f"{cur.upper()} (minor units)")
        ax.spines[["top", "right"]].set_visible(False)
        ax.axhline(0, color="#999999", linewidth=0.6)
    if title:
        axes[0].set_title(title, loc="left", fontsize=11)
    axes[0].legend(loc="upper left", fontsize=7, ncols=6, frameon=False)
    return fig
