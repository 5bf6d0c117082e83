"""Take the README's panel screenshots: ``.venv/bin/python docs/screenshots.py``.

Serves each panel notebook with Voila on 127.0.0.1 (its own demo data in a temporary
folder), drives it a little in Debian's chromium and saves ``docs/panel_*.png``. The
reconcile screenshot is also refreshed by the browser test with OPSKIT_SCREENSHOTS=1.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opskit import demo  # noqa: E402
from tests.browser import browser_page  # noqa: E402
from tests.test_notebook_browser import voila_server  # noqa: E402

DOCS = ROOT / "docs"


def reconcile(page: Any) -> None:
    panel = page.locator(".opskit-reconcile")
    panel.locator("button", has_text="Run").click()
    page.locator(".opskit-findings table").wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    status = panel.locator("select").last
    status.select_option(label=_label(status, "needs attention"))
    page.wait_for_timeout(500)


def sync(page: Any) -> None:
    panel = page.locator(".opskit-sync")
    _button(panel, "Build plan (dry run)").click()
    boxes = panel.locator(".opskit-plan input[type=checkbox]")
    boxes.first.wait_for(timeout=60_000)
    boxes.nth(1).click()  # one row unticked, the others stay ticked
    boxes.nth(3).click()
    page.wait_for_timeout(500)


def payments(page: Any) -> None:
    panel = page.locator(".opskit-payment")
    email = _demo_email(lambda a: a.role == "match" and a.shop_id == 1)
    search = panel.get_by_placeholder("email, name, account id or cus_…")
    search.fill(email)
    search.press("Enter")
    amount = panel.get_by_placeholder("19.99")
    amount.fill("19.99")  # typed as people write money
    panel.locator(".opskit-amount-ok").wait_for(timeout=10_000)
    _button(panel, "Create PaymentIntent…").click()
    _button(panel, "Create PaymentIntent").click()
    page.locator(".opskit-payment-result").wait_for(timeout=30_000)


def subscriptions(page: Any) -> None:
    panel = page.locator(".opskit-subscriptions")
    email = _demo_email(lambda a: a.sub_role == "match" and a.shop_id == 1)
    search = panel.get_by_placeholder("email, name, account id or cus_…")
    search.fill(email)
    search.press("Enter")
    page.locator(".opskit-subs table").wait_for(timeout=30_000)
    _button(panel, "Cancel at period end…").click()  # the question, answered with verbs
    page.wait_for_timeout(500)


def money(page: Any) -> None:
    panel = page.locator(".opskit-money")
    if not panel.locator(".opskit-payments table").count():  # the notebook runs it already
        _button(panel, "Run").click()
    page.locator(".opskit-payments table").wait_for(timeout=90_000)
    page.wait_for_timeout(800)


def _button(panel: Any, text: str) -> Any:
    """The button whose text is exactly ``text`` (its icon glyph aside)."""
    return panel.locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(text)}\s*$"))


def _label(select: Any, status: str) -> str:
    for text in select.locator("option").all_inner_texts():
        if text.replace("\xa0", " ").startswith(status + " "):
            return str(text)
    raise LookupError(status)


def _demo_email(pick: Callable[[demo.DemoAccount], bool]) -> str:
    return next(a.email for a in demo.build_plan().accounts if pick(a))


SHOTS: dict[str, tuple[str, str, Callable[[Any], None]]] = {
    "panel_reconcile.png": ("01_reconcile.ipynb", ".opskit-reconcile", reconcile),
    "panel_sync.png": ("02_sync.ipynb", ".opskit-sync", sync),
    "panel_payments.png": ("03_payments.ipynb", ".opskit-payment", payments),
    "panel_subscriptions.png": (
        "04_subscription_fixes.ipynb",
        ".opskit-subscriptions",
        subscriptions,
    ),
    "panel_money.png": ("05_money.ipynb", ".opskit-money", money),
}


def report_shot() -> None:
    """docs/report.png: the HTML report of the demo (amounts, dashboard links), in chromium."""
    import os

    from opskit.reports.files import write_report

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OPSKIT_DATA_DIR"] = tmp
        with demo.start(world="screenshots") as session:
            reports = session.ops.reconcile(progress=False)
            (path,) = write_report(reports, Path(tmp) / "report.html", meta={"database": "demo"})
        with browser_page(viewport=(1300, 1500)) as page:
            page.goto(path.as_uri())
            page.select_option("#filter-subscriptions", "multiple_active")
            page.locator("#report-subscriptions").scroll_into_view_if_needed()
            page.screenshot(path=str(DOCS / "report.png"), full_page=False)
    print("saved", DOCS / "report.png")


def main(names: list[str]) -> None:
    if not names or "report.png" in names:
        report_shot()
    for name, (notebook, selector, drive) in SHOTS.items():
        if names and name not in names:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "voila.log"
            with (
                voila_server(ROOT / "notebooks" / notebook, Path(tmp) / "data", log) as url,
                browser_page(viewport=(1300, 1600)) as page,
            ):
                page.goto(url, timeout=90_000)
                panel = page.locator(selector)
                panel.wait_for(timeout=60_000)
                drive(page)
                panel.screenshot(path=str(DOCS / name))
        print("saved", DOCS / name)


if __name__ == "__main__":
    main(sys.argv[1:])
