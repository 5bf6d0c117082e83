"""Every argument of `opskit reconcile` / `opskit money` is checked before any I/O: a bad
period or bound exits 3 (usage) with one line naming the accepted forms, and nothing
is opened, read or asked of Stripe."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opskit.faces.cli import app


def _run(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["reconcile", "--money-period", "2026-13"], "2026-11"),
        (["reconcile", "--money-period", "2026-02-30"], "2026-11"),
        (["reconcile", "--money-period", "November"], "2026-11"),
        (["money", "--period", "2026-13"], "2026-11"),
        (["money", "--period", "2026-11-31"], "2026-11"),
        (["money", "--since", "yesterday-ish"], "ISO date"),
        (["money", "--since", "2026-11-01", "--until", "not-a-date"], "ISO date"),
        (["money", "--since", "2026-12-01", "--until", "2026-11-01"], "after until"),
        (["money", "--period", "2026-11", "--since", "2026-01-01"], "not both"),
    ],
)
def test_bad_periods_exit_3_in_one_line_before_any_io(
    args: list[str], said: str, tmp_path: Path
) -> None:
    # A database that does not exist: a check made after connecting would say so
    # instead (and create the file); the stripe base is an address nothing listens on.
    db = tmp_path / "nowhere" / "shop.sqlite"
    code, out = _run(
        [*args, "--database-url", f"sqlite:///{db}", "--stripe-api-base", "http://127.0.0.1:9"]
    )
    assert code == 3, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert said in lines[0] and "Traceback" not in out
    assert not db.exists() and not db.parent.exists()  # nothing opened or made
