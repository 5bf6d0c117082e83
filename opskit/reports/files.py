"""Bulk reconciliation runs over :class:`opskit.Ops` and the report files people read.

>>> reports = run_reports(ops, "all")                 # doctest: +SKIP
>>> write_report(reports, "report.html")              # doctest: +SKIP
>>> outcome(reports)                                  # 0 match / 1 drift / 2 a shop failed

Formats: ``csv`` (plain) and ``parquet`` (dtypes kept) hold one report per file:
several reports need ``{report}`` in the file name (``daily-{report}.csv``);
``json`` (one file: findings and summaries), ``xlsx`` (a summary sheet plus one
sheet per report, formatted headers and column widths) and ``html`` (one
self-contained page: summary tables, an inline SVG chart of status counts per shop
and the findings tables filterable by status; no network needed to view it).

matplotlib and xlsxwriter are imported only when a chart or a workbook is made.
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from opskit.common.exceptions import InputError
from opskit.common.keys import redact
from opskit.common.text import csv_cell, visible
from opskit.core.frames import CUSTOMER_STATUSES, SUBSCRIPTION_STATUSES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from opskit.ops import Ops, ShopIds

log = logging.getLogger(__name__)

__all__ = [
    "DRIFT",
    "FORMATS",
    "OK",
    "REPORTS",
    "SHOP_FAILED",
    "STATUS_HELP",
    "USAGE_ERROR",
    "format_for",
    "outcome",
    "output_paths",
    "report_names",
    "run_reports",
    "status_chart",
    "status_counts",
    "summaries",
    "to_html",
    "write_report",
]

REPORTS = ("customers", "subscriptions")
FORMATS = ("csv", "xlsx", "parquet", "html", "json")
_SUFFIXES = {
    ".csv": "csv",
    ".xlsx": "xlsx",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
}
# Formats that hold one table per file: several reports become several files.
_ONE_TABLE_PER_FILE = ("csv", "parquet")

# Exit codes, most severe wins: a scheduler alerts on anything but OK.
OK = 0  # every row of every report is `match`
DRIFT = 1  # at least one finding needs an analyst (shop_not_configured included)
SHOP_FAILED = 2  # at least one shop_error row: Stripe refused or failed for a shop
USAGE_ERROR = 3  # bad input or configuration; nothing was reconciled

STATUS_HELP: dict[str, str] = {
    "match": "local account and Stripe agree",
    "mismatch": "the customer exists but fields differ (see mismatch_fields)",
    "no_customer_id": "the account's details have no stripe_customer_id",
    "missing_in_stripe": "the linked id is not found in this shop's Stripe account",
    "deleted_in_stripe": "the linked customer was deleted in Stripe",
    "wrong_shop": "the linked id belongs to another shop's Stripe account",
    "mode_mismatch": "the linked id exists in the other mode (live/test) of this shop's Stripe "
    "account: check the shop's key, keep the link",
    "duplicate_link": "several accounts of one shop link the same customer",
    "orphan_in_stripe": "in Stripe, but no local account records it",
    "shop_not_configured": "the shop has no usable secret key: nothing could be checked",
    "shop_error": "Stripe refused or failed for this shop (detail says why)",
    "status_drift": "the local subscription_status differs from Stripe's",
    "price_mismatch": "the local price is none of the subscription's items' prices in Stripe",
    "wrong_customer": "the recorded subscription belongs to another customer than the account's",
    "multiple_active": "one customer has two or more subscriptions that will bill again "
    "(double billing)",
    # the money report (opskit.reports.money)
    "amount_mismatch": "the payment's amount differs from the order total (see detail)",
    "currency_mismatch": "the payment is in another currency than the order",
    "partially_refunded": "part of the payment was refunded",
    "refunded": "the whole payment was refunded",
    "disputed": "the payment is disputed (open or lost chargeback)",
    "ambiguous": "two candidates score within the margin: a person must pick",
    "paid_no_order": "a successful payment no order matches",
    "order_unpaid": "an order marked complete with no successful payment",
}

_COLORS = {
    "match": "#4c9a5b",
    "mismatch": "#e6a23c",
    "status_drift": "#e6a23c",
    "price_mismatch": "#d4813a",
    "no_customer_id": "#7aa6d6",
    "missing_in_stripe": "#c0504d",
    "deleted_in_stripe": "#8e5b9e",
    "wrong_shop": "#b0457a",
    "mode_mismatch": "#9c6ade",
    "wrong_customer": "#b0457a",
    "duplicate_link": "#c9b037",
    "multiple_active": "#c9b037",
    "orphan_in_stripe": "#4bacc6",
    "shop_not_configured": "#a6a6a6",
    "shop_error": "#7f1d1d",
    "amount_mismatch": "#e6a23c",
    "currency_mismatch": "#d4813a",
    "partially_refunded": "#7aa6d6",
    "refunded": "#4b77a8",
    "disputed": "#c0504d",
    "ambiguous": "#c9b037",
    "paid_no_order": "#4bacc6",
    "order_unpaid": "#b0457a",
}


# -- running -------------------------------------------------------------------------------


def run_reports(
    ops: Ops,
    which: str = "all",
    shop_ids: ShopIds = None,
    *,
    executor: Executor | None = None,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Run ``customers``, ``subscriptions`` or ``all`` reports; keys are report names."""
    return ops.reconcile(shop_ids, report_names(which), executor=executor, progress=progress)


def report_names(which: str) -> tuple[str, ...]:
    if which == "all":
        return REPORTS
    if which in REPORTS:
        return (which,)
    raise InputError(
        f"unknown report {which!r}",
        guidance=f"Use one of: {', '.join(REPORTS)}, all.",
    )


def status_counts(report: pd.DataFrame) -> dict[str, int]:
    """Rows per status, in the report's status order, statuses that occur only."""
    counts = report["status"].value_counts(sort=False)
    return {str(k): int(v) for k, v in counts.items() if int(v)}


def outcome(reports: Mapping[str, pd.DataFrame]) -> int:
    """The exit code a run stands for: OK, DRIFT or SHOP_FAILED (the most severe wins).

    ``shop_not_configured`` is drift (1): nothing could be checked for that shop
    and an analyst has to add its key; ``shop_error`` (2) means Stripe refused or
    failed, which is an operational alert rather than a data finding; so is a
    row whose answer depends on a shop that failed (its detail says so), even when
    that shop is outside the run.
    """
    from opskit.core.reconcile import INCOMPLETE

    statuses: set[str] = set()
    incomplete = False
    for report in reports.values():
        statuses |= set(status_counts(report))
        if "detail" in report.columns and len(report):
            found = report["detail"].astype("string").str.contains(INCOMPLETE, regex=False)
            incomplete |= bool(found.fillna(False).any())
    if "shop_error" in statuses or incomplete:  # a failed shop, in the run or asked about
        return SHOP_FAILED
    if statuses - {"match"}:
        return DRIFT
    return OK


def summaries(reports: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Shop x status counts (flat columns) for every frame that has a status per shop."""
    from opskit.core import reconcile

    out = {}
    for name, df in reports.items():
        if {"shop_id", "shop_name", "status"} <= set(df.columns):
            out[name] = reconcile.summary(df).reset_index()
    return out


# -- formats and paths ---------------------------------------------------------------------


def format_for(path: str | Path | None, fmt: str | None) -> str | None:
    """The format named by ``fmt``, else by ``path``'s suffix; None when there is no path."""
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise InputError(
                f"unknown format {fmt!r}", guidance=f"Use one of: {', '.join(FORMATS)}."
            )
        claimed = _SUFFIXES.get(Path(path).suffix.lower()) if path is not None else None
        if claimed not in (None, fmt):
            raise InputError(
                f"--format {fmt} does not match the suffix of {str(path)!r} ({claimed})",
                guidance=f"Name the file .{fmt}, or drop --format to write {claimed}.",
            )
        return fmt
    if path is None:
        return None
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix or '(none)'!r}",
            guidance=f"Name the file .csv/.xlsx/.parquet/.html/.json or pass --format "
            f"({', '.join(FORMATS)}).",
        )
    return _SUFFIXES[suffix]


REPORT_PLACEHOLDER = "{report}"


def output_paths(
    path: str | Path, names: Iterable[str], fmt: str, *, can_pick_one: bool = True
) -> dict[str, Path]:
    """Where each report goes: one file per path asked for, never a name made up.

    A ``{report}`` in the file name is replaced by each report's name
    (``daily-{report}.csv`` -> ``daily-customers.csv``, ``daily-subscriptions.csv``).
    Without it, every report goes into the one file; csv and parquet hold one table,
    so several reports there raise :class:`InputError` saying how to name them
    (``can_pick_one=False`` when the command always writes several, as ``refresh``
    does with its changes, so ``--report`` is no way out).
    """
    path = Path(path)
    names = list(names)
    if REPORT_PLACEHOLDER in path.name:
        return {n: path.with_name(path.name.replace(REPORT_PLACEHOLDER, n)) for n in names}
    if fmt in _ONE_TABLE_PER_FILE and len(names) > 1:
        example = path.with_name(f"{path.stem}-{REPORT_PLACEHOLDER}{path.suffix}")
        raise InputError(
            f"{fmt} holds one table per file, and {len(names)} reports "
            f"({', '.join(names)}) would go to {str(path)!r}",
            guidance=f"Put {REPORT_PLACEHOLDER} in the file name ({str(example)!r} writes "
            "one file per report), "
            + ("pick one report (--report customers), " if can_pick_one else "")
            + "or write .xlsx, .html or .json (every report in one file).",
        )
    return dict.fromkeys(names, path)


def check_writable(path: str | Path) -> None:
    """Fail early (before a long run) when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(
            f"output path {str(path)!r} is a directory",
            guidance="Pass a file name, e.g. report.html.",
        )
    if not parent.is_dir():
        raise InputError(
            f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist",
            guidance="Create the folder first or choose another --out path.",
        )
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(
            f"cannot write {str(path)!r}: permission denied",
            guidance="Choose a writable --out path.",
        )


def write_report(
    reports: Mapping[str, pd.DataFrame],
    path: str | Path,
    fmt: str | None = None,
    *,
    title: str = "opskit reconciliation report",
    meta: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write ``reports`` (name -> frame) as ``fmt`` (default: from the suffix); returns the files.

    Every string cell passes :func:`opskit.common.keys.redact` on the way out, so a secret
    key can never reach a report file even if one slipped into a frame, and
    :func:`opskit.common.text.visible` (no control or bidi characters); CSV cells
    also :func:`opskit.common.text.csv_cell` (no live formulas).
    """
    fmt = format_for(path, fmt)
    assert fmt is not None
    path = Path(path)
    check_writable(path)
    clean = {name: _redacted(df, csv=fmt == "csv") for name, df in reports.items()}
    targets = output_paths(path, clean, fmt)
    files = list(dict.fromkeys(targets.values()))
    for target in files:
        check_writable(target)
    # Written beside the target, then renamed over it: a failure never leaves a
    # half-written file, nor a new file next to an old one, at the paths asked for.
    tag = uuid.uuid4().hex[:8]
    temp = {t: t.with_name(f".{t.stem}.{tag}.tmp{t.suffix}") for t in files}
    try:
        if fmt == "csv":
            for name, df in clean.items():
                df.to_csv(temp[targets[name]], index=False)
        elif fmt == "parquet":
            for name, df in clean.items():
                df.to_parquet(temp[targets[name]], index=False)
        else:  # one file may hold several reports: each file gets the reports sent to it
            for target in files:
                part = {n: df for n, df in clean.items() if targets[n] == target}
                if fmt == "json":
                    temp[target].write_text(_to_json(part, title, meta), encoding="utf-8")
                elif fmt == "xlsx":
                    _write_xlsx(part, temp[target])
                else:
                    text = to_html(part, title=title, meta=meta)
                    temp[target].write_text(text, encoding="utf-8")
        for target in files:
            os.replace(temp[target], target)
    except OSError as exc:
        raise InputError(
            f"cannot write {str(path)!r}: {exc.strerror or exc}",
            guidance="Choose a writable --out path.",
        ) from None
    finally:
        for t in temp.values():
            t.unlink(missing_ok=True)
    return files


def _redacted(df: pd.DataFrame, *, csv: bool = False) -> pd.DataFrame:
    """Keys masked, control and bidi characters made visible in every text cell
    (:func:`opskit.common.text.visible`); for CSV, formulas defused too."""
    out = df.copy()
    shown = csv_cell if csv else visible
    for col in out.columns:
        s = out[col]
        if isinstance(s.dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_string_dtype(s.dtype) or s.dtype == object
        ):
            continue
        text = s.astype("string")
        if text.str.contains(r"(?:sk|rk)_(?:live|test)_", regex=True).fillna(False).any():
            text = text.map(lambda v: redact(v) if isinstance(v, str) else v).astype("string")
        cleaned = text.map(lambda v: shown(v) if isinstance(v, str) else v).astype("string")
        if not cleaned.equals(s.astype("string")):
            out[col] = cleaned.astype(s.dtype)
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))  # type: ignore[no-any-return]


def _to_json(
    reports: Mapping[str, pd.DataFrame], title: str, meta: Mapping[str, str] | None
) -> str:
    doc = {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"meta": dict(meta)} if meta else {}),
        "summary": {n: _records(s) for n, s in summaries(reports).items()},
        "reports": {n: _records(df) for n, df in reports.items()},
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


# -- Excel -----------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.tz_convert(None).to_pydatetime() if value.tzinfo else value.to_pydatetime()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _write_xlsx(reports: Mapping[str, pd.DataFrame], path: Path) -> None:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"remove_timezone": True})
    try:
        bold_head = wb.add_format(
            {"bold": True, "bg_color": "#DCE6F1", "bottom": 1, "text_wrap": False}
        )
        title = wb.add_format({"bold": True, "font_size": 13})
        when = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        sums = summaries(reports)
        ws = wb.add_worksheet("Summary")
        row = 0
        widths: dict[int, int] = {}
        for name, table in sums.items():
            ws.write(row, 0, f"{name.capitalize()}: rows per shop and status", title)
            row += 1
            _write_table(ws, table, row, bold_head, when, widths)
            row += len(table) + 2
        if not sums:
            ws.write(0, 0, "no status reports in this file", title)
        for col, width in widths.items():
            ws.set_column(col, col, width)
        for name, df in reports.items():
            sheet = wb.add_worksheet(name.capitalize()[:31])
            w: dict[int, int] = {}
            _write_table(sheet, df, 0, bold_head, when, w)
            for col, width in w.items():
                sheet.set_column(col, col, width)
            sheet.freeze_panes(1, 0)
            if len(df.columns):
                sheet.autofilter(0, 0, max(len(df), 1), len(df.columns) - 1)
    finally:
        wb.close()


def _write_table(
    ws: Any, df: pd.DataFrame, top: int, head: Any, when: Any, widths: dict[int, int]
) -> None:
    for c, col in enumerate(df.columns):
        ws.write(top, c, str(col), head)
        widths[c] = max(widths.get(c, 0), len(str(col)) + 2)
    for c, col in enumerate(df.columns):
        values = [_cell(v) for v in df[col].tolist()]
        is_time = isinstance(df[col].dtype, pd.DatetimeTZDtype) or df[col].dtype.kind == "M"
        longest = 0
        for r, value in enumerate(values, start=top + 1):
            if value is None:
                continue
            if is_time:
                ws.write_datetime(r, c, value, when)
                longest = 19
            elif col == "dashboard_url" and _is_dashboard_link(value):
                # Only Stripe dashboard links become hyperlinks; any other text stays text.
                ws.write_url(r, c, value, string=value)
                longest = max(longest, len(value))
            else:
                if isinstance(value, int | float | bool):
                    ws.write(r, c, value)
                else:  # text stays text: no formula ("=..."), no link, no number guessing
                    ws.write_string(r, c, str(value))
                longest = max(longest, len(str(value)))
        widths[c] = min(max(widths[c], longest + 2), 60)


def _is_dashboard_link(value: Any) -> bool:
    from opskit.core.enrich import DASHBOARD

    return isinstance(value, str) and value.startswith(DASHBOARD) and value.isascii()


def _money_cells(df: pd.DataFrame) -> dict[str, list[str]]:
    """Formatted amounts (``USD 9.00``) for the money columns of ``df`` that have a currency."""
    from opskit.core.money import format_money

    out: dict[str, list[str]] = {}
    if "currency" not in df.columns:
        return out
    for col in ("unit_amount", "amount"):
        if col not in df.columns or not pd.api.types.is_integer_dtype(df[col].dtype):
            continue
        texts = []
        for amount, currency in zip(df[col].tolist(), df["currency"].tolist(), strict=True):
            if _cell(amount) is None or not isinstance(currency, str):
                texts.append("")
                continue
            try:
                texts.append(format_money(int(amount), currency))
            except ValueError:  # an unknown currency: the minor units as they are
                texts.append(f"{amount} {currency}")
        out[col] = texts
    return out


# -- chart -------------------------------------------------------------------------------------


def status_chart(report: pd.DataFrame, *, title: str | None = None) -> Figure:
    """A horizontal stacked bar per shop: how many rows of each status (a matplotlib Figure).

    Built on ``matplotlib.figure.Figure`` (no pyplot, no global state), so it is
    safe in threads and shows inline in notebooks and widgets.
    """
    from matplotlib.figure import Figure

    table = _summary_counts(report)
    statuses = [s for s in table.columns if s != "total" and int(table[s].sum()) > 0]
    # A label as long as the figure would squeeze the bars to nothing: shortened.
    labels = [_short(f"{sid} {name}") for sid, name in table.index]
    height = 1.3 + 0.42 * max(len(labels), 1)
    fig = Figure(figsize=(9.5, height), layout="constrained")
    ax = fig.add_subplot()
    left = pd.Series(0, index=table.index, dtype="int64")
    ypos = list(range(len(labels)))
    for status in statuses:
        values = table[status].astype("int64")
        ax.barh(
            ypos,
            values.to_numpy(),
            left=left.to_numpy(),
            color=_COLORS.get(status, "#888888"),
            label=status,
            height=0.7,
        )
        left = left + values
    ax.set_yticks(ypos, labels=labels)
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(_short(title, 90), loc="left", fontsize=11)
    if statuses:
        fig.legend(loc="outside right upper", frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no rows", transform=ax.transAxes, ha="center", va="center")
    return fig


def _short(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters (an ellipsis says so), one line."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_figure(fig: Figure, buf: Any, **kwargs: Any) -> None:
    """``fig.savefig(buf, **kwargs)`` with matplotlib's warnings (a layout it could not
    apply, a missing glyph) sent to opskit's log at WARNING, never printed on stderr:
    the CLI's --quiet prints nothing but errors."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(buf, **kwargs)
    for w in caught:
        log.warning("opskit: chart: %s", " ".join(str(w.message).split()))


def _summary_counts(report: pd.DataFrame) -> pd.DataFrame:
    from opskit.core import reconcile

    return reconcile.summary(report)


def chart_svg(report: pd.DataFrame, *, title: str | None = None, salt: str = "opskit") -> str:
    """:func:`status_chart` as an inline ``<svg>`` element (text as paths: no fonts needed)."""
    import matplotlib

    fig = status_chart(report, title=title)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        render_figure(fig, buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)  # RDF boilerplate
    return text[text.index("<svg") :]


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1f2933;
margin:0;background:#f5f7fa}
header{background:#243b53;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:22px}
header .meta{margin:0;color:#d9e2ec;font-size:13px}
main{padding:8px 28px 40px}
section.report{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:8px 20px 20px;
margin:20px 0}
h2{font-size:19px;margin:12px 0 4px}
h3{font-size:15px;margin:18px 0 6px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0}
.card{border:1px solid #d9e2ec;border-radius:6px;padding:8px 14px;min-width:120px;background:#fff}
.card b{display:block;font-size:20px}
.card.bad b{color:#b42318}.card.warn b{color:#b54708}.card.good b{color:#2f7d32}
.chart svg{max-width:100%;height:auto}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 8px;text-align:left;white-space:nowrap}
th{background:#f0f4f8;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
div.wrap{white-space:normal;width:360px}
td.zero{color:#bcccdc}
td.hot{background:#fff4e5;font-weight:600}
td.err{background:#fde8e8;font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-size:12px}
.filter{margin:6px 0 8px}
.filter select{font-size:13px;padding:2px 4px}
dl.help{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}
dl.help dt{font-weight:600}dl.help dd{margin:0;color:#52606d}
"""

_JS = """
document.querySelectorAll('select.status-filter').forEach(function (sel) {
  var table = document.getElementById(sel.dataset.table);
  var label = document.getElementById(sel.dataset.count);
  function apply() {
    var v = sel.value, shown = 0, rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var s = rows[i].dataset.status;
      var show = v === '*' || (v === '!match' ? s !== 'match' : s === v);
      rows[i].hidden = !show;
      if (show) shown++;
    }
    label.textContent = shown + ' of ' + rows.length + ' rows shown';
  }
  sel.addEventListener('change', apply);
  apply();
});
document.querySelectorAll('a[data-filter]').forEach(function (a) {
  a.addEventListener('click', function () {
    var sel = document.getElementById(a.dataset.select);
    sel.value = a.dataset.filter;
    sel.dispatchEvent(new Event('change'));
  });
});
"""


def _esc(value: Any) -> str:
    value = _cell(value)
    return "" if value is None else html.escape(str(value))


def to_html(
    reports: Mapping[str, pd.DataFrame],
    *,
    title: str = "opskit reconciliation report",
    meta: Mapping[str, str] | None = None,
) -> str:
    """One self-contained HTML page: no scripts, styles, fonts or images from the network."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta_text = " · ".join(
        [f"generated {generated}"] + [f"{k}: {_esc(v)}" for k, v in (meta or {}).items()]
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
        f'<header><h1>{_esc(title)}</h1><p class="meta">{meta_text}</p></header><main>',
    ]
    sums = summaries(reports)
    seen: list[str] = []
    for name, df in reports.items():
        parts.append(_html_section(name, df, sums.get(name)))
        if "status" in df.columns:
            seen += [s for s in status_counts(df) if s not in seen]
    if seen:
        items = "".join(
            f"<dt>{_badge(s)}</dt><dd>{_esc(STATUS_HELP.get(s, ''))}</dd>" for s in seen
        )
        parts.append(f'<section class="report"><h2>What the statuses mean</h2>'
                     f'<dl class="help">{items}</dl></section>')  # fmt: skip
    parts.append(f"</main><script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def _badge(status: str) -> str:
    color = _COLORS.get(status, "#888888")
    return f'<span class="badge" style="background:{color}">{_esc(status)}</span>'


def _html_section(name: str, df: pd.DataFrame, summary: pd.DataFrame | None) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
    out = [f'<section class="report" id="report-{slug}"><h2>{_esc(name.capitalize())}</h2>']
    has_status = "status" in df.columns
    if has_status:
        counts = status_counts(df)
        total = len(df)
        matched = counts.get("match", 0)
        failed = counts.get("shop_error", 0)
        attention = total - matched
        cards = [
            ("", "rows", total),
            ("good", "match", matched),
            ("warn" if attention else "good", "need attention", attention),
            ("bad" if failed else "good", "of which shop_error (Stripe failed)", failed),
        ]
        out.append(
            '<div class="cards">'
            + "".join(f'<div class="card {c}"><b>{v}</b>{_esc(t)}</div>' for c, t, v in cards)
            + "</div>"
        )
    if summary is not None and len(summary):
        out.append(f'<div class="chart" id="chart-{slug}">{chart_svg(df, salt=slug)}</div>')
        out.append("<h3>Summary by shop</h3>")
        out.append(_summary_table(summary, slug))
    out.append("<h3>Findings</h3>" if has_status else "<h3>Rows</h3>")
    table_id = f"findings-{slug}"
    if has_status:
        counts = status_counts(df)
        options = [
            ("!match", f"needs attention (all but match) — {len(df) - counts.get('match', 0)}")
        ]
        options += [("*", f"all statuses — {len(df)}")]
        options += [(s, f"{s} — {n}") for s, n in counts.items()]
        opts = "".join(f'<option value="{_esc(v)}">{_esc(t)}</option>' for v, t in options)
        out.append(
            f'<div class="filter"><label>Status: <select class="status-filter" '
            f'id="filter-{slug}" data-table="{table_id}" data-count="count-{slug}">{opts}'
            f'</select></label> <span id="count-{slug}"></span></div>'
        )
    df = _view_order(df)
    out.append(f'<div class="scroll"><table class="findings" id="{table_id}"><thead><tr>')
    out.append("".join(f"<th>{_esc(c)}</th>" for c in df.columns) + "</tr></thead><tbody>")
    columns = list(df.columns)
    status_at = columns.index("status") if has_status else -1
    money = _money_cells(df)  # amounts shown as "USD 9.00", the minor units in the title
    rows = []
    for n, rec in enumerate(df.itertuples(index=False, name=None)):
        attr = f' data-status="{_esc(rec[status_at])}"' if has_status else ""
        cells = []
        for i, v in enumerate(rec):
            col = columns[i]
            if i == status_at:
                cells.append(f"<td>{_badge(str(v))}</td>")
            elif col == "dashboard_url" and _is_dashboard_link(v):
                cells.append(
                    f'<td><a href="{_esc(v)}" target="_blank" rel="noopener noreferrer">'
                    "open in Stripe</a></td>"
                )
            elif col in _WRAPPED:
                cells.append(f'<td><div class="wrap">{_esc(v)}</div></td>')
            elif col in money and money[col][n]:
                cells.append(
                    f'<td class="num" title="{_esc(v)} minor units">{_esc(money[col][n])}</td>'
                )
            else:
                cells.append(f"<td>{_esc(v)}</td>")
        rows.append(f"<tr{attr}>{''.join(cells)}</tr>")
    out.append("".join(rows) + "</tbody></table></div></section>")
    return "\n".join(out)


# What a reader needs beside a finding's status, so it is on screen without scrolling.
_BESIDE_STATUS = (
    "unit_amount",
    "currency",
    "interval",
    "current_period_end_at",
    "dashboard_url",
    "detail",
    "suggested_action",
)
_WRAPPED = ("detail", "suggested_action")  # prose: wrapped, so the row stays readable


def _view_order(df: pd.DataFrame) -> pd.DataFrame:
    """Columns as the HTML view shows them: the reason, money and link right after status."""
    cols = list(df.columns)
    if "status" not in cols:
        return df
    beside = [c for c in _BESIDE_STATUS if c in cols]
    rest = [c for c in cols if c not in beside]
    at = rest.index("status") + 1
    return df[rest[:at] + beside + rest[at:]]


def _summary_table(summary: pd.DataFrame, slug: str) -> str:
    statuses = [c for c in summary.columns if c not in ("shop_id", "shop_name", "total")]
    head = "".join(
        f"<th>{_esc(c).replace('_', '_<wbr>')}</th>"
        for c in ["shop_id", "shop", *statuses, "total"]
    )
    body = []
    for rec in summary.to_dict("records"):
        cells = [
            f'<td class="num">{_esc(rec["shop_id"])}</td>',
            f"<td>{_esc(rec['shop_name'])}</td>",
        ]
        for s in statuses:
            n = int(rec[s])
            if not n:
                cells.append('<td class="num zero">0</td>')
                continue
            cls = "num" if s == "match" else "num err" if s == "shop_error" else "num hot"
            link = (
                f'<a href="#findings-{slug}" data-filter="{_esc(s)}" '
                f'data-select="filter-{slug}">{n}</a>'
            )
            cells.append(f'<td class="{cls}">{link}</td>')
        cells.append(f'<td class="num">{int(rec["total"])}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="summary" id="summary-{slug}"><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
    )


# Re-exported for callers that want the status orders next to the exit-code rules.
STATUS_ORDERS = {"customers": CUSTOMER_STATUSES, "subscriptions": SUBSCRIPTION_STATUSES}
