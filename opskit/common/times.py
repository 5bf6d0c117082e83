"""Reading the times callers give opskit ("since when?").

:func:`since_time` is what ``ops.changes(since=...)`` accepts:

- a point in time: a ``datetime``/``date``, a ``pandas.Timestamp``, or ISO-8601
  text (``"2026-11-28"``, ``"2026-11-28T06:00"``, ``"2026-11-28 06:00:00+01:00"``);
  naive means UTC;
- a span back from now: a ``timedelta``/``pandas.Timedelta``, or text of a number
  and a unit (``"24h"``, ``"7d"``, ``"90min"``, ``"2 days"``, ``"1w"``).

Anything else (``"yesterday"``, a bare number, a span into the future) is an
:class:`~opskit.common.exceptions.InputError` that names these forms.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from opskit.common.exceptions import InputError

__all__ = ["since_time"]

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")
_UNITS = {  # unit -> seconds
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 7 * 86400),
}

_GUIDANCE = (
    'Give a date or time (ISO text like "2026-11-28" or "2026-11-28T06:00", naive = UTC; '
    'a datetime or pandas Timestamp) or a span back from now ("24h", "7d", "90min", '
    "a timedelta)."
)


def _span(text: str) -> timedelta | None:
    m = _SPAN.match(text)
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        return None
    return timedelta(seconds=float(m.group(1)) * unit)


def since_time(value: Any, *, now: datetime | None = None, name: str = "since") -> datetime:
    """``value`` as a tz-aware UTC ``datetime`` (see the module docstring for the forms).

    ``now``: the time spans count back from (default: the current time).
    Raises :class:`InputError` naming the accepted forms.
    """
    current = now or datetime.now(UTC)
    span: timedelta | None = None
    when: pd.Timestamp | None = None
    if isinstance(value, pd.Timedelta | timedelta):
        span = pd.Timedelta(value).to_pytimedelta()
    elif isinstance(value, pd.Timestamp | datetime | date):
        when = pd.Timestamp(value)
    elif isinstance(value, str) and value.strip():
        span = _span(value)
        if span is None:
            try:
                when = pd.Timestamp(datetime.fromisoformat(value.strip()))
            except ValueError:
                when = None
    if span is not None:
        if span < timedelta(0):
            raise InputError(f"{name}={value!r} is a span into the future", guidance=_GUIDANCE)
        return current - span
    if when is None or when is pd.NaT:
        raise InputError(f"{name}={value!r} is not a date, time or span", guidance=_GUIDANCE)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    return when.to_pydatetime()
