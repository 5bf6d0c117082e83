"""One rule for "is this the same email?", used by every report, pairing and plan.

Two emails are the same when their :func:`email_key` values are equal and non-empty:

1. **Unicode NFKC normalization** (compatibility forms fold: a full-width
   ``ａ`` is ``a``, a composed ``é`` equals ``e`` + combining accent).
2. **Every invisible character removed, wherever it is**: all Unicode white
   space (space, tab, line breaks, no-break space U+00A0, narrow no-break
   space U+202F, the U+2000-U+200A spaces, ideographic space U+3000, U+0085 ...)
   and format characters (zero-width space U+200B, joiners U+200C/U+200D,
   word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD ...). A person reads
   ``" ann@x.io\\u00a0"`` as ``ann@x.io``; an address can hold no unquoted
   space, so a space *inside* one (``"li.wei @x.io"``) is a typo and is
   removed too: ``li.wei @x.io`` is ``li.wei@x.io``.
3. **One case rule: lower-case** (Unicode ``lower()``, after NFKC, and NFKC again).
   Not ``casefold()``: case folding turns ``ß`` into ``ss``, and ``straße@`` and
   ``strasse@`` are different mailboxes. ``ß`` and ``ss`` stay different.

Nothing else is folded: dots and ``+tags`` are kept (their meaning is the mail
provider's, not ours). A missing or blank email has the key ``""``, which
never equals anything.

The key is for comparing only; reports show the emails as stored. Names
(:func:`name_keys`) are read the same way, except that white space inside is one
space (not removed) and case is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["INVISIBLE", "email_key", "email_keys", "name_keys", "same_email"]

#: What is removed (RE2 syntax, as pyarrow runs it): white space of every kind
#: (``\s`` is ASCII-only in RE2, so the Unicode classes are spelled out) and
#: format characters.
INVISIBLE = r"[\s\x{0B}\x{1C}-\x{1F}\x{0085}\p{Z}\x{180E}\p{Cf}]+"

_STRING = {pa.string(): pd.StringDtype(), pa.large_string(): pd.StringDtype()}


def email_keys(values: pd.Series | Iterable[Any]) -> pd.Series:
    """The comparison key of each email (string dtype, missing as ``""``), vectorized.

    Keeps the index of a Series input.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype="object")
    text = s.astype("string")
    arr = pa.array(text, type=pa.large_string())
    arr = pc.utf8_normalize(arr, form="NFKC")
    arr = pc.replace_substring_regex(arr, INVISIBLE, "")
    arr = pc.utf8_normalize(pc.utf8_lower(arr), form="NFKC")
    # lower-casing can expose new format characters (e.g. combining marks split off): strip again
    arr = pc.replace_substring_regex(arr, INVISIBLE, "")
    out = arr.to_pandas(types_mapper=_STRING.get)
    return pd.Series(pd.array(out, dtype="string"), index=s.index).fillna("")


def name_keys(values: pd.Series) -> pd.Series:
    """Person names as compared: NFKC, format characters removed, every run of Unicode
    white space (no-break spaces included) one space, trimmed; case kept (``"Ann\u00a0 Lee "``
    is ``"Ann Lee"``, ``"ann lee"`` is not). Missing as ``""``; keeps the index."""
    text = values.astype("string")
    arr = pa.array(text, type=pa.large_string())
    arr = pc.utf8_normalize(arr, form="NFKC")
    arr = pc.replace_substring_regex(arr, r"[\p{Cf}]+", "")
    arr = pc.replace_substring_regex(arr, r"[\s\x{0B}\x{1C}-\x{1F}\x{0085}\p{Z}]+", " ")
    arr = pc.utf8_trim_whitespace(arr)
    arr = pc.utf8_trim(arr, " ")
    out = arr.to_pandas(types_mapper=_STRING.get)
    return pd.Series(pd.array(out, dtype="string"), index=values.index).fillna("")


def email_key(value: Any) -> str:
    """:func:`email_keys` of one value: ``email_key(" Ann@X.io\\u00a0") == "ann@x.io"``."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return str(email_keys(pd.Series([str(value)], dtype="string")).iloc[0])


def same_email(a: Any, b: Any) -> bool:
    """True when both are non-empty and equal under :func:`email_key`."""
    ka = email_key(a)
    return bool(ka) and ka == email_key(b)
