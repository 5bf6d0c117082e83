"""The one path from the CLI to the terminal: every string ``opskit`` prints goes through here.

Shop names, emails, actors, ids and error messages come from the database, Stripe
or the command line, and may hold anything: an ESC sequence that clears the
screen or forges text, a bidirectional override, Rich markup (``[/]`` would raise,
``[link=...]`` would render), an emoji code. Whatever the command (tables,
summaries, messages, errors, log lines), the text is shown as text:

* :func:`safe`: secret keys masked (:func:`opskit.common.keys.redact`), then
  control and bidi-control characters shown as ``<U+XXXX>``
  (:func:`opskit.common.text.visible`);
* :class:`SafeConsole` (made by :func:`console`): a Rich console that never reads
  markup, emoji codes or highlighting, passes every string it lays out through
  :func:`safe` before measuring it (tables stay aligned), and passes every
  segment it writes through :func:`visible` as a last line (so a ``Text`` built
  elsewhere cannot reach the terminal raw); Rich's own styling is the only escape
  sequence it emits;
* :func:`echo`: one line to stdout or stderr, through :func:`safe`;
* :func:`log_handler`: a stderr handler whose lines go through :func:`safe`.

``tests/test_cli_output.py`` runs every command with a hostile shop name and
actor, and checks that no ``opskit/faces/cli*.py`` prints any other way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

import typer
from rich.console import Console
from rich.segment import Segment

from opskit.common.keys import redact
from opskit.common.text import visible

__all__ = ["SafeConsole", "console", "echo", "log_handler", "safe"]


def safe(text: Any) -> str:
    """``text`` as the terminal may show it: keys masked, control/bidi characters visible."""
    return visible(redact(str(text)))


class SafeConsole(Console):
    """A Rich console that shows every string as text (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(markup=False, emoji=False, highlight=False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Any:
        kwargs.update(markup=False, emoji=False, highlight=False)
        return super().render_str(safe(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control:  # Rich's own cursor/screen codes, never from data
                yield segment
            else:
                text = visible(segment.text)
                yield segment if text == segment.text else Segment(text, segment.style)


def console(quiet: bool = False, *, stderr: bool = False) -> SafeConsole:
    """The console every command prints through (120 columns when piped or captured)."""
    out = SafeConsole(quiet=quiet, soft_wrap=False, stderr=stderr)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 120  # piped or captured: wide enough for the tables, still readable
    return out


def echo(message: Any, *, err: bool = False) -> None:
    """One line on stdout (``err``: stderr), through :func:`safe`."""
    typer.echo(safe(message), err=err)


class _SafeFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return safe(super().format(record))


def log_handler(fmt: str = "%(message)s") -> logging.Handler:
    """A stderr handler whose every line goes through :func:`safe`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter(fmt))
    return handler
