"""The money of many shops, each from its own Stripe account: one work item per shop.

Public source function::

    fetch_money(ctx, shops, since=..., until=..., kinds=..., itemize=..., balance=...)
        -> MoneyResult(shops=[ShopMoney, ...], errors={shop_id: reason}, requests, minimum)

The endpoints are data (:data:`ENDPOINTS`); each listing is bounded to
``[since, until]`` and read by one cursor chain (100 per page), the listings of
one shop (and then its payout itemizations) concurrently inside the shop's rate
limit, so a shop costs exactly its pages. Charges
are listed with ``expand[]=data.balance_transaction``, so fees and nets come
with them. Balance transactions, refunds and disputes are listed from ``since``
up to *now* when ``ledger_to_now`` (end balances are walked back from today's
``GET /v1/balance``; a payment of the period disputed or refunded later shows it).
Each automatic payout is itemized with ``GET /v1/balance_transactions?payout=po_...``
(sources expanded, so each row names its charge, refund or dispute and their payment);
manual payouts cannot be (Stripe does not record what they contain) and are not
asked about.

``minimum`` counts the pages the same data needs at best: ``ceil(n/100)`` (at
least one) per listing and per itemized payout, plus one for the balance; the
benchmark compares ``requests`` with it. A shop that fails becomes
``errors[shop_id]`` (one secret-free line) and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import stripe

from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.models import Shop, as_shop
from opskit.common.progress import bar as progress_bar
from opskit.common.sealing import SealedKey, seal
from opskit.common.stripe_errors import describe_error
from opskit.core.ledger import ShopMoney
from opskit.stripeapi import paging
from opskit.stripeapi.clients import client_for_shop, client_limits

__all__ = ["ENDPOINTS", "KINDS", "MoneyJob", "MoneyResult", "fetch_money", "run_money_job"]

ENDPOINTS = {
    "intents": paging.Endpoint("payment_intents", "payment_intents"),
    "charges": paging.Endpoint("charges", "charges", {"expand": ["data.balance_transaction"]}),
    "refunds": paging.Endpoint("refunds", "refunds"),
    "disputes": paging.Endpoint("disputes", "disputes"),
    "transactions": paging.Endpoint("balance_transactions", "balance_transactions"),
    "payouts": paging.Endpoint("payouts", "payouts"),
}
KINDS = tuple(ENDPOINTS)
LATER = ("transactions", "refunds", "disputes")  # listed from ``since`` up to now


@dataclass
class MoneyResult:
    """Per-shop money of the shops that answered, the shops that failed, and the cost."""

    shops: list[ShopMoney] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)  # shop_id -> API calls made
    minimum: dict[str, int] = field(default_factory=dict)  # shop_id -> pages needed at best


@dataclass(frozen=True)
class MoneyJob:
    """One shop's money reads; picklable.

    The key travels sealed (encrypted under the task secret, see
    :mod:`opskit.common.sealing`) and the settings without the database URL, so a
    job sent to another process (a dask worker) carries no secret in the clear.
    """

    shop_id: str
    key: SealedKey
    api_base: str | None
    settings: Settings
    kinds: tuple[str, ...]
    since: int | None
    until: int | None
    ledger_to_now: bool = True
    itemize: bool = True
    balance: bool = True
    window_workers: int = paging.DEFAULT_WINDOW_WORKERS


def _epoch(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _pages(n: int) -> int:
    return max(1, -(-n // paging.PAGE_SIZE))


def _bounded(fetch: paging.PageFetcher, lo: int | None, hi: int | None) -> paging.PageFetcher:
    """``fetch`` with every request's ``created`` range intersected with ``[lo, hi]``."""

    def bounded(params: dict[str, Any]) -> paging.Page:
        created = dict(params.get("created") or {})
        if lo is not None:
            created["gte"] = max(int(created.get("gte", lo)), lo)
        if hi is not None:
            created["lte"] = min(int(created.get("lte", hi)), hi)
        if created:
            params = {**params, "created": created}
        return fetch(params)

    return bounded


def _with(fetch: paging.PageFetcher, extra: dict[str, Any]) -> paging.PageFetcher:
    return lambda params: fetch({**params, **extra})


def run_money_job(job: MoneyJob) -> tuple[ShopMoney, int, str | None]:
    """``(money, minimum pages, error)`` for one shop; any failure is this shop's error."""
    out = ShopMoney(job.shop_id)
    minimum = 0
    try:
        shop = Shop(id=job.shop_id, name=None, stripe_secret_key=job.key.open())  # type: ignore[arg-type]
        s = job.settings
        rate = s.live_rate_limit if shop.key_info.mode == "live" else s.test_rate_limit
        client = client_for_shop(shop, api_base=job.api_base, rate_limit=rate, **client_limits(s))

        # Each listing is bounded to the period and read by one cursor chain (a
        # lister fanning out over all time would pay a request per empty window);
        # the listings, then the payout itemizations, run concurrently instead.
        def listing(kind: str) -> tuple[list[Any], int]:
            # What happens later to the period's money (its refunds, disputes, ledger
            # rows up to today) is read up to now.
            hi = None if kind in LATER and job.ledger_to_now else job.until
            fetch = _bounded(paging.page_fetcher(client, ENDPOINTS[kind]), job.since, hi)
            objects, stats = paging.list_all(fetch, workers=1)
            return objects, stats.requests

        def items(po: str) -> tuple[list[Any], int, str | None]:
            path = paging.page_fetcher(client, ENDPOINTS["transactions"])
            try:
                found, stats = paging.list_all(
                    _with(path, {"payout": po, "expand": ["data.source"]}), workers=1
                )
            except stripe.InvalidRequestError as exc:  # e.g. not reconciled yet
                return [], 1, describe_error(exc)
            return found, stats.requests, None

        workers = max(1, job.window_workers)
        with ThreadPoolExecutor(workers, thread_name_prefix="opskit-money-list") as pool:
            for kind, (objects, n) in zip(job.kinds, pool.map(listing, job.kinds), strict=True):
                out.requests += n
                minimum += _pages(len(objects))
                setattr(out, kind, objects)
            auto = [po["id"] for po in out.payouts if po.get("automatic")] if job.itemize else []
            for po, (found, n, error) in zip(auto, pool.map(items, auto), strict=True):
                out.requests += n
                if error is not None:
                    out.payout_errors[po] = error
                    continue
                minimum += _pages(len(found))
                out.payout_items[po] = found
        if job.balance:
            out.balance = client.raw_request("get", "/v1/balance").data
            out.requests += 1
            minimum += 1
    except Exception as exc:  # noqa: BLE001 - any failure of this shop is this shop's error
        return ShopMoney(job.shop_id, requests=out.requests), minimum, describe_error(exc)
    return out, minimum, None


def _usable(shops: Iterable[Any]) -> list[Shop]:
    seen: dict[str, Shop] = {}
    for raw in shops:
        shop = as_shop(raw)
        if shop is None or shop.id is None or not shop.key_info.usable:
            continue
        seen.setdefault(str(shop.id), shop)
    return [seen[k] for k in sorted(seen)]


def fetch_money(
    ctx: Context,
    shops: Iterable[Any],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: Sequence[str] = KINDS,
    ledger_to_now: bool = True,
    itemize: bool = True,
    balance: bool = True,
    executor: Executor | None = None,
    progress: bool = True,
    max_workers: int | None = None,
) -> MoneyResult:
    """Read ``kinds`` (see :data:`ENDPOINTS`) of every shop with a usable key.

    ``since``/``until`` (tz-aware) bound the ``created`` time of what is listed;
    shops without a usable key are skipped (the reports name them). Shops run
    concurrently, at most ``Settings.max_shop_workers`` at a time, on a private
    thread pool or on ``executor``.
    """
    unknown = [k for k in kinds if k not in ENDPOINTS]
    if unknown:
        raise ValueError(f"unknown money kinds {unknown}; known: {', '.join(KINDS)}")
    jobs = [
        MoneyJob(
            shop_id=str(shop.id),
            key=seal(str(shop.stripe_secret_key).strip()),
            api_base=ctx.api_base,
            settings=replace(ctx.settings, database_url=None),
            kinds=tuple(kinds),
            since=_epoch(since),
            until=_epoch(until),
            ledger_to_now=ledger_to_now,
            itemize=itemize and "payouts" in kinds,
            balance=balance,
        )
        for shop in _usable(shops)
    ]
    result = MoneyResult()
    if not jobs:
        return result
    limit = max(1, int(max_workers or ctx.settings.max_shop_workers))
    own = executor is None
    pool: Executor = executor or ThreadPoolExecutor(limit, thread_name_prefix="opskit-money")
    try:
        futures = [pool.submit(run_money_job, job) for job in jobs]
        with progress_bar(
            total=len(jobs), desc="Stripe money", unit="shop", progress=progress
        ) as bar:
            for job, fut in zip(jobs, futures, strict=True):
                try:
                    money, minimum, error = fut.result()
                except Exception as exc:  # noqa: BLE001 - a lost worker: this shop only
                    money, minimum, error = ShopMoney(job.shop_id), 0, describe_error(exc)
                result.requests[job.shop_id] = money.requests
                result.minimum[job.shop_id] = minimum
                if error is not None:
                    result.errors[job.shop_id] = error
                else:
                    result.shops.append(money)
                bar.update(1)
    finally:
        if own:
            pool.shutdown(wait=True)
    return result
