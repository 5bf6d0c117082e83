"""Hostile names are shown as text wherever they go: no Rich markup, no live CSV formula,
no raw ESC sequence, no bidirectional override, in the CLI and every report format."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from opskit.faces.cli import app
from opskit.reports.files import FORMATS, write_report
from opskit.sandbox import Sandbox
from tests.dbutil import insert
from tests.faults.conftest import Tally
from tests.fixtures_sandbox import make_key

HOSTILE = [
    "Smith [/] Sons",
    "[link=https://evil.example]Click[/link]",
    '=HYPERLINK("https://evil.example","x")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd",
    "-2+3",
    "\x1b[31mRED\x1b[0m",
    "abc\u202etxt.exe",
    "\u2066iso\u2069",
]
RAW_CONTROL = ("\x1b", "\u202e", "\u2066", "\u2069")


def test_hostile_shop_names_in_the_cli_and_every_format(
    db_url: str, sandbox: Sandbox, tally: Tally, tmp_path: Path
) -> None:
    shops = [
        {"id": i + 1, "name": name, "stripe_secret_key": make_key(f"h{i}")}
        for i, name in enumerate(HOSTILE)
    ]
    insert(db_url, shops=shops)
    runner = CliRunner()

    def cli() -> tuple[str, str]:
        result = runner.invoke(app, ["shops", "--database-url", db_url], env={"COLUMNS": "250"})
        if result.exit_code != 0:
            return "wrong", f"exit {result.exit_code}: {result.output[-300:]}"
        out = result.stdout
        if any(c in out for c in RAW_CONTROL):
            return "wrong", "a raw control character reached the terminal"
        for name in ("Smith [/] Sons", "[link=https://evil.example]Click[/link]"):
            if name not in out:
                return "wrong", f"{name!r} not shown as text"
        return "right", "names shown as text"

    assert tally.run("hostile names in the CLI", cli) == "right"

    frame = pd.DataFrame({"shop_id": range(len(HOSTILE)), "shop_name": HOSTILE}).astype(
        {"shop_name": "string"}
    )

    def report(fmt: str) -> tuple[str, str]:
        [path] = write_report({"shops": frame}, tmp_path / f"r.{fmt}", fmt)
        if fmt == "csv":
            with path.open(newline="", encoding="utf-8") as f:
                cells = [row[1] for row in csv.reader(f)][1:]
            live = [c for c in cells if c[:1] in ("=", "+", "-", "@")]
            if live:
                return "wrong", f"formulas left live: {live}"
            text = "\n".join(cells)
        elif fmt == "parquet":
            text = "\n".join(pd.read_parquet(path)["shop_name"])
        elif fmt == "xlsx":
            sheets = pd.read_excel(path, sheet_name=None)
            text = "\n".join(str(v) for df in sheets.values() for v in df.to_numpy().ravel())
        else:
            text = path.read_text(encoding="utf-8")
        if any(c in text for c in RAW_CONTROL):
            return "wrong", "a raw control or bidi character was written"
        if "U+202E" not in text:
            return "wrong", "the override is not shown"
        return "right", f"{fmt}: escaped"

    for fmt in FORMATS:
        assert tally.run(f"hostile names in {fmt}", lambda f=fmt: report(f)) == "right"
