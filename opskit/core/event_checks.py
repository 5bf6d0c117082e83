"""Is this a Stripe event opskit may apply? Sanity checks of a delivered event: pure, no I/O.

A webhook delivery whose signature verified is from someone holding the shop's
signing secret, but its body is still checked before anything is applied (a
signed body is not a well-formed one): :func:`parse_event` reads the JSON
(bounded nesting, never a ``RecursionError``), :func:`check_event` checks the
envelope and the shape of the object opskit reads, with the types of Stripe's
schemas (``tests/conformance/spec3-excerpt.json``, stripe/openapi spec3 at API
2026-07-29: ``event``, ``customer``, ``deleted_customer``, ``subscription``,
``subscription_item``, ``price``) and Stripe's id prefixes.

Checked, and why:

- the envelope: ``object == "event"``, an ``evt_`` id, a type, ``livemode`` a
  boolean **equal to the shop key's mode** (a live event for a test-mode shop
  is another account's), ``created`` an integer Unix time (not a float, NaN,
  1e30 or a string), ``data.object`` an object;
- the object of the event types opskit applies or reports on
  (:data:`opskit.core.events.EVENT_TYPES`): its ``object`` name and id prefix
  (``cus_``, ``sub_``, ``in_``, ``pi_``, ``ch_``/``py_``, ``dp_``/``du_``), and
  the fields the local copy and the findings read, with their schema types
  (nullable where the schema says so). A subscription must name its customer
  (``cus_`` id or an expanded customer) and carry its items as a list;
- nesting at most :data:`MAX_DEPTH` levels (Stripe's objects are far shallower).

Checks never require a field opskit does not read: new API versions add fields
and Stripe's "required" lists change; an unknown field is fine.

A ``created`` later than the receipt time plus the signature tolerance cannot
be a real event's (Stripe signs after it creates); it is not an error but it is
**not trusted as a version** (:attr:`EventCheck.future`): the receiver re-reads
the object with the shop's key instead, and records the event at its receipt time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opskit.core.events import EVENT_TYPES

__all__ = [
    "MAX_DEPTH",
    "MAX_UNIX_TIME",
    "EventCheck",
    "EventInvalid",
    "check_event",
    "nesting_depth",
    "parse_event",
]

MAX_DEPTH = 64  # levels of JSON nesting accepted in a delivered body
MAX_UNIX_TIME = 10**10  # year 2286: beyond it a `created` is no time (pandas cannot hold it)

_SUBSCRIPTION_STATUSES = (  # spec3 subscription.status
    "active", "canceled", "incomplete", "incomplete_expired", "past_due", "paused",
    "trialing", "unpaid",
)  # fmt: skip
_INTERVALS = ("day", "week", "month", "year")  # spec3 recurring.interval

# Money events: the object name and the id prefixes Stripe gives it.
_MONEY_OBJECTS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "invoice.payment_failed": ("invoice", ("in_",)),
    "payment_intent.succeeded": ("payment_intent", ("pi_",)),
    "payment_intent.payment_failed": ("payment_intent", ("pi_",)),
    "charge.refunded": ("charge", ("ch_", "py_")),
    "charge.dispute.created": ("dispute", ("dp_", "du_")),
}


class EventInvalid(ValueError):
    """A delivered body that is not an event opskit may apply; the message says why."""


@dataclass(frozen=True)
class EventCheck:
    """What :func:`check_event` found in an event that may be applied."""

    event: dict[str, Any]  # the event, ``created`` clamped to the receipt time when future
    future: int | None = None  # the ``created`` it claimed, when that was in the future

    @property
    def note(self) -> str | None:
        """Why the object must be re-read rather than taken from the payload (or None)."""
        if self.future is None:
            return None
        return (
            f"created {self.future} is in the future: not trusted as a version, "
            "the object was re-read"
        )


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep ``value`` nests (a scalar is 0), counted without recursion; stops past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((c, depth) for c in children)
    return deepest


def parse_event(body: bytes | str) -> dict[str, Any]:
    """The JSON object of a delivered body; :class:`EventInvalid` when it is not one.

    Bounded: a body nested deeper than :data:`MAX_DEPTH` is refused (the JSON
    parser's own recursion limit is caught, never raised).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else str(body)
    try:
        value = json.loads(text)
    except RecursionError:
        raise EventInvalid(f"body nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise EventInvalid("body is not JSON") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise EventInvalid(f"body nested deeper than {MAX_DEPTH} levels")
    if not isinstance(value, dict):
        raise EventInvalid("body is not a Stripe event (not a JSON object)")
    return value


def check_event(
    event: Mapping[str, Any],
    *,
    mode: str | None,
    received_at: int,
    tolerance: int = 300,
) -> EventCheck:
    """Check one parsed event (see the module docstring); raises :class:`EventInvalid`.

    ``mode``: the shop key's mode (``"live"``/``"test"``; None: not checked).
    ``received_at``: when the delivery arrived (Unix s); a ``created`` more than
    ``tolerance`` seconds after it is :attr:`EventCheck.future`.
    """
    if event.get("object") != "event":
        raise EventInvalid("body is not a Stripe event (object is not 'event')")
    _id(event.get("id"), ("evt_",), "id")
    etype = event.get("type")
    if not isinstance(etype, str) or not etype:
        raise EventInvalid("type is not a text")
    created = _unix(event.get("created"), "created", nullable=False)
    livemode = event.get("livemode")
    if not isinstance(livemode, bool):
        raise EventInvalid("livemode is not a boolean")
    if mode in ("live", "test") and livemode != (mode == "live"):
        raise EventInvalid(
            f"a {'live' if livemode else 'test'}-mode event for a shop whose key is "
            f"{mode} mode: not this shop's Stripe account"
        )
    data = event.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
        raise EventInvalid("data.object is not an object")
    obj = data["object"]
    kind = EVENT_TYPES.get(etype)
    if kind == "customer":
        _customer(obj, livemode, deleted_ok=etype == "customer.deleted")
    elif kind == "subscription":
        _subscription(obj, livemode)
    elif etype in _MONEY_OBJECTS:
        _money(obj, etype)
    out = dict(event)
    future = None
    assert created is not None
    if created > received_at + tolerance:
        future = created
        out["created"] = int(received_at)
    return EventCheck(out, future)


# -- the pieces -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value for a message: its repr, cut to 40 characters (bodies may be hostile)."""
    text = repr(value) if not isinstance(value, Mapping | list) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _id(value: Any, prefixes: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or not value.startswith(prefixes) or len(value) > 255:
        raise EventInvalid(f"{where} {_show(value)} is not a Stripe id ({'/'.join(prefixes)}...)")
    return value


def _unix(value: Any, where: str, nullable: bool = True) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and not math.isfinite(value):
            raise EventInvalid(f"{where} is not a Unix time ({value})")
        raise EventInvalid(f"{where} is not an integer Unix time ({type(value).__name__})")
    if not 0 <= value < MAX_UNIX_TIME:
        raise EventInvalid(f"{where} {value} is not a Unix time")
    return value


def _typed(obj: Mapping[str, Any], field: str, types: tuple[type, ...], where: str) -> None:
    """``obj[field]``, when present and not null, is of ``types`` (bool is not an integer)."""
    value = obj.get(field)
    if value is None:
        return
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        raise EventInvalid(f"{where}.{field} is not {'/'.join(t.__name__ for t in types)}")


def _named(obj: Mapping[str, Any], name: str, where: str) -> None:
    if obj.get("object") != name:
        raise EventInvalid(f"{where} is not a {name} (object is {_show(obj.get('object'))})")


def _livemode(obj: Mapping[str, Any], livemode: bool, where: str) -> None:
    value = obj.get("livemode")
    if value is not None and value is not livemode:
        raise EventInvalid(f"{where}.livemode differs from the event's")


def _customer(obj: Mapping[str, Any], livemode: bool, *, deleted_ok: bool) -> None:
    where = "data.object"
    _named(obj, "customer", where)
    _id(obj.get("id"), ("cus_",), f"{where}.id")
    deleted = obj.get("deleted")
    if deleted is not None and (deleted is not True or not deleted_ok):
        raise EventInvalid(f"{where}.deleted is only true, on customer.deleted")
    for field in ("email", "name", "description", "phone"):  # string, nullable
        _typed(obj, field, (str,), where)
    _typed(obj, "livemode", (bool,), where)
    _typed(obj, "metadata", (dict,), where)
    _livemode(obj, livemode, where)
    if obj.get("created") is not None:
        _unix(obj.get("created"), f"{where}.created")


def _subscription(obj: Mapping[str, Any], livemode: bool) -> None:
    where = "data.object"
    _named(obj, "subscription", where)
    _id(obj.get("id"), ("sub_",), f"{where}.id")
    status = obj.get("status")
    if status not in _SUBSCRIPTION_STATUSES:
        raise EventInvalid(f"{where}.status {_show(status)} is not a subscription status")
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        _named(customer, "customer", f"{where}.customer")
        customer = customer.get("id")
    _id(customer, ("cus_",), f"{where}.customer")
    _typed(obj, "cancel_at_period_end", (bool,), where)
    _typed(obj, "metadata", (dict,), where)
    _livemode(obj, livemode, where)
    for field in ("created", "canceled_at", "cancel_at", "ended_at", "current_period_end"):
        _unix(obj.get(field), f"{where}.{field}")
    items = obj.get("items")
    if not isinstance(items, Mapping) or items.get("object") != "list":
        raise EventInvalid(f"{where}.items is not a list object")
    data = items.get("data")
    if not isinstance(data, list):
        raise EventInvalid(f"{where}.items.data is not an array")
    for n, item in enumerate(data):
        _item(item, f"{where}.items.data[{n}]")


def _item(item: Any, where: str) -> None:
    if not isinstance(item, Mapping):
        raise EventInvalid(f"{where} is not an object")
    _named(item, "subscription_item", where)
    _id(item.get("id"), ("si_",), f"{where}.id")
    _typed(item, "quantity", (int,), where)
    _unix(item.get("current_period_end"), f"{where}.current_period_end")
    price = item.get("price")
    if isinstance(price, Mapping):
        _named(price, "price", f"{where}.price")
        _id(price.get("id"), ("price_", "plan_"), f"{where}.price.id")
        _typed(price, "unit_amount", (int,), f"{where}.price")
        _typed(price, "currency", (str,), f"{where}.price")
        _typed(price, "lookup_key", (str,), f"{where}.price")
        recurring = price.get("recurring")
        if recurring is not None and (
            not isinstance(recurring, Mapping) or recurring.get("interval") not in _INTERVALS
        ):
            raise EventInvalid(f"{where}.price.recurring.interval is not an interval")
    elif price is not None:
        _id(price, ("price_", "plan_"), f"{where}.price")


def _money(obj: Mapping[str, Any], etype: str) -> None:
    where = "data.object"
    name, prefixes = _MONEY_OBJECTS[etype]
    _named(obj, name, where)
    _id(obj.get("id"), prefixes, f"{where}.id")
    for field in ("amount", "amount_refunded", "amount_due", "amount_received"):
        _typed(obj, field, (int,), where)
    _typed(obj, "currency", (str,), where)
    customer = obj.get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    if customer is not None:
        _id(customer, ("cus_",), f"{where}.customer")
    _typed(obj, "last_payment_error", (dict,), where)
    _typed(obj, "last_finalization_error", (dict,), where)
