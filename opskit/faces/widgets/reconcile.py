"""The reconcile panel: pick shops and a report, run it, filter, chart and export."""

from __future__ import annotations

import io
from pathlib import Path

import ipywidgets as w
import pandas as pd

from opskit.faces.widgets._common import (
    LiveBadge,
    Message,
    Progress,
    finding_view,
    frame_html,
    guarded,
    heading,
    live_names,
    shop_choices,
)
from opskit.ops import Ops

REPORTS = {"customers": "Customers", "subscriptions": "Subscriptions"}
ALL = ""  # status filter value: every row
ATTENTION = "!match"  # status filter value: every row but `match`


class ReconcilePanel(w.VBox):
    """Shops x report -> findings table, per-shop chart, CSV/Excel export."""

    def __init__(self, ops: Ops, *, export_dir: str | Path | None = None) -> None:
        from opskit.common.config import export_dir as default_export_dir

        self.ops = ops
        self.export_dir = Path(export_dir) if export_dir is not None else default_export_dir()
        self.report: pd.DataFrame | None = None  # the last run's full report
        self.report_name = "customers"
        self.exported: list[Path] = []

        self.shops_frame = ops.shops()
        choices = shop_choices(self.shops_frame)
        self.shops = w.SelectMultiple(
            options=choices,
            value=tuple(v for _, v in choices),
            rows=min(len(choices), 8),
            description="Shops",
            layout=w.Layout(width="420px"),
        )
        self.report_choice = w.ToggleButtons(
            options=[(label, name) for name, label in REPORTS.items()],
            value="customers",
            description="Report",
        )
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.live_badge = LiveBadge()
        self.progress = Progress()
        self.message = Message()
        self.log_output = w.Output()
        self.status_filter = w.Dropdown(
            options=[("all rows", ALL)], value=ALL, description="Status", disabled=True
        )
        self.count = w.Label("")
        self.summary = w.HTML()
        # Hidden until there is a chart: an empty image shows as a broken-image icon.
        self.chart = w.Image(format="png", layout=w.Layout(max_width="900px", display="none"))
        self.table = w.HTML()
        self.export_name = w.Text(value="report", description="File name")
        self.export_folder = w.Text(
            value=str(self.export_dir), description="Folder", layout=w.Layout(width="520px")
        )
        self.export_csv_button = w.Button(description="Export CSV", icon="download", disabled=True)
        self.export_excel_button = w.Button(
            description="Export Excel", icon="file-excel-o", disabled=True
        )
        self.export_path = w.HTML()

        super().__init__(
            [
                heading("Reconcile with each shop's Stripe account"),
                w.HBox([self.shops, w.VBox([self.report_choice, self.run_button])]),
                self.live_badge,
                self.progress,
                self.message,
                self.log_output,
                self.summary,
                self.chart,
                w.HBox([self.status_filter, self.count]),
                self.table,
                w.HBox([self.export_name, self.export_csv_button, self.export_excel_button]),
                self.export_folder,
                self.export_path,
            ]
        )
        self.add_class("opskit-reconcile")

        buttons = (self.run_button, self.export_csv_button, self.export_excel_button)
        run = guarded(self.message, *buttons, log_out=self.log_output)(self.run)
        csv = guarded(self.message, *buttons)(lambda: self.export("csv"))
        xlsx = guarded(self.message, *buttons)(lambda: self.export("xlsx"))
        self.run_button.on_click(lambda _b: run())
        self.export_csv_button.on_click(lambda _b: csv())
        self.export_excel_button.on_click(lambda _b: xlsx())
        self.status_filter.observe(lambda _c: self.show_table(), names="value")
        self.shops.observe(lambda _c: self._update_badge(), names="value")
        # Results of other inputs are not left on show (nor exported as if current).
        for field in (self.shops, self.report_choice):
            field.observe(lambda _c: self._inputs_changed(), names="value")
        self.export_folder.observe(lambda _c: self._set_folder(), names="value")
        self._update_badge()

    # -- actions -------------------------------------------------------------------------

    def run(self) -> None:
        """Run the chosen report over the chosen shops and show it."""
        from opskit.reports.files import status_counts

        ids = list(self.shops.value)
        if not ids:
            self.message.show("warning", "No shop selected.", "Pick one or more shops above.")
            return
        name = self.report_choice.value
        self.message.clear()
        self.export_path.value = ""
        self.progress.start(3, f"fetching {name} from Stripe for {len(ids)} shop(s)…")
        runner = (
            self.ops.reconcile_customers
            if name == "customers"
            else self.ops.reconcile_subscriptions
        )
        try:
            report = runner(ids, progress=False)
        except Exception:
            self.progress.done("failed", ok=False)
            self._clear_result()  # the last good run is for other inputs: not shown, not exported
            raise
        self.progress.step("building the summary and chart…")
        self.report, self.report_name = report, name
        counts = status_counts(report)
        self._show_summary(report)
        self.progress.step()
        options = [(f"all rows ({len(report)})", ALL)]
        attention = len(report) - counts.get("match", 0)
        options.append((f"needs attention ({attention})", ATTENTION))
        options += [(f"{s} ({n})", s) for s, n in counts.items()]
        self.status_filter.options = options
        self.status_filter.value = ALL
        self.status_filter.disabled = False
        self.show_table()
        self.export_csv_button.disabled = False
        self.export_excel_button.disabled = False
        self.progress.done(f"{len(report)} rows from {len(ids)} shop(s)")
        failed = counts.get("shop_error", 0)
        if failed:
            shops = report.loc[report["status"].eq("shop_error"), "shop_name"].dropna().unique()
            self.message.show(
                "warning",
                f"Stripe refused or failed for {len(shops)} shop(s): {', '.join(shops)}. "
                "Their rows have status shop_error; the other shops were reconciled.",
                "The why column beside each shop_error row says what Stripe answered "
                "(with the request id); fix that shop's key or retry, then press Run.",
            )
        else:
            self.message.show("success", f"{name.capitalize()} report: {len(report)} rows.")

    def filtered(self) -> pd.DataFrame:
        """The rows the status filter lets through (empty before the first run)."""
        if self.report is None:
            return pd.DataFrame()
        value = self.status_filter.value
        if value == ALL:
            return self.report
        if value == ATTENTION:
            return self.report[self.report["status"].ne("match")]
        return self.report[self.report["status"].eq(value)]

    def show_table(self) -> None:
        rows = self.filtered()
        if self.report is None:
            return
        self.count.value = f"{len(rows)} of {len(self.report)} rows"
        self.table.value = frame_html(finding_view(rows), css_class="opskit-findings")

    def export(self, fmt: str) -> None:
        """Write the rows shown (filter applied) as CSV or Excel; show the path."""
        from opskit.reports.files import write_report

        if self.report is None:
            self.message.show("warning", "Nothing to export yet.", "Press Run first.")
            return
        stem = self.export_name.value.strip() or "report"
        self.export_dir.mkdir(parents=True, exist_ok=True)
        path = (self.export_dir / stem).with_suffix(f".{fmt}")
        rows = self.filtered()
        written = write_report({self.report_name: rows}, path, fmt)
        self.exported = [p.resolve() for p in written]
        where = ", ".join(str(p) for p in self.exported)
        self.export_path.value = f"Wrote <code>{where}</code>"
        self.message.show("success", f"Exported {len(rows)} rows to {where}")

    # -- helpers -------------------------------------------------------------------------

    def _clear_result(self) -> None:
        self.report = None
        self.summary.value = self.table.value = self.count.value = ""
        self.chart.value = b""
        self.chart.layout.display = "none"
        self.status_filter.disabled = True
        self.export_csv_button.disabled = self.export_excel_button.disabled = True

    def _inputs_changed(self) -> None:
        if self.report is None:
            return
        self._clear_result()
        self.export_path.value = ""
        self.message.show("info", "The shops or the report changed.", "Press Run to see them.")

    def _set_folder(self) -> None:
        text = self.export_folder.value.strip()
        if text:
            self.export_dir = Path(text).expanduser()

    def _show_summary(self, report: pd.DataFrame) -> None:
        from opskit.reports.files import status_chart

        summary = self.ops.summary(report).reset_index()
        keep = [c for c in summary.columns if c in ("shop_id", "shop_name", "total")]
        keep += [
            c for c in summary.columns if c not in keep and int(pd.to_numeric(summary[c]).sum()) > 0
        ]
        order = [c for c in summary.columns if c in keep]
        self.summary.value = frame_html(summary[order], css_class="opskit-summary")
        fig = status_chart(report, title=f"{REPORTS[self.report_name]}: rows per shop and status")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        self.chart.value = buf.getvalue()
        self.chart.layout.display = ""

    def _update_badge(self) -> None:
        self.live_badge.update(live_names(self.shops_frame, list(self.shops.value)))


def reconcile_panel(ops: Ops, *, export_dir: str | Path | None = None) -> ReconcilePanel:
    """A panel to run the customer or subscription report over chosen shops.

    Exports go to ``export_dir`` (default: ``OPSKIT_EXPORT_DIR``, else the per-user
    documents folder's ``opskit``; the panel's Folder field changes it).
    """
    return ReconcilePanel(ops, export_dir=export_dir)
