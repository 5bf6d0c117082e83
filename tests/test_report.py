"""Report files people read: every format written and read back, exit-code rules, no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from opskit.common.exceptions import InputError
from opskit.common.keys import mask_key
from opskit.core import frames
from opskit.reports import files as report

RAW_KEY = "sk_live_" + "Zq9" * 8  # a secret that slipped into a detail text
SHOP_NAMES = {1: "Northwind <Coffee>", 2: "Blue Harbor", 3: "Legacy Outlet"}


def _frame(spec: frames.Spec, rows: list[dict[str, Any]]) -> pd.DataFrame:
    return frames.conform(pd.DataFrame(rows), spec)


def customers(statuses: list[str] | None = None) -> pd.DataFrame:
    statuses = statuses or frames.CUSTOMER_STATUSES + ["match"] * 5
    rows = []
    for i, status in enumerate(statuses):
        shop = 3 if status == "shop_error" else 1 + i % 2
        rows.append(
            {
                "shop_id": shop,
                "shop_name": SHOP_NAMES[shop],
                "account_id": 1000 + i,
                "stripe_customer_id": f"cus_{i:04d}",
                "status": status,
                "mismatch_fields": "email" if status == "mismatch" else None,
                "local_email": f"a{i}@example.com",
                "detail": f"AuthenticationError: bad key {RAW_KEY}"
                if status == "shop_error"
                else None,
            }
        )
    return _frame(frames.CUSTOMER_REPORT, rows)


def subscriptions() -> pd.DataFrame:
    rows = [
        {"shop_id": 1 + i % 2, "shop_name": SHOP_NAMES[1 + i % 2], "account_id": 1000 + i,
         "stripe_subscription_id": f"sub_{i}", "status": s, "local_status": "active"}
        for i, s in enumerate(frames.SUBSCRIPTION_STATUSES[:-1] + ["match", "match"])
    ]  # fmt: skip
    return _frame(frames.SUBSCRIPTION_REPORT, rows)


@pytest.fixture
def reports() -> dict[str, pd.DataFrame]:
    return {"customers": customers(), "subscriptions": subscriptions()}


# -- exit-code rules ---------------------------------------------------------------------------


def test_outcome_rules() -> None:
    assert report.outcome({"customers": customers(["match", "match"])}) == report.OK
    assert report.outcome({"c": customers(["match", "shop_not_configured"])}) == report.DRIFT
    assert report.outcome({"c": customers(["match", "mismatch"])}) == report.DRIFT
    drift_and_failure = {"c": customers(["mismatch"]), "s": customers(["match", "shop_error"])}
    assert report.outcome(drift_and_failure) == report.SHOP_FAILED
    assert report.outcome({"c": frames.empty(frames.CUSTOMER_REPORT)}) == report.OK


# -- every format, read back -------------------------------------------------------------------


def test_csv_is_plain_one_file_per_report(tmp_path: Path, reports: dict) -> None:
    # One file per path asked for: several reports in one csv is refused, never renamed.
    with pytest.raises(InputError, match=r"\{report\}"):
        report.write_report(reports, tmp_path / "r.csv")
    assert list(tmp_path.iterdir()) == []
    written = report.write_report(reports, tmp_path / "r-{report}.csv")
    assert [p.name for p in written] == ["r-customers.csv", "r-subscriptions.csv"]
    back = pd.read_csv(written[0])
    assert list(back.columns) == list(frames.CUSTOMER_REPORT)
    assert back["status"].tolist() == reports["customers"]["status"].astype(str).tolist()
    # one report -> exactly the path asked for
    only = report.write_report({"customers": reports["customers"]}, tmp_path / "one.csv")
    assert only == [tmp_path / "one.csv"]


def test_parquet_keeps_dtypes(tmp_path: Path, reports: dict) -> None:
    written = report.write_report(reports, tmp_path / "r-{report}.parquet")
    for path, name in zip(written, ["customers", "subscriptions"], strict=True):
        back = pd.read_parquet(path)
        expected = reports[name].copy()
        # the one deliberate difference: the secret is masked on the way out
        if "detail" in expected:
            expected["detail"] = expected["detail"].str.replace(RAW_KEY, str(mask_key(RAW_KEY)))
        pd.testing.assert_frame_equal(back, expected)
        assert back["status"].dtype.ordered
        assert back["account_id"].dtype == "string"


def test_json_holds_findings_and_summaries(tmp_path: Path, reports: dict) -> None:
    (path,) = report.write_report(reports, tmp_path / "r.json")
    doc = json.loads(path.read_text())
    assert set(doc["reports"]) == {"customers", "subscriptions"}
    assert len(doc["reports"]["customers"]) == len(reports["customers"])
    first = doc["summary"]["customers"][0]
    assert first["shop_id"] == "1" and first["match"] >= 1 and "total" in first


def test_excel_sheets_headers_and_widths(tmp_path: Path, reports: dict) -> None:
    from openpyxl import load_workbook

    (path,) = report.write_report(reports, tmp_path / "r.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames == ["Summary", "Customers", "Subscriptions"]
    ws = wb["Customers"]
    header = [c.value for c in ws[1]]
    assert header == list(frames.CUSTOMER_REPORT)
    assert all(c.font.b for c in ws[1])
    assert ws.freeze_panes == "A2"
    assert _width(ws, 7) >= len("a10@example.com")  # local_email, sized to its content
    assert _width(ws, 11) > _width(ws, 1)  # detail is wider than shop_id
    assert ws.max_row == len(reports["customers"]) + 1
    assert ws["E2"].value == reports["customers"]["status"].iloc[0]
    summary = wb["Summary"]
    assert "Customers" in summary["A1"].value and summary["A1"].font.b
    assert [c.value for c in summary[2]][:3] == ["shop_id", "shop_name", "match"]
    assert summary["A3"].value == "1"  # ids are text


def _width(ws: Any, column: int) -> float:
    """The width of a 1-based column (openpyxl keys ranges of equal width by their first)."""
    for dim in ws.column_dimensions.values():
        if dim.min <= column <= dim.max:
            return float(dim.width)
    raise AssertionError(f"column {column} has no width set")


def test_html_is_self_contained(tmp_path: Path, reports: dict) -> None:
    (path,) = report.write_report(reports, tmp_path / "r.html", meta={"database": "demo"})
    text = path.read_text()
    assert text.count("<svg") == 2  # one chart per report
    assert 'id="findings-customers"' in text and 'id="summary-subscriptions"' in text
    assert "Northwind &lt;Coffee&gt;" in text  # escaped, not markup
    # nothing is loaded from anywhere: no src/href to another host, no @import
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text)
    assert "@import" not in text and "<link" not in text


@pytest.mark.parametrize("fmt", report.FORMATS)
def test_no_secret_in_any_file(tmp_path: Path, reports: dict, fmt: str) -> None:
    for path in report.write_report(reports, tmp_path / f"r-{{report}}.{fmt}"):
        data = path.read_bytes()
        assert RAW_KEY.encode() not in data
        assert RAW_KEY[8:].encode() not in data


def test_status_chart_has_a_bar_per_shop_and_status() -> None:
    fig = report.status_chart(customers(), title="Customers")
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["1 Northwind <Coffee>", "2 Blue Harbor", "3 Legacy Outlet"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == frames.CUSTOMER_STATUSES


# -- bad input -----------------------------------------------------------------------------------


def test_format_from_suffix_or_option() -> None:
    assert report.format_for("x.HTML", None) == "html"
    assert report.format_for("x.data", "parquet") == "parquet"
    with pytest.raises(InputError, match="suffix"):
        report.format_for("x.xls", None)
    with pytest.raises(InputError, match="unknown format"):
        report.format_for("x.csv", "pdf")


def test_unwritable_paths(tmp_path: Path, reports: dict) -> None:
    with pytest.raises(InputError, match="does not exist"):
        report.write_report(reports, tmp_path / "missing" / "r.html")
    with pytest.raises(InputError, match="directory"):
        report.write_report(reports, tmp_path, "html")


def test_format_option_must_agree_with_the_suffix() -> None:
    """`--format csv --out report.html` would write CSV text into a file browsers open as HTML."""
    with pytest.raises(InputError, match="does not match"):
        report.format_for("report.html", "csv")
    with pytest.raises(InputError, match="does not match"):
        report.format_for("report.xlsx", "html")
    assert report.format_for("report.HTM", "html") == "html"
    assert report.format_for("report.pq", "parquet") == "parquet"
    assert report.format_for("report.txt", "csv") == "csv"  # a suffix no format claims


def test_excel_shows_text_as_text(tmp_path: Path) -> None:
    """Names and emails come from customers: never run as formulas or turned into links."""
    from openpyxl import load_workbook

    formula = '=HYPERLINK("http://evil.example","refund")'
    df = customers(["mismatch"]).assign(
        local_name=pd.array(["=1+2"], dtype="string"),
        stripe_name=pd.array([formula], dtype="string"),
        local_email=pd.array(["http://evil.example/x"], dtype="string"),
    )
    (path,) = report.write_report({"customers": df}, tmp_path / "r.xlsx")
    ws = load_workbook(path)["Customers"]
    cells = {ws.cell(1, c).value: ws.cell(2, c) for c in range(1, ws.max_column + 1)}
    for col, text in (("local_name", "=1+2"), ("stripe_name", formula)):
        assert cells[col].data_type == "s" and cells[col].value == text
    assert cells["local_email"].value == "http://evil.example/x"
    assert cells["local_email"].hyperlink is None
    assert cells["account_id"].value == "1000"  # ids are text, even when they look like numbers


def test_a_failed_write_leaves_the_previous_report_intact(tmp_path: Path, reports: dict) -> None:
    path = tmp_path / "r.xlsx"
    report.write_report(reports, path)
    before = path.read_bytes()
    unwritable = {"customers": reports["customers"].assign(score=float("inf"))}
    with pytest.raises(TypeError):
        report.write_report(unwritable, path)
    assert path.read_bytes() == before  # not a half-written workbook
    assert sorted(tmp_path.iterdir()) == [path]  # and no temporary file left behind


def test_several_files_are_checked_before_any_is_written(tmp_path: Path, reports: dict) -> None:
    (tmp_path / "r-subscriptions.csv").mkdir()
    with pytest.raises(InputError, match="r-subscriptions.csv"):
        report.write_report(reports, tmp_path / "r-{report}.csv")
    assert not (tmp_path / "r-customers.csv").exists()  # not half a report set
