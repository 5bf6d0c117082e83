"""The panels driven without a kernel: set ``.value``, ``.click()``, then check what the
panel shows AND what happened in the database and in the sandbox's Stripe accounts.

One demo session (sandbox + SQLite) serves the whole module. Tests that write pick
disjoint shops/accounts so that their order does not matter: sync writes shop 2,
payments shops 1 and 4, subscription fixes shop 3; the reconcile tests only read.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from opskit import demo
from opskit.core.frames import CUSTOMER_STATUSES, SUBSCRIPTION_STATUSES
from opskit.demo import DemoSession
from opskit.stripeapi.clients import client_for_shop

widgets = pytest.importorskip("opskit.faces.widgets")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSession]:
    path = tmp_path_factory.mktemp("widgets") / "demo.sqlite"
    # The reference-shaped demo: these panels also write subscription fields to details.
    with demo.start(url=f"sqlite:///{path}", shape="reference") as s:
        yield s


def stripe_for(session: DemoSession, shop_id: int) -> Any:
    """The shop's own Stripe client, pointed at the demo sandbox."""
    shop = session.ops.ctx.db.shop(shop_id)
    return client_for_shop(shop, api_base=session.sandbox.url)


def details(session: DemoSession, account_id: int) -> pd.Series:
    accounts = session.ops.accounts()
    return accounts[accounts["account_id"].eq(account_id)].iloc[0]


def body_rows(html: str) -> int:
    """Rows in the <tbody> of a panel table."""
    return html.split("<tbody>", 1)[1].split("</tbody>", 1)[0].count("<tr>")


def test_import_opskit_does_not_import_ipywidgets() -> None:
    code = "import sys, opskit, opskit.faces.notebook; assert 'ipywidgets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- reconcile -----------------------------------------------------------------------------


def test_reconcile_panel_runs_filters_and_charts(session: DemoSession, tmp_path: Path) -> None:
    panel = widgets.reconcile_panel(session.ops, export_dir=tmp_path)
    labels = [label for label, _ in panel.shops.options]
    assert any("Legacy Outlet" in label and "LIVE" in label for label in labels)
    assert "LIVE" in panel.live_badge.value  # every shop is selected, Legacy Outlet included
    panel.shops.value = ("1", "2", "3", "4")
    assert panel.live_badge.value == ""
    panel.shops.value = tuple(v for _, v in panel.shops.options)

    panel.run_button.click()

    expected = session.ops.reconcile_customers(progress=False)
    # One shop's failure is data: a warning naming it, the rest reconciled.
    assert panel.message.kind == "warning"
    assert "Legacy Outlet" in panel.message.text
    assert panel.progress.bar.value == panel.progress.bar.max
    offered = [v for _, v in panel.status_filter.options]
    assert set(CUSTOMER_STATUSES) <= set(offered)  # the demo has every status
    assert body_rows(panel.table.value) == len(expected)
    assert panel.chart.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Northwind Coffee" in panel.summary.value

    panel.status_filter.value = "mismatch"
    mismatches = int(expected["status"].eq("mismatch").sum())
    assert body_rows(panel.table.value) == mismatches > 0
    assert panel.count.value == f"{mismatches} of {len(expected)} rows"
    assert "wrong_shop" not in panel.table.value

    panel.export_csv_button.click()
    csv = tmp_path / "report.csv"
    assert str(csv.resolve()) in panel.export_path.value
    exported = pd.read_csv(csv)
    assert len(exported) == mismatches and set(exported["status"]) == {"mismatch"}

    panel.status_filter.value = ""  # all rows
    panel.export_excel_button.click()
    xlsx = tmp_path / "report.xlsx"
    assert str(xlsx.resolve()) in panel.export_path.value
    sheets = pd.read_excel(xlsx, sheet_name=None)
    assert len(sheets["Customers"]) == len(expected)
    # The failed live shop's rows are in the file; its secret key is not.
    secret = session.ops.ctx.db.shop(6).stripe_secret_key
    cells = [str(v) for v in sheets["Customers"].to_numpy().ravel()]
    assert "shop_error" in cells and not any(secret[8:] in c for c in cells)


def test_reconcile_panel_subscriptions_report(session: DemoSession) -> None:
    panel = widgets.reconcile_panel(session.ops)
    panel.report_choice.value = "subscriptions"
    panel.shops.value = ("1", "6")
    panel.run_button.click()
    offered = {v for _, v in panel.status_filter.options}
    assert {"multiple_active", "status_drift", "shop_error"} <= offered
    assert offered - {"", "!match"} <= set(SUBSCRIPTION_STATUSES)
    panel.status_filter.value = "!match"
    assert ">match<" not in panel.table.value


def test_reconcile_panel_errors_stay_in_the_panel(
    session: DemoSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import opskit

    panel = widgets.reconcile_panel(session.ops)
    panel.shops.value = ()
    panel.run_button.click()
    assert panel.message.kind == "warning" and "No shop selected" in panel.message.text

    # A database that breaks after the panel was built: the error shows, with guidance.
    source = Path(session.ops.ctx.db.url.removeprefix("sqlite:///"))
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(source.read_bytes())
    ops = opskit.connect(f"sqlite:///{broken}", stripe_api_base=session.sandbox.url)
    panel = widgets.reconcile_panel(ops, export_dir=tmp_path)
    panel.shops.value = ("1",)
    panel.run_button.click()
    assert panel.message.kind == "success" and "<tbody><tr>" in panel.table.value
    with sqlite3.connect(broken) as conn:
        conn.execute("DROP TABLE accounts")
    panel.shops.value = ("1", "2")
    panel.run_button.click()  # must not raise
    assert panel.message.kind == "error"
    assert "What to do" in panel.message.value
    assert "Traceback" not in panel.message.value
    assert not panel.run_button.disabled  # usable again
    # The last good run (other shops) is not left on show, nor exported as if current.
    assert "<tbody><tr>" not in panel.table.value and panel.summary.value == ""
    panel.export_csv_button.click()
    assert not (tmp_path / "report.csv").exists()


# -- sync ----------------------------------------------------------------------------------


def test_sync_panel_dry_run_then_confirmed_apply(session: DemoSession) -> None:
    ops = session.ops
    panel = widgets.sync_panel(ops, actor="widget-test")
    panel.shops.value = ("2",)
    panel.plan_button.click()
    plan = panel.plan
    assert plan is not None and len(plan) > 1
    assert set(plan["shop_id"]) == {"2"}
    assert len(panel.rows.options) == len(plan) == len(panel.rows.value)
    assert ops.audit_log(action="sync.*").empty  # a dry run writes nothing

    skipped = plan.iloc[0]
    panel.rows.value = tuple(v for v in panel.rows.value if v != 0)
    panel.apply_button.click()
    assert panel.confirm.pending and f"{len(plan) - 1} change(s)" in panel.confirm.question.value
    panel.confirm.cancel_button.click()
    assert ops.audit_log(action="sync.*").empty  # cancelled: still nothing written

    # The selection changes while the question is open: the question no longer holds.
    panel.apply_button.click()
    panel.select_all_button.click()
    assert not panel.confirm.pending
    panel.confirm.confirm_button.click()
    assert ops.audit_log(action="sync.*").empty
    panel.rows.value = tuple(v for v in panel.rows.value if v != 0)

    panel.apply_button.click()
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    log = ops.audit_log(action="sync.*")
    assert sorted(panel.audit_ids) == sorted(int(a) for a in log["audit_id"])
    assert len(panel.audit_ids) == len(plan) - 1
    for audit_id in panel.audit_ids:
        assert str(audit_id) in panel.message.text
        assert f"<td>{audit_id}</td>" in panel.result_table.value
    assert set(log["actor"]) == {"widget-test"}
    # The database has the new values; the deselected row kept its old one.
    for row in plan.iloc[1:].itertuples(index=False):
        now = details(session, str(row.account_id))[row.key]
        assert (pd.isna(now) and pd.isna(row.new_value)) or now == row.new_value
    kept = details(session, str(skipped["account_id"]))[skipped["key"]]
    assert (pd.isna(kept) and pd.isna(skipped["old_value"])) or kept == skipped["old_value"]
    assert panel.apply_button.disabled and panel.plan is None  # a spent plan cannot be re-applied


# -- payments ------------------------------------------------------------------------------


def _linked_account(session: DemoSession, shop_id: int) -> pd.Series:
    accounts = session.ops.accounts([shop_id])
    report = session.ops.reconcile_customers([shop_id], progress=False)
    good = report.loc[report["status"].eq("match"), "account_id"]
    return accounts[accounts["account_id"].isin(good)].iloc[0]


def test_payment_panel_creates_payment_intent(session: DemoSession) -> None:
    account = _linked_account(session, 1)
    panel = widgets.payment_panel(session.ops, actor="widget-test")
    panel.shop.value = "1"
    assert panel.live_badge.value == ""
    panel.search.value = account["email"].upper()
    assert [v for _, v in panel.account.options] == [account["account_id"]]
    panel.amount.value = "19.99"  # typed as people write money
    panel.currency.value = "usd"
    assert "USD 19.99 = 1999 minor units" in panel.amount_preview.value

    panel.create_button.click()
    assert panel.confirm.pending and "USD 19.99" in panel.confirm.question.value
    assert "1999 minor units" in panel.confirm.question.value
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    intent_id = panel.last_result["id"]
    assert intent_id in panel.result.value and "USD 19.99" in panel.result.value

    intent = stripe_for(session, 1).v1.payment_intents.retrieve(intent_id)
    assert (intent.amount, intent.currency) == (1999, "usd")
    assert intent.customer == account["stripe_customer_id"]
    audit = session.ops.audit_log(action="payment_intent.create", result=intent_id)
    assert list(audit["outcome"]) == ["ok"] and list(audit["actor"]) == ["widget-test"]

    # The same request again (double click, re-run) replays the same intent...
    panel.create_button.click()
    panel.confirm.confirm_button.click()
    assert panel.last_result["id"] == intent_id and panel.message.kind == "info"
    # ...and "New payment" makes the next one a new intent.
    panel.new_button.click()
    panel.create_button.click()
    panel.confirm.confirm_button.click()
    assert panel.last_result["id"] != intent_id


def test_payment_panel_zero_decimal_currency(session: DemoSession) -> None:
    account = _linked_account(session, 4)
    panel = widgets.payment_panel(session.ops)
    panel.shop.value = "4"
    panel.search.value = account["email"]
    panel.amount.value = "500"
    panel.currency.value = "JPY"
    assert "JPY 500" in panel.amount_preview.value
    panel.create_button.click()
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    intent = stripe_for(session, 4).v1.payment_intents.retrieve(panel.last_result["id"])
    assert (intent.amount, intent.currency) == (500, "jpy")


def test_payment_panel_refuses_bad_input_before_any_request(session: DemoSession) -> None:
    panel = widgets.payment_panel(session.ops)
    panel.shop.value = "1"
    before = _writes(session)
    panel.amount.value = "0"
    assert "zero" in panel.amount_preview.value
    panel.create_button.click()
    assert panel.message.kind == "error" and "What to do" in panel.message.value
    assert not panel.confirm.pending
    panel.amount.value = "1.00"
    panel.currency.value = "dollars"
    panel.create_button.click()
    assert panel.message.kind == "error" and "ISO" in panel.message.text
    # An account without a Stripe customer: refused with guidance, nothing sent.
    unlinked = session.ops.accounts([1])
    unlinked = unlinked[unlinked["stripe_customer_id"].isna() & unlinked["details_error"].isna()]
    panel.currency.value = "usd"
    panel.account.value = str(unlinked.iloc[0]["account_id"])
    panel.create_button.click()
    # Refused before the question, in the panel's terms: its own button, not a Python call.
    assert not panel.confirm.pending
    assert panel.message.kind == "warning" and "Create Stripe customer" in panel.message.text
    assert "ops." not in panel.message.text
    # Nothing written (picking the account reads whether Stripe has its email already).
    assert _writes(session) == before


def _writes(session: DemoSession) -> int:
    assert session.sandbox is not None
    return sum(1 for r in session.sandbox.requests() if r.method in ("POST", "DELETE"))


def test_payment_panel_live_shop_needs_confirmation(
    session: DemoSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE", "1")  # a live key to the sandbox
    panel = widgets.payment_panel(session.ops)
    panel.shop.value = "6"
    assert "LIVE" in panel.live_badge.value
    # The demo's live shop links no customer: link one, so the request reaches Stripe.
    with sqlite3.connect(session.ops.ctx.db.url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE accounts SET details = ? WHERE id = ?",
            (json.dumps({"stripe_customer_id": "cus_LiveLinked"}), int(panel.account.value)),
        )
    panel.amount.value = "25.00"
    panel.currency.value = "gbp"
    panel.create_button.click()
    assert panel.confirm.pending
    assert panel.confirm.confirm_button.description == "Create PaymentIntent (LIVE)"
    assert "LIVE" in panel.confirm.question.value
    panel.confirm.confirm_button.click()
    # Confirmed, so the guard let it through; the sandbox rejects live keys: shown, not raised.
    assert panel.message.kind == "error", panel.message.text
    assert "Stripe refused" in panel.message.text
    assert "Traceback" not in panel.message.value
    audit = session.ops.audit_log(action="payment_intent.create", shop_id=6)
    assert list(audit["outcome"]) == ["error"]  # sent (confirm=True), not refused by the guard
    secret = session.ops.ctx.db.shop(6).stripe_secret_key
    assert secret and secret[8:] not in panel.message.value + panel.message.text


# -- subscriptions -------------------------------------------------------------------------


def _active_subscriptions(session: DemoSession, shop_id: int) -> pd.DataFrame:
    """Accounts of the shop whose recorded subscription is active in Stripe, one each."""
    accounts = session.ops.accounts([shop_id])
    subs = session.ops.subscriptions([shop_id], progress=False)
    subs = subs[subs["status"].eq("active")]
    subs = subs[~subs["stripe_customer_id"].duplicated(keep=False)]
    return accounts.merge(subs, on=["stripe_customer_id", "stripe_subscription_id"])


def test_subscription_panel_cancels_and_creates(session: DemoSession) -> None:
    ops = session.ops
    client = stripe_for(session, 3)
    rows = _active_subscriptions(session, 3)
    first, second = rows.iloc[0], rows.iloc[1]
    panel = widgets.subscription_panel(ops, actor="widget-test")
    panel.shop.value = "3"
    # Every recurring price of the shop's Stripe account, in money, not only the ones in use.
    listed = set(ops.prices([3], progress=False)["stripe_price_id"])
    assert {value for _, value in panel.price.options} == listed and len(listed) == 2
    assert all(label.startswith("CHF ") for label, _ in panel.price.options)

    panel.account.value = str(first["account_id"])
    sid = first["stripe_subscription_id"]
    assert sid in panel.table.value and "active" in panel.table.value
    assert panel.subscription.value == sid
    panel.cancel_end_button.click()
    assert panel.confirm.pending and "end of its current period" in panel.confirm.question.value
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    assert client.v1.subscriptions.retrieve(sid).cancel_at_period_end is True

    panel.account.value = str(second["account_id"])
    sid2 = second["stripe_subscription_id"]
    # A second subscription while one is live: refused before the question, with guidance
    # in the panel's terms (its checkbox and buttons, not "pass force=True").
    before = session.sandbox.request_count()
    panel.create_button.click()
    assert not panel.confirm.pending
    assert panel.message.kind == "warning" and "bills twice" in panel.message.text
    assert "allow a second live subscription" in panel.message.text
    assert "force" not in panel.message.text and "ops." not in panel.message.text
    assert session.sandbox.request_count() == before

    panel.subscription.value = sid2
    panel.cancel_now_button.click()
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    assert client.v1.subscriptions.retrieve(sid2).status == "canceled"
    assert details(session, str(second["account_id"]))["subscription_status"] == "canceled"
    assert "canceled" in panel.table.value

    # Now the account may subscribe again: created in Stripe and recorded locally.
    panel.create_button.click()
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    new_id = panel.last_result["id"]
    assert client.v1.subscriptions.retrieve(new_id).customer == second["stripe_customer_id"]
    assert details(session, str(second["account_id"]))["stripe_subscription_id"] == new_id
    assert new_id in panel.table.value
    actions = set(ops.audit_log(actor="widget-test", shop_id=3)["action"])
    assert {"subscription.cancel", "subscription.create"} <= actions


def test_subscription_panel_live_shop(session: DemoSession) -> None:
    panel = widgets.subscription_panel(session.ops)
    panel.shop.value = "6"
    assert "LIVE" in panel.live_badge.value
    # Listing with a key Stripe rejects: an error in the panel, not "no subscriptions".
    assert panel.message.kind == "error" and "Legacy Outlet" in panel.message.text
    assert "What to do" in panel.message.value
    assert panel.progress.bar.bar_style == "danger"
    panel.shop.value = "5"  # no key at all: said so, nothing requested
    assert panel.message.kind == "warning" and "no secret key" in panel.message.text


def test_payment_confirmation_is_for_what_was_asked(session: DemoSession) -> None:
    """Changing the form after the question was asked withdraws it: what runs is what was read."""
    account = _linked_account(session, 1)
    panel = widgets.payment_panel(session.ops, actor="stale-confirm")
    panel.shop.value = "1"
    panel.search.value = account["email"]
    panel.amount.value = "1.00"
    panel.currency.value = "usd"
    panel.create_button.click()
    assert panel.confirm.pending and "USD 1.00" in panel.confirm.question.value
    panel.amount.value = "9999.99"
    assert not panel.confirm.pending
    panel.confirm.confirm_button.click()
    assert panel.last_result is None
    assert session.ops.audit_log(actor="stale-confirm").empty

    # Asked for a test shop, then switched to the live one: no unmarked live write.
    panel.amount.value = "1.00"
    panel.create_button.click()
    assert panel.confirm.pending
    panel.shop.value = "6"
    assert not panel.confirm.pending


def test_subscription_confirmation_is_for_the_account_asked(session: DemoSession) -> None:
    panel = widgets.subscription_panel(session.ops, actor="stale-confirm-sub")
    panel.shop.value = "3"
    linked = [v for label, v in panel.account.options if "no Stripe customer" not in label]
    first, second = linked[:2]
    panel.account.value = first
    panel.force.value = True  # a live subscription is no reason to refuse in this test
    panel.create_button.click()
    assert panel.confirm.pending and str(first) in panel.confirm.question.value
    panel.account.value = second
    assert not panel.confirm.pending
    panel.confirm.confirm_button.click()
    assert session.ops.audit_log(actor="stale-confirm-sub").empty


def test_subscription_panel_shows_local_details_as_text(session: DemoSession) -> None:
    """Details are the backend's JSON: markup in them is shown, not rendered."""
    account_id = str(session.ops.accounts([5])["account_id"].iloc[0])
    with sqlite3.connect(session.ops.ctx.db.url.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "UPDATE accounts SET details = ? WHERE id = ?",
            (json.dumps({"subscription_status": "<b>past_due</b>"}), account_id),
        )
    panel = widgets.subscription_panel(session.ops)
    panel.shop.value = "5"
    panel.account.value = account_id
    assert "&lt;b&gt;past_due&lt;/b&gt;" in panel.local.value
    assert "<b>past_due" not in panel.local.value
