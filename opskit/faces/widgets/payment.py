"""The payment panel: pick a shop and an account, type an amount, create a PaymentIntent.

The amount is typed as people write money (``19.99``), read by
:func:`opskit.core.money_entry.parse_amount` (Decimal, the currency's exponent, no
rounding), and the minor units are shown before and in the confirmation.
"""

from __future__ import annotations

import uuid
from typing import Any

import ipywidgets as w
import pandas as pd

from opskit.common.exceptions import DuplicateCustomer, InputError
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
    live_now,
    no_account_found,
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
        self.amount = w.Text(
            value="", description="Amount", placeholder="19.99", continuous_update=True,
            layout=w.Layout(width="200px"),
        )  # fmt: skip
        self.currency = w.Text(value="usd", description="Currency", layout=w.Layout(width="180px"))
        self.amount_preview = w.HTML()
        self.description = w.Text(description="Description", placeholder="optional")
        self.actor = w.Text(value=actor or default_actor(), description="Actor")
        self.create_button = w.Button(
            description="Create PaymentIntent…", button_style="primary", icon="credit-card",
            layout=w.Layout(width="220px"),
        )  # fmt: skip
        self.new_button = w.Button(description="New payment", icon="plus")
        self.customer_button = w.Button(
            description="Create Stripe customer…", icon="user-plus",
            layout=w.Layout(width="220px", display="none"),
        )  # fmt: skip
        self.link_button = w.Button(
            description="Link customer…", button_style="primary", icon="link",
            layout=w.Layout(width="300px", display="none"),
        )  # fmt: skip
        self._same_email: list[dict[str, Any]] = []  # unlinked customers of this email
        self.confirm = Confirm()
        self.message = Message()
        self.result = w.HTML()

        super().__init__(
            [
                heading("Create a PaymentIntent"),
                self.shop,
                self.live_badge,
                self.search,
                w.HBox([self.account, self.link_button, self.customer_button]),
                w.HBox([self.amount, self.currency, self.amount_preview]),
                w.HTML(
                    "<small>Type the amount as you would write it, with a dot for "
                    "decimals: 19.99 in USD is 1999 cents; JPY has no decimals (500).</small>"
                ),
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
        # A result or message about one account never stays on show for another.
        for field in (self.shop, self.account):
            field.observe(lambda _c: self._subject_changed(), names="value")
        for field in (self.amount, self.currency):
            field.observe(lambda _c: self._preview(), names="value")
        # Any change to what the open question describes withdraws it: Confirm runs what was asked.
        for field in (self.shop, self.account, self.amount, self.currency, self.description,
                      self.actor):  # fmt: skip
            field.observe(lambda _c: self.confirm.reset(), names="value")
        self.create_button.on_click(lambda _b: self.ask_create())
        self.new_button.on_click(lambda _b: self.new_payment())
        self.customer_button.on_click(lambda _b: self.ask_create_customer())
        self.link_button.on_click(lambda _b: self.ask_link_customer())
        guarded(self.message)(self._load_accounts)()
        self._subject_changed()
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
        options = account_choices(self._accounts, self.search.value)
        set_options(self.account, options)
        if not options and self.search.value.strip():
            no_account_found(
                self.message, self.ops.accounts(), self.search.value, str(self.shop.label)
            )

    def _account_row(self) -> dict[str, Any] | None:
        if self.account.value is None or not len(self._accounts):
            return None
        hit = self._accounts[self._accounts["account_id"].eq(self.account.value)]
        return hit.iloc[0].to_dict() if len(hit) else None

    def _has_customer(self) -> bool:
        row = self._account_row()
        return row is not None and isinstance(row.get("stripe_customer_id"), str)

    def _unreadable(self) -> str | None:
        """Why the selected account's details cannot be read, or None when they can."""
        row = self._account_row()
        problem = None if row is None else row.get("details_error")
        return problem if isinstance(problem, str) and problem else None

    def _say_unreadable(self, problem: str) -> None:
        self.message.show(
            "warning",
            f"This account's details cannot be read ({problem}), so it cannot be charged "
            "and no Stripe customer can be linked to it.",
            "Repair the account's details in the shop's database (they must be a JSON "
            'object, e.g. {} or {"stripe_customer_id": "cus_..."}), then pick the account '
            "again.",
        )

    def _subject_changed(self) -> None:
        """Another shop or account: forget what was shown about the previous one."""
        self.last_result = None
        self.result.value = ""
        self.message.clear()
        problem = self._unreadable()
        no_customer = self.account.value is not None and not self._has_customer()
        offer = no_customer and not problem
        # Before offering to create: does the shop's Stripe already have this person?
        self._same_email = self._find_same_email() if offer else []
        # Unreadable details: refused here, before any question; nothing is offered.
        self.customer_button.layout.display = "flex" if offer else "none"
        self.link_button.layout.display = "flex" if self._same_email else "none"
        if self._same_email:
            first = self._same_email[0]
            self.link_button.description = f"Link {first['id']} (same email)"
            self.customer_button.description = "Create new customer anyway…"
            self.customer_button.button_style = ""
        else:
            self.customer_button.description = "Create Stripe customer…"
        if problem:
            self._say_unreadable(problem)
        elif self._same_email:
            ids = [str(c["id"]) for c in self._same_email]
            more = f" (also {', '.join(ids[1:])})" if len(ids) > 1 else ""
            self.message.show(
                "info",
                f"This account has no Stripe customer yet, but shop {self.shop.label}'s Stripe "
                f"already has customer {ids[0]}{more} with its email "
                f"({self._same_email[0].get('email')}), and no account links it.",
                f"Press Link {ids[0]} to use it; Create new customer anyway makes a second "
                "customer for the same person.",
            )
        elif no_customer:
            self.message.show(
                "info",
                "This account has no Stripe customer yet, so it cannot be charged.",
                "Press Create Stripe customer, then create the payment.",
            )

    def _find_same_email(self) -> list[dict[str, Any]]:
        """The shop's unlinked customers with the account's email (none when Stripe fails:
        creating then asks Stripe again and says why it cannot)."""
        try:
            return self.ops.same_email_customers(self.account.value)
        except Exception:  # noqa: BLE001 - an offer, not a write: the write checks again
            return []

    def money(self) -> tuple[int, str]:
        """``(minor units, currency)`` from what was typed; raises InvalidAmount.

        A currency Stripe does not charge in is refused here, with what to type instead.
        """
        from opskit.core.money_entry import parse_amount

        amount = parse_amount(self.amount.value, self.currency.value)
        return amount, self.currency.value.strip().lower()

    def _preview(self) -> None:
        from opskit.common.exceptions import InvalidAmount
        from opskit.core.money_entry import describe_entry

        # Create is offered only for an amount that reads as one Stripe takes.
        self.create_button.disabled = True
        if not self.amount.value.strip():  # nothing typed yet: a hint, not an error
            self.amount_preview.value = (
                '<span class="opskit-amount-hint" style="color:#52606d">'
                "type the amount, e.g. 19.99</span>"
            )
            return
        try:
            text = describe_entry(self.amount.value, self.currency.value)
        except InvalidAmount as exc:
            self.amount_preview.value = (
                f'<span class="opskit-amount-error" style="color:#b42318">{esc(exc.message)}'
                f"<br><small>{esc(exc.guidance)}</small></span>"
            )
            return
        self.amount_preview.value = f'<b class="opskit-amount-ok">= {esc(text)}</b>'
        self.create_button.disabled = False

    # -- actions -------------------------------------------------------------------------

    def ask_create(self) -> None:
        from opskit.core.money import format_money

        def ask() -> None:
            amount, currency = self.money()  # InvalidAmount -> shown, nothing asked
            if self.account.value is None:
                self.message.show("warning", "No account selected.", "Search and pick an account.")
                return
            if not self._has_customer():  # linked since the list was read?
                self._accounts = self.ops.accounts([self.shop.value])
            if self._unreadable():
                self._subject_changed()  # says why, offers nothing
                return
            if not self._has_customer():  # refused before asking, not after
                self.message.show(
                    "warning",
                    "This account has no Stripe customer yet, so it cannot be charged.",
                    "Press Create Stripe customer, then create the payment.",
                )
                return
            label = self.account.label or str(self.account.value)
            self.message.clear()
            live = live_now(self.ops, self.shop.value)  # decided now, confirmed as asked
            self.confirm.ask(
                f"Create a PaymentIntent of {format_money(amount, currency)} "
                f"({amount} minor units) for {label} in shop {self.shop.label}?",
                guarded(self.message, self.create_button, after=self._preview)(
                    lambda: self.create(confirmed_live=live)
                ),
                live=live,
                yes="Create PaymentIntent",
                no="Don't create",
            )

        guarded(self.message)(ask)()

    def create(self, *, confirmed_live: bool = False) -> None:
        """Create it (called by the confirmation step) and show the result.

        ``confirmed_live``: the user confirmed a LIVE write; otherwise a key that is
        live when the write is made is refused by the write's guard.
        """
        from opskit.core.money import format_money

        amount, currency = self.money()
        intent = self.ops.create_payment_intent(
            self.account.value,
            amount,
            currency,
            description=self.description.value.strip() or None,
            actor=self.actor.value,
            confirm=confirmed_live,
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

    def ask_create_customer(self) -> None:
        """Ask, then create the selected account's Stripe customer in its shop."""
        row = self._account_row()
        if row is None:
            self.message.show("warning", "No account selected.", "Search and pick an account.")
            return
        self._accounts = self.ops.accounts([self.shop.value])  # as the database has it now
        if self._unreadable() or self._has_customer():
            self._subject_changed()  # refused before asking: says why, offers nothing
            if self._has_customer():
                self.message.show(
                    "info",
                    "This account already has a Stripe customer: nothing to create.",
                    "Type the amount and press Create PaymentIntent.",
                )
            return
        label = self.account.label or str(self.account.value)
        account_id = self.account.value
        duplicate = [str(c["id"]) for c in self._same_email]
        self.message.clear()
        live = live_now(self.ops, self.shop.value)
        question = f"Create a Stripe customer for {label} in shop {self.shop.label} and link it?"
        if duplicate:
            question = (
                f"Shop {self.shop.label}'s Stripe already has customer {duplicate[0]} with this "
                f"email. Create a second customer for {label} anyway and link it?"
            )
        self.confirm.ask(
            question,
            guarded(self.message, self.customer_button, self.create_button, after=self._preview)(
                lambda: self.create_customer(
                    account_id, confirmed_live=live, allow_duplicate=bool(duplicate)
                )
            ),
            live=live,
            yes="Create customer",
            no="Don't create",
        )

    def create_customer(
        self, account_id: Any, *, confirmed_live: bool = False, allow_duplicate: bool = False
    ) -> None:
        """Create and link the account's Stripe customer (called by the confirmation).

        A same-email customer that appeared since the account was picked is not
        duplicated: the panel offers to link it instead.
        """
        try:
            customer = self.ops.create_customer(
                account_id,
                actor=self.actor.value,
                confirm=confirmed_live,
                allow_duplicate=allow_duplicate,
            )
        except DuplicateCustomer:
            self._subject_changed()  # shows the customer found and the Link button
            return
        self._linked(account_id)
        self.message.show(
            "success",
            f"Created Stripe customer {customer['id']} and linked it to the account.",
            "Now type the amount and press Create PaymentIntent.",
        )

    def ask_link_customer(self) -> None:
        """Ask, then link the shop's existing same-email customer to the selected account."""
        if self.account.value is None or not self._same_email:
            self._subject_changed()
            return
        customer = self._same_email[0]
        cid = str(customer["id"])
        label = self.account.label or str(self.account.value)
        account_id = self.account.value
        self.message.clear()
        live = live_now(self.ops, self.shop.value)
        self.confirm.ask(
            f"Link Stripe customer {cid} ({customer.get('email')}) to {label} in shop "
            f"{self.shop.label}? Nothing is created in Stripe.",
            guarded(self.message, self.link_button, self.customer_button, after=self._preview)(
                lambda: self.link_customer(account_id, cid, confirmed_live=live)
            ),
            live=live,
            yes="Link customer",
            no="Don't link",
        )

    def link_customer(
        self, account_id: Any, customer_id: str, *, confirmed_live: bool = False
    ) -> None:
        """Link the customer (called by the confirmation) and show the account as linked.

        Refused (another account linked the customer meanwhile, its email changed, the
        account got a customer): the offer is asked again, so the Link button never
        offers a customer that was just refused, and the panel says why in its own terms.
        """
        try:
            self.ops.link_customer(
                account_id, customer_id, actor=self.actor.value, confirm=confirmed_live
            )
        except InputError as exc:  # a refusal (a LiveWriteRefused is not one: guarded says it)
            self._refused(account_id, exc.message)
            return
        self._linked(account_id)
        self.message.show(
            "success",
            f"Linked Stripe customer {customer_id} to the account (no new customer made).",
            "Now type the amount and press Create PaymentIntent.",
        )

    def _refused(self, account_id: Any, text: str) -> None:
        """After a refused write: read the account and its offer again, then say why."""
        try:
            self._linked(account_id)  # the accounts as the database has them now
        except Exception:  # noqa: BLE001 - the refusal is what the user must see
            self._same_email = []
            self.link_button.layout.display = "none"
        if self._has_customer():
            hint = "This account has a Stripe customer now: type the amount and press Create "
            hint += "PaymentIntent."
        elif self._same_email:
            cid = self._same_email[0]["id"]
            hint = f"The offer is up to date now: press Link {cid} to link that customer, or "
            hint += "Create new customer anyway."
        else:
            hint = "No other customer with this email is free to link: press Create Stripe "
            hint += "customer to make one."
        self.message.show("error", text, hint)

    def _linked(self, account_id: Any) -> None:
        """Read the accounts again and show ``account_id``, now linked."""
        self._accounts = self.ops.accounts([self.shop.value])
        self._filter_accounts()
        if account_id in [v for _, v in self.account.options]:
            self.account.value = account_id
        self._subject_changed()

    def new_payment(self) -> None:
        """Forget the last payment: the next Create makes a new PaymentIntent."""
        self._nonce = uuid.uuid4().hex
        self.last_result = None
        self.result.value = ""
        self.message.clear()


def payment_panel(ops: Ops, *, actor: str | None = None) -> PaymentPanel:
    """A panel to create a PaymentIntent for one account (amount typed as ``19.99``)."""
    return PaymentPanel(ops, actor=actor)
