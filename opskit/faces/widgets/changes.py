"""The "since last refresh" panel: read each shop's Stripe events, show what changed.

**Refresh** calls :meth:`opskit.Ops.refresh` for the chosen shops (a few requests
per shop instead of a full listing) and shows, per shop, how it was read
(``events`` or ``full_read``, with the reason), then the changes: one row per
event of interest with the status the reports give it now. **Since** shows the
changes opskit already knows (refreshes and webhooks) over a period, without
asking Stripe anything.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import pandas as pd

from opskit.faces.widgets._common import Message, Progress, frame_html, guarded, heading
from opskit.faces.widgets._common import shop_choices as _shop_choices
from opskit.ops import Ops

PERIODS = {"the last refresh": None, "24 hours": "1D", "7 days": "7D", "30 days": "30D"}
ATTENTION = "needs attention"
CHANGE_COLUMNS = [
    "shop_id", "created_at", "event_type", "stripe_object_id", "account_id", "report",
    "status", "detail", "outcome", "source",
]  # fmt: skip


class ChangesPanel(w.VBox):
    """Shops -> Refresh -> per-shop reads, gaps and the changes since the last refresh."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops
        self.changes: pd.DataFrame | None = None  # the rows on show, unfiltered
        self.result: Any = None  # the last RefreshResult (ops.refresh)

        choices = _shop_choices(ops.shops())
        self.shops = w.SelectMultiple(
            options=choices,
            value=tuple(v for _, v in choices),
            rows=min(len(choices), 8),
            description="Shops",
            layout=w.Layout(width="420px"),
        )
        self.refresh_button = w.Button(
            description="Refresh", button_style="primary", icon="refresh"
        )
        self.period = w.Dropdown(
            options=list(PERIODS), value="the last refresh", description="Since"
        )
        self.show_button = w.Button(description="Show", icon="history")
        self.only_findings = w.Checkbox(value=True, description=ATTENTION)
        self.progress = Progress()
        self.message = Message()
        self.shop_table = w.HTML()
        self.gap_table = w.HTML()
        self.count = w.Label("")
        self.table = w.HTML()
        super().__init__(
            [
                heading("Since the last refresh"),
                w.HBox([self.shops, w.VBox([self.refresh_button, self.period, self.show_button])]),
                self.progress,
                self.message,
                self.shop_table,
                self.gap_table,
                w.HBox([self.only_findings, self.count]),
                self.table,
            ]
        )
        self.add_class("opskit-changes")
        buttons = (self.refresh_button, self.show_button)
        refresh = guarded(self.message, *buttons)(self.refresh)
        show = guarded(self.message, *buttons)(self.show_since)
        self.refresh_button.on_click(lambda _b: refresh())
        self.show_button.on_click(lambda _b: show())
        self.only_findings.observe(lambda _c: self.show_table(), names="value")

    def refresh(self) -> None:
        """Read the chosen shops' events and show what changed."""
        ids = list(self.shops.value)
        if not ids:
            self.message.show("warning", "No shop selected.", "Pick one or more shops above.")
            return
        self.message.clear()
        self.progress.start(2, f"reading Stripe events of {len(ids)} shop(s)…")
        try:
            result = self.ops.refresh(ids, progress=False)
        except Exception:
            self.progress.done("failed", ok=False)
            raise
        self.progress.step()
        self.result = result
        cols = ["shop_id", "mode", "events_read", "applied", "snapshots", "requests", "error"]
        self.shop_table.value = frame_html(result.shops[cols], css_class="opskit-refresh-shops")
        self.gap_table.value = (
            "<b>Gaps</b>" + frame_html(result.gaps, css_class="opskit-gaps")
            if len(result.gaps)
            else ""
        )
        self.changes = result.changes
        self.show_table()
        self.progress.done(f"{result.requests} Stripe requests")
        failed = result.shops[result.shops["mode"].eq("error")]
        if len(failed):
            self.message.show(
                "warning",
                f"Stripe failed for {len(failed)} shop(s): {', '.join(failed['shop_id'])}. "
                "The other shops were refreshed.",
                "The error column says what Stripe answered; fix that shop's key or retry.",
            )
        else:
            self.message.show("success", f"Refreshed {len(result.shops)} shop(s).")

    def show_since(self) -> None:
        """Show the changes opskit already knows over the chosen period (no Stripe call)."""
        span = PERIODS[self.period.value]
        if span is None:
            self.changes = self.result.changes if self.result is not None else None
            if self.changes is None:
                self.message.show("info", "No refresh yet in this panel.", "Press Refresh.")
                return
        else:
            since = pd.Timestamp.now(tz="UTC") - pd.Timedelta(span)
            self.changes = self.ops.changes(since=since, shop_ids=list(self.shops.value) or None)
        self.message.clear()
        self.show_table()

    def filtered(self) -> pd.DataFrame:
        if self.changes is None:
            return pd.DataFrame(columns=CHANGE_COLUMNS)
        rows = self.changes
        # Only what changed something: not duplicates, stale or ignored events.
        rows = rows[rows["outcome"].isin(["applied", "refetch", "recorded", "superseded"])]
        if self.only_findings.value:
            status = rows["status"].astype("string")
            rows = rows[status.notna() & status.ne("match")]
        return rows

    def show_table(self) -> None:
        rows = self.filtered()
        total = 0 if self.changes is None else len(self.changes)
        self.count.value = f"{len(rows)} of {total} events"
        view = rows[CHANGE_COLUMNS].copy() if len(rows) else pd.DataFrame(columns=CHANGE_COLUMNS)
        if len(view):
            view["created_at"] = view["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
        self.table.value = frame_html(view, css_class="opskit-changes-table")


def changes_panel(ops: Ops) -> ChangesPanel:
    """The "since last refresh" panel over ``ops`` (see :class:`ChangesPanel`)."""
    return ChangesPanel(ops)
