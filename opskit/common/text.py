"""Text from the database or Stripe made safe for where it is shown.

Shop names, emails and details are typed by people (and attackers). Wherever
opskit prints or writes them:

* :func:`visible`: control characters (ESC sequences included) and Unicode
  bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C),
  which reorder what a reader sees, are replaced by a visible ``<U+XXXX>``;
  tabs and newlines stay. Used by every report format and the CLI.
* :func:`csv_cell`: a text cell a spreadsheet would run as a formula
  (``=``, ``+``, ``-``, ``@``, tab or carriage return first) gets a leading
  ``'`` (OWASP's CSV-injection rule), so ``=HYPERLINK(...)`` or ``-2+3`` is
  shown, never evaluated.
"""

from __future__ import annotations

import re

__all__ = ["csv_cell", "visible"]

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def visible(text: str) -> str:
    """``text`` with control and bidi-control characters shown as ``<U+XXXX>``."""
    return _UNSAFE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def csv_cell(text: str) -> str:
    """A CSV text cell that no spreadsheet evaluates; :func:`visible` applied too."""
    out = visible(text)
    return "'" + out if out.startswith(_FORMULA_START) else out
