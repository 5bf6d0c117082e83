"""Process-wide patches to localstripe, applied once before serving.

localstripe keeps its state in module globals and calls them at request time,
so these patches change behaviour for every store. They only remove side
effects (disk pickling, outgoing webhooks, whole-store scans) and add
Stripe-shaped details; they never change what a created object holds.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import warnings
from typing import Any

from localstripe import resources as ls
from localstripe.errors import UserError

# localstripe.server registers plain (sync) functions as aiohttp handlers at
# import time, which aiohttp deprecates; keep that warning out of callers that
# run with warnings as errors. We re-wrap those handlers as coroutines.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    ls_server: Any = importlib.import_module("localstripe.server")


def as_async(handler: Any) -> Any:
    """Wrap localstripe's sync handlers so aiohttp sees a coroutine function."""
    if inspect.iscoroutinefunction(handler):
        return handler

    async def wrapped(request: Any) -> Any:
        return handler(request)

    return wrapped


_lock = threading.Lock()
_applied = False

# Held while ``localstripe.resources.store`` points at one key's store and a handler
# (or a seed) runs: that global is shared by every Sandbox in the process, each
# serving on its own thread. Always taken after the Sandbox's own store lock.
swap_lock = threading.Lock()

# True while Sandbox.seed() builds objects: skips Event snapshots (each one is
# a full export of the object, the main cost of bulk inserts).
seeding = False


def price_dict(plan: Any) -> dict[str, Any]:
    """A plan shown as a modern Stripe ``price`` object."""
    one_time = getattr(plan, "_one_time", False)
    recurring = None
    if not one_time:
        recurring = {  # aggregate_usage was removed at 2025-03-31.basil (meter replaces it)
            "interval": plan.interval,
            "interval_count": plan.interval_count,
            "meter": None,
            "trial_period_days": plan.trial_period_days,
            "usage_type": plan.usage_type,
        }
    return {
        "id": plan.id,
        "object": "price",
        "active": plan.active,
        "billing_scheme": plan.billing_scheme,
        "created": plan.created,
        "currency": plan.currency,
        "livemode": False,
        "lookup_key": getattr(plan, "lookup_key", None),
        "metadata": dict(plan.metadata or {}),
        "nickname": plan.nickname,
        "product": plan.product,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": plan.tiers_mode,
        "type": "one_time" if one_time else "recurring",
        "unit_amount": plan.amount,
        "unit_amount_decimal": str(plan.amount),
    }


def _not_found(cls: Any, id: str) -> UserError:
    return UserError(
        404,
        f"No such {cls.object}: '{id}'",
        {"code": "resource_missing", "param": "id"},
    )


def apply() -> None:
    """Apply all patches (idempotent)."""
    global _applied
    with _lock:
        if _applied:
            return
        _applied = True

        # No pickling: the fixed /tmp file is quadratic and shared between
        # instances. Our stores are plain in-memory dicts.
        ls.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
        ls.Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]

        # Never contact another address (webhooks would POST to arbitrary URLs),
        # and never leave pending tasks behind on a loop we close.
        ls.schedule_webhook = lambda event: None

        orig_event_init = ls.Event.__init__

        def event_init(self: Any, type: str, data: Any) -> None:
            if seeding:
                # Not registered in the store: seeded data has no history.
                self.id = "evt_seed"
                self.type = type
                self.data = {}
                return
            orig_event_init(self, type, data)

        ls.Event.__init__ = event_init  # type: ignore[method-assign]

        # Stripe-shaped 404s ("No such customer: 'cus_x'", code resource_missing).
        def api_retrieve(cls: Any, id: str) -> Any:
            obj = ls.store.get(cls.object + ":" + id)
            if obj is None:
                raise _not_found(cls, id)
            return obj

        def api_delete(cls: Any, id: str) -> Any:
            key = cls.object + ":" + id
            if key not in ls.store:
                raise _not_found(cls, id)
            del ls.store[key]
            return ls.DeletedObject(id, cls.object)

        ls.StripeObject._api_retrieve = classmethod(api_retrieve)  # type: ignore[assignment,method-assign]
        ls.StripeObject._api_delete = classmethod(api_delete)  # type: ignore[assignment,method-assign]

        # Same output as localstripe's _export, but the class's public names are
        # computed once per class instead of dir(self) per object (the main
        # cost of serving a page of 100).
        orig_export = ls.StripeObject._export
        public_names: dict[type, list[str]] = {}

        def fast_export(self: Any, expand: Any = None) -> Any:
            if expand:
                return orig_export(self, expand=expand)
            cls = type(self)
            names = public_names.get(cls)
            if names is None:
                names = public_names[cls] = [p for p in dir(cls) if not p.startswith("_")]
            obj: dict[str, Any] = {}
            for key, value in vars(self).items():
                if key[0] != "_":
                    if isinstance(value, ls.StripeObject):
                        obj[key] = value._export()
                    elif (
                        isinstance(value, list) and value and isinstance(value[0], ls.StripeObject)
                    ):
                        obj[key] = [item._export() for item in value]
                    elif isinstance(value, dict):
                        obj[key] = value.copy()
                    else:
                        obj[key] = value
            for prop in names:
                if prop not in obj:
                    value = getattr(self, prop)
                    obj[prop] = value._export() if isinstance(value, ls.StripeObject) else value
            return obj

        ls.StripeObject._export = fast_export  # type: ignore[method-assign]

        # Customer.subscriptions scans the whole store on every export (so a
        # page of 100 customers scanned the store 100 times); modern Stripe
        # does not embed it either. The route /customers/{id}/subscriptions is
        # served by our list code instead.
        del ls.Customer.subscriptions

        # Subscription items show the price as stripe-python 16 expects.
        ls.SubscriptionItem.price = property(lambda self: price_dict(self.plan))  # type: ignore[attr-defined]

        # Seeded payment intents may carry a fixed status.
        orig_status = ls.PaymentIntent.status

        def pi_status(self: Any) -> Any:
            forced = self.__dict__.get("_forced_status")
            if forced is not None:
                return forced
            return orig_status.fget(self)  # type: ignore[attr-defined]

        ls.PaymentIntent.status = property(pi_status)  # type: ignore[method-assign,assignment]

        from opskit.sandbox import errors, shapes, subscriptions

        subscriptions.apply()
        errors.apply()
        shapes.apply()
