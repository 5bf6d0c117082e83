"""The subscription panel: an account's subscriptions; cancel now or at period end; create."""

from __future__ import annotations

from typing import Any

import ipywidgets as w
import pandas as pd

from opskit.faces.widgets._common import (
    Confirm,
    Message,
    Progress,
    account_choices,
    account_picker,
    default_actor,
    esc,
    frame_html,
    guarded,
    heading,
    live_names,
    live_now,
    no_account_found,
    set_options,
)
from opskit.ops import Ops

_ENDED = ("canceled", "incomplete_expired")


def _money(amount: Any, currency: Any) -> str:
    from opskit.core.money import format_money

    if pd.isna(amount) or pd.isna(currency):
        return ""
    return format_money(int(amount), str(currency))


def price_choices(prices: pd.DataFrame) -> list[tuple[str, str]]:
    """The shop's active recurring prices: ``("USD 9.00 / month (price_…)", id)``."""
    if not len(prices):
        return []
    usable = prices["active"].fillna(True).astype(bool) & prices["interval"].notna()
    prices = prices[usable]
    out = []
    for row in prices.sort_values(["unit_amount", "stripe_price_id"]).itertuples(index=False):
        every = f" / {row.interval}" if isinstance(row.interval, str) else ""
        label = f"{_money(row.unit_amount, row.currency)}{every} ({row.stripe_price_id})"
        out.append((label, str(row.stripe_price_id)))
    return out


def list_subscriptions(ops: Ops, shop_id: str) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """The shop's subscriptions and prices and, when Stripe refused or failed, why.

    A shop whose key Stripe rejected must not read as "no subscriptions".
    """
    subs = ops.subscriptions([shop_id], progress=False)
    error = subs.attrs["shop_errors"].get(shop_id)
    prices = ops.prices([shop_id], progress=False) if error is None else subs.iloc[:0]
    return subs, prices, error


class SubscriptionPanel(w.VBox):
    """One account's Stripe subscriptions in its shop: cancel or create."""

    def __init__(self, ops: Ops, *, actor: str | None = None) -> None:
        self.ops = ops
        self.last_result: dict[str, Any] | None = None
        self._accounts = pd.DataFrame()
        self._shop_subs = pd.DataFrame()
        self.subscriptions = pd.DataFrame()  # the selected account's, as shown

        self.shops_frame = ops.shops()
        self.shop, self.live_badge, self.search, self.account = account_picker(self.shops_frame)
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.progress = Progress()
        self.message = Message()
        self.log_output = w.Output()
        self.local = w.HTML()
        self.table = w.HTML()
        self.subscription = w.Dropdown(
            options=[],
            description="Subscription",
            layout=w.Layout(width="420px"),
            style={"description_width": "initial"},
        )
        self.cancel_end_button = w.Button(
            description="Cancel at period end…", icon="calendar-times-o",
            layout=w.Layout(width="200px"),
        )  # fmt: skip
        self.cancel_now_button = w.Button(
            description="Cancel now…", button_style="danger", icon="ban"
        )
        self.price = w.Dropdown(options=[], description="Price", layout=w.Layout(width="420px"))
        self.force = w.Checkbox(
            value=False, description="allow a second live subscription (double billing risk)",
            indent=False, layout=w.Layout(width="auto"),
        )  # fmt: skip
        self.create_button = w.Button(
            description="Create subscription…", button_style="primary", icon="plus",
            layout=w.Layout(width="200px"),
        )  # fmt: skip
        self.actor = w.Text(value=actor or default_actor(), description="Actor")
        self.confirm = Confirm()

        super().__init__(
            [
                heading("Subscription fixes"),
                self.shop,
                self.live_badge,
                self.search,
                w.HBox([self.account, self.refresh_button]),
                self.progress,
                self.local,
                self.table,
                w.HBox([self.subscription, self.cancel_end_button, self.cancel_now_button]),
                w.HBox([self.price, self.create_button]),
                self.force,
                self.actor,
                self.confirm,
                self.message,
                self.log_output,
            ]
        )
        self.add_class("opskit-subscriptions")

        writes = (self.cancel_end_button, self.cancel_now_button, self.create_button)
        load_shop = guarded(self.message, self.refresh_button, *writes, log_out=self.log_output)(
            self._load_shop
        )
        self.shop.observe(lambda _c: load_shop(), names="value")
        self.refresh_button.on_click(lambda _b: load_shop())
        self.search.observe(lambda _c: self._filter_accounts(), names="value")
        self.account.observe(lambda _c: self._subject_changed(), names="value")
        self.cancel_end_button.on_click(lambda _b: self.ask_cancel(at_period_end=True))
        self.cancel_now_button.on_click(lambda _b: self.ask_cancel(at_period_end=False))
        self.create_button.on_click(lambda _b: self.ask_create())
        # Any change to what the open question describes withdraws it: Confirm runs what was asked.
        for field in (self.account, self.subscription, self.price, self.force, self.actor):
            field.observe(lambda _c: self.confirm.reset(), names="value")
        load_shop()

    # -- loading -------------------------------------------------------------------------

    def _load_shop(self) -> None:
        shop_id = self.shop.value
        self.message.clear()
        self.confirm.reset()
        self.live_badge.update(live_names(self.shops_frame, [shop_id] if shop_id else []))
        self._accounts = self.ops.accounts([shop_id])
        self._shop_subs = pd.DataFrame()
        self.price.options = []
        self._filter_accounts()  # shows the account with what is loaded so far (nothing)
        problem = self._key_problem(shop_id)
        if problem:
            self.show_account()
            self.message.show(
                "warning",
                f"Shop {self.shop.label}: {problem}; its Stripe subscriptions cannot be listed.",
                "Set a secret key (sk_test_... or sk_live_...) in the shop's row.",
            )
            return
        self.progress.start(1, "listing the shop's subscriptions in Stripe…")
        subs, prices, error = list_subscriptions(self.ops, shop_id)
        self._shop_subs = subs
        set_options(self.price, price_choices(prices) if error is None else [])
        self.show_account()
        if error:
            self.progress.done("failed", ok=False)
            self.message.show(
                "error",
                f"Stripe refused or failed for shop {self.shop.label}: {error}",
                "Check the shop's stripe_secret_key, or try again if Stripe was unreachable.",
            )
            return
        self.progress.done(f"{len(subs)} subscription(s) in this shop")

    def _key_problem(self, shop_id: str) -> str | None:
        row = self.shops_frame[self.shops_frame["shop_id"].eq(shop_id)]
        problem = row["key_problem"].iloc[0] if len(row) else None
        return None if pd.isna(problem) else str(problem)

    def _filter_accounts(self) -> None:
        if not len(self._accounts):
            self.account.options = []
            return
        options = account_choices(self._accounts, self.search.value)
        set_options(self.account, options)
        if not options and self.search.value.strip():
            no_account_found(
                self.message, self.ops.accounts(), self.search.value, str(self.shop.label)
            )

    def _subject_changed(self) -> None:
        """Another account: what was said about the previous one goes, then show this one."""
        self.message.clear()
        self.last_result = None
        guarded(self.message)(self.show_account)()

    def _account_row(self) -> pd.Series | None:
        if self.account.value is None or not len(self._accounts):
            return None
        hit = self._accounts[self._accounts["account_id"].eq(self.account.value)]
        return hit.iloc[0] if len(hit) else None

    def show_account(self) -> None:
        """Show the selected account's local record and its Stripe subscriptions."""
        row = self._account_row()
        if row is None:
            self.local.value = self.table.value = ""
            self.subscription.options = []
            self.subscriptions = pd.DataFrame()
            return
        customer = row["stripe_customer_id"]
        local = {
            "customer": customer,
            "recorded subscription": row["stripe_subscription_id"],
            "recorded status": row["subscription_status"],
            "recorded price": row["stripe_price_id"],
        }
        self.local.value = "Local record: " + ", ".join(
            f"{k} <code>{esc(v)}</code>" for k, v in local.items()
        )
        if pd.isna(customer) or not len(self._shop_subs):
            subs = self._shop_subs.head(0)
        else:
            subs = self._shop_subs[self._shop_subs["stripe_customer_id"].eq(customer)]
        subs = subs.reset_index(drop=True)
        self.subscriptions = subs
        if not len(subs):
            self.table.value = "<p><i>no Stripe subscriptions for this account</i></p>"
        else:
            view = pd.DataFrame(
                {
                    "subscription": subs["stripe_subscription_id"],
                    "status": subs["status"],
                    "price": subs["stripe_price_id"],
                    "amount": [
                        _money(a, c)
                        for a, c in zip(subs["unit_amount"], subs["currency"], strict=True)
                    ],
                    "interval": subs["interval"],
                    "cancel_at_period_end": subs["cancel_at_period_end"],
                    "period_end": subs["current_period_end_at"].dt.strftime("%Y-%m-%d"),
                }
            )
            self.table.value = frame_html(view, css_class="opskit-subs")
        live = subs[~subs["status"].isin(_ENDED)] if len(subs) else subs
        set_options(
            self.subscription,
            [
                (f"{r['stripe_subscription_id']} ({r['status']})", str(r["stripe_subscription_id"]))
                for r in live.to_dict("records")
            ],
        )

    # -- writes --------------------------------------------------------------------------

    def ask_cancel(self, *, at_period_end: bool) -> None:
        sid = self.subscription.value
        if sid is None:
            self.message.show(
                "warning", "No subscription selected.", "Pick an account with a live subscription."
            )
            return
        when = "at the end of its current period" if at_period_end else "NOW (no further billing)"
        self.message.clear()
        live = live_now(self.ops, self.shop.value)  # decided now, confirmed as asked
        self.confirm.ask(
            f"Cancel subscription {sid} of {self.account.label} in shop {self.shop.label} {when}?",
            guarded(self.message, *self._writes(), log_out=self.log_output)(
                lambda: self.cancel(sid, at_period_end=at_period_end, confirmed_live=live)
            ),
            live=live,
            yes="Cancel subscription" if at_period_end else "Cancel subscription now",
            no="Keep it",
        )

    def cancel(
        self, subscription_id: str, *, at_period_end: bool, confirmed_live: bool = False
    ) -> None:
        sub = self.ops.cancel_subscription(
            subscription_id,
            shop_id=str(self.shop.value),
            at_period_end=at_period_end,
            actor=self.actor.value,
            confirm=confirmed_live,
        )
        self.last_result = sub
        self._reload()
        how = "will cancel at period end" if sub.get("cancel_at_period_end") else sub.get("status")
        self.message.show("success", f"Subscription {subscription_id}: {how}.")

    def ask_create(self) -> None:
        price = self.price.value
        if self.account.value is None or price is None:
            self.message.show(
                "warning", "Pick an account and a price first.", "Search the account by email."
            )
            return
        # What Stripe would refuse (or opskit's guard would) is said before asking, not after.
        row = self._account_row()
        if row is not None and pd.isna(row["stripe_customer_id"]):
            self.message.show(
                "warning",
                "This account has no Stripe customer yet, so it cannot be subscribed.",
                "Create its customer with the payment panel's Create Stripe customer button, "
                "then press Refresh here.",
            )
            return
        live = self.subscriptions
        if len(live):
            live = live[~live["status"].isin(_ENDED)]
        if len(live) and not self.force.value:
            ids = ", ".join(str(i) for i in live["stripe_subscription_id"])
            self.message.show(
                "warning",
                f"This customer already has a live subscription ({ids}): a second one bills twice.",
                "Cancel it above first, or tick 'allow a second live subscription' and press "
                "Create subscription again.",
            )
            return
        account_id = self.account.value
        self.message.clear()
        live = live_now(self.ops, self.shop.value)
        self.confirm.ask(
            f"Subscribe {self.account.label} to {self.price.label} in shop {self.shop.label}?",
            guarded(self.message, *self._writes(), log_out=self.log_output)(
                lambda: self.create(account_id, str(price), confirmed_live=live)
            ),
            live=live,
            yes="Create subscription",
            no="Don't create",
        )

    def create(self, account_id: Any, price_id: str, *, confirmed_live: bool = False) -> None:
        sub = self.ops.create_subscription(
            account_id,
            price_id,
            actor=self.actor.value,
            confirm=confirmed_live,
            force=self.force.value,
        )
        self.last_result = sub
        self._reload()
        self.message.show("success", f"Created subscription {sub['id']} ({sub.get('status')}).")

    def _writes(self) -> tuple[w.Button, ...]:
        return (self.cancel_end_button, self.cancel_now_button, self.create_button)

    def _reload(self) -> None:
        """Re-read the account (details changed) and the shop's subscriptions."""
        keep = self.account.value
        self._accounts = self.ops.accounts([self.shop.value])
        self._shop_subs = self.ops.subscriptions([str(self.shop.value)], progress=False)
        self._filter_accounts()
        if keep in [v for _, v in self.account.options]:
            self.account.value = keep
        self.show_account()


def subscription_panel(ops: Ops, *, actor: str | None = None) -> SubscriptionPanel:
    """A panel to inspect, cancel and create one account's subscriptions."""
    return SubscriptionPanel(ops, actor=actor)
