"""The Money panel: a period and shops in; payments, payouts, daily totals and a chart per shop out.

Everything comes from one :meth:`opskit.Ops.money_report` read, the same the
``opskit money`` command makes; **Export Excel** writes one sheet per report.
"""

from __future__ import annotations

import io
from pathlib import Path

import ipywidgets as w
import pandas as pd

from opskit.core.payments import money_summary
from opskit.faces.widgets._common import (
    Message,
    Progress,
    frame_html,
    guarded,
    heading,
    shop_choices,
)
from opskit.ops import Ops

TABS = ("payments", "payouts", "payout_report", "daily_overview", "daily_by_currency")


class MoneyPanel(w.VBox):
    """Period x shops -> the money frames, a chart per shop, an Excel export."""

    def __init__(self, ops: Ops, *, export_dir: str | Path | None = None) -> None:
        self.ops = ops
        self.export_dir = Path(export_dir) if export_dir is not None else Path.cwd()
        self.frames: dict[str, pd.DataFrame] | None = None
        self.exported: list[Path] = []
        choices = shop_choices(ops.shops())
        self.period = w.Text(
            value=pd.Timestamp.now(tz="UTC").strftime("%Y-%m"),
            description="Period",
            placeholder="2026-11",
        )
        self.shops = w.SelectMultiple(
            options=choices,
            value=tuple(v for _, v in choices),
            rows=min(len(choices), 8),
            description="Shops",
            layout=w.Layout(width="420px"),
        )
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.progress = Progress()
        self.message = Message()
        self.log_output = w.Output()
        self.summary = w.HTML()
        self.tables = {name: w.HTML() for name in TABS}
        self.tabs = w.Tab(children=[self.tables[n] for n in TABS])
        for i, name in enumerate(TABS):
            self.tabs.set_title(i, name.replace("_", " "))
        self.charts = w.VBox()
        self.export_name = w.Text(value="money", description="File name")
        self.export_button = w.Button(description="Export Excel", icon="download", disabled=True)
        self.export_path = w.HTML()
        super().__init__(
            [
                heading("Money: orders, payments, payouts and the ledger per shop"),
                w.HBox([self.shops, w.VBox([self.period, self.run_button])]),
                self.progress,
                self.message,
                self.log_output,
                self.summary,
                self.tabs,
                self.charts,
                w.HBox([self.export_name, self.export_button]),
                self.export_path,
            ]
        )
        self.add_class("opskit-money")
        buttons = (self.run_button, self.export_button)
        run = guarded(self.message, *buttons, log_out=self.log_output)(self.run)
        export = guarded(self.message, *buttons)(self.export)
        self.run_button.on_click(lambda _b: run())
        self.export_button.on_click(lambda _b: export())

    def run(self) -> None:
        """Read the period's money of the chosen shops and show every frame."""
        from opskit.reports.files import status_counts
        from opskit.reports.money import money_chart, run_money

        ids = list(self.shops.value)
        if not ids:
            self.message.show("warning", "No shop selected.", "Pick one or more shops above.")
            return
        self.message.clear()
        self.export_path.value = ""
        self.progress.start(2, f"reading the money of {len(ids)} shop(s) from Stripe…")
        try:
            frames = run_money(self.ops, self.period.value.strip(), ids, progress=False)
        except Exception:
            self.progress.done("failed", ok=False)
            self.frames = None
            self.export_button.disabled = True
            raise
        self.progress.step("building tables and charts…")
        self.frames = frames
        payments = frames["payments"]
        self.summary.value = frame_html(money_summary(payments).reset_index())
        for name in TABS:
            self.tables[name].value = frame_html(frames[name], css_class=f"opskit-{name}")
        images = []
        daily = frames["daily_overview"]
        for shop_id in sorted(daily["shop_id"].dropna().unique()):
            fig = money_chart(daily, str(shop_id), title=f"Shop {shop_id}: money per day")
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=80)
            images.append(w.Image(value=buf.getvalue(), format="png"))
        self.charts.children = images
        self.export_button.disabled = False
        counts = status_counts(payments)
        self.progress.done(f"{len(payments)} payment findings, {len(frames['payouts'])} payouts")
        if counts.get("shop_error"):
            self.message.show(
                "warning",
                "Stripe refused or failed for some shops: their rows have status shop_error.",
                "Read the detail column of the shop_error rows (it names the request id).",
            )
        else:
            self.message.show("success", f"Money of {self.period.value}: {len(payments)} rows.")

    def export(self) -> None:
        """Write every frame to one workbook (one sheet per report); show the path."""
        from opskit.reports.money import write_money

        if self.frames is None:
            self.message.show("warning", "Nothing to export yet.", "Press Run first.")
            return
        stem = self.export_name.value.strip() or "money"
        written = write_money(self.frames, (self.export_dir / stem).with_suffix(".xlsx"), "xlsx")
        self.exported = [p.resolve() for p in written]
        where = ", ".join(str(p) for p in self.exported)
        self.export_path.value = f"Wrote <code>{where}</code>"
        self.message.show("success", f"Exported the money report to {where}")


def money_panel(ops: Ops, *, export_dir: str | Path | None = None) -> MoneyPanel:
    """A panel for a period's money over chosen shops (exports to ``export_dir``, default cwd)."""
    return MoneyPanel(ops, export_dir=export_dir)
