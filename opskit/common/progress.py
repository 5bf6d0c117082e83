"""Progress bars for people: shown at a terminal or in a notebook, never into a pipe or a log.

Every bulk loop uses :func:`bar` (a ``tqdm.auto`` bar), so a scheduled job whose
stderr goes to a file or a pipe gets no carriage-return noise, while a terminal
and JupyterLab still see the bar move.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as _chosen
from tqdm.std import tqdm as _console

__all__ = ["bar", "wanted"]


def wanted(progress: bool) -> bool:
    """True when a bar asked for (``progress``) has someone to show it to."""
    if not progress:
        return False
    if _chosen is not _console:  # the notebook bar: a widget, not stderr
        return True
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def bar(*, progress: bool, **kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar, disabled unless :func:`wanted` (``kwargs`` go to tqdm)."""
    return tqdm(disable=not wanted(progress), **kwargs)
