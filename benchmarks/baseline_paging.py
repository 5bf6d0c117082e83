"""Today's opskit listing, as it was before issue 16 (commit c8c750e), kept as a baseline.

benchmarks/bench_fleet.py runs it beside the current lister in the same run, so each
figure is a ratio against the same machine and the same load. Not used by opskit.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_WINDOW_WORKERS",
    "ENDPOINTS",
    "PAGE_SIZE",
    "Endpoint",
    "ListStats",
    "Page",
    "PageFetcher",
    "Window",
    "WindowedLister",
    "list_all",
    "page_fetcher",
    "request_bound",
]

PAGE_SIZE = 100  # Stripe's maximum page size
DEFAULT_WINDOW_WORKERS = 8  # requests in flight per shop, at most
MIN_PIECE_PAGES = 2  # a new window should expect at least this many pages

StripeDict = dict[str, Any]
Page = tuple[list[StripeDict], bool]  # (objects as plain dicts, has_more)
PageFetcher = Callable[[dict[str, Any]], Page]


@dataclass(frozen=True)
class Endpoint:
    """One listable Stripe resource: its service on ``client.v1`` and fixed list params."""

    name: str
    service: str
    list_params: Mapping[str, Any] = field(default_factory=dict)


ENDPOINTS: Mapping[str, Endpoint] = {
    "customers": Endpoint("customers", "customers"),
    # status="all": without it Stripe leaves canceled subscriptions out.
    "subscriptions": Endpoint("subscriptions", "subscriptions", {"status": "all"}),
    "prices": Endpoint("prices", "prices"),
}


def request_bound(objects: int, retrieves: int = 0) -> int:
    """``floor(1.1 * max(1, ceil(objects/100))) + retrieves``: the most a listing may cost."""
    pages = max(1, -(-objects // PAGE_SIZE))
    return (11 * pages) // 10 + retrieves


def page_fetcher(client: Any, endpoint: Endpoint) -> PageFetcher:
    """A :data:`PageFetcher` over ``GET /v1/<endpoint>`` through ``client``.

    Pages are read with ``client.raw_request`` as plain JSON: the same dicts
    ``StripeObject.to_dict()`` gives, without building 100 ``StripeObject`` trees
    first (about 30 ms of CPU per page of customers, which would cap a 2-core
    machine near 30 pages/s across every shop). Errors are raised exactly as
    ``client.v1.<endpoint>.list`` raises them, and the request goes through the
    client's own HTTP client (rate limit and retries).
    """
    path = f"/v1/{endpoint.service}"

    def fetch(params: dict[str, Any]) -> Page:
        answer = client.raw_request("get", path, **{**endpoint.list_params, **params})
        body = answer.data
        return list(body.get("data") or []), bool(body.get("has_more"))

    return fetch


@dataclass(eq=False)
class Window:
    """A ``created`` range ``[lo, hi]`` (None: unbounded) read newest first from ``cursor``."""

    lo: int | None
    hi: int | None
    cursor: str | None = None  # id of the last object read
    at: int | None = None  # its created
    newest: int | None = None  # created of the first object read
    objects: int = 0
    proven: bool = False  # the last page said has_more: at least one object remains

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        created = {}
        if self.lo is not None:
            created["gte"] = self.lo
        if self.hi is not None:
            created["lte"] = self.hi
        if created:
            params["created"] = created
        if self.cursor is not None:
            params["starting_after"] = self.cursor
        return params

    def density(self) -> float | None:
        """Objects per second seen in this window, once it has read a full page."""
        if self.objects < PAGE_SIZE or self.newest is None or self.at is None:
            return None
        return self.objects / (self.newest - self.at + 1)


@dataclass
class ListStats:
    """What one listing cost."""

    requests: int = 0
    windows: int = 1
    objects: int = 0
    duplicates: int = 0


class WindowedLister:
    """List everything ``fetch_page`` serves, with up to ``workers`` requests in flight.

    ``on_page(n)`` is called after each page with the number of objects it held.
    The first exception raised by ``fetch_page`` stops the listing and is re-raised
    by :meth:`run` once the requests in flight have returned.
    """

    def __init__(
        self,
        fetch_page: PageFetcher,
        *,
        workers: int = DEFAULT_WINDOW_WORKERS,
        expected: int = 0,
        on_page: Callable[[int], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers!r}")
        self._fetch = fetch_page
        self._workers = workers
        self._expected = max(0, int(expected))
        self._on_page = on_page
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._objects: dict[str, StripeDict] = {}
        self._live: list[Window] = []  # windows not finished
        self._proofs = 0
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.stats = ListStats()

    def run(self) -> list[StripeDict]:
        """Every object once, in no particular order."""
        with ThreadPoolExecutor(self._workers, thread_name_prefix="opskit-page") as pool:
            self._pool = pool
            with self._lock:
                self._add(Window(None, None))
            self._finished.wait()
        self._pool = None
        if self._error is not None:
            raise self._error
        self.stats.objects = len(self._objects)
        return list(self._objects.values())

    # -- under self._lock ------------------------------------------------------------

    def _start(self, window: Window) -> None:
        assert self._pool is not None
        self.stats.requests += 1
        self._pool.submit(self._step, window)

    def _add(self, window: Window) -> None:
        self._live.append(window)
        self._start(window)

    def _retire(self, window: Window) -> None:
        self._live.remove(window)
        if not self._live:
            self._finished.set()

    # -- one page ----------------------------------------------------------------------

    def _step(self, window: Window) -> None:
        try:
            data, has_more = self._fetch(window.params())
            # Read what the lock section needs here: a malformed page must end the
            # listing with an error, not kill this thread and leave run() waiting.
            ids = [str(obj["id"]) for obj in data]
            created = [int(data[0]["created"]), int(data[-1]["created"])] if data else []
            if self._on_page is not None:
                self._on_page(len(data))
        except BaseException as exc:  # noqa: BLE001 - handed back to run()
            with self._lock:
                if self._error is None:
                    self._error = exc
                self._retire(window)
            return
        with self._lock:
            if self._error is not None:
                self._retire(window)
                return
            for object_id, obj in zip(ids, data, strict=True):
                if self._objects.setdefault(object_id, obj) is not obj:
                    self.stats.duplicates += 1
            if window.proven:
                window.proven = False
                self._proofs -= 1
            if data:
                if window.newest is None:
                    window.newest = created[0]
                window.cursor = ids[-1]
                window.at = created[1]
                window.objects += len(data)
            if not (has_more and data):
                self._retire(window)
                return
            window.proven = True
            self._proofs += 1
            for piece in self._split(window):
                self._add(piece)
            self._start(window)

    def _density(self, window: Window) -> float | None:
        own = window.density()
        if own is not None:
            return own
        rates = [d for w in self._live if (d := w.density()) is not None]
        return max(rates) if rates else None

    def _remaining(self, window: Window, density: float) -> float:
        """Expected objects still unread in a bounded window."""
        top = window.at if window.at is not None else window.hi
        if window.lo is None or top is None:
            return 0.0
        return density * max(0, top - window.lo + 1)

    def _split(self, window: Window) -> list[Window]:
        """New windows carved off the bottom of ``window``'s unread range (lock held)."""
        idle = self._workers - len(self._live)
        proven = max(len(self._objects) + self._proofs, self._expected)
        slack = (-(-proven // PAGE_SIZE)) // 10 - (self.stats.windows - 1)
        extra = min(idle, slack)
        density = self._density(window)
        if extra <= 0 or density is None or window.at is None:
            return []
        if window.lo is not None:
            span = window.at - window.lo + 1
            estimate = density * span
        else:
            others = sum(self._remaining(w, density) for w in self._live if w is not window)
            estimate = self._expected - len(self._objects) - others
            if estimate < PAGE_SIZE * MIN_PIECE_PAGES:
                # Nothing expected, or the expectation is spent: assume as much again
                # lies below as has been read so far.
                estimate = max(len(self._objects), PAGE_SIZE)
            span = max(1, math.ceil(estimate / density))
        pieces = min(extra + 1, int(estimate // (PAGE_SIZE * MIN_PIECE_PAGES)), span)
        if pieces < 2:
            return []
        step = span / pieces
        cuts = [window.at - round(step * i) + 1 for i in range(1, pieces)]  # descending lows
        new: list[Window] = []
        top_lo = window.lo
        window.lo = cuts[0]
        for i, lo in enumerate(cuts):
            hi = lo - 1
            below = cuts[i + 1] if i + 1 < len(cuts) else top_lo
            new.append(Window(below, hi))
        self.stats.windows += len(new)
        return new


def list_all(
    fetch_page: PageFetcher,
    *,
    workers: int = DEFAULT_WINDOW_WORKERS,
    expected: int = 0,
    on_page: Callable[[int], None] | None = None,
) -> tuple[list[StripeDict], ListStats]:
    """Every object of one listing, and what it cost (see :class:`WindowedLister`)."""
    lister = WindowedLister(fetch_page, workers=workers, expected=expected, on_page=on_page)
    objects = lister.run()
    return objects, lister.stats
