"""Bad input is a usage error (exit 3, one line with what to do), never "please report it"
(exit 4): unreadable plan files, out-of-range options, help that names options a command
does not have, float amounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from opskit.common.exceptions import InvalidAmount
from opskit.core.money import validate_amount
from opskit.faces.cli import app

PLAN_HEADER = "shop_id,account_id,key,old_value,new_value\n"
BAD_PLANS: dict[str, bytes] = {
    "empty.csv": b"",  # pandas EmptyDataError
    "unterminated.csv": b'\xff\xfe garbage,,,\n"unterminated\n',  # ParserError
    "not-utf8.csv": PLAN_HEADER.encode() + b"1,\xff\xfe\xfd,k,a,b\n",  # UnicodeDecodeError
    "ragged.csv": PLAN_HEADER.encode() + b"1,2,k,a,b,c,d,e\n",  # never shifted into an index
    "ragged-later.csv": PLAN_HEADER.encode() + b"1,2,k,a,b\n1,2,k,a,b,c\n",
    "fake.parquet": b"not parquet",  # pyarrow ArrowInvalid
    "empty.parquet": b"",
}


@pytest.mark.parametrize("name", list(BAD_PLANS))
def test_unreadable_plan_files_are_usage_errors(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(BAD_PLANS[name])
    result = CliRunner().invoke(
        app,
        ["sync", "--apply", str(path), "--actor", "me"],
        env={"OPSKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'none.sqlite'}"},
    )
    assert result.exit_code == 3, result.output
    assert "please report" not in result.output and "unexpected" not in result.output
    assert "cannot read the plan" in result.output and "--plan-out" in result.output


def test_a_directory_or_missing_plan_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    for target in (tmp_path / "dir.csv", tmp_path / "missing.csv"):
        result = CliRunner().invoke(app, ["sync", "--apply", str(target), "--actor", "me"])
        assert result.exit_code == 3, result.output


@pytest.mark.parametrize("limit", ["-5", "0"])
def test_audit_limit_below_one_is_refused(limit: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["audit", "--limit", limit],
        env={"OPSKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'a.sqlite'}"},
    )
    assert result.exit_code == 3, result.output
    assert "--limit" in result.output


def _commands() -> list[Any]:
    """Every leaf command (typer vendors its own click: duck-typed)."""
    out: list[Any] = []
    todo: list[Any] = list(typer.main.get_command(app).commands.values())  # type: ignore[attr-defined]
    while todo:
        cmd = todo.pop()
        if hasattr(cmd, "commands"):
            todo.extend(cmd.commands.values())
        else:
            out.append(cmd)
    return sorted(out, key=lambda c: str(c.name))


@pytest.mark.parametrize("command", _commands(), ids=lambda c: str(c.name))
def test_option_help_names_only_options_the_command_has(command: Any) -> None:
    own = {o for p in command.params for o in getattr(p, "opts", [])}
    for param in command.params:
        helptext = getattr(param, "help", None) or ""
        for named in re.findall(r"(?<![\w-])--[a-z][a-z-]*", helptext):
            assert named in own, f"{command.name} {param.name}: help names {named}"


def test_sync_format_help_names_plan_out() -> None:
    result = CliRunner().invoke(app, ["sync", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if "--format" in x)
    assert "--plan-out" in line and "--out " not in line


@pytest.mark.parametrize(
    ("amount", "currency", "said", "not_said"),
    [
        (1999.0, "eur", ["EUR 19.99 -> 1999", "pass 1999"], ["199900"]),
        (19.99, "usd", ["1999 for 19.99 USD"], []),
        (500.0, "jpy", ["JPY 500 -> 500", "pass 500"], ["50000"]),
        (float("nan"), "eur", ["EUR 19.99 -> 1999"], ["nan for"]),
    ],
)
def test_float_amounts_are_refused_with_the_rule(
    amount: float, currency: str, said: list[str], not_said: list[str]
) -> None:
    with pytest.raises(InvalidAmount) as info:
        validate_amount(amount, currency)
    for text in said:
        assert text in info.value.message
    for text in not_said:
        assert text not in info.value.message
