"""Safety state is decided when writing: a key that turns live while a panel is open is
never written with by an ordinary (non-LIVE) "Confirm"."""

from __future__ import annotations

from typing import Any

import opskit
from opskit.faces import widgets
from opskit.sandbox import Sandbox
from tests.faults.conftest import Tally
from tests.faults.world import World, make_world

LIVE = "sk_live_" + "Tu7" * 9


def _pick(options: Any, wanted: int) -> Any:
    """The dropdown value for id ``wanted`` (ids are opaque strings; older panels used ints)."""
    values = [v for _, v in options]
    return str(wanted) if str(wanted) in values else wanted


def _turn_live(w: World) -> None:
    t = w.ctx.db.shops_table
    with w.ctx.db.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == 1).values(stripe_secret_key=LIVE))


def test_payment_and_subscription_panels_decide_live_at_write_time(
    db_url: str, sandbox: Sandbox, tally: Tally
) -> None:
    w = make_world(db_url, sandbox)
    w.link(11)
    w.link(12)
    price = w.price()
    ops = opskit.connect(db_url, stripe_api_base=sandbox.url)

    def payment() -> tuple[str, str]:
        panel = widgets.payment_panel(ops, actor="t")
        panel.shop.value = _pick(panel.shop.options, 1)
        panel.account.value = _pick(panel.account.options, 11)
        panel.amount.value = "12.00"
        panel.currency.value = "eur"
        panel.create_button.click()
        if not panel.confirm.pending or "LIVE" in panel.confirm.confirm_button.description:
            return "wrong", "not asked as a test-mode write"
        _turn_live(w)  # while the question is open
        panel.confirm.confirm_button.click()
        refused = w.log(action="payment_intent.create", outcome="refused")
        if w.posts("/v1/payment_intents") or sandbox.request_count(LIVE):
            return "wrong", "written with the key that turned live"
        if refused.empty or panel.message.kind != "error":
            return "wrong", f"not refused: {panel.message.text}"
        return "right", "refused at write time"

    def subscription() -> tuple[str, str]:
        t = w.ctx.db.shops_table
        with w.ctx.db.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == 1).values(stripe_secret_key=w.key))
        panel = widgets.subscription_panel(ops, actor="t")
        panel.shop.value = _pick(panel.shop.options, 1)
        panel.account.value = _pick(panel.account.options, 12)
        panel.price.value = price
        panel.create_button.click()
        if not panel.confirm.pending:
            return "wrong", f"not asked: {panel.message.text}"
        _turn_live(w)
        panel.confirm.confirm_button.click()
        if w.posts("/v1/subscriptions") or sandbox.request_count(LIVE):
            return "wrong", "written with the key that turned live"
        if w.log(action="subscription.create", outcome="refused").empty:
            return "wrong", f"not refused: {panel.message.text}"
        return "right", "refused at write time"

    assert tally.run("payment panel, key turns live", payment) == "right"
    assert tally.run("subscription panel, key turns live", subscription) == "right"
