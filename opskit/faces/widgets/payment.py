"""The payment panel: pick a shop and an account, enter an amount, create a PaymentIntent."""

from __future__ import annotations

import uuid
from typing import Any

import ipywidgets as w
import pandas as pd

from opskit.faces.widgets._common import (
    Confirm,
    Message,
    account_choices,
    account_picker,
    default_actor,
    esc,
    guarded,
    heading,
    live_names,
    set_options,
)
from opskit.ops import Ops


class PaymentPanel(w.VBox):
    """Create one PaymentIntent for an account's Stripe customer, in its shop's account."""

    def __init__(self, ops: Ops, *, actor: str | None = None) -> None:
        self.ops = ops
        self.last_result: dict[str, Any] | None = None
        self._nonce = uuid.uuid4().hex  # a new payment only after "New payment"
        self._accounts = pd.DataFrame()

        self.shops_frame = ops.shops()
        self.shop, self.live_badge, self.search, self.account = account_picker(self.shops_frame)
        self.amount = w.IntText(value=0, description="Amount")
        self.currency = w.Text(value="usd", description="Currency", layout=w.Layout(width="180px"))
        self.amount_preview = w.HTML()
        self.description = w.Text(description="Description", placeholder="optional")
        self.actor = w.Text(value=actor or default_actor(), description="Actor")
        self.create_button = w.Button(
            description="Create PaymentIntent…", button_style="primary", icon="credit-card",
            layout=w.Layout(width="220px"),
        )  # fmt: skip
        self.new_button = w.Button(description="New payment", icon="plus")
        self.confirm = Confirm()
        self.message = Message()
        self.result = w.HTML()

        super().__init__(
            [
                heading("Create a PaymentIntent"),
                self.shop,
                self.live_badge,
                self.search,
                self.account,
                w.HBox([self.amount, self.currency, self.amount_preview]),
                w.HTML("<small>Amount in minor units: 1999 = USD 19.99; 500 = JPY 500.</small>"),
                self.description,
                w.HBox([self.actor, self.create_button, self.new_button]),
                self.confirm,
                self.message,
                self.result,
            ]
        )
        self.add_class("opskit-payment")

        self.shop.observe(lambda _c: self._load_accounts(), names="value")
        self.search.observe(lambda _c: self._filter_accounts(), names="value")
        for field in (self.amount, self.currency):
            field.observe(lambda _c: self._preview(), names="value")
        # Any change to what the open question describes withdraws it: Confirm runs what was asked.
        for field in (self.shop, self.account, self.amount, self.currency, self.description,
                      self.actor):  # fmt: skip
            field.observe(lambda _c: self.confirm.reset(), names="value")
        self.create_button.on_click(lambda _b: self.ask_create())
        self.new_button.on_click(lambda _b: self.new_payment())
        guarded(self.message)(self._load_accounts)()
        self._preview()

    # -- inputs --------------------------------------------------------------------------

    def _load_accounts(self) -> None:
        shop_id = self.shop.value
        self.live_badge.update(live_names(self.shops_frame, [shop_id] if shop_id else []))
        self._accounts = self.ops.accounts([shop_id]) if shop_id is not None else pd.DataFrame()
        self._filter_accounts()

    def _filter_accounts(self) -> None:
        if not len(self._accounts):
            self.account.options = []
            return
        set_options(self.account, account_choices(self._accounts, self.search.value))

    def money(self) -> tuple[int, str]:
        """The validated ``(amount, currency)``; raises InvalidAmount."""
        from opskit.core.money import validate_amount

        return validate_amount(self.amount.value, self.currency.value)

    def _preview(self) -> None:
        from opskit.common.exceptions import InvalidAmount
        from opskit.core.money import format_money

        try:
            amount, currency = self.money()
        except InvalidAmount as exc:
            self.amount_preview.value = f'<span style="color:#b42318">{esc(exc.message)}</span>'
            return
        self.amount_preview.value = f"<b>= {esc(format_money(amount, currency))}</b>"

    # -- actions -------------------------------------------------------------------------

    def ask_create(self) -> None:
        from opskit.core.money import format_money

        def ask() -> None:
            amount, currency = self.money()  # InvalidAmount -> shown, nothing asked
            if self.account.value is None:
                self.message.show("warning", "No account selected.", "Search and pick an account.")
                return
            label = self.account.label or str(self.account.value)
            self.message.clear()
            self.confirm.ask(
                f"Create a PaymentIntent of {format_money(amount, currency)} for {label} "
                f"in shop {self.shop.label}?",
                guarded(self.message, self.create_button)(self.create),
                live=self.live_badge.live,
            )

        guarded(self.message)(ask)()

    def create(self) -> None:
        """Create it (called by the confirmation step) and show the result."""
        from opskit.core.money import format_money

        amount, currency = self.money()
        intent = self.ops.create_payment_intent(
            int(self.account.value),
            amount,
            currency,
            description=self.description.value.strip() or None,
            actor=self.actor.value,
            confirm=True,
            nonce=self._nonce,
        )
        replay = self.last_result is not None and self.last_result.get("id") == intent.get("id")
        self.last_result = intent
        shown = format_money(int(intent["amount"]), str(intent["currency"]))
        rows = [
            ("PaymentIntent", intent.get("id")),
            ("status", intent.get("status")),
            ("amount", f"{shown} ({intent['amount']} minor units)"),
            ("customer", intent.get("customer")),
            ("shop", self.shop.label),
        ]
        self.result.value = (
            '<table class="opskit-payment-result">'
            + "".join(
                f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(v)}</td></tr>"
                for k, v in rows
            )  # fmt: skip
            + "</table>"
        )
        if replay:
            self.message.show(
                "info",
                f"Same request as before: Stripe returned the same PaymentIntent {intent['id']}; "
                "nothing was charged twice.",
                "Press New payment to take another payment with the same values.",
            )
        else:
            self.message.show("success", f"Created PaymentIntent {intent['id']} for {shown}.")

    def new_payment(self) -> None:
        """Forget the last payment: the next Create makes a new PaymentIntent."""
        self._nonce = uuid.uuid4().hex
        self.last_result = None
        self.result.value = ""
        self.message.clear()


def payment_panel(ops: Ops, *, actor: str | None = None) -> PaymentPanel:
    """A panel to create a PaymentIntent for one account (amounts in minor units)."""
    return PaymentPanel(ops, actor=actor)
