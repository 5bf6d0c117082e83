"""The sandbox's money, through stripe-python: fees, disputes, the ledger and payouts per key."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import stripe

from opskit.sandbox import Sandbox, money
from tests.fixtures_sandbox import make_key

DAY = 86_400


def _pay(c: stripe.StripeClient, amount: int, currency: str, card: str = "4242424242424242") -> str:
    cus = c.v1.customers.create({"email": "m@example.com"}).id
    pm = c.v1.payment_methods.create(
        {"type": "card", "card": {"number": card, "exp_month": 1, "exp_year": 2035, "cvc": "123"}}
    )
    c.v1.payment_methods.attach(pm.id, {"customer": cus})
    params = {"amount": amount, "currency": currency, "customer": cus, "payment_method": pm.id,
              "confirm": True}  # fmt: skip
    return c.v1.payment_intents.create(params).id  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("currency", "amount", "fee"),
    [("eur", 1000, 40), ("usd", 1000, 59), ("gbp", 2000, 50), ("jpy", 1000, 36)],
)
def test_card_fees_follow_stripes_price_per_currency(
    stripe_client: Callable[[str], stripe.StripeClient], currency: str, amount: int, fee: int
) -> None:
    c = stripe_client(make_key("fee"))
    pi = _pay(c, amount, currency)
    charge = c.v1.charges.list({"payment_intent": pi}).data[0]
    txn = c.v1.balance_transactions.retrieve(str(charge.balance_transaction))
    assert (txn.type, txn.reporting_category) == ("charge", "charge")
    assert (txn.amount, txn.fee, txn.net) == (amount, fee, amount - fee)
    assert txn.fee_details[0].type == "stripe_fee"
    assert txn.status == "pending" and txn.available_on == txn.created + 2 * DAY
    refund = c.v1.refunds.create({"payment_intent": pi, "amount": 100})
    rtxn = c.v1.balance_transactions.retrieve(str(refund.balance_transaction))
    assert (rtxn.reporting_category, rtxn.amount, rtxn.fee) == ("refund", -100, 0)


def test_dispute_cards_win_lose_and_inquiries(
    stripe_client: Callable[[str], stripe.StripeClient],
) -> None:
    c = stripe_client(make_key("dispute"))
    won = _pay(c, 3000, "eur", "4000000000000259")
    lost = _pay(c, 2000, "eur", "4000000000002685")
    inquiry = _pay(c, 1000, "eur", "4000000000001976")
    disputes = {d.payment_intent: d for d in c.v1.disputes.list().data}
    assert disputes[won].reason == "fraudulent" and disputes[won].status == "needs_response"
    assert disputes[lost].reason == "product_not_received"
    assert disputes[inquiry].status == "warning_needs_response"
    assert not disputes[inquiry].balance_transactions  # an inquiry moves no money
    (withdrawal,) = disputes[won].balance_transactions
    assert (withdrawal.reporting_category, withdrawal.amount, withdrawal.fee) == (
        "dispute", -3000, 2000,
    )  # fmt: skip
    d = c.v1.disputes.update(
        disputes[won].id, {"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    assert d.status == "won"
    assert [t.reporting_category for t in d.balance_transactions] == ["dispute", "dispute_reversal"]
    assert c.v1.disputes.close(disputes[lost].id).status == "lost"
    with pytest.raises(stripe.InvalidRequestError, match="closed"):
        c.v1.disputes.close(disputes[lost].id)
    charge = c.v1.charges.list({"payment_intent": won}).data[0]
    assert charge.disputed is True


def test_daily_payouts_itemize_and_manual_ones_do_not(sandbox: Sandbox) -> None:
    key = make_key("payout")
    c = stripe.StripeClient(key, base_addresses={"api": sandbox.url})
    t0 = int(time.time()) - 6 * DAY
    pis = [_pay(c, 1000 * (i + 1), "eur") for i in range(3)]
    for i, pi in enumerate(pis):
        sandbox.with_store(key, lambda st, pi=pi, i=i: money.backdate(st, pi, t0 + i * DAY))
    payouts = c.v1.payouts.list().data
    assert len(payouts) == 3 and all(p.automatic for p in payouts)
    total = 0
    for po in payouts:
        items = c.v1.balance_transactions.list({"payout": po.id, "limit": 100}).data
        own = [t for t in items if t.type == "payout"]
        paid = [t for t in items if t.type != "payout"]
        assert [t.amount for t in own] == [-po.amount]
        assert sum(t.net for t in paid) == po.amount  # the itemized net is the payout
        assert po.arrival_date == po.created + 2 * DAY and po.reconciliation_status == "completed"
        total += po.amount
    bal = c.v1.balance.retrieve()
    assert sum(b.amount for b in [*bal.available, *bal.pending]) == 0  # all paid out
    with pytest.raises(stripe.InvalidRequestError, match="automatic payouts are enabled"):
        c.v1.payouts.create({"amount": 100, "currency": "eur"})
    sandbox.with_store(key, lambda st: money.set_payout_schedule(st, "manual"))
    _pay(c, 5000, "eur")
    with pytest.raises(stripe.InvalidRequestError, match="insufficient funds"):
        c.v1.payouts.create({"amount": 100, "currency": "eur"})  # still pending
    pi = _pay(c, 5000, "eur")
    sandbox.with_store(key, lambda st: money.backdate(st, pi, t0))
    manual = c.v1.payouts.create({"amount": 1000, "currency": "eur"})
    assert manual.automatic is False and manual.reconciliation_status == "not_applicable"
    with pytest.raises(stripe.InvalidRequestError, match="not manual"):
        c.v1.balance_transactions.list({"payout": manual.id})
    with pytest.raises(stripe.InvalidRequestError, match="No such payout"):
        c.v1.balance_transactions.list({"payout": "po_nope"})


def test_money_is_per_key(stripe_client: Callable[[str], stripe.StripeClient]) -> None:
    a, b = stripe_client(make_key("ka")), stripe_client(make_key("kb"))
    _pay(a, 1000, "eur")
    assert len(a.v1.balance_transactions.list().data) == 1
    assert b.v1.balance_transactions.list().data == []
    assert b.v1.balance.retrieve().available == []
