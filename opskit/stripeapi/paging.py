"""Listing one Stripe endpoint of one account: pages, adaptive ``created`` windows, a budget.

The endpoints opskit lists are data (:data:`ENDPOINTS`). :class:`WindowedLister`
lists one endpoint of one Stripe account with several requests in flight at
once, within a provable request budget, and needs no prior knowledge of how
many objects there are or when they were created.

How windowing works
-------------------
Stripe lists newest first, 100 per page, with ``created[gte|lte]`` filters (one
second resolution) and ``starting_after`` cursors; one cursor chain can only
ever have one request in flight. A *window* is a ``created`` range ``[lo, hi]``
read newest first by its own cursor chain. Windows are disjoint and together
always cover every second (the bottom one has no lower bound), so every object
belongs to exactly one window.

1. **Head.** One plain request (no filter). A shop that fits in one page
   (``has_more`` false) costs exactly that one request.
2. **Fan-out.** Otherwise the head page gives the density at the top (100
   objects over its time span), and every free request slot gets a window at
   once: the range below the head's next page is cut into pieces expected to
   hold ``FANOUT_PAGES`` pages each at that density (the head window keeps the
   first), the last piece open-ended below, so nothing older is ever missed.
   Each new window's first page is real data (the newest objects of its range)
   and tells the density there; an empty range costs one request.
3. **Split the busiest window.** Whenever fewer than ``workers`` requests are in
   flight, the window with the most objects still expected below the page it is
   reading gives up the bottom of its range: a bounded window expects its own
   density times its unread span and is cut evenly in time; the open bottom
   window, whose extent is unknown, expects its density times the depth read so
   far (the data is assumed to go on as far again) and is cut at geometric ages
   from ``MIN_SPLIT_PAGES`` pages down to ``HORIZON`` times that depth (never
   years of empty time at once), its last piece open again. The window keeps
   its cursor and its top, so nothing read is fetched again; an answer that
   arrives after its window shrank keeps only the objects inside the new bounds
   (the rest belong to the new window) and ends that window. Splits happen at
   any time, so the tail of a listing is spread over all the free request slots.
4. **Same-second bursts.** A window whose unread range is one second cannot be
   cut (``created`` has one-second resolution); it is read by its cursor
   (``starting_after``) to the end, so a burst of many objects in one second is
   listed completely and once, at one request in flight for that second.

Speculation (``speculate=True``, off by default)
-----------------------------------------------
The head's round trip is otherwise the one stretch with a single request in
flight. With ``speculate`` the first wave is the head *and* blind probes: all
time is cut at ``SPECULATE_AGES`` before ``now()`` into disjoint windows (the top
one open above, the bottom one open below), all sent at once. Whatever they
find is split as above. They cost requests a one-page shop would not spend (up
to ``len(SPECULATE_AGES) + 1`` for a shop of one page), still within the bound
below, and they only help when the data reaches near ``now``; measured on
5,000 objects over the last year they removed the idle head round trip but
cost more windows (partial last pages) than they saved (see README, Performance).

The budget
----------
Each window's pages are full except its last one (a page that said
``has_more`` and kept all its objects held 100 of them), so a window of ``n``
objects costs at most ``floor(n/100) + 1`` requests and the whole listing at
most ``N/100 + W`` for ``W`` windows. The lister opens a window only while
``W <= floor(P/10) + WINDOW_SLACK`` where ``P`` is the number of pages *proven*
to exist (objects read plus one per window whose last page said ``has_more``).
Hence, for every distribution of ``created`` values::

    requests <= 1                                    if N <= 100
    requests <= floor(1.1 * ceil(N/100)) + WINDOW_SLACK   otherwise     (request_bound)

With ``speculate`` the first line reads ``requests <= len(SPECULATE_AGES) + 1``
(the first wave); the second is unchanged (the first wave's windows count in ``W``).

``expected`` (the number of objects the caller expects, e.g. the count of
distinct ids the local accounts link) only raises ``P`` (so more windows may
open early); the bound then reads ``floor(1.1 * ceil(max(N, expected)/100)) +
WINDOW_SLACK``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import stripe

__all__ = [
    "DEFAULT_WINDOW_WORKERS",
    "ENDPOINTS",
    "PAGE_SIZE",
    "WINDOW_SLACK",
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
WINDOW_SLACK = 16  # windows a listing may open beyond one per ten proven pages
MIN_SPLIT_PAGES = 2  # a window is split only when it still expects this many pages
FANOUT_PAGES = 6  # pages each piece of the fan-out after the head page expects
DAY = 24 * 3600
# Ages before now at which ``speculate`` cuts time for its first wave of blind probes.
SPECULATE_AGES = (DAY, 7 * DAY, 30 * DAY, 120 * DAY, 365 * DAY)
HORIZON = 4  # the open bottom window is cut at most this many times its depth below the top
STRIPE_EPOCH = 1_293_840_000  # 2011-01-01 UTC: no Stripe object is older (places cuts only)

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
    """The most a listing of ``objects`` may cost (see the module docstring), plus ``retrieves``.

    ``1`` when everything fits in one page, else ``floor(1.1 * ceil(objects/100)) +
    WINDOW_SLACK``.
    """
    pages = max(1, -(-objects // PAGE_SIZE))
    if pages == 1:
        return 1 + retrieves
    return (11 * pages) // 10 + WINDOW_SLACK + retrieves


def page_fetcher(client: Any, endpoint: Endpoint) -> PageFetcher:
    """A :data:`PageFetcher` over ``GET /v1/<endpoint>`` through ``client``.

    The page goes through the client's own requestor and HTTP client (headers,
    rate limit, retries exactly as for ``client.v1.<endpoint>.list``), and a
    successful body is parsed with ``orjson`` into plain dicts: the same dicts
    ``StripeObject.to_dict()`` gives, without building 100 ``StripeObject`` trees
    (about 40 ms of CPU per page of customers) nor stripe's ``json`` parse into
    ``OrderedDict`` (about 1.5 ms). A non-2xx answer is handed to stripe's own
    response handling, so errors are raised exactly as ``list`` raises them.
    Falls back to ``client.raw_request`` when the requestor is not reachable.
    """
    path = f"/v1/{endpoint.service}"
    requestor = getattr(client, "_requestor", None)
    raw = getattr(requestor, "request_raw", None)
    interpret = getattr(requestor, "_interpret_response", None)

    def fetch(params: dict[str, Any]) -> Page:
        query = {**endpoint.list_params, **params}
        if raw is None or interpret is None:  # pragma: no cover - other stripe versions
            body = client.raw_request("get", path, **query).data
        else:
            rbody, rcode, rheaders = raw(
                "get",
                path,
                params=query,
                options={},
                base_address="api",
                api_mode="V1",
                usage=["opskit_list"],
            )
            if not 200 <= rcode < 300:
                interpret(rbody, rcode, rheaders, "V1")  # raises stripe's error
            try:
                body = orjson.loads(rbody)
            except orjson.JSONDecodeError as exc:
                raise stripe.APIError(
                    f"Invalid response body from API: {str(rbody)[:80]!r}",
                    http_body=rbody,
                    http_status=rcode,
                    headers=rheaders,
                ) from exc
        if not isinstance(body, dict):
            raise stripe.APIError(f"Invalid list page from API: {type(body).__name__}")
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
    pages: int = 0
    proven: bool = False  # the last page said has_more: at least one object remains
    blind: bool = False  # placed before anything was known (speculate): hi says nothing

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
        """Objects per second in the part of the range read so far, once a full page is read.

        That part is ``[at, hi]`` (everything above the cursor has been read), so
        a burst followed by a quiet stretch counts as the average it is; a blind
        window's ``hi`` was placed without knowledge (maybe years above its data),
        so there it is ``[at, newest]``.
        """
        if self.objects < PAGE_SIZE or self.newest is None or self.at is None:
            return None
        top = self.hi if self.hi is not None and not self.blind else self.newest
        return self.objects / (top - self.at + 1)


@dataclass
class ListStats:
    """What one listing cost."""

    requests: int = 0
    windows: int = 1
    objects: int = 0
    duplicates: int = 0
    splits: int = 0
    empty_windows: int = 0  # windows whose first page held nothing


class WindowedLister:
    """List everything ``fetch_page`` serves, with up to ``workers`` requests in flight.

    ``keep(obj)`` turns each listed object into what :meth:`run` returns (default:
    the object itself), so a caller that needs a few columns never holds whole
    objects. ``on_page(n)`` is called after each page with the number of objects
    it held. The first exception raised by ``fetch_page`` stops the listing and is
    re-raised by :meth:`run` once the requests in flight have returned.
    ``speculate`` sends blind probes with the head (see the module docstring),
    cutting time at ages before ``now()`` (seconds since the epoch, UTC).
    """

    def __init__(
        self,
        fetch_page: PageFetcher,
        *,
        workers: int = DEFAULT_WINDOW_WORKERS,
        expected: int = 0,
        on_page: Callable[[int], None] | None = None,
        keep: Callable[[StripeDict], Any] | None = None,
        speculate: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers!r}")
        self._fetch = fetch_page
        self._workers = workers
        self._expected = max(0, int(expected))
        self._on_page = on_page
        self._keep = keep
        self._speculate = speculate and workers > 1
        self._now = now
        self._fanned = False  # the open bottom window had its first fan-out
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._seen: set[str] = set()
        self._kept: list[Any] = []
        self._live: list[Window] = []  # windows not finished (each has one request in flight)
        self._proofs = 0
        self._newest: int | None = None  # the newest created seen (the top of the data)
        self._error: BaseException | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.stats = ListStats()

    def run(self) -> list[Any]:
        """Every object once (as ``keep`` made it), in no particular order."""
        with ThreadPoolExecutor(self._workers, thread_name_prefix="opskit-page") as pool:
            self._pool = pool
            with self._lock:
                first = self._first_wave()
                self.stats.windows = len(first)
                for window in first:
                    self._live.append(window)
                    self._start(window)
            self._finished.wait()
        self._pool = None
        if self._error is not None:
            raise self._error
        self.stats.objects = len(self._kept)
        return self._kept

    def _first_wave(self) -> list[Window]:
        """The head window, or with ``speculate`` the head and blind probes below it.

        The probes split all time at fixed ages before now (``SPECULATE_AGES``): the
        top one is open above, the bottom one open below, so every object still
        belongs to exactly one window. They go out at once, before any answer.
        """
        if not self._speculate:
            return [Window(None, None)]
        now = int(self._now())
        cuts = [now - age for age in SPECULATE_AGES[: self._workers - 1]]
        windows = [Window(cuts[0], None, blind=True)]
        for i, lo in enumerate(cuts[1:]):
            windows.append(Window(lo, cuts[i] - 1, blind=True))
        windows.append(Window(None, cuts[-1] - 1, blind=True))
        return windows

    # -- under self._lock ------------------------------------------------------------

    def _start(self, window: Window) -> None:
        assert self._pool is not None
        self.stats.requests += 1
        self._pool.submit(self._step, window, window.params())

    def _retire(self, window: Window) -> None:
        self._live.remove(window)
        if window.proven:
            window.proven = False
            self._proofs -= 1
        if not self._live:
            self._finished.set()

    # -- one page ----------------------------------------------------------------------

    def _step(self, window: Window, params: dict[str, Any]) -> None:
        try:
            data, has_more = self._fetch(params)
            # Read what the lock section needs here: a malformed page must end the
            # listing with an error, not kill this thread and leave run() waiting.
            ids = [str(obj["id"]) for obj in data]
            created = [int(obj["created"]) for obj in data]
            kept = data if self._keep is None else [self._keep(obj) for obj in data]
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
            self._take(window, data, ids, created, kept, has_more)
            if self._live:
                self._fill()

    def _take(
        self,
        window: Window,
        data: list[StripeDict],
        ids: list[str],
        created: list[int],
        kept: list[Any],
        has_more: bool,
    ) -> None:
        """Record one page of ``window`` and continue or retire it (lock held)."""
        lo = window.lo
        count = 0
        crossed = False
        for object_id, when, obj in zip(ids, created, kept, strict=True):
            if lo is not None and when < lo:
                crossed = True  # the window shrank while this page was in flight
                break
            if object_id in self._seen:
                self.stats.duplicates += 1
                continue
            self._seen.add(object_id)
            self._kept.append(obj)
            count += 1
        if window.pages == 0 and not data:
            self.stats.empty_windows += 1
        window.pages += 1
        if count:
            if window.newest is None:
                window.newest = created[0]
            if self._newest is None or created[0] > self._newest:
                self._newest = created[0]
            window.cursor = ids[count - 1]
            window.at = created[count - 1]
            window.objects += count
        if crossed or not has_more or not data:
            self._retire(window)
            return
        if not window.proven:
            window.proven = True
            self._proofs += 1
        self._start(window)

    # -- splitting (lock held) ---------------------------------------------------------

    def _allowed_windows(self) -> int:
        proven = max(len(self._seen) + self._proofs, self._expected)
        return (-(-proven // PAGE_SIZE)) // 10 + WINDOW_SLACK

    def _fill(self) -> None:
        """Use free request slots (and the window allowance) to split windows."""
        while True:
            free = self._workers - len(self._live)
            allowance = self._allowed_windows() - self.stats.windows
            if free <= 0 or allowance <= 0:
                return
            plans = [(p, w) for w in self._live if (p := self._splittable(w)) is not None]
            if not plans:
                return
            plans.sort(key=lambda pw: pw[0][0], reverse=True)
            (expected, top, floor), window = plans[0]
            # As many pieces as keep each one at least as big as the next candidate
            # (the rest of the free slots go to it on the next turn of the loop).
            runner_up = plans[1][0][0] if len(plans) > 1 else 0.0
            share = int(expected // max(runner_up, PAGE_SIZE * MIN_SPLIT_PAGES))
            if window.lo is None:
                share = free  # the open bottom: pieces of their own size, one per free slot
            pieces = 1 + min(free, allowance, max(1, share))
            new = self._cut(window, top, floor, pieces)
            if not new:
                return
            self.stats.splits += 1
            self.stats.windows += len(new)
            for piece in new:
                self._live.append(piece)
                self._start(piece)

    def _splittable(self, w: Window) -> tuple[float, int, int] | None:
        """(objects expected below the page in flight, top of that range, its floor) or None.

        A bounded window expects its density times its unread span. The open bottom
        window's extent is unknown: it expects its density times the depth read so
        far (the data is assumed to go on as far again), so it is split like the
        others, never into years of empty time at once.
        """
        density = w.density()
        if density is None or w.at is None:
            return None
        # The page in flight covers about one page's worth of seconds below w.at.
        top = w.at - math.ceil(PAGE_SIZE / density)
        if w.lo is not None:
            floor = w.lo
            if top - floor < 1:
                return None  # one second left (or less): only the cursor can read it
            expected = density * (top - floor + 1)
        else:
            floor = min(STRIPE_EPOCH, top - 1)
            depth = max(1, (self._newest if self._newest is not None else top) - w.at)
            expected = max(density * depth, FANOUT_PAGES * PAGE_SIZE)
        if expected < PAGE_SIZE * MIN_SPLIT_PAGES:
            return None
        return expected, top, floor

    def _cut(self, window: Window, top: int, floor: int, pieces: int) -> list[Window]:
        """Carve ``pieces - 1`` new windows off the bottom of ``window`` (lock held).

        A bounded window's range ``[floor, top]`` (seconds below the page in flight)
        is cut evenly in time. The open-ended bottom window is cut, the first time,
        into pieces of ``FANOUT_PAGES`` pages at its density, later at geometric
        ages down to ``HORIZON`` times its depth; its last piece stays open below.
        ``window`` keeps ``[first cut, hi]`` and its cursor.
        """
        span = top - floor + 1
        pieces = min(pieces, span)
        if pieces < 2:
            return []
        if window.lo is not None:
            step = span / pieces
            cuts = [top + 1 - round(step * i) for i in range(1, pieces)]
        else:
            density = window.density() or 1.0
            page = max(1.0, PAGE_SIZE / density)  # seconds per page at this density
            depth = max(page, float((self._newest or top) - (window.at or top)))
            n = pieces - 1
            if not self._fanned:
                # The fan-out after the head page: pieces of FANOUT_PAGES pages, the
                # last one open below.
                ages = [FANOUT_PAGES * page * i for i in range(1, n + 1)]
            else:
                # Later: ages from MIN_SPLIT_PAGES pages to HORIZON times the depth read
                # so far (never years of empty time at once), in a geometric progression.
                near = MIN_SPLIT_PAGES * page
                far = min(float(span - 1), max(near * 2, HORIZON * depth))
                if n > 1:
                    ratio = (far / near) ** (1 / (n - 1))
                    ages = [near * ratio**i for i in range(n)]
                else:
                    ages = [math.sqrt(near * far)]
            cuts = [top + 1 - round(age) for age in ages]
        lows = sorted({c for c in cuts if floor < c <= top}, reverse=True)
        if not lows:
            return []
        if window.lo is None:
            self._fanned = True
        bottom = window.lo
        window.lo = lows[0]
        new: list[Window] = []
        for i, lo in enumerate(lows):
            below = lows[i + 1] if i + 1 < len(lows) else bottom
            new.append(Window(below, lo - 1))
        return new


def list_all(
    fetch_page: PageFetcher,
    *,
    workers: int = DEFAULT_WINDOW_WORKERS,
    expected: int = 0,
    on_page: Callable[[int], None] | None = None,
    keep: Callable[[StripeDict], Any] | None = None,
    speculate: bool = False,
) -> tuple[list[Any], ListStats]:
    """Every object of one listing, and what it cost (see :class:`WindowedLister`)."""
    lister = WindowedLister(
        fetch_page,
        workers=workers,
        expected=expected,
        on_page=on_page,
        keep=keep,
        speculate=speculate,
    )
    objects = lister.run()
    return objects, lister.stats
