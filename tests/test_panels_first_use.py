"""What an analyst meets on first use, panel by panel, driven without a kernel.

Each test is one of the points found when opskit was tried as a new user would:
plan rows as checkboxes, the reason beside each finding, guidance in the panel's own
terms and refusals before the question, nothing left on show about another account,
verbs on the confirmation, search by the ids the reports show, exports outside the
repository, amounts / periods / Stripe links in every view, and the small ones.
"""

from __future__ import annotations

import html
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from opskit import demo
from opskit.demo import DemoSession

widgets = pytest.importorskip("opskit.faces.widgets")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSession]:
    path = tmp_path_factory.mktemp("first-use") / "demo.sqlite"
    # The reference-shaped demo (integer shop ids): these panels also write subscription
    # fields to details, which shop-backend's schema does not keep.
    with demo.start(url=f"sqlite:///{path}", shape="reference") as s:
        yield s


def _no_python(text: str) -> None:
    """A panel's message speaks of its buttons and fields, never of Python calls."""
    for python in ("ops.", "force=True", "confirm=True", "()"):
        assert python not in text, text


# -- 4: plan rows are checkboxes; a spent plan leaves the screen ---------------------------------


def test_unticking_one_plan_row_keeps_the_others(session: DemoSession) -> None:
    panel = widgets.sync_panel(session.ops, actor="first-use")
    panel.shops.value = ("2",)
    panel.plan_button.click()
    n = len(panel.plan)
    assert n > 2 and len(panel.rows.children) == n  # one checkbox per row
    assert all(box.value for box in panel.rows.children)
    # The reason is on the row itself.
    first = panel.plan.iloc[0]
    assert str(first["reason"]) in panel.rows.children[0].description

    panel.rows.children[1].value = False  # a click on one row's box
    assert panel.rows.value == tuple(v for v in range(n) if v != 1)  # the others stay ticked
    assert panel.apply_button.description == f"Apply {n - 1} ticked…"
    panel.select_none_button.click()
    assert panel.rows.value == () and not any(b.value for b in panel.rows.children)
    panel.rows.value = (0, 2)  # set from code: the boxes follow
    assert [b.value for b in panel.rows.children[:3]] == [True, False, True]

    panel.apply_button.click()
    assert panel.confirm.confirm_button.description == "Apply 2 change(s)"
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    # The spent plan is gone from the screen; what happened is what is shown.
    assert panel.rows.children == () and panel.plan_table.value == ""
    assert panel.result_table.value.count("<tr>") == 3  # header + the 2 applied rows
    assert panel.select_all_button.disabled and panel.apply_button.disabled


# -- 5 and 6: the reason beside each finding; amounts, periods and Stripe links -------------------


def test_findings_show_why_amount_period_and_link_beside_the_status(
    session: DemoSession, tmp_path: Path
) -> None:
    panel = widgets.reconcile_panel(session.ops, export_dir=tmp_path)
    assert panel.chart.layout.display == "none" and panel.chart.value == b""  # no broken image
    panel.report_choice.value = "subscriptions"
    panel.shops.value = ("1", "6")
    panel.run_button.click()
    assert panel.chart.layout.display != "none"
    head = panel.table.value.split("<thead", 1)[1].split("</thead>", 1)[0]
    columns = [c.split("</th>", 1)[0] for c in head.split("<th>")[1:]]
    assert columns.index("why") == columns.index("status") + 1  # side by side, not off-screen
    assert {"amount", "period ends", "stripe"} <= set(columns)
    assert "USD 9.00 / month" in panel.table.value
    assert 'href="https://dashboard.stripe.com/test/subscriptions/sub_' in panel.table.value
    # The failed shop's reason is in that column, and the message says where to look.
    report = panel.report
    assert report is not None
    failed = report.loc[report["status"].eq("shop_error"), "detail"].iloc[0]
    assert failed and html.escape(failed) in panel.table.value
    assert "why column" in panel.message.text
    _no_python(panel.message.text)

    sized = report[report["status"].isin(["price_mismatch", "multiple_active"])]
    assert len(sized) and sized["unit_amount"].notna().all() and sized["currency"].notna().all()
    assert sized["current_period_end_at"].notna().all()
    assert str(report["unit_amount"].dtype) == "Int64"
    assert isinstance(report["current_period_end_at"].dtype, pd.DatetimeTZDtype)

    # Changing the inputs clears the old result instead of showing it under new labels.
    panel.report_choice.value = "customers"
    assert panel.report is None and panel.table.value == "" and panel.chart.value == b""


def test_reports_files_carry_amounts_and_links(session: DemoSession, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from opskit.reports.files import write_report

    reports = session.ops.reconcile([1], progress=False)
    (html,) = write_report(reports, tmp_path / "r.html")
    text = html.read_text()
    assert (
        ">open in Stripe</a>" in text and "https://dashboard.stripe.com/test/customers/cus_" in text
    )
    assert ">USD 9.00</td>" in text  # formatted in the view, minor units in its title
    (xlsx,) = write_report(reports, tmp_path / "r.xlsx")
    sheet = load_workbook(xlsx)["Subscriptions"]
    header = [c.value for c in sheet[1]]
    link = sheet.cell(row=2, column=header.index("dashboard_url") + 1)
    assert link.hyperlink is not None
    assert link.hyperlink.target.startswith("https://dashboard.stripe.com/test/")
    assert isinstance(sheet.cell(row=2, column=header.index("unit_amount") + 1).value, int)


# -- 8 and 9: guidance in the panel's terms, refusals before asking, nothing stale on show --------


def _linked(session: DemoSession, shop_id: int) -> list[object]:
    accounts = session.ops.accounts([shop_id])
    return list(accounts.loc[accounts["stripe_customer_id"].notna(), "account_id"])


def test_payment_panel_says_what_happened_for_this_account_only(session: DemoSession) -> None:
    panel = widgets.payment_panel(session.ops, actor="first-use")
    # First load: a hint, not a red error.
    assert panel.message.kind in ("", "info")
    assert "opskit-amount-error" not in panel.amount_preview.value
    panel.shop.value = "1"
    first, second = _linked(session, 1)[:2]
    panel.account.value = first
    panel.amount.value = "12.50"
    panel.create_button.click()
    assert panel.confirm.confirm_button.description == "Create PaymentIntent"
    assert panel.confirm.cancel_button.description == "Don't create"
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success" and panel.result.value
    panel.account.value = second  # another account: the first one's result goes
    assert panel.message.text == "" and panel.result.value == "" and panel.last_result is None

    unlinked = session.ops.accounts([1])
    unlinked = unlinked[unlinked["stripe_customer_id"].isna() & unlinked["details_error"].isna()]
    panel.account.value = unlinked.iloc[0]["account_id"]
    assert panel.customer_button.layout.display != "none"  # the way out is a button here
    _no_python(panel.message.text)
    panel.customer_button.click()
    assert panel.confirm.confirm_button.description == "Create customer"
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success", panel.message.text
    assert panel.customer_button.layout.display == "none"
    panel.create_button.click()  # now it can be charged
    assert panel.confirm.pending


def test_cancel_is_confirmed_with_verbs_and_keep_it_keeps_it(session: DemoSession) -> None:
    panel = widgets.subscription_panel(session.ops, actor="first-use")
    panel.shop.value = "3"
    subs = session.ops.subscriptions([3], progress=False)
    active = set(subs.loc[subs["status"].eq("active"), "stripe_customer_id"])
    accounts = session.ops.accounts([3])
    live = list(accounts.loc[accounts["stripe_customer_id"].isin(active), "account_id"])
    first, second = live[:2]
    panel.account.value = first
    sid = panel.subscription.value
    before = session.sandbox.request_count()
    panel.cancel_end_button.click()
    assert panel.confirm.confirm_button.description == "Cancel subscription"
    assert panel.confirm.cancel_button.description == "Keep it"
    panel.confirm.cancel_button.click()  # "Keep it" means keep it
    assert session.sandbox.request_count() == before and not panel.confirm.pending
    panel.cancel_end_button.click()
    panel.confirm.confirm_button.click()
    assert panel.message.kind == "success" and sid in panel.message.text
    # Another account: the success about the first does not sit under its question.
    panel.account.value = second
    assert panel.message.text == ""
    panel.cancel_now_button.click()
    assert panel.confirm.confirm_button.description == "Cancel subscription now"
    assert sid not in panel.confirm.question.value and panel.message.text == ""


# -- 10: search by what the reports show -----------------------------------------------------------


def test_search_finds_account_ids_and_customer_ids_and_says_when_not(
    session: DemoSession,
) -> None:
    panel = widgets.payment_panel(session.ops)
    panel.shop.value = "1"
    accounts = session.ops.accounts([1])
    row = accounts[accounts["stripe_customer_id"].notna()].iloc[3]
    panel.search.value = str(row["account_id"])
    assert [v for _, v in panel.account.options] == [row["account_id"]]
    panel.search.value = f"#{row['account_id']}"
    assert [v for _, v in panel.account.options] == [row["account_id"]]
    panel.search.value = str(row["stripe_customer_id"])
    assert [v for _, v in panel.account.options] == [row["account_id"]]
    assert panel.message.kind != "warning"

    other = session.ops.accounts([2])
    mine = set(accounts["stripe_customer_id"].dropna())  # a wrong_shop link may share one
    cus = next(c for c in other["stripe_customer_id"].dropna() if c not in mine)
    panel.search.value = cus  # a customer of shop 2, searched in shop 1
    assert panel.account.options == ()
    assert panel.message.kind == "warning" and "shop 2" in panel.message.text
    panel.search.value = "nobody-by-this-name"
    assert panel.message.kind == "warning" and "account id" in panel.message.text


# -- 12: exports go outside the repository; notebooks/ ignores what panels write ------------------


def test_exports_go_to_a_configured_folder_never_the_repo(
    session: DemoSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "exports"
    monkeypatch.setenv("OPSKIT_EXPORT_DIR", str(target))
    monkeypatch.chdir(ROOT / "notebooks")  # where a notebook kernel runs
    panel = widgets.reconcile_panel(session.ops)
    assert panel.export_folder.value == str(target)
    panel.shops.value = ("2",)
    panel.run_button.click()
    panel.export_csv_button.click()
    assert (target / "report.csv").is_file()
    assert not (ROOT / "notebooks" / "report.csv").exists()
    panel.export_folder.value = str(tmp_path / "elsewhere")  # the panel's own field
    panel.export_excel_button.click()
    assert (tmp_path / "elsewhere" / "report.xlsx").is_file()

    monkeypatch.delenv("OPSKIT_EXPORT_DIR")
    from opskit.common.config import export_dir

    assert ROOT not in export_dir().resolve().parents
    for name in ("report.csv", "findings.xlsx", "x.parquet", "r.html", "r.json"):
        ignored = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "-q", f"notebooks/{name}"], check=False
        )
        assert ignored.returncode == 0, name


# -- 13: the small ones ----------------------------------------------------------------------------


def test_small_ones(session: DemoSession) -> None:
    from opskit.common.models import parse_details

    _, error = parse_details('{"stripe_customer_id": "cus_')
    assert error is not None and "at at" not in error and "char" in error

    account = _linked(session, 4)[0]
    intent = session.ops.create_payment_intent(account, 500, "jpy")
    assert intent["client_secret"].endswith("_secret_…")  # not printable in a REPL
    assert "_secret_" in intent["client_secret"] and len(intent["client_secret"]) < 40


def test_the_owning_process_attaches_to_its_own_world(session: DemoSession) -> None:
    """connect() on a world this process started uses its sandbox; no second start re-seeds it."""
    import opskit

    url = session.ops.ctx.db.url
    ops = opskit.connect(url)
    assert ops.ctx.api_base == session.api_base
    with pytest.raises(demo.DemoWorldBusy):
        demo.start(url=url)
    assert session.sandbox is not None and session.sandbox.running
