"""Reading the backend's cells: one rule per kind of value, never raising, never coercing.

Every loader of backend rows (shops, accounts, orders; :mod:`opskit.backend.db`)
reads ids, times and details through these functions, so one bad row becomes a
reason on that row (``row_error`` in the frames) instead of an exception that
stops every shop, and a value that is not what its column should hold is never
turned into one that is (``1.5`` is not shop ``1``; ``'1700000000'`` is not a
date; PostgreSQL's ``'infinity'`` is not a time).

- :func:`read_times`: timestamps as tz-aware UTC; anything that is not an
  ISO-8601 date/time (or a datetime) is <NaT> with a reason naming the column
  and the value. SQL NULL is <NaT> without a reason unless the column is
  required.
- :func:`id_problem`: why a local id read from the database is not an id of its
  column's kind (NULL, text in an integer column, a fraction).
- :func:`duplicate_ids`: ids held by more than one row (a key one of them
  would silently lose).
- :func:`read_amounts`: money in major units (a float ``total``) as integer minor
  units; NaN, Infinity, text that is no number and amounts beyond Int64 are
  <NA> with a reason (never rounded into a number).

Stripe ids inside ``details`` have their own single rule,
:func:`opskit.common.models.id_problem` (text, or nothing), which
``parse_details`` and the SQL fast paths share.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import numpy as np
import pandas as pd

from opskit.common.ids import digits_only

__all__ = [
    "UTC_TIME",
    "duplicate_ids",
    "id_problem",
    "id_problems",
    "join_problems",
    "read_amounts",
    "read_times",
]

UTC_TIME = "datetime64[ns, UTC]"

# ISO 8601 as databases write it: a date, optionally a time and an offset.
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"
    r"\s*(?:Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")
_ENDLESS = {"infinity", "+infinity", "-infinity"}
# The range a datetime64[ns] holds (1677-09-21 .. 2262-04-11), as whole years to say.
_LOW, _HIGH = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")


def _shown(value: Any, limit: int = 40) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def time_problem(value: Any, column: str) -> str | None:
    """Why ``value`` is not a time opskit can use (None: it is one, or it is NULL)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low in _ENDLESS:
            return f"{column} is {text!r} (an endless time), not a date"
        if text.startswith("0000-00-00"):
            return f"{column} is the zero date {_shown(text)}, not a date"
        if _NUMBER.fullmatch(text):
            return (
                f"{column} is the number {_shown(text)} as text, not a date "
                "(opskit does not guess an epoch unit)"
            )
        if not _ISO.fullmatch(text):
            return f"{column} is not a date: {_shown(text)}"
        try:
            stamp = pd.Timestamp(text)
        except (ValueError, OverflowError):
            return f"{column} is not a valid date: {_shown(text)}"
    elif isinstance(value, int | float | np.number):  # bool is an int
        return f"{column} is the number {_shown(value)}, not a date"
    elif isinstance(value, dt.datetime | dt.date | pd.Timestamp | np.datetime64):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, OverflowError):
            return f"{column} {_shown(value)} is outside the dates opskit can hold (1678-2261)"
    else:
        return f"{column} is a {type(value).__name__}, not a date"
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if not _LOW <= stamp <= _HIGH:
        return f"{column} {_shown(value)} is outside the dates opskit can hold (1678-2261)"
    return None


def read_times(
    values: Sequence[Any] | pd.Series, column: str, *, required: bool = False
) -> tuple[pd.Series, list[str | None]]:
    """``values`` as a UTC_TIME Series, and per value the reason it is <NaT> (or None).

    Naive times are taken as UTC (the backends store UTC). Accepted: datetimes and
    ISO-8601 text (``2026-01-05``, ``2026-01-05 10:00:00+00``, ``...T10:00:00Z``).
    Refused, each with a reason naming ``column``: PostgreSQL's ``infinity`` /
    ``-infinity``, MySQL's zero date ``0000-00-00 ...``, numbers (epoch seconds or
    not: the unit is never guessed), free text (``yesterday``, ``now``), dates
    outside 1678-2261. SQL NULL is <NaT>, with the reason "``column`` is empty"
    only when ``required``. Never raises.
    """
    s = pd.Series(values, dtype=object).reset_index(drop=True)
    n = len(s)
    out = pd.Series(pd.NaT, index=range(n), dtype=UTC_TIME)
    problems: list[str | None] = [None] * n
    if n == 0:
        return out, problems
    null = s.isna().to_numpy(dtype=bool)
    fast = _fast_times(s)
    if fast is not None:  # the common case: every value a good time (or NULL), vectorized
        if required:
            problems = [f"{column} is empty" if x else None for x in null]
        return fast, problems
    is_text = s.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    text = s.where(is_text).astype("string").str.strip()
    iso = text.str.fullmatch(_ISO.pattern).fillna(False).to_numpy(dtype=bool) & is_text
    is_time = s.map(lambda v: isinstance(v, dt.date | np.datetime64)).to_numpy(dtype=bool)
    good = (iso | is_time) & ~null
    if good.any():
        try:
            parsed = pd.to_datetime(
                pd.Series(np.where(iso, text.to_numpy(dtype=object), s.to_numpy(dtype=object)))[
                    good
                ],
                utc=True,
                format="ISO8601",
            )
            inside = (parsed >= _LOW) & (parsed <= _HIGH)
            ok_idx = parsed.index[inside.to_numpy(dtype=bool)]
            out.loc[ok_idx] = parsed[inside].astype(UTC_TIME)
            good[parsed.index[~inside.to_numpy(dtype=bool)]] = False
        except (ValueError, OverflowError, TypeError):
            good[:] = False  # one of them is not a date after all: each on its own below
            for i in np.flatnonzero(iso | is_time):
                if time_problem(s.iat[i], column) is None:
                    out.iat[i] = _one(s.iat[i])
                    good[i] = True
    for i in np.flatnonzero(~good & ~null):
        problems[i] = time_problem(s.iat[i], column) or f"{column} is not a date"
    if required:
        for i in np.flatnonzero(null):
            problems[i] = f"{column} is empty"
    return out, problems


def _iso_dates(s: pd.Series) -> np.ndarray:
    """Per value of an all-text (or NULL) ``s``: NULL, or starts with ``dddd-dd-dd``.

    Vectorized on the first ten characters (as UCS-4 code points), so a million
    rows cost a fraction of a second.
    """
    null = s.isna().to_numpy(dtype=bool)
    head = np.asarray(s.where(~null, "0000-00-00").to_numpy(dtype=object), dtype="U10")
    codes = head.view(np.uint32).reshape(len(head), 10)
    digits = codes[:, [0, 1, 2, 3, 5, 6, 8, 9]]
    ok = (codes[:, 4] == 45) & (codes[:, 7] == 45) & ((digits >= 48) & (digits <= 57)).all(1)
    return ok | null


def _fast_times(s: pd.Series) -> pd.Series | None:
    """All of ``s`` as UTC_TIME when every value is a datetime or ISO-8601 text, else None.

    pandas' ISO-8601 parser is strict, but takes ``now``, ``today`` and bare digits
    (``2026``): the date prefixes (few distinct ones) are checked first.
    """
    kind = pd.api.types.infer_dtype(s, skipna=True)
    try:
        if kind == "empty":
            return pd.Series(pd.NaT, index=s.index, dtype=UTC_TIME)
        if kind in ("datetime", "datetime64", "date"):
            parsed = pd.to_datetime(s, utc=True)
        elif kind == "string":
            if not bool(_iso_dates(s).all()):
                return None
            parsed = pd.to_datetime(s, utc=True, format="ISO8601")
        else:
            return None
        inside = parsed.isna() | ((parsed >= _LOW) & (parsed <= _HIGH))
        if not bool(inside.all()):
            return None
        return parsed.astype(UTC_TIME)
    except (ValueError, OverflowError, TypeError):
        return None


def _one(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value.strip() if isinstance(value, str) else value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def id_problem(text: str | None, column: str, kind: str) -> str | None:
    """Why ``text`` (an id as the database renders it as text) is not an id of ``kind``.

    ``kind`` is the column's kind of id: ``"integer"``, ``"UUID"`` or ``"text"``.
    None when it is one. NULL/blank: "``column`` is empty"; an integer column
    holding ``'1.5'``, ``'1.0'`` or ``'abc'``: not an integer id (never rounded,
    never read as another shop's id).
    """
    if text is None or not str(text).strip():
        return f"{column} is empty"
    text = str(text).strip()
    if kind == "integer" and not digits_only(text):
        return f"{column} {_shown(text)} is not an integer id (ids are never rounded or guessed)"
    return None


def id_problems(texts: Sequence[str | None], column: str, kind: str) -> list[str | None]:
    """:func:`id_problem` for many ids at once (fast: a million ids in a fraction of a second)."""
    out: list[str | None] = [None] * len(texts)
    for i, text in enumerate(texts):
        if text is None or text is pd.NA:
            out[i] = f"{column} is empty"
        elif kind == "integer":
            text = text if isinstance(text, str) else str(text)
            if not (text.isdigit() and text.isascii()):
                out[i] = id_problem(text, column, kind)
    return out


def duplicate_ids(ids: Sequence[str | None]) -> dict[str, list[int]]:
    """Ids held by more than one position: id -> positions (None is never a duplicate)."""
    seen: dict[str, list[int]] = {}
    for pos, value in enumerate(ids):
        if value is not None:
            seen.setdefault(value, []).append(pos)
    return {k: v for k, v in seen.items() if len(v) > 1}


def join_problems(*parts: Sequence[str | None]) -> list[str | None]:
    """Per row, the non-empty reasons of several columns joined by "; " (None: none)."""
    if not parts:
        return []
    if not any(any(p) for p in parts):  # the common case, at C speed
        return [None] * len(parts[0])
    out: list[str | None] = []
    for row in zip(*parts, strict=True):
        found = [p for p in row if p]
        out.append("; ".join(found) if found else None)
    return out


# The largest amount an Int64 column holds; a total beyond it is no amount of money.
_INT64_MAX = Decimal(2**63 - 1)


def amount_problem(value: Any, column: str) -> str | None:
    """Why ``value`` (major units) is not an amount opskit can hold, or None (or NULL)."""
    return _cents(value, column, 100)[1]


def _cents(value: Any, column: str, scale: int) -> tuple[int | None, str | None]:
    if value is None or value is pd.NA:
        return None, None
    if isinstance(value, bool):
        return None, f"{column} is a boolean ({value}), not an amount"
    try:
        if isinstance(value, float | np.floating):
            # repr: the shortest text that reads back as this float (19.995, not 19.99499...)
            dec = Decimal(repr(float(value)))
        elif isinstance(value, Decimal):
            dec = value
        elif isinstance(value, int | np.integer | str):
            dec = Decimal(str(value).strip())
        else:
            return None, f"{column} is a {type(value).__name__}, not an amount"
    except (InvalidOperation, ValueError):
        return None, f"{column} is not a number: {_shown(value)}"
    if dec.is_nan():
        return None, f"{column} is NaN, not an amount"
    if dec.is_infinite():
        return None, f"{column} is {_shown(value)} (endless), not an amount"
    minor = dec * scale
    if abs(minor) > _INT64_MAX:
        return None, f"{column} {_shown(value)} is too large to be an amount"
    return int(minor.quantize(Decimal(1), rounding=ROUND_HALF_UP)), None


def read_amounts(
    values: Sequence[Any], column: str, *, scale: int = 100
) -> tuple[list[int | None], list[str | None]]:
    """Major units (a float ``total``) as integer minor units, and per value why it is <NA>.

    Half-up through ``Decimal(repr(value))`` (19.995 -> 2000, never truncated). NULL
    is None without a reason; NaN, (-)Infinity, text that is no number (``'x'``) and
    amounts beyond Int64 (``1e300``) are None with a reason naming ``column`` and the
    value: never coerced into a number. Never raises.
    """
    out: list[int | None] = []
    problems: list[str | None] = []
    for value in values:
        cents, problem = _cents(value, column, scale)
        out.append(cents)
        problems.append(problem)
    return out, problems
