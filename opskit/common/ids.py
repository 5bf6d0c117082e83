"""Local ids (shops, accounts, orders) are opaque text, whatever the database stores.

shop-backend keys its rows with UUIDs, other backends with integers or text.
opskit shows every local id as a string (``string`` dtype in frames) and
accepts ``str``, ``int`` or :class:`uuid.UUID` wherever a caller names one;
:mod:`opskit.backend.db` turns that into the database column's own type before
it compares (a UUID column compares as ``uuid``, an integer column as an
integer), so opskit never assumes ids are numbers.

Canonical text: ``str(uuid)`` (lower case, hyphens) for UUIDs, decimal digits
for integers, the text itself (whitespace trimmed) for strings.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from decimal import Decimal
from numbers import Integral
from typing import Any

import pandas as pd

__all__ = ["IdLike", "id_list", "id_sort_key", "id_text", "is_id"]

#: What a caller may pass as a local id.
IdLike = str | int | uuid.UUID

_DIGITS = re.compile(r"-?\d+")


def is_id(value: Any) -> bool:
    """True for a str, int (not bool) or UUID: one id rather than a collection of them."""
    return isinstance(value, str | uuid.UUID | Integral) and not isinstance(value, bool)


def id_text(value: Any) -> str | None:
    """The canonical text of one local id; None/NA stays None.

    Raises :class:`TypeError` for what cannot be an id (bool, float with a
    fraction, containers); an empty or blank string is None.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{value!r} is not an id")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Integral):
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bytes):
        return id_text(value.decode("utf-8", "replace"))
    if isinstance(value, float | Decimal):  # integer ids that went through a float column
        if value != value:  # NaN
            return None
        if value == value.to_integral_value() if isinstance(value, Decimal) else value.is_integer():
            return f"{value:.0f}"
    raise TypeError(f"{value!r} ({type(value).__name__}) is not an id")


def id_list(ids: Any) -> list[str] | None:
    """One id or an iterable of ids as canonical texts, duplicates dropped, order kept.

    None means "all" and stays None.
    """
    if ids is None:
        return None
    if is_id(ids):
        ids = [ids]
    if not isinstance(ids, Iterable):
        raise TypeError(f"{ids!r} is neither an id nor a list of ids")
    out: dict[str, None] = {}
    for value in ids:
        text = id_text(value)
        if text is not None:
            out.setdefault(text)
    return list(out)


def id_sort_key(s: pd.Series) -> pd.Series:
    """A sort key for id texts: integer ids in numeric order, everything else as text.

    Digit strings are left-padded so "2" sorts before "10"; UUIDs and other text
    sort as they are (after the integers). <NA> stays <NA>.
    """
    text = s.astype("string")
    digits = text.str.fullmatch(r"\d+").fillna(False).astype(bool)
    return text.where(~digits, "0" + text.str.zfill(40)).where(digits, "1" + text)


def digits_only(value: str) -> bool:
    """True when ``value`` reads as a (possibly negative) decimal integer."""
    return bool(_DIGITS.fullmatch(value))
