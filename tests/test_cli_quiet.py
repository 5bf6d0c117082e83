"""``-q`` prints nothing but errors: a chart matplotlib cannot lay out is logged, not printed."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from opskit.core import frames
from opskit.faces.cli import app
from opskit.reports.files import chart_svg
from opskit.sandbox import Sandbox
from tests.cli_world import HOSTILE, make_cli_world

LONG = "Very Long Shop Name " * 15


def test_a_long_shop_name_does_not_collapse_the_chart(caplog: pytest.LogCaptureFixture) -> None:
    report = frames.conform(
        pd.DataFrame(
            {
                "shop_id": ["1", "2"],
                "shop_name": [LONG, "b"],
                "status": ["match", "orphan_in_stripe"],
                "account_id": ["1", "2"],
            }  # fmt: skip
        ),
        frames.CUSTOMER_REPORT,
    )
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        svg = chart_svg(report)
    assert svg.startswith("<svg")
    assert [str(w.message) for w in caught] == []
    assert not [r for r in caplog.records if "chart" in r.getMessage()]


def test_reconcile_quiet_with_an_html_report_prints_nothing(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    world = make_cli_world(tmp_path, sandbox, name=HOSTILE + LONG)
    out = tmp_path / "q.html"
    result = CliRunner().invoke(app, ["reconcile", "-q", "--out", str(out)], env=world.env())
    assert result.exit_code in (0, 1), result.output
    assert out.is_file()
    assert result.stdout == "" and result.stderr == ""
