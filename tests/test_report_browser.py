"""The HTML report in a real headless Chromium: chart and tables visible, status filter works."""

from __future__ import annotations

from pathlib import Path

from opskit.reports import files as report
from tests.browser import browser_page
from tests.test_report import customers, subscriptions


def test_html_report_in_chromium(tmp_path: Path) -> None:
    reports = {"customers": customers(), "subscriptions": subscriptions()}
    (path,) = report.write_report(reports, tmp_path / "report.html")
    n = len(reports["customers"])
    n_match = int((reports["customers"]["status"] == "match").sum())

    with browser_page() as page:
        page.goto(path.as_uri())
        chart = page.locator("#chart-customers svg")
        assert chart.is_visible()
        box = chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        assert page.locator("#summary-customers").is_visible()
        assert page.locator("#summary-customers tbody tr").count() == 3  # one row per shop

        rows = page.locator("#findings-customers tbody tr")
        visible = page.locator("#findings-customers tbody tr:not([hidden])")
        count = page.locator("#count-customers")
        # default: what needs attention (everything but match)
        assert visible.count() == n - n_match
        assert count.inner_text() == f"{n - n_match} of {n} rows shown"

        page.select_option("#filter-customers", "mismatch")
        assert visible.count() == 1
        assert visible.first.get_attribute("data-status") == "mismatch"
        assert visible.first.is_visible()

        page.select_option("#filter-customers", "*")
        assert visible.count() == rows.count() == n

        # a count in the summary table jumps to its findings, filtered
        page.click("#summary-customers a[data-filter='shop_error']")
        assert page.input_value("#filter-customers") == "shop_error"
        assert visible.count() == 1
        # the other report's filter is independent
        assert page.input_value("#filter-subscriptions") == "!match"
        page.screenshot(path=str(tmp_path / "report.png"))
