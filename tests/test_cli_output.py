"""Every string the CLI prints goes through one path (opskit.faces.output): a shop name or an
actor holding ESC sequences, a bidi override, Rich markup or an emoji code is shown as text
by every command, in tables, summaries, messages, errors and log lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import opskit
from opskit.backend import audit
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests.cli_world import HOSTILE, RAW, CliWorld, make_cli_world

ACTOR = "evil\x1b[2J\u202e[bold]me[/bold]"
SHOWN = "<U+001B>[2J"  # how the ESC of both is shown
MONTH = pd.Timestamp.now(tz="UTC").strftime("%Y-%m")

# command -> (arguments, whether the hostile shop name or actor must be shown)
COMMANDS: dict[str, tuple[list[str], bool]] = {
    "reconcile": (["reconcile"], True),
    "reconcile --money-period": (["reconcile", "--money-period", MONTH], True),
    "shops": (["shops"], True),
    "sync --plan-out": (["sync", "--plan-out", "{tmp}/plan.csv"], False),
    "sync --apply": (["sync", "--apply", "{tmp}/plan.csv", "--actor", ACTOR], True),
    "audit": (["audit"], True),
    "recover": (["recover", "--actor", ACTOR, "--older-than", "0"], False),
    "money": (["money", "--period", MONTH], True),
    "refresh": (["refresh"], True),
    "webhooks deliveries": (["webhooks", "deliveries"], False),
    "webhooks replay": (["webhooks", "replay"], False),
    "webhooks secret list": (["webhooks", "secret", "list"], False),
    "webhooks secret remove": (["webhooks", "secret", "remove", "--shop", "1"], False),
    # errors carry what the user typed
    "unknown shop": (["reconcile", "--shop", "\x1b[2J\u202e"], True),
    "bad option value": (["money", "--period", "\x1b[2J"], False),  # shown as repr: \\x1b
    "audit actor filter": (["audit", "--actor", ACTOR], False),
}
EXCLUDED = {
    "demo": "builds its own seeded world (fixed names); its tables use the same console",
    "sandbox": "serves until Ctrl-C and prints nothing of the data",
    "serve": "runs the receiver until stopped; prints one line through output.echo",
    "add": "reads a secret from stdin; prints one line through output.echo",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Iterator[CliWorld]:
    tmp = tmp_path_factory.mktemp("cli-output")
    w = make_cli_world(tmp, sandbox, pay=True)  # a payment: the money summary names the shop
    ops = opskit.connect(w.url, stripe_api_base=sandbox.url)
    plan = ops.sync_plan(["1"], progress=False)
    assert len(plan) == 1  # account 13 -> the unlinked customer with its email
    (tmp / "plan.csv").write_text(plan.to_csv(index=False))
    audit.append(  # the audit log holds the hostile actor
        ops.ctx.db, actor=ACTOR, shop_id="1", action="test.hostile", target="account:13",
        params={}, outcome="ok",
    )  # fmt: skip
    yield w


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_shows_hostile_text_as_text(world: CliWorld, name: str) -> None:
    args, shown = COMMANDS[name]
    tmp = Path(world.url.removeprefix("sqlite:///")).parent
    args = [a.replace("{tmp}", str(tmp)) for a in args]
    result = CliRunner().invoke(app, args, env={**world.env(), "COLUMNS": "250"})
    assert result.exit_code in (0, 1, 2, 3), result.output
    text = result.stdout + result.stderr
    assert not [c for c in RAW if c in text], text[:2000]
    assert "\U0001f604" not in text  # :smile: is not an emoji
    if shown:
        assert SHOWN in text, text[:2000]


def _leaves() -> set[str]:
    names: set[str] = set()
    todo: list[Any] = list(typer.main.get_command(app).commands.values())  # type: ignore[attr-defined]
    while todo:
        cmd = todo.pop()
        if hasattr(cmd, "commands"):
            todo.extend(cmd.commands.values())
        else:
            names.add(str(cmd.name))
    return names


def test_every_command_is_scanned_or_says_why_not() -> None:
    scanned = {args[0] if args[0] != "webhooks" else args[-1] for args, _ in COMMANDS.values()}
    scanned |= {args[2] for args, _ in COMMANDS.values() if args[:2] == ["webhooks", "secret"]}
    assert _leaves() <= scanned | set(EXCLUDED), _leaves() - scanned - set(EXCLUDED)


_OTHER_PATHS = re.compile(
    r"typer\.echo\(|click\.echo\(|Console\(|(?<![.\w])print\(|sys\.stdout\.write\("
    r"|sys\.stderr\.write\((?!safe\()"
)


def test_the_cli_prints_only_through_the_output_module() -> None:
    faces = Path(opskit.__file__).parent / "faces"
    for path in sorted(faces.glob("cli*.py")):
        code = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith(("#", '"', "'"))
        ]
        found = [line.strip() for line in code if _OTHER_PATHS.search(line)]
        assert not found, f"{path.name} prints around opskit.faces.output: {found}"


def test_hostile_name_is_in_the_world() -> None:
    assert "\x1b" in HOSTILE  # the scan above would be vacuous otherwise
