"""A checker that no raw Stripe key (nor a long piece of one) appears in some texts."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A masked key shows the prefix and the last four characters; any run of
# FRAGMENT characters of the secret part is a leak (truncated keys leak too).
FRAGMENT = 10


def _fragments(key: str) -> set[str]:
    m = re.match(r"^(?:sk|rk|pk)_(?:live|test)_(.+)$", key.strip())
    token = m.group(1) if m else key.strip()
    if len(token) <= FRAGMENT:
        return {key.strip()}
    return {token[i : i + FRAGMENT] for i in range(len(token) - FRAGMENT + 1)}


def exception_texts(exc: BaseException | None) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts += [str(exc), repr(exc), *(str(a) for a in exc.args)]
        if exc.__context__ is not None and exc.__context__ is not exc.__cause__:
            texts += exception_texts(exc.__context__)
        exc = exc.__cause__
    return texts


def assert_no_secrets(texts: Iterable[object], keys: Iterable[str]) -> None:
    """Fail, naming where (but not what), when any key or piece of one is in ``texts``."""
    pieces = {f: k for k in keys if k for f in _fragments(k)}
    for index, text in enumerate(texts):
        s = str(text)
        for fragment in pieces:
            if fragment in s:
                at = s.index(fragment)
                # the context is shown with long word runs hidden: no key material
                context = re.sub(r"[A-Za-z0-9]{6,}", "…", s[max(0, at - 40) : at])
                raise AssertionError(
                    f"secret key material in text #{index} (after: {context!r}); "
                    f"text length {len(s)}"
                )
