"""The sync panel: build a plan (dry run), review and untick rows, apply with confirmation.

Each plan row is a checkbox with its reason beside it, so unticking one row leaves
the others ticked; after Apply the spent plan leaves the screen and the result shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as w
import pandas as pd

from opskit.faces.widgets._common import (
    CheckList,
    Confirm,
    Message,
    Progress,
    default_actor,
    frame_html,
    guarded,
    heading,
    shop_choices,
)
from opskit.ops import Ops


def _short(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "(absent)"
    return str(value)


def plan_label(row: Mapping[Any, Any]) -> str:
    """One plan row as a line, its reason beside it:
    ``#1003 (shop 1): subscription_status active -> canceled  [status_drift: why]``."""
    reason = row.get("reason")
    why = f": {reason}" if isinstance(reason, str) and reason else ""
    return (
        f"#{row['account_id']} (shop {row['shop_id']}): {row['key']} "
        f"{_short(row['old_value'])} -> {_short(row['new_value'])}  "
        f"[{row['source_status']}{why}]"
    )


class SyncPanel(w.VBox):
    """Pull Stripe's state into local account details, reviewed and audited."""

    def __init__(self, ops: Ops, *, actor: str | None = None) -> None:
        self.ops = ops
        self.plan: pd.DataFrame | None = None  # the last dry run
        self.result: pd.DataFrame | None = None  # the last apply
        self.audit_ids: list[int] = []

        shops = ops.shops()
        usable = shops[shops["key_problem"].isna()]
        choices = shop_choices(shops)
        self.shops = w.SelectMultiple(
            options=choices,
            value=tuple(str(i) for i in usable["shop_id"]),
            rows=min(len(choices), 8),
            description="Shops",
            layout=w.Layout(width="420px"),
        )
        self.plan_button = w.Button(
            description="Build plan (dry run)", button_style="primary", icon="search",
            layout=w.Layout(width="200px"),
        )  # fmt: skip
        self.progress = Progress()
        self.message = Message()
        self.log_output = w.Output()
        self.plan_table = w.HTML()  # the plan's heading; the rows are the checkboxes below
        self.rows = CheckList(css_class="opskit-plan")
        self.select_all_button = w.Button(description="Tick all", disabled=True)
        self.select_none_button = w.Button(description="Untick all", disabled=True)
        self.actor = w.Text(value=actor or default_actor(), description="Actor")
        self.apply_button = w.Button(
            description="Apply ticked…",
            button_style="warning",
            icon="pencil",
            disabled=True,
            layout=w.Layout(width="auto"),
        )
        self.confirm = Confirm()
        self.result_table = w.HTML()

        super().__init__(
            [
                heading("Sync local details from Stripe"),
                w.HBox([self.shops, self.plan_button]),
                self.progress,
                self.message,
                self.log_output,
                self.plan_table,
                self.rows,
                w.HBox([self.select_all_button, self.select_none_button]),
                w.HBox([self.actor, self.apply_button]),
                self.confirm,
                self.result_table,
            ]
        )
        self.add_class("opskit-sync")

        build = guarded(
            self.message, self.plan_button, log_out=self.log_output, after=self._update_apply
        )(self.build_plan)
        self.plan_button.on_click(lambda _b: build())
        self.apply_button.on_click(lambda _b: self.ask_apply())
        self.select_all_button.on_click(lambda _b: self._select(all_rows=True))
        self.select_none_button.on_click(lambda _b: self._select(all_rows=False))
        self.rows.observe(lambda _c: self._update_apply(), names="value")
        # A changed selection (or actor) withdraws the open question: Confirm runs what was asked.
        for field in (self.rows, self.actor):
            field.observe(lambda _c: self.confirm.reset(), names="value")

    def build_plan(self) -> None:
        """The dry run: what would change, nothing written."""
        ids = list(self.shops.value)
        if not ids:
            self.message.show("warning", "No shop selected.", "Pick one or more shops above.")
            return
        self.message.clear()
        self.confirm.reset()
        self.result_table.value = ""
        self.result = None
        self.progress.start(2, f"reconciling {len(ids)} shop(s) with Stripe (nothing is written)…")
        try:
            plan = self.ops.sync_plan(ids, progress=False)
        except Exception:
            self.progress.done("failed", ok=False)
            raise
        self.progress.step()
        self.plan = plan.reset_index(drop=True)
        options = [(plan_label(row), i) for i, row in enumerate(self.plan.to_dict("records"))]
        self.rows.options = options
        self.rows.value = tuple(v for _, v in options)
        self.plan_table.value = (
            f"<b>Proposed changes ({len(options)})</b> <small>untick a row to leave it "
            "out; the reason is in brackets</small>"
            if options
            else ""
        )
        self.select_all_button.disabled = self.select_none_button.disabled = not options
        self._update_apply()
        self.progress.done(f"{len(self.plan)} proposed change(s)")
        if options:
            self.message.show(
                "info",
                f"Dry run: {len(options)} change(s) proposed, nothing written yet.",
                "Untick any row you do not want, then press Apply.",
            )
        else:
            self.message.show("success", "Nothing to sync: local details agree with Stripe.")

    def selected(self) -> pd.DataFrame:
        """The plan rows still selected for apply."""
        if self.plan is None:
            return pd.DataFrame()
        return self.plan.loc[sorted(self.rows.value)]

    def ask_apply(self) -> None:
        rows = self.selected()
        if not len(rows):
            self.message.show("warning", "No row ticked.", "Tick the changes to apply.")
            return
        shops = sorted({str(s) for s in rows["shop_id"]})
        self.message.clear()
        self.confirm.ask(
            f"Write {len(rows)} change(s) to the local account details of shop(s) "
            f"{', '.join(shops)} as {self.actor.value!r}? Each is audited.",
            guarded(self.message, self.apply_button, self.plan_button, after=self._update_apply)(
                self.apply
            ),
            yes=f"Apply {len(rows)} change(s)",
            no="Go back",
        )

    def apply(self) -> None:
        """Apply the selected rows (after confirmation) and show the audit ids."""
        rows = self.selected()
        result = self.ops.apply_sync(rows, actor=self.actor.value)
        self.result = result
        self.audit_ids = [int(a) for a in result["audit_id"].dropna()]
        outcomes = result["outcome"].value_counts().to_dict()
        self.result_table.value = "<h4>Applied</h4>" + frame_html(
            result[
                ["account_id", "key", "old_value", "new_value", "outcome", "audit_id", "detail"]
            ],
            css_class="opskit-sync-result",
        )
        # The plan is spent: applying it again would only produce stale rows. It leaves
        # the screen, so what is on show is what happened.
        self.plan = None
        self.rows.options = []
        self.plan_table.value = ""
        self.select_all_button.disabled = self.select_none_button.disabled = True
        self.apply_button.disabled = True
        counts = ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
        ids = ", ".join(map(str, self.audit_ids)) or "none"
        kind = "success" if set(outcomes) <= {"applied", "already_applied"} else "warning"
        guidance = (
            ""
            if kind == "success"
            else "Stale rows changed since the plan was built: press Build plan again and "
            "review it."
        )
        self.message.show("success" if kind == "success" else "warning",
                          f"Sync done: {counts}. Audit ids: {ids}.", guidance)  # fmt: skip

    def _select(self, *, all_rows: bool) -> None:
        self.rows.value = tuple(v for _, v in self.rows.options) if all_rows else ()

    def _update_apply(self) -> None:
        n = len(self.rows.value)
        self.apply_button.disabled = n == 0
        self.apply_button.description = f"Apply {n} ticked…" if n else "Apply ticked…"


def sync_panel(ops: Ops, *, actor: str | None = None) -> SyncPanel:
    """A panel to review and apply :meth:`Ops.sync_plan` changes; writes are audited."""
    return SyncPanel(ops, actor=actor)
