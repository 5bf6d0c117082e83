"""The `Ops` object: the public API, thin over the modules (``opskit.connect()`` opens one).

Every front end (notebooks, widgets, CLI) calls these same methods, so a panel
and a scheduled report can never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from opskit.backend import audit
from opskit.backend.db import Database, safe_url, shops_frame
from opskit.backend.schema import Schema
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.exceptions import InputError
from opskit.common.ids import IdLike, id_list
from opskit.common.models import Shop
from opskit.core import badrows, enrich, frames, reconcile, snapshots
from opskit.core import subscriptions as customer_subscriptions
from opskit.ops_money import MoneyOps
from opskit.stripeapi import fetch
from opskit.writes import actions, recovery, sync
from opskit.writes import refresh as refreshing

ShopIds = Iterable[IdLike] | IdLike | None
REPORTS = ("customers", "subscriptions")
SOURCES = ("stripe", "refreshed")  # where a reconciliation reads Stripe's side
log = logging.getLogger(__name__)


def open_ops(
    url: str,
    schema: Schema | None = None,
    stripe_api_base: str | None = None,
    *,
    settings: Settings | None = None,
) -> Ops:
    """Open the database at ``url`` and say where Stripe requests go.

    ``stripe_api_base`` defaults to ``OPSKIT_STRIPE_API_BASE``, else Stripe itself.
    ``settings`` tunes limits and safety; where it leaves the Stripe base unset,
    the environment still supplies it. :func:`opskit.connect` adds the defaults
    for ``url`` (the environment, else the embedded demo database).
    """
    env = Settings.from_env()
    base = settings or env
    if base.stripe_api_base is None:
        base = replace(base, stripe_api_base=env.stripe_api_base)
    if stripe_api_base is not None:
        base = replace(base, stripe_api_base=stripe_api_base.rstrip("/"))
    base = replace(base, database_url=url)
    return Ops(Context(db=Database(url, schema), settings=base))


class Ops(MoneyOps):
    """One backend database plus the Stripe accounts of its shops (money methods: MoneyOps)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # the live customers behind the last customer report (its id, the CUSTOMERS frame),
        # so a sync plan of that report proposes snapshots without listing them again
        self._live_customers: tuple[int, pd.DataFrame] | None = None

    def __repr__(self) -> str:
        stripe_at = safe_url(self.ctx.api_base) if self.ctx.api_base else "Stripe"
        return (
            f"<opskit.Ops database={safe_url(self.ctx.db.url)!r} stripe={stripe_at!r} "
            f"mapping={self.ctx.db.schema.profile!r}>"
        )

    @property
    def schema(self) -> Schema:
        """The mapping in use (given to connect(), or detected from the tables)."""
        return self.ctx.db.schema

    @property
    def mapping(self) -> str:
        """One line: which mapping opskit uses on this database, and whether it was detected."""
        return self.ctx.db.mapping

    # -- local data ----------------------------------------------------------------------

    def shops(self, shop_ids: ShopIds = None) -> pd.DataFrame:
        """Shops with masked keys and a ``mode`` column (live/test/none/invalid)."""
        return self.ctx.db.load_shops(_ids(shop_ids))

    def accounts(self, shop_ids: ShopIds = None) -> pd.DataFrame:
        """Accounts with the known details keys flattened; unreadable details are flagged.

        Columns and dtypes: :data:`opskit.core.frames.ACCOUNTS`. Ids are text.
        ``email`` is where the backend keeps the email (``accounts.name`` on
        shop-backend), ``name`` a person's name (<NA> when the backend has none).
        details that are NULL, JSON null or ``{}`` are empty, not errors.
        """
        return self.ctx.db.load_accounts(_ids(shop_ids))

    def orders(self, shop_ids: ShopIds = None) -> pd.DataFrame:
        """The backend's orders, amounts in integer cents (:data:`opskit.core.frames.ORDERS`).

        ``order_id``, ``shop_id``, ``account_id`` (text), ``status`` (string),
        ``amount`` (Int64 minor units: the float euro ``total`` through
        ``Decimal(repr(total))``, rounded half-up, never truncated: 19.995 -> 2000),
        ``currency`` (``eur``, ``Schema.order_currency``), ``created_at`` and
        ``completed_at`` (UTC; shop-backend's columns have no zone and hold UTC).
        A backend whose mapping has no orders (``Schema.orders_table=None``) gives an
        empty frame; a mapped orders table that does not exist raises
        :class:`~opskit.SchemaMismatch`.
        """
        return self.ctx.db.load_orders(_ids(shop_ids))

    def products(self, shop_ids: ShopIds = None) -> pd.DataFrame:
        """The backend's products with their recurring list prices in cents
        (:data:`opskit.core.frames.PRODUCTS`); subscriptions name them by lookup key."""
        return self.ctx.db.load_products(_ids(shop_ids))

    # -- Stripe data ---------------------------------------------------------------------

    def customers(
        self, shop_ids: ShopIds = None, *, executor: Executor | None = None, progress: bool = True
    ) -> pd.DataFrame:
        """Every Stripe customer of the shops' own Stripe accounts (listed, not one per account).

        Shops Stripe refused are missing from the frame, not silently: their reasons
        are in ``frame.attrs["shop_errors"]`` (shop_id -> reason) and logged as warnings.
        """
        ids = _ids(shop_ids)
        hints = fetch.size_hints(self.ctx.db.load_accounts(ids), "stripe_customer_id")
        result = fetch.fetch_customers(
            self.ctx, self._shop_list(ids), expected=hints, executor=executor, progress=progress
        )
        return _with_shop_errors(result, self.shops(ids), ["stripe_customer_id"])

    def subscriptions(
        self, shop_ids: ShopIds = None, *, executor: Executor | None = None, progress: bool = True
    ) -> pd.DataFrame:
        """Every Stripe subscription of the shops, canceled included (``status="all"``).

        Columns: :data:`opskit.core.frames.SUBSCRIPTIONS`. Every item shows in
        ``stripe_price_ids`` and ``lookup_keys`` (sorted, joined by ",") and ``items``
        (how many); ``stripe_price_id``/``unit_amount``/``interval`` are the first
        item's (one row per item: :meth:`subscription_items`). Failed shops are
        reported as for :meth:`customers`.
        """
        ids = _ids(shop_ids)
        hints = fetch.size_hints(self.ctx.db.load_accounts(ids), "stripe_subscription_id")
        result = fetch.fetch_subscriptions(
            self.ctx, self._shop_list(ids), expected=hints, executor=executor, progress=progress
        )
        return _with_shop_errors(result, self.shops(ids), ["stripe_subscription_id"])

    def subscription_items(
        self, shop_ids: ShopIds = None, *, executor: Executor | None = None, progress: bool = True
    ) -> pd.DataFrame:
        """One row per subscription item (:data:`opskit.core.frames.SUBSCRIPTION_ITEMS`).

        ``stripe_subscription_id``, ``stripe_subscription_item_id``, ``stripe_customer_id``,
        ``status`` (the subscription's), ``stripe_price_id``, ``product``, ``lookup_key``
        (``monthly-<product id>`` on shop-backend), ``quantity``, ``unit_amount``
        (Int64 minor units), ``currency``, ``interval``, ``created_at`` (UTC).
        Failed shops are reported as for :meth:`customers`.
        """
        ids = _ids(shop_ids)
        result = fetch.fetch_subscriptions(
            self.ctx, self._shop_list(ids), executor=executor, progress=progress
        )
        items = result.items if result.items is not None else pd.DataFrame()
        items.attrs["shop_errors"] = dict(result.errors)
        for shop_id, reason in result.errors.items():
            log.warning("opskit: Stripe failed for shop %s: %s", shop_id, reason)
        return items

    def prices(
        self, shop_ids: ShopIds = None, *, executor: Executor | None = None, progress: bool = True
    ) -> pd.DataFrame:
        """Every price of the shops' Stripe accounts: what subscriptions can be created from.

        Failed shops are reported as for :meth:`customers`.
        """
        result = fetch.fetch_prices(
            self.ctx, self._shop_list(_ids(shop_ids)), executor=executor, progress=progress
        )
        return _with_shop_errors(result)

    # -- reports -------------------------------------------------------------------------

    def reconcile_customers(
        self, shop_ids: ShopIds = None, *, executor: Executor | None = None, progress: bool = True
    ) -> pd.DataFrame:
        """One row per finding comparing local accounts with Stripe customers."""
        return self.reconcile(shop_ids, ("customers",), executor=executor, progress=progress)[
            "customers"
        ]

    def reconcile_subscriptions(
        self, shop_ids: ShopIds = None, *, executor: Executor | None = None, progress: bool = True
    ) -> pd.DataFrame:
        """One row per finding comparing local subscription fields with Stripe subscriptions."""
        return self.reconcile(shop_ids, ("subscriptions",), executor=executor, progress=progress)[
            "subscriptions"
        ]

    def reconcile(
        self,
        shop_ids: ShopIds = None,
        reports: Iterable[str] = REPORTS,
        *,
        executor: Executor | None = None,
        progress: bool = True,
        source: str = "stripe",
    ) -> dict[str, pd.DataFrame]:
        """Several reports from one read of the local data: ``{"customers": ..., ...}``.

        Loading a million accounts takes seconds, so the reports of one run share it.
        ``source="refreshed"`` reads Stripe's side from opskit's copy kept by
        :meth:`refresh` instead of listing every shop (same report, far fewer requests).
        """
        if source not in SOURCES:
            raise InputError(f"unknown source {source!r}", guidance="Use 'stripe' or 'refreshed'.")
        local = replace(self._local(shop_ids), source=source)
        runners = {"customers": self._customer_report, "subscriptions": self._subscription_report}
        unknown = [name for name in reports if name not in runners]
        if unknown:
            raise InputError(
                f"unknown report {unknown[0]!r}", guidance=f"Use one of: {', '.join(REPORTS)}."
            )
        return {name: runners[name](local, executor, progress) for name in reports}

    def _customer_report(
        self, local: _Local, executor: Executor | None, progress: bool
    ) -> pd.DataFrame:
        # With a shop filter, the other shops are still asked about ids found nowhere,
        # so a link to another shop's customer reads wrong_shop, not missing_in_stripe;
        # a shop with a live key only when the run itself includes a live shop.
        outside = _lookup_shops(local)
        links = fetch.linked_ids(local.accounts, "stripe_customer_id")
        if local.source == "refreshed":
            result = refreshing.local_customers(
                self.ctx, local.run, link_ids=links, lookup_shops=outside, failed=local.failed
            )
        else:
            result = fetch.fetch_customers(
                self.ctx,
                local.run,
                link_ids=links,
                lookup_shops=outside,
                executor=executor,
                progress=progress,
            )
        report = reconcile.reconcile_customers(
            local.shops,
            local.accounts,
            result.frame,
            {**result.errors, **result.lookup_errors},  # "missing" is unknown if one failed
            other_shops=shops_frame(outside) if outside else None,
            other_mode=result.other_mode,
            compare_name=self.ctx.db.schema.account_name is not None,
        )
        if self.ctx.db.schema.snapshots:
            found = snapshots.compare_snapshots(local.accounts, result.frame)
            report = snapshots.annotate(report, found)
        report = enrich.add_dashboard_links(report, local.shops, ["stripe_customer_id"])
        report = _flag_bad_rows(report, frames.CUSTOMER_REPORT, local, {"local_email": "email"})
        self._live_customers = (id(report), result.frame)
        return report

    def _subscription_report(
        self, local: _Local, executor: Executor | None, progress: bool
    ) -> pd.DataFrame:
        schema = self.ctx.db.schema
        if local.source == "refreshed":
            result = refreshing.local_subscriptions(
                self.ctx,
                local.run,
                failed=local.failed,
                # Recorded ids the copy lacks (a test clock's) are retrieved, as below.
                link_ids=fetch.linked_ids(local.accounts, "stripe_subscription_id"),
            )
        else:
            hint = "stripe_subscription_id" if schema.subscription_fields else "stripe_customer_id"
            result = fetch.fetch_subscriptions(
                self.ctx,
                local.run,
                # Recorded ids the listing lacks (a test clock's) are retrieved.
                link_ids=fetch.linked_ids(local.accounts, "stripe_subscription_id"),
                expected=fetch.size_hints(local.accounts, hint),
                executor=executor,
                progress=progress,
            )
        if schema.subscription_fields:
            report = reconcile.reconcile_subscriptions(
                local.shops, local.accounts, result.frame, result.errors
            )
        else:  # shop-backend records no subscription: link them through the customer
            products = self.ctx.db.load_products([s.id for s in local.run])
            report = customer_subscriptions.reconcile_customer_subscriptions(
                local.shops,
                local.accounts,
                result.frame,
                result.items,
                products if schema.products_table else None,
                result.errors,
                lookup_key_formats=schema.lookup_key_formats,
            )
        report = enrich.add_subscription_terms(report, result.frame)
        report = enrich.add_dashboard_links(
            report, local.shops, ["stripe_subscription_id", "stripe_customer_id"]
        )
        return _flag_bad_rows(report, frames.SUBSCRIPTION_REPORT, local, {})

    @staticmethod
    def summary(report: pd.DataFrame) -> pd.DataFrame:
        """Shop x status counts of a report."""
        return reconcile.summary(report)

    # -- repairs -------------------------------------------------------------------------

    def sync_plan(
        self,
        shop_ids: ShopIds = None,
        *,
        reports: Mapping[str, pd.DataFrame] | None = None,
        executor: Executor | None = None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Proposed changes to local details, derived from both reports. Nothing is written.

        ``reports``: both reports of the same shops from :meth:`reconcile`, when the
        caller already has them (the CLI prints them too); else they are made here.
        """
        schema = self.ctx.db.schema
        if reports is not None:
            customers, subscriptions = reports["customers"], reports["subscriptions"]
            accounts = self.accounts(shop_ids)
        else:
            local = self._local(shop_ids)
            customers = self._customer_report(local, executor, progress)
            subscriptions = self._subscription_report(local, executor, progress)
            accounts = local.accounts
        snaps = None
        if schema.snapshots:
            live = self._live_customers
            if live is None or live[0] != id(customers):  # a report made elsewhere: ask again
                live = (0, self.customers(shop_ids, executor=executor, progress=progress))
            snaps = snapshots.snapshot_plan(customers, accounts, live[1])
        return sync.build_plan(
            customers, subscriptions, accounts, keys=schema.details_keys, snapshots=snaps
        )

    def apply_sync(self, plan: pd.DataFrame, *, actor: str) -> pd.DataFrame:
        """Apply a plan (or a filtered part of one), one transaction per shop, audited.

        Each row is first held to the planner's rules, asking the shop's Stripe now
        (:mod:`opskit.writes.plan_checks`): an edited or outdated row is ``refused``
        (reason in ``detail``, audited) with the rest of its account's rows.
        """
        from opskit.writes import plan_checks

        return plan_checks.apply_checked(self.ctx, plan, actor=actor)

    def create_customer(self, account_id: IdLike, **kwargs: Any) -> dict[str, Any]:
        """Create the account's Stripe customer in its shop and store the id in details.

        Refused with ``DuplicateCustomer`` (naming the ``cus_`` ids) when the shop's
        Stripe already has an unlinked customer with the account's email: link it with
        :meth:`link_customer`, or pass ``allow_duplicate=True``. See
        :func:`opskit.writes.actions.create_customer`.
        """
        return actions.create_customer(self.ctx, account_id, **kwargs)

    def link_customer(self, account_id: IdLike, customer_id: str, **kwargs: Any) -> dict[str, Any]:
        """Link an existing Stripe customer of the account's shop (checked there); audited.

        See :func:`opskit.writes.link.link_customer` (``actor``, ``confirm``, ``force``).
        """
        from opskit.writes import link

        return link.link_customer(self.ctx, account_id, customer_id, **kwargs)

    def same_email_customers(self, account_id: IdLike) -> list[dict[str, Any]]:
        """Customers of the account's shop with its email that no account links, oldest first.

        What ``create_customer`` refuses to duplicate (it raises ``DuplicateCustomer``
        naming them unless ``allow_duplicate=True``); link one with :meth:`link_customer`.
        Listed for an account that already links a customer too (likely duplicates of
        it; linking one then needs ``force=True``); never the account's own customer.
        See :func:`opskit.writes.link.same_email_offer`.
        """
        from opskit.writes import link

        return link.same_email_offer(self.ctx, account_id)

    def create_payment_intent(
        self, account_id: IdLike, amount: int, currency: str, **kwargs: Any
    ) -> dict[str, Any]:
        """Create a PaymentIntent for the account's customer; amount in integer minor units.

        The returned dict's ``client_secret`` is masked (``pi_…_secret_…``): it lets a
        browser confirm the payment, so it is not for printing in a notebook or log.
        """
        intent = actions.create_payment_intent(self.ctx, account_id, amount, currency, **kwargs)
        secret = intent.get("client_secret")
        if isinstance(secret, str) and secret:
            intent = {**intent, "client_secret": secret.split("_secret_")[0] + "_secret_…"}
        return intent

    def create_subscription(
        self, account_id: IdLike, price_id: str | list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Subscribe the account's customer to one or several prices (one item each), or to
        ``products=[...]`` with ``interval="month"|"year"`` resolved by lookup key;
        ``payment_behavior="default_incomplete"`` as the backend's checkout. See
        :func:`opskit.writes.actions.create_subscription`."""
        return actions.create_subscription(self.ctx, account_id, price_id, **kwargs)

    def cancel_subscription(
        self, subscription_id: str, *, shop_id: IdLike, at_period_end: bool = True, **kwargs: Any
    ) -> dict[str, Any]:
        """Cancel now or at period end, in the given shop's Stripe account."""
        return actions.cancel_subscription(
            self.ctx, subscription_id, shop_id=shop_id, at_period_end=at_period_end, **kwargs
        )

    def audit_log(self, **filters: Any) -> pd.DataFrame:
        """Every write opskit made, newest first."""
        return audit.read_log(self.ctx.db, **filters)

    # -- following Stripe by events ------------------------------------------------------

    def refresh(
        self,
        shop_ids: ShopIds = None,
        *,
        executor: Executor | None = None,
        progress: bool = True,
        write_snapshots: bool = True,
    ) -> refreshing.RefreshResult:
        """Bring opskit's copy of each shop's Stripe up to date from its events.

        Per shop, with its own key: the events since its cursor (stored by opskit,
        re-reading a 5-minute overlap), oldest first, each id once, written only
        where newer than the copy; no cursor, or one older than Stripe's 30-day
        retention: the shop is read in full and the gap reported. Afterwards
        ``reconcile(..., source="refreshed")`` gives the report a full run gives.

        Returns a :class:`~opskit.writes.refresh.RefreshResult`: ``changes``
        (``CHANGES``: one row per event of interest with its report status),
        ``gaps`` (``REFRESH_GAPS``: full reads, skipped events, failed shops),
        ``shops`` (``REFRESH_SHOPS``: mode, events, writes and requests per shop),
        ``reports`` (``{"customers": ..., "subscriptions": ...}`` from the copy: the
        day's reports, no further request), ``snapshots`` (``SYNC_RESULT``: the
        Customer snapshots written). A failing shop is its own ``mode="error"`` row
        (and ``shop_error`` in the reports); the others go on.

        Customer snapshots (backends that keep them, ``Schema.snapshots``): each
        account linking a customer whose ``customer.*`` event was applied, and
        keeping a snapshot, gets the backend's own sync of it (``stripe_customer`` :=
        the Customer, ``stripe_synced_at`` := when Stripe's state was that), only
        where that is later than the stored ``stripe_synced_at``; a deleted customer
        leaves the snapshot as it was; unreadable details are never written (a
        ``snapshot_not_written`` gap); written and audited as ``apply_sync`` writes
        (``sync.set_detail`` by ``opskit refresh``), nothing written to Stripe.
        ``write_snapshots=False``: a read-only refresh (opskit's own tables only).
        See :mod:`opskit.writes.snapshots`.

        ``executor``: a ``ThreadPoolExecutor`` only; any other (a process pool, a
        dask client's) raises ``InputError`` before anything is submitted, since a
        shop's refresh works on opskit's local tables with the shop's raw key.
        """
        local = self._local(shop_ids)
        links = fetch.linked_ids(local.accounts, "stripe_customer_id")
        results = refreshing.refresh(
            self.ctx,
            local.run,
            {str(k): v for k, v in links.items()},
            subscription_ids=fetch.linked_ids(local.accounts, "stripe_subscription_id"),
            executor=executor,
            progress=progress,
            write_snapshots=write_snapshots,
            accounts=local.accounts,
        )
        written = [r.shop_id for r in results if r.snapshots]
        if written:  # the reports read the snapshots as written: those shops' accounts again
            local = replace(local, accounts=_with_accounts(local.accounts, self.accounts(written)))
        # The day's reports from the copy (a shop whose refresh failed is its shop_error).
        failed = {r.shop_id: f"refresh failed: {r.error}" for r in results if r.mode == "error"}
        mine = replace(local, source="refreshed", failed=failed)
        reports = {
            "customers": self._customer_report(mine, None, False),
            "subscriptions": self._subscription_report(mine, None, False),
        }
        processed = [p for r in results for p in r.processed]
        changes = self._findings(processed, local, reports)
        return refreshing.result_frames(results, changes, reports)

    def changes(self, since: Any = None, shop_ids: ShopIds = None) -> pd.DataFrame:
        """Every Stripe event opskit processed (refresh or webhook) since ``since``,
        as ``CHANGES`` rows with their report status: "what changed since yesterday".

        ``since``: a date or time (ISO text such as ``"2026-11-28"``, a datetime, a
        Timestamp; naive = UTC) or a span back from now (``"24h"``, ``"7d"``, a
        timedelta); anything else raises :class:`InputError` naming these forms
        (:func:`opskit.common.times.since_time`). A stored event that cannot be read
        is its own row with status ``unreadable_event``, never an error."""
        from opskit.backend.state import state_for
        from opskit.common.times import since_time

        when = None if since is None else since_time(since)
        state = state_for(self.ctx.db)
        wanted = self.ctx.db.check_shop_ids(_ids(shop_ids))
        rows = state.changes(when, None if wanted is None else [str(i) for i in wanted])
        todo = rows[rows["report"].isna()]
        if todo.empty:
            return rows
        processed = []
        for shop_id, group in todo.groupby("shop_id"):
            bodies = {str(e["id"]): e for e in state.event_bodies(str(shop_id), group["event_id"])}
            for r in group.itertuples(index=False):
                if r.event_id in bodies:
                    processed.append(
                        {
                            "shop_id": str(shop_id),
                            "event": bodies[r.event_id],
                            "outcome": r.outcome,
                            "outcome_detail": r.outcome_detail,
                            "source": r.source,
                        }
                    )
        touched = [
            s for s in self.ctx.db.shop_objects().values() if str(s.id) in set(todo["shop_id"])
        ]
        local = self._local([s.id for s in touched])  # type: ignore[misc]
        self._findings(processed, local)
        return state.changes(when, None if wanted is None else [str(i) for i in wanted])

    def _findings(
        self,
        processed: list[dict[str, Any]],
        local: _Local,
        reports: Mapping[str, pd.DataFrame] | None = None,
    ) -> pd.DataFrame:
        """``CHANGES`` rows for processed events, statuses from the refreshed reports."""
        from opskit.backend.state import state_for
        from opskit.core import events as core_events

        if not processed:
            return core_events.finding_rows([], None, None, {})
        if reports is None:
            touched = {str(p["shop_id"]) for p in processed}
            ids: list[Any] = [s.id for s in local.run if str(s.id) in touched]
            reports = self.reconcile(ids, progress=False, source="refreshed") if ids else {}
        acc = local.accounts
        links = {
            (str(s), str(c)): str(a)
            for s, c, a in zip(
                acc["shop_id"], acc["stripe_customer_id"], acc["account_id"], strict=True
            )
            if c is not pd.NA and c is not None
        }
        rows = core_events.finding_rows(
            processed, reports.get("customers"), reports.get("subscriptions"), links
        )
        state_for(self.ctx.db).set_findings(rows)
        return rows

    def recover(
        self, *, actor: str = "opskit", older_than: float | None = None, dry_run: bool = False
    ) -> pd.DataFrame:
        """Resolve Stripe writes left without an outcome (a killed process, a lost answer).

        Each open intent of the audit log older than ``older_than`` seconds (default:
        ``Settings.request_deadline`` plus a margin) whose request cannot be in flight
        any more (its writer is gone or past its deadline) is looked up in Stripe by
        its tag and completed (see :mod:`opskit.writes.recovery`); returns one row per
        intent resolved (frames.RECOVERY). Raises InputError for a negative age.
        """
        return recovery.recover(self.ctx, actor=actor, older_than=older_than, dry_run=dry_run)

    # -- helpers -------------------------------------------------------------------------

    def _shop_list(self, shop_ids: ShopIds) -> list[Any]:
        wanted = self.ctx.db.check_shop_ids(_ids(shop_ids))
        shops = self.ctx.db.shop_objects()
        return [s for sid, s in shops.items() if wanted is None or sid in wanted]

    def _local(self, shop_ids: ShopIds) -> _Local:
        """Shops and accounts read once for one reconciliation run."""
        wanted = self.ctx.db.check_shop_ids(_ids(shop_ids))
        every = list(self.ctx.db.shop_objects().values())
        run = [s for s in every if wanted is None or s.id in wanted]
        return _Local(
            shops=shops_frame(run),
            accounts=self.ctx.db.load_accounts(wanted),
            run=run,
            all_shops=every,
            # a whole-fleet run reports the shop rows it cannot use (a filter names usable ones)
            unusable=self.ctx.db.unusable_shops() if wanted is None else None,
        )


@dataclass(frozen=True)
class _Local:
    shops: pd.DataFrame  # SHOPS frame of the run's shops
    accounts: pd.DataFrame  # their accounts
    run: list[Shop]  # the run's shops, raw keys inside: for clients only
    all_shops: list[Shop]  # every shop of the backend (cross-shop lookups)
    source: str = "stripe"  # "refreshed": Stripe's side from opskit's copy (see refresh)
    failed: Mapping[str, str] = field(default_factory=dict)  # refreshed: shops whose refresh failed
    unusable: pd.DataFrame | None = None  # shop rows opskit cannot use (whole-fleet runs only)


def _flag_bad_rows(
    report: pd.DataFrame, spec: frames.Spec, local: _Local, columns: Mapping[str, str]
) -> pd.DataFrame:
    """The report with its accounts' unreadable values noted and unusable rows added."""
    report = badrows.annotate(report, local.accounts, ["shop_id", "account_id"])
    if local.unusable is None:
        return report
    flagged = badrows.unusable_rows(
        spec,
        local.unusable,
        local.accounts,
        [str(s.id) for s in local.all_shops],
        key="account_id",
        columns=columns,
    )
    return badrows.with_flagged(report, flagged)


def _with_accounts(accounts: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """``accounts`` with the rows of ``fresh`` (same accounts, read again) in their place;
    accounts only in ``fresh`` (created meanwhile) are not added: the run keeps its rows."""
    out = accounts.copy()
    again = fresh.drop_duplicates("account_id").set_index("account_id")
    hit = out["account_id"].isin(again.index).fillna(False).to_numpy()
    if hit.any():
        ids = out.loc[hit, "account_id"]
        for col in out.columns.drop("account_id"):
            out.loc[hit, col] = again.loc[ids, col].to_numpy()
    return frames.conform(out, frames.ACCOUNTS)


def _lookup_shops(local: _Local) -> list[Shop]:
    """The shops outside the run that may be asked about the run's unresolved links."""
    from opskit.common.keys import classify_secret_key

    live_run = any(classify_secret_key(s.stripe_secret_key).mode == "live" for s in local.run)
    return [
        s
        for s in local.all_shops
        if s not in local.run
        and (live_run or classify_secret_key(s.stripe_secret_key).mode != "live")
    ]


def _with_shop_errors(
    result: fetch.FetchResult, shops: pd.DataFrame | None = None, link_ids: list[str] | None = None
) -> pd.DataFrame:
    frame = result.frame
    if shops is not None and link_ids:  # each object's Stripe dashboard page
        frame = enrich.add_dashboard_links(frame, shops, link_ids)
    frame.attrs["shop_errors"] = dict(result.errors)
    for shop_id, reason in result.errors.items():
        log.warning("opskit: Stripe failed for shop %s: %s", shop_id, reason)
    return frame


def _ids(shop_ids: ShopIds) -> list[str] | None:
    """A shop filter (one id or several; str, int or UUID) as id texts; None: all shops."""
    try:
        return id_list(shop_ids)
    except TypeError as exc:
        raise InputError(
            f"shop ids: {exc}", guidance="Pass a shop id, or a list of them (str, int or UUID)."
        ) from None
