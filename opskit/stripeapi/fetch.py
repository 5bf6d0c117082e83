"""Stripe customers and subscriptions of many shops, each from the shop's own account.

Public source functions::

    fetch_customers(ctx, shops, link_ids=..., executor=..., progress=...)  -> FetchResult
    fetch_subscriptions(ctx, shops, executor=..., progress=...)            -> FetchResult
    linked_ids(accounts_df, "stripe_customer_id")                          -> {shop_id: {ids}}

Each shop is one work item: its listing (100 per page, split into ``created``
windows fetched in parallel inside the shop's rate limit, see
:mod:`opskit.stripeapi.paging`) plus the targeted retrieves it needs. Shops run
concurrently, at most ``Settings.max_shop_workers`` at a time, on a
``ThreadPoolExecutor`` or on any ``concurrent.futures.Executor`` given (e.g. a
dask.distributed ``client.get_executor()``: the work item is a picklable tuple of
:class:`ShopJob` (all the shops of one Stripe key, so a key's requests come from one
process at a time) sent to the module-level :func:`run_shop_jobs`, and each worker
process keeps its own Stripe clients). What a task carries: the shop id, the
endpoint, the API base, the key's rate and retry budget, the ids to retrieve and
the key *sealed* with the task secret (:mod:`opskit.common.sealing`); never the
raw key, never the database URL. Each page is turned into frame rows as it
arrives (only the frame's columns are kept, not whole Stripe objects), so a
shop's result is small whether it comes back from a thread or a worker.
A shop that fails (invalid key, network,
retries exhausted, any Stripe error, a malformed answer, a worker the executor
lost) becomes ``errors[shop_id]``, one line with the error class, HTTP status
and request id and no secret; the run goes on.
Shops without a usable key are skipped: the reconcile layer reports them.

Linked customer ids (``link_ids``) are resolved like this, so that
``deleted_in_stripe``, ``wrong_shop`` and ``missing_in_stripe`` can be told apart:

1. every linked id absent from its own shop's listing is retrieved once in that
   shop: a deleted customer comes back as a tombstone (a row with
   ``deleted=True``), a 404 leaves it unresolved;
2. an id unresolved in its shop that some other shop of the run listed needs
   nothing more (that shop's row is in the frame);
3. an id found nowhere is retrieved in each *other* shop of the run whose
   listing succeeded (it was not listed there, so only a deleted customer can
   still be hiding there), at most :data:`MAX_CROSS_SHOP_RETRIEVES` requests per
   run; ids beyond that stay unresolved. Such ids are rare (typos, customers
   deleted in another shop's account), so this costs little.

Requests per shop stay within ``1.1 * ceil(objects/100)`` plus the targeted
retrieves (see :func:`opskit.stripeapi.paging.request_bound`).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd
import stripe

from opskit.common.context import Context
from opskit.common.ids import id_sort_key
from opskit.common.keys import redact
from opskit.common.models import Shop, as_shop
from opskit.common.progress import bar as progress_bar
from opskit.common.sealing import SealedKey, seal
from opskit.common.stripe_errors import describe_error
from opskit.common.stripe_modes import other_mode, stripe_message
from opskit.core.frames import (
    CUSTOMERS,
    PRICES,
    SUBSCRIPTION_ITEMS,
    SUBSCRIPTIONS,
    Spec,
    conform,
    empty,
)
from opskit.stripeapi import paging
from opskit.stripeapi.clients import client_for_shop, transport_of
from opskit.stripeapi.ratelimit import key_fingerprint

__all__ = [
    "MAX_CROSS_SHOP_RETRIEVES",
    "FetchResult",
    "ShopJob",
    "ShopOutcome",
    "customer_rows",
    "fetch_customers",
    "fetch_subscriptions",
    "linked_ids",
    "run_shop_job",
    "run_shop_jobs",
    "items_frame",
    "subscription_rows",
]

log = logging.getLogger(__name__)

MAX_CROSS_SHOP_RETRIEVES = 500  # per run: lookups of ids found in no shop of the run
TASK_KEYS = 8  # Stripe keys per task on an executor given by the caller (e.g. dask)

StripeDict = dict[str, Any]


@dataclass
class FetchResult:
    """Rows of every shop that answered, the shops that failed, and the requests made."""

    frame: pd.DataFrame
    errors: dict[str, str] = field(default_factory=dict)  # shop_id -> one secret-free line
    # shop_id -> {id: Stripe's 404 message} for linked ids that exist in the key's other
    # mode ("a similar object exists in live mode, but a test mode key was used")
    other_mode: dict[str, dict[str, str]] = field(default_factory=dict)
    requests: int = 0  # API calls made (list pages and retrieves; transport retries excluded)
    items: pd.DataFrame | None = None  # subscriptions: one SUBSCRIPTION_ITEMS row per item
    # shop_id -> reason for shops outside the run that failed a cross-shop lookup: an id
    # "missing" from the run's shops may belong to them (reported as unknown, not absent)
    lookup_errors: dict[str, str] = field(default_factory=dict)


# -- one shop: a picklable work item ------------------------------------------------------


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ShopJob:
    """Everything one shop's work needs, picklable for process-based executors.

    ``key`` is the shop's secret key sealed with the task secret (see
    :mod:`opskit.common.sealing`): a pickled job holds no key in clear text and no
    database URL. ``origin`` names the process that made the job, so a worker
    elsewhere knows it takes the key over from another process (see
    :func:`run_shop_job`).
    """

    kind: str  # a key of paging.ENDPOINTS
    shop_id: str
    key: SealedKey
    api_base: str | None
    rate_limit: float  # requests/s for this key
    max_retry_wait: float  # seconds of backoff per request
    retrieve_ids: tuple[str, ...] = ()  # retrieved unless the listing returned them
    listing: bool = True  # False: targeted retrieves only
    window_workers: int = paging.DEFAULT_WINDOW_WORKERS
    expected: int | None = None  # size hint; None: the number of distinct retrieve ids
    origin: str = field(default_factory=_this_process)
    # seconds per attempt (connect, read) and per call (wall time): Settings' bounds
    connect_timeout: float | None = None
    read_timeout: float | None = None
    deadline: float | None = None

    @property
    def masked_key(self) -> str | None:
        return self.key.masked


@dataclass
class ShopOutcome:
    """What one :class:`ShopJob` produced; plain data, picklable.

    ``rows``: frame rows (see :func:`customer_rows` and its siblings) of the objects
    listed and retrieved, not the Stripe objects themselves.
    """

    shop_id: str
    rows: list[StripeDict] = field(default_factory=list)
    listed_ids: frozenset[str] = frozenset()
    not_found: tuple[str, ...] = ()  # retrieve ids the shop answered 404 for
    # of those, ids Stripe says exist in the key's other mode: id -> Stripe's message
    other_mode: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    windows: int = 0
    error: str | None = None


def _shop_client(job: ShopJob) -> stripe.StripeClient:
    shop = Shop(id=job.shop_id, name=None, stripe_secret_key=job.key.open())
    client = client_for_shop(
        shop,
        api_base=job.api_base,
        rate_limit=job.rate_limit,
        max_retry_wait=job.max_retry_wait,
        connect_timeout=job.connect_timeout,
        read_timeout=job.read_timeout,
        deadline=job.deadline,
    )
    if job.origin != _this_process():
        # Another process may have used this key a moment ago: start from an
        # empty bucket so that, together, the two never exceed the key's rate.
        transport = transport_of(client)
        if transport is not None and transport.limiter is not None:
            transport.limiter.drain()
    return client


def _retrieve(
    client: stripe.StripeClient, kind: str, ids: list[str], workers: int
) -> tuple[list[StripeDict], list[str], dict[str, str]]:
    """Retrieve ``ids`` in parallel: (objects found, ids answered 404, and of those the
    ones Stripe says exist in the other mode, with Stripe's message)."""
    service = getattr(client.v1, paging.ENDPOINTS[kind].service)
    elsewhere: dict[str, str] = {}

    def one(object_id: str) -> StripeDict | None:
        try:
            obj: StripeDict = service.retrieve(object_id).to_dict()
            return obj
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                if other_mode(exc):
                    elsewhere[object_id] = redact(stripe_message(exc))
                return None
            raise

    if not ids:
        return [], [], {}
    with ThreadPoolExecutor(max(1, min(workers, len(ids))), "opskit-retrieve") as pool:
        answers = list(pool.map(one, ids))
    found = [a for a in answers if a is not None]
    missing = [i for i, a in zip(ids, answers, strict=True) if a is None]
    return found, missing, elsewhere


def run_shop_job(job: ShopJob) -> ShopOutcome:
    """List (and/or retrieve) one shop's objects; a Stripe failure becomes ``.error``.

    Module-level and free of closures so that any executor, including a
    process-based one, can run it.
    """
    out = ShopOutcome(job.shop_id)
    lister: paging.WindowedLister | None = None
    to_rows, id_column = _ROWS[job.kind]
    shop_id = job.shop_id

    def keep(obj: StripeDict) -> StripeDict:
        return to_rows(shop_id, (obj,))[0]

    try:
        client = _shop_client(job)
        rows: list[StripeDict] = []
        if job.listing:
            lister = paging.WindowedLister(
                paging.page_fetcher(client, paging.ENDPOINTS[job.kind]),
                workers=job.window_workers,
                expected=job.expected if job.expected is not None else len(set(job.retrieve_ids)),
                keep=keep,
            )
            rows = lister.run()
            out.requests += lister.stats.requests
            out.windows = lister.stats.windows
            lister = None
        listed = frozenset(str(row[id_column]) for row in rows)
        wanted = list(dict.fromkeys(i for i in job.retrieve_ids if i not in listed))
        out.requests += len(wanted)
        found, missing, elsewhere = _retrieve(client, job.kind, wanted, job.window_workers)
        out.rows = [*rows, *to_rows(shop_id, found)]
        out.listed_ids = listed
        out.not_found = tuple(missing)
        out.other_mode = elsewhere
    except Exception as exc:  # noqa: BLE001 - any failure of this shop is this shop's error
        if lister is not None:
            out.requests += lister.stats.requests
        out.rows = []
        out.error = describe_error(exc)
    return out


def run_shop_jobs(jobs: tuple[ShopJob, ...]) -> list[ShopOutcome]:
    """:func:`run_shop_job` for each job: one key's shops one after the other, keys in parallel.

    One task of a process-based executor carries several keys (see ``TASK_KEYS``), so
    that a fleet of small shops is not a fleet of scheduler round trips.
    """
    groups = _by_key(list(jobs))
    if len(groups) == 1:
        return [run_shop_job(job) for job in groups[0]]
    with ThreadPoolExecutor(len(groups), thread_name_prefix="opskit-task") as pool:
        results = pool.map(lambda group: [run_shop_job(job) for job in group], groups)
        return [outcome for group in results for outcome in group]


# -- many shops ------------------------------------------------------------------------------


def _run_jobs(
    jobs: list[ShopJob],
    executor: Executor | None,
    limit: int,
    progress: bool,
    desc: str,
) -> list[ShopOutcome]:
    """Run ``jobs`` at most ``limit`` at a time, with a progress bar over shops."""
    if not jobs:
        return []
    own = executor is None
    pool: Executor = executor or ThreadPoolExecutor(limit, thread_name_prefix="opskit-shop")
    outcomes: list[ShopOutcome] = []
    pending: dict[Future[list[ShopOutcome]], tuple[ShopJob, ...]] = {}
    groups = _by_key(jobs)
    # Our own threads: one key per task. Another executor (e.g. dask): a few keys per
    # task (run in parallel inside it), all of one key's shops always in the same
    # task, and as many tasks in flight as keep about ``limit`` shops in flight.
    per_task = 1 if own else max(1, min(TASK_KEYS, limit))
    limit = max(1, limit // per_task)
    batches = [
        tuple(job for group in groups[i : i + per_task] for job in group)
        for i in range(0, len(groups), per_task)
    ]
    queue = collections.deque(batches)

    def fill() -> None:
        while len(pending) < limit and queue:
            batch = queue.popleft()
            pending[pool.submit(run_shop_jobs, batch)] = batch

    try:
        with progress_bar(total=len(jobs), desc=desc, unit="shop", progress=progress) as bar:
            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    batch = pending.pop(fut)
                    try:
                        results = fut.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. a dead worker: these shops only
                        keys = _by_key(list(batch))
                        if len(keys) > 1:  # run each key on its own, so only its shops fail
                            queue.extendleft(reversed(keys))
                            continue
                        error = describe_error(exc)
                        results = [ShopOutcome(job.shop_id, error=error) for job in batch]
                    outcomes.extend(results)
                    bar.update(len(results))
                    if any(o.error for o in results):
                        bar.set_postfix_str(f"{len([o for o in outcomes if o.error])} failed")
                fill()
    finally:
        for fut in pending:
            fut.cancel()
        if own:
            pool.shutdown(wait=True)
    order = {job.shop_id: n for n, job in enumerate(jobs)}
    return sorted(outcomes, key=lambda o: order.get(o.shop_id, len(order)))


def _by_key(jobs: list[ShopJob]) -> list[tuple[ShopJob, ...]]:
    """The jobs grouped by Stripe key (sealed tokens differ, so group on the opened key)."""
    groups: dict[str, list[ShopJob]] = {}
    for job in jobs:
        groups.setdefault(_group_of(job), []).append(job)
    return [tuple(group) for group in groups.values()]


def _group_of(job: ShopJob) -> str:
    try:
        return key_fingerprint(job.key.open())
    except Exception:  # noqa: BLE001 - an unopenable key fails in its own task
        return f"shop:{job.shop_id}"


def _usable_shops(shops: Iterable[Any]) -> list[Shop]:
    """Shops with an id and a usable key, one per id, in the order given (ids are text)."""
    seen: dict[str, Shop] = {}
    for raw in shops:
        shop = as_shop(raw)
        if shop is None or shop.id is None or not shop.key_info.usable:
            continue
        seen.setdefault(shop.id, shop)
    return list(seen.values())


def _job(ctx: Context, kind: str, shop: Shop, **kwargs: Any) -> ShopJob:
    assert shop.id is not None and shop.stripe_secret_key is not None
    s = ctx.settings
    return ShopJob(
        kind=kind,
        shop_id=shop.id,
        key=seal(shop.stripe_secret_key.strip()),
        api_base=ctx.api_base,
        rate_limit=s.live_rate_limit if shop.key_info.mode == "live" else s.test_rate_limit,
        max_retry_wait=s.max_retry_wait,
        connect_timeout=s.connect_timeout,
        read_timeout=s.read_timeout,
        deadline=s.request_deadline,
        **kwargs,
    )


def _limit(ctx: Context, max_workers: int | None) -> int:
    return max(1, int(max_workers if max_workers is not None else ctx.settings.max_shop_workers))


def fetch_customers(
    ctx: Context,
    shops: Iterable[Any],
    *,
    link_ids: Mapping[str, Collection[str]] | None = None,
    expected: Mapping[str, int] | None = None,
    lookup_shops: Iterable[Any] = (),
    executor: Executor | None = None,
    progress: bool = True,
    max_workers: int | None = None,
    window_workers: int = paging.DEFAULT_WINDOW_WORKERS,
) -> FetchResult:
    """Every customer of each shop's own Stripe account, as a ``CUSTOMERS`` frame.

    ``link_ids`` (shop_id -> customer ids the shop's accounts link, see
    :func:`linked_ids`) adds rows for linked customers the listings do not hold:
    deleted ones (``deleted=True``) and ones found in another shop of the run
    (see the module docstring for the exact rule). ``executor``: run the shops
    there instead of on a private thread pool; ``max_workers`` (default
    ``Settings.max_shop_workers``) bounds the shops in flight either way.
    ``window_workers``: requests in flight per shop. ``expected`` (shop_id ->
    roughly how many objects the shop holds, e.g. its linked accounts) lets a
    big shop fan out its listing from the first page; see :mod:`opskit.stripeapi.paging`.
    ``lookup_shops``: shops outside the run (e.g. the rest of the backend when the
    caller filtered shops) where linked ids found nowhere are also retrieved, so a
    link to another shop's customer is told from a missing one; their rows carry
    their own shop_id and they are never listed.
    """
    targets = _usable_shops(shops)
    in_run = {shop.id for shop in targets}
    outsiders = [s for s in _usable_shops(lookup_shops) if s.id not in in_run]
    links = {str(k): [str(i) for i in v] for k, v in (link_ids or {}).items()}
    limit = _limit(ctx, max_workers)
    jobs = [
        _job(
            ctx,
            "customers",
            shop,
            retrieve_ids=tuple(dict.fromkeys(links.get(shop.id or "", ()))),
            window_workers=window_workers,
            expected=(expected or {}).get(shop.id or ""),
        )
        for shop in targets
    ]
    outcomes = _run_jobs(jobs, executor, limit, progress, "Stripe customers")
    errors = {o.shop_id: o.error for o in outcomes if o.error is not None}

    # Ids found nowhere: look for them in the other shops that listed fine (rule 3).
    listed_anywhere = set().union(*(o.listed_ids for o in outcomes)) if outcomes else set()
    found_anywhere = listed_anywhere | {
        str(row["stripe_customer_id"]) for o in outcomes for row in o.rows
    }
    # an id Stripe says exists in the shop's other mode is not lost: its owner is known
    lost: dict[str, list[str]] = {
        o.shop_id: [i for i in o.not_found if i not in found_anywhere and i not in o.other_mode]
        for o in outcomes
    }
    healthy = [shop for shop in targets if shop.id not in errors] + outsiders
    cross: list[ShopJob] = []
    budget = MAX_CROSS_SHOP_RETRIEVES
    for shop in healthy:
        ids = [i for owner, owned in lost.items() if owner != shop.id for i in owned]
        ids = list(dict.fromkeys(ids))[: max(0, budget)]
        if ids:
            budget -= len(ids)
            cross.append(
                _job(
                    ctx,
                    "customers",
                    shop,
                    retrieve_ids=tuple(ids),
                    listing=False,
                    window_workers=window_workers,
                )
            )
    if any(lost.values()) and budget <= 0:
        log.warning(
            "opskit: %d cross-shop customer lookups cap reached; some linked ids stay unresolved",
            MAX_CROSS_SHOP_RETRIEVES,
        )
    extra = _run_jobs(cross, executor, limit, progress, "Stripe cross-shop lookups")
    lookup_errors: dict[str, str] = {}
    for o in extra:
        if o.error is not None:
            log.warning("opskit: cross-shop lookup in shop %s failed: %s", o.shop_id, o.error)
            lookup_errors[o.shop_id] = o.error
    frame = _frame(CUSTOMERS, [*outcomes, *extra], "stripe_customer_id")
    requests = sum(o.requests for o in [*outcomes, *extra])
    elsewhere = {o.shop_id: dict(o.other_mode) for o in outcomes if o.other_mode}
    return FetchResult(
        frame=frame,
        errors=errors,
        requests=requests,
        other_mode=elsewhere,
        lookup_errors=lookup_errors,
    )


def fetch_subscriptions(
    ctx: Context,
    shops: Iterable[Any],
    *,
    link_ids: Mapping[str, Collection[str]] | None = None,
    expected: Mapping[str, int] | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    max_workers: int | None = None,
    window_workers: int = paging.DEFAULT_WINDOW_WORKERS,
) -> FetchResult:
    """Every subscription of each shop (``status="all"``: canceled too), as ``SUBSCRIPTIONS``.

    ``link_ids`` (shop_id -> subscription ids the shop's accounts record) are
    retrieved when the listing does not hold them: Stripe leaves subscriptions of
    customers on a test clock out of every list, so a recorded one would otherwise
    read ``missing_in_stripe``. ``expected``: per-shop size hints, as for
    :func:`fetch_customers`.
    """
    links = {str(k): [str(i) for i in v] for k, v in (link_ids or {}).items()}
    jobs = [
        _job(
            ctx,
            "subscriptions",
            shop,
            retrieve_ids=tuple(dict.fromkeys(links.get(shop.id or "", ()))),
            window_workers=window_workers,
            expected=(expected or {}).get(shop.id or ""),
        )
        for shop in _usable_shops(shops)
    ]
    outcomes = _run_jobs(jobs, executor, _limit(ctx, max_workers), progress, "Stripe subscriptions")
    errors = {o.shop_id: o.error for o in outcomes if o.error is not None}
    frame = _frame(SUBSCRIPTIONS, outcomes, "stripe_subscription_id")
    items = items_frame(row for o in outcomes if o.error is None for row in o.rows)
    requests = sum(o.requests for o in outcomes)
    return FetchResult(frame=frame, errors=errors, requests=requests, items=items)


def size_hints(accounts_df: pd.DataFrame, column: str) -> dict[str, int]:
    """``{shop_id: n}``: how many distinct non-blank ``column`` values each shop's accounts hold.

    The backend's own links are the best prior for how many objects each shop's
    Stripe account has, which lets a big shop's listing fan out from page one.
    """
    return {shop: len(ids) for shop, ids in linked_ids(accounts_df, column).items()}


def fetch_prices(
    ctx: Context,
    shops: Iterable[Any],
    *,
    executor: Executor | None = None,
    progress: bool = True,
    max_workers: int | None = None,
) -> FetchResult:
    """Every price of each shop's own Stripe account (active or not), as ``PRICES``."""
    jobs = [_job(ctx, "prices", shop) for shop in _usable_shops(shops)]
    outcomes = _run_jobs(jobs, executor, _limit(ctx, max_workers), progress, "Stripe prices")
    errors = {o.shop_id: o.error for o in outcomes if o.error is not None}
    frame = _frame(PRICES, outcomes, "stripe_price_id")
    return FetchResult(frame=frame, errors=errors, requests=sum(o.requests for o in outcomes))


def linked_ids(accounts_df: pd.DataFrame, column: str) -> dict[str, set[str]]:
    """``{shop_id: {ids}}`` of the non-blank values of ``column``, whitespace stripped."""
    if accounts_df.empty or column not in accounts_df.columns:
        return {}
    ids = accounts_df[column].astype("string").str.strip()
    keep = ids.notna() & (ids != "") & accounts_df["shop_id"].notna()
    out: dict[str, set[str]] = {}
    for shop_id, value in zip(accounts_df.loc[keep, "shop_id"], ids[keep], strict=True):
        out.setdefault(str(shop_id), set()).add(str(value))
    return out


# -- Stripe objects -> rows ------------------------------------------------------------------

# Our column <- Stripe's field, for fields copied as they are.
CUSTOMER_FIELDS: Mapping[str, str] = {
    "stripe_customer_id": "id",
    "email": "email",
    "name": "name",
    "livemode": "livemode",
}
SUBSCRIPTION_FIELDS: Mapping[str, str] = {
    "stripe_subscription_id": "id",
    "status": "status",
    "cancel_at_period_end": "cancel_at_period_end",
}
_EPOCH_COLUMNS = ("created_at", "canceled_at", "current_period_end_at", "cancel_at", "ended_at")


def _id_of(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def customer_rows(shop_id: str, objects: Iterable[StripeDict]) -> list[StripeDict]:
    """One ``CUSTOMERS`` row per customer dict (tombstones give ``deleted=True``).

    ``stripe_object`` is the whole customer as JSON text: what shop-backend's admin
    sync stores in ``details["stripe_customer"]``, and what snapshots compare with.
    """
    rows = []
    for obj in objects:
        row: StripeDict = {col: obj.get(src) for col, src in CUSTOMER_FIELDS.items()}
        row["shop_id"] = shop_id
        row["deleted"] = obj.get("deleted") is True
        row["created_at"] = obj.get("created")
        row["stripe_object"] = _json_text(obj)
        rows.append(row)
    return rows


def _json_text(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str).decode()


def _items(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = obj.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    return [i for i in (data or []) if isinstance(i, Mapping)]


def _item_fields(item: Mapping[str, Any], obj: Mapping[str, Any]) -> StripeDict:
    """Price id, product, lookup key, amount, currency, interval and quantity of one item."""
    price = item.get("price") or {}
    plan = item.get("plan") or obj.get("plan") or {}
    if not isinstance(price, Mapping):
        price = {"id": price}
    if not isinstance(plan, Mapping):
        plan = {"id": plan}
    recurring = price.get("recurring") or {}
    amount = price.get("unit_amount")
    currency = price.get("currency") or plan.get("currency")
    return {
        "stripe_subscription_item_id": item.get("id"),
        "stripe_price_id": price.get("id") or plan.get("id"),
        "product": _id_of(price.get("product") or plan.get("product")),
        "lookup_key": price.get("lookup_key") or plan.get("lookup_key"),
        "quantity": item.get("quantity"),
        "unit_amount": amount if amount is not None else plan.get("amount"),
        "currency": currency.lower() if isinstance(currency, str) else None,
        "interval": recurring.get("interval") or plan.get("interval"),
    }


def _joined(values: Iterable[Any]) -> str | None:
    present = sorted({str(v) for v in values if v})
    return ",".join(present) if present else None


def subscription_rows(shop_id: str, objects: Iterable[StripeDict]) -> list[StripeDict]:
    """One ``SUBSCRIPTIONS`` row per subscription dict.

    ``stripe_price_id``, ``unit_amount``, ``currency`` and ``interval`` are the
    first item's (its ``price``, else its legacy ``plan``, else the
    subscription's ``plan``); ``stripe_price_ids`` and ``lookup_keys`` name every
    item's (sorted, joined by ","), ``items`` counts them; ``items_json`` keeps
    each item's fields for :func:`items_frame`. ``current_period_end`` comes from
    the subscription, else the earliest of its items' (where newer API versions
    keep it); ``cancel_at`` and ``ended_at`` as Stripe has them.
    """
    rows = []
    for obj in objects:
        items = _items(obj)
        fields = [_item_fields(i, obj) for i in items]
        head = fields[0] if fields else _item_fields({}, obj)
        row: StripeDict = {col: obj.get(src) for col, src in SUBSCRIPTION_FIELDS.items()}
        row.update(
            shop_id=shop_id,
            stripe_customer_id=_id_of(obj.get("customer")),
            stripe_price_id=head["stripe_price_id"],
            unit_amount=head["unit_amount"],
            currency=head["currency"],
            interval=head["interval"],
            current_period_end_at=obj.get("current_period_end") or _period_end(items),
            created_at=obj.get("created"),
            canceled_at=obj.get("canceled_at"),
            cancel_at=obj.get("cancel_at"),
            ended_at=obj.get("ended_at"),
            stripe_price_ids=_price_ids(items, obj),
            lookup_keys=_joined(f["lookup_key"] for f in fields),
            items=len(items),
            items_json=_json_text(fields),
        )
        rows.append(row)
    return rows


def items_frame(rows: Iterable[StripeDict]) -> pd.DataFrame:
    """``SUBSCRIPTION_ITEMS``: one row per item of the subscription rows given."""
    out = []
    for row in rows:
        for n, item in enumerate(orjson.loads(row.get("items_json") or "[]")):
            out.append(
                {
                    **item,
                    "stripe_subscription_item_id": item.get("stripe_subscription_item_id")
                    or f"{row.get('stripe_subscription_id')}#{n}",
                    "shop_id": row.get("shop_id"),
                    "stripe_subscription_id": row.get("stripe_subscription_id"),
                    "stripe_customer_id": row.get("stripe_customer_id"),
                    "status": row.get("status"),
                    "created_at": row.get("created_at"),
                }
            )
    if not out:
        return empty(SUBSCRIPTION_ITEMS)
    df = pd.DataFrame.from_records(out)
    if "created_at" in df.columns and not isinstance(df["created_at"].dtype, pd.DatetimeTZDtype):
        df["created_at"] = pd.to_datetime(
            pd.array(df["created_at"].tolist(), dtype="Int64"), unit="s", utc=True
        )
    keys = ["shop_id", "stripe_subscription_id", "stripe_subscription_item_id"]
    df = df.drop_duplicates(keys)
    return conform(_sorted(df, keys), SUBSCRIPTION_ITEMS)


def _price_ids(items: list[Any], obj: StripeDict) -> str | None:
    """Every item's price id (else its plan's, else the subscription's plan), sorted, joined."""
    ids = set()
    for item in items:
        item = item or {}
        price = item.get("price") or item.get("plan") or obj.get("plan")
        pid = _id_of(price)
        if pid:
            ids.add(str(pid))
    return ",".join(sorted(ids)) or None


def _period_end(items: list[Any]) -> Any:
    ends = [i.get("current_period_end") for i in items if i and i.get("current_period_end")]
    return min(ends) if ends else None


def price_rows(shop_id: str, objects: Iterable[StripeDict]) -> list[StripeDict]:
    """One ``PRICES`` row per price dict."""
    rows = []
    for obj in objects:
        currency = obj.get("currency")
        rows.append(
            {
                "shop_id": shop_id,
                "stripe_price_id": obj.get("id"),
                "product": _id_of(obj.get("product")),
                "nickname": obj.get("nickname"),
                "lookup_key": obj.get("lookup_key"),
                "unit_amount": obj.get("unit_amount"),
                "currency": currency.lower() if isinstance(currency, str) else None,
                "interval": (obj.get("recurring") or {}).get("interval"),
                "active": obj.get("active"),
                "created_at": obj.get("created"),
            }
        )
    return rows


# kind -> (its rows function, its id column)
_ROWS: Mapping[str, tuple[Callable[[str, Iterable[StripeDict]], list[StripeDict]], str]] = {
    "customers": (customer_rows, "stripe_customer_id"),
    "subscriptions": (subscription_rows, "stripe_subscription_id"),
    "prices": (price_rows, "stripe_price_id"),
}


def _frame(spec: Spec, outcomes: Iterable[ShopOutcome], id_column: str) -> pd.DataFrame:
    rows = [row for o in outcomes if o.error is None for row in o.rows]
    if not rows:
        return empty(spec)
    df = pd.DataFrame.from_records(rows)
    for col in _EPOCH_COLUMNS:
        if col in df.columns:
            seconds = pd.array(df[col].tolist(), dtype="Int64")
            df[col] = pd.to_datetime(seconds, unit="s", utc=True)
    df = df.drop_duplicates(["shop_id", id_column])
    return conform(_sorted(df, ["shop_id", id_column]), spec)


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Sorted by shop (integer shop ids numerically, others as text), then the other keys."""
    order = pd.DataFrame({"_shop": id_sort_key(df["shop_id"].astype("string"))}, index=df.index)
    for k in keys[1:]:
        order[k] = df[k].astype("string")
    return df.loc[order.sort_values(["_shop", *keys[1:]], kind="stable").index]


_SPECS: Mapping[str, Spec] = {
    "customers": CUSTOMERS,
    "subscriptions": SUBSCRIPTIONS,
    "prices": PRICES,
}


def object_rows(kind: str, shop_id: Any, objects: Iterable[StripeDict]) -> list[StripeDict]:
    """Frame rows of Stripe objects of ``kind`` (customers/subscriptions/prices), exactly as a
    listing keeps them (e.g. for the objects events carry)."""
    return _ROWS[kind][0](shop_id, objects)


def frame_of(kind: str, rows_by_shop: Mapping[Any, Iterable[StripeDict]]) -> pd.DataFrame:
    """The frame a listing of ``kind`` gives, from rows already at hand (opskit's copy
    kept by events): same rows, same dtypes. Each row takes the shop id it is filed under."""
    outcomes = [
        ShopOutcome(shop_id, rows=[{**row, "shop_id": shop_id} for row in rows])
        for shop_id, rows in rows_by_shop.items()
    ]
    return _frame(_SPECS[kind], outcomes, _ROWS[kind][1])


def shop_job(ctx: Context, kind: str, shop: Shop, **kwargs: Any) -> ShopJob:
    """The :class:`ShopJob` that lists (and/or retrieves) ``kind`` in ``shop``, for
    :func:`run_shop_job` (``kwargs``: ``retrieve_ids``, ``listing``, ...)."""
    return _job(ctx, kind, shop, **kwargs)
