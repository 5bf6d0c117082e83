"""opskit's own Shop and Account objects, and coercion from whatever callers hold.

The backend-compatible helper accepts ORM rows, mappings, pandas rows and these
objects alike; :func:`as_shop` and :func:`as_account` do that translation once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from opskit.common.ids import id_text
from opskit.common.keys import KeyInfo, classify_secret_key, mask_key

_SHOP_KEY_FIELDS = ("stripe_secret_key", "secret_key")
_SHOP_ID_FIELDS = ("id", "shop_id")


@dataclass(frozen=True)
class Shop:
    """One shop and its own Stripe account. ``repr`` shows the key masked.

    ``id`` is the shop's id as opaque text (a UUID on shop-backend).
    """

    id: str | None
    name: str | None
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_public_key: str | None = None

    @property
    def key_info(self) -> KeyInfo:
        return classify_secret_key(self.stripe_secret_key)

    @property
    def mode(self) -> str:
        return self.key_info.mode

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", id_text(self.id))  # Shop(id=7) and Shop(id="7") agree

    def __repr__(self) -> str:
        masked = mask_key(self.stripe_secret_key)
        return (
            f"Shop(id={self.id!r}, name={self.name!r}, secret_key={masked!r}, mode={self.mode!r})"
        )


@dataclass(frozen=True)
class Account:
    """One local account; ``details`` is the parsed JSON object (or {} when empty or unreadable).

    Ids are opaque text. ``email`` is where the backend keeps the customer's email
    (``accounts.name`` on shop-backend); ``name`` is a person's name, when the
    backend has one.
    """

    id: str | None
    shop_id: str | None
    email: str | None = None
    name: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", id_text(self.id))
        object.__setattr__(self, "shop_id", id_text(self.shop_id))


def _get(obj: Any, names: tuple[str, ...]) -> Any:
    """First present attribute/key among ``names`` on a mapping, row or object."""
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
            continue
        mapping = getattr(obj, "_mapping", None)  # SQLAlchemy Row
        if mapping is not None and name in mapping:
            return mapping[name]
        if isinstance(obj, pd.Series):
            if name in obj.index:
                return obj[name]
            continue
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


def _none_if_na(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    try:
        if value != value:  # NaN
            return None
    except (TypeError, ValueError):
        return value
    return value


def as_shop(obj: Any) -> Shop | None:
    """A :class:`Shop` from an ORM row, mapping, pandas row or Shop; None stays None."""
    if obj is None or isinstance(obj, Shop):
        return obj
    key = _none_if_na(_get(obj, _SHOP_KEY_FIELDS))
    sid = _none_if_na(_get(obj, _SHOP_ID_FIELDS))
    return Shop(
        id=id_text(sid),
        name=_none_if_na(_get(obj, ("name", "shop_name"))),
        stripe_secret_key=key,
        stripe_public_key=_none_if_na(_get(obj, ("stripe_public_key", "public_key"))),
    )


def parse_details(raw: Any) -> tuple[dict[str, Any], str | None]:
    """Parse a details cell into a dict; returns (details, error) and never raises.

    One rule everywhere: SQL NULL, JSON ``null`` and ``{}`` are empty details
    (``({}, None)``), not broken ones; only text that is not valid JSON, JSON
    nested too deep to parse, or JSON that is not an object (a list, a string, a
    number), is unreadable (``({}, "why")``).
    """
    raw = _none_if_na(raw)
    if raw is None:
        return {}, None
    if isinstance(raw, Mapping):  # a JSON column's value: the same id rule as for text
        problem = id_problem(raw)
        return ({}, problem) if problem else (dict(raw), None)
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode("utf-8", "replace")
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            # json's own messages can end in "at" ("Unterminated string starting at").
            where = "char" if exc.msg.endswith(" at") else "at char"
            return {}, f"details is not valid JSON ({exc.msg} {where} {exc.pos})"
        except RecursionError:  # '[[[[...' thousands deep: a flagged row, not a crash
            return {}, "details is nested too deep to read (thousands of levels)"
    else:
        value = raw
    if value is None:  # JSON null: what a JSON column stores for Python's None
        return {}, None
    if not isinstance(value, dict):
        return {}, f"details is JSON {type(value).__name__}, not an object"
    problem = id_problem(value)
    return ({}, problem) if problem else (value, None)


#: The details keys that hold Stripe ids: each must be text (or absent / null).
ID_KEYS = ("stripe_customer_id", "stripe_subscription_id", "stripe_price_id")

#: The prefix Stripe gives every id of the key's kind (prices may be legacy plans,
#: whose ids were chosen by the account: no prefix rule for them).
ID_PREFIXES: Mapping[str, str] = {
    "stripe_customer_id": "cus_",
    "stripe_subscription_id": "sub_",
}
#: Stripe ids are at most 255 characters of letters, digits and underscores.
STRIPE_ID_MAX = 255
STRIPE_ID_PATTERN = r"[A-Za-z0-9_]{1,255}"
_STRIPE_ID = re.compile(STRIPE_ID_PATTERN)
_GOOD = {
    key: re.compile(re.escape(prefix) + "[A-Za-z0-9_]*") for key, prefix in ID_PREFIXES.items()
}
# A legacy plan's id (a price id too) was chosen by the account: "gold-monthly" is one.
_GOOD["stripe_price_id"] = re.compile("[A-Za-z0-9_-]{1,255}")


def stripe_id_problem(key: str, value: Any) -> str | None:
    """Why ``value`` (held under details ``key``) cannot be a Stripe id, or None.

    The one rule for every loader and every write: text (or absent / null; blank
    text is no link), at most 255 characters of ``[A-Za-z0-9_]`` once trimmed, with
    the prefix of the key's kind (``cus_`` / ``sub_``; a price may be a legacy plan
    whose id the account chose: no prefix, ``-`` allowed). Such a value is never sent
    to Stripe (a 1 MB id, a ``/`` or ``?`` that changes the request's path, a NUL).
    """
    if value is None:
        return None
    good = _GOOD.get(key, _STRIPE_ID)
    if isinstance(value, str) and len(value) <= STRIPE_ID_MAX and good.fullmatch(value):
        return None  # the common case, one regular expression
    if not isinstance(value, str):
        return f"details[{key!r}] is JSON {type(value).__name__}, not a Stripe id"
    text = value.strip()
    if not text:
        return None
    if len(text) > STRIPE_ID_MAX:
        return (
            f"details[{key!r}] is {len(text):,} characters long, not a Stripe id "
            f"(at most {STRIPE_ID_MAX}): {text[:20]!r}..."
        )
    extra = "-" if key == "stripe_price_id" else ""
    if not re.fullmatch(f"[A-Za-z0-9_{extra}]+", text):
        bad = next(c for c in text if not (c.isascii() and (c.isalnum() or c in "_" + extra)))
        return (
            f"details[{key!r}] {text[:60]!r} holds {bad!r}, not a Stripe id "
            f"(letters, digits{', -' if extra else ''} and _ only)"
        )
    prefix = ID_PREFIXES.get(key)
    if prefix and not text.startswith(prefix):
        return f"details[{key!r}] {text[:60]!r} is not a Stripe id (it must start with {prefix!r})"
    return None


def id_problem(details: Mapping[str, Any]) -> str | None:
    """Why a details object's Stripe ids are unreadable, or None (:func:`stripe_id_problem`).

    A value that cannot be a Stripe id cannot be a link: writing around it would
    create an object nothing links, comparing it could never match, and sending it
    would put it in a request's path.
    """
    for key in ID_KEYS:
        problem = stripe_id_problem(key, details.get(key))
        if problem:
            return problem
    return None


def detail_text(value: Any) -> str | None:
    """A details value as the frames show it: strings as they are, other JSON as JSON text.

    PostgreSQL's ``->>`` renders ``true`` as "true", not Python's "True"; the SQLite
    path and the optimistic checks of writes must agree with it.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def as_account(obj: Any) -> Account:
    """An :class:`Account` from an ORM row, mapping, pandas row or Account."""
    if isinstance(obj, Account):
        return obj
    details, _ = parse_details(_get(obj, ("details",)))
    aid = _none_if_na(_get(obj, ("id", "account_id")))
    sid = _none_if_na(_get(obj, ("shop_id",)))
    return Account(
        id=id_text(aid),
        shop_id=id_text(sid),
        email=_none_if_na(_get(obj, ("email",))),
        name=_none_if_na(_get(obj, ("name",))),
        details=details,
    )
