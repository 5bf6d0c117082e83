"""One localstripe store per API key, with a created-time index per object type.

localstripe lists by scanning the whole store; we keep, per object type, a list
of ``(created, seq, id)`` sorted ascending so a page is a bisect and a slice.
``seq`` (insertion order) breaks ties deterministically.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from localstripe import resources as ls

from opskit.sandbox.idempotency import Ledger

Entry = tuple[int, int, str]


class IndexedStore(ls.Store):
    """A localstripe ``Store`` that maintains sorted indexes and tombstones."""

    def __init__(self) -> None:
        super().__init__()
        self._seq = itertools.count()
        self.index: dict[str, list[Entry]] = {}
        # "kind:id" -> entry, kept after deletion so cursors on deleted ids work.
        self.entries: dict[str, Entry] = {}
        self.tombstones: dict[str, dict[str, Any]] = {}
        self.idempotency = Ledger()  # saved results of idempotent requests
        self._bulk: list[str] | None = None
        self._txn: list[str] | None = None

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Forget every object created inside the block if it raises (a refused request
        leaves nothing behind, as at Stripe)."""
        outer, self._txn = self._txn, []
        try:
            yield
        except BaseException:
            for key in reversed(self._txn):
                self.forget(key)
            self._txn = None
            raise
        finally:
            created, self._txn = self._txn, outer
            if outer is not None and created:
                outer.extend(created)

    # dict-level hooks (localstripe writes ``store[key] = obj`` / ``del store[key]``)
    def __setitem__(self, key: str, value: Any) -> None:
        new = key not in self
        dict.__setitem__(self, key, value)
        if not new or ":" not in key:
            return
        if self._txn is not None:
            self._txn.append(key)
        if self._bulk is not None:
            self._bulk.append(key)
            return
        self._add_entry(key, value)

    def __delitem__(self, key: str) -> None:
        dict.pop(self, key)
        if ":" not in key:
            return
        kind, id_ = key.split(":", 1)
        if kind == "customer":
            # Stripe keeps deleted customers retrievable.
            self.tombstones[id_] = {"id": id_, "object": "customer", "deleted": True}
        entry = self.entries.get(key)
        lst = self.index.get(kind)
        if entry is None or lst is None:
            return
        i = bisect.bisect_left(lst, entry)
        if i < len(lst) and lst[i] == entry:
            del lst[i]

    def _add_entry(self, key: str, value: Any) -> None:
        kind, id_ = key.split(":", 1)
        entry = (int(getattr(value, "created", 0) or 0), next(self._seq), id_)
        self.entries[key] = entry
        lst = self.index.setdefault(kind, [])
        if not lst or lst[-1] < entry:
            lst.append(entry)  # the common case: created now, newest
        else:
            bisect.insort(lst, entry)

    def forget(self, key: str) -> None:
        """Remove an object without a tombstone (used when re-keying seeds)."""
        obj = self.get(key)
        if obj is None:
            return
        kind, id_ = key.split(":", 1)
        dict.pop(self, key)
        entry = self.entries.pop(key, None)
        lst = self.index.get(kind)
        if entry is not None and lst is not None:
            i = bisect.bisect_left(lst, entry)
            if i < len(lst) and lst[i] == entry:
                del lst[i]

    # bulk mode: one sort at the end instead of an insort per object
    def begin_bulk(self) -> None:
        self._bulk = []

    def end_bulk(self) -> None:
        pending, self._bulk = self._bulk or [], None
        touched: set[str] = set()
        seen: set[str] = set()
        for key in pending:
            obj = self.get(key)
            if obj is None or key in seen:
                continue
            seen.add(key)
            kind, id_ = key.split(":", 1)
            entry = (int(getattr(obj, "created", 0) or 0), next(self._seq), id_)
            self.entries[key] = entry
            self.index.setdefault(kind, []).append(entry)
            touched.add(kind)
        for kind in touched:
            self.index[kind].sort()

    def clear(self) -> None:
        dict.clear(self)
        self.index.clear()
        self.entries.clear()
        self.tombstones.clear()
        self.idempotency.clear()

    def get_obj(self, kind: str, id_: str) -> Any:
        return self.get(kind + ":" + id_)


@dataclass
class Page:
    items: list[Any]
    has_more: bool


@dataclass
class ListQuery:
    kind: str
    limit: int = 10
    starting_after: str | None = None
    ending_before: str | None = None
    gte: int | None = None
    lte: int | None = None
    predicate: Callable[[Any], bool] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_list(store: IndexedStore, q: ListQuery) -> Page:
    """Newest-first page over ``q.kind``; cursors use the cursor's own position."""
    lst = store.index.get(q.kind, [])
    lo, hi = 0, len(lst)
    if q.gte is not None:
        lo = bisect.bisect_left(lst, (q.gte,))
    if q.lte is not None:
        hi = bisect.bisect_left(lst, (q.lte + 1,))
    reverse = False  # False: walk from newest down; True: walk up (ending_before)
    if q.starting_after is not None:
        entry = _cursor(store, q.kind, q.starting_after)
        hi = min(hi, bisect.bisect_left(lst, entry))
    elif q.ending_before is not None:
        entry = _cursor(store, q.kind, q.ending_before)
        lo = max(lo, bisect.bisect_right(lst, entry))
        reverse = True
    if hi <= lo:
        return Page([], False)

    def objects(indices: Iterator[int]) -> Iterator[Any]:
        for i in indices:
            obj = store.get(q.kind + ":" + lst[i][2])
            if obj is not None and (q.predicate is None or q.predicate(obj)):
                yield obj

    if q.predicate is None and not reverse:
        start = max(lo, hi - q.limit)
        items = [store[q.kind + ":" + e[2]] for e in reversed(lst[start:hi])]
        return Page(items, start > lo)
    if q.predicate is None:
        end = min(hi, lo + q.limit)
        items = [store[q.kind + ":" + e[2]] for e in reversed(lst[lo:end])]
        return Page(items, end < hi)

    found: list[Any] = []
    it = objects(iter(range(lo, hi)) if reverse else iter(range(hi - 1, lo - 1, -1)))
    for obj in it:
        found.append(obj)
        if len(found) > q.limit:
            break
    has_more = len(found) > q.limit
    found = found[: q.limit]
    if reverse:
        found.reverse()
    return Page(found, has_more)


def _cursor(store: IndexedStore, kind: str, id_: str) -> Entry:
    from localstripe.errors import UserError

    entry = store.entries.get(kind + ":" + id_)
    if entry is None:
        raise UserError(
            404,
            f"No such {kind}: '{id_}'",
            {"code": "resource_missing", "param": "starting_after"},
        )
    return entry


def iter_objects(store: IndexedStore, kind: str, newest_first: bool = True) -> Iterator[Any]:
    lst = store.index.get(kind, [])
    seq = reversed(lst) if newest_first else iter(lst)
    for e in seq:
        obj = store.get(kind + ":" + e[2])
        if obj is not None:
            yield obj
