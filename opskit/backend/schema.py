"""Names of the backend's tables and columns, configurable because real backends differ.

The defaults are acidjunk/shop-backend's own tables (see ``BACKEND.md``)::

    shops(id uuid, name, stripe_secret_key, stripe_public_key, ...)
    accounts(id uuid, shop_id uuid, name, hash_name, details json)   -- name is the email
    orders(id uuid, shop_id, account_id, total float euros, status, created_at, completed_at)
    products(id uuid, shop_id, recurring_price_monthly, recurring_price_yearly, ...)

A column mapped to ``None`` does not exist (shop-backend's accounts have no
person's name and no timestamps). ``details_keys`` lists the details keys the
backend itself uses: opskit reads them, and never proposes or writes another.

:meth:`Schema.reference` is opskit's first reference schema (integer ids, an
``email`` column, ``created_at``/``updated_at``, subscription fields kept in
details); :func:`detect` recognises both from the tables themselves.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from opskit.common.exceptions import ConfigurationError, SchemaMismatch

__all__ = [
    "DETAIL_KEYS",
    "REFERENCE_DETAIL_KEYS",
    "SHOP_BACKEND_DETAIL_KEYS",
    "SNAPSHOT_KEYS",
    "SUBSCRIPTION_KEYS",
    "Schema",
    "detect",
    "load_schema",
]

#: Details keys shop-backend writes: the link, and the admin sync's snapshot and its time.
SHOP_BACKEND_DETAIL_KEYS = ("stripe_customer_id", "stripe_customer", "stripe_synced_at")
#: The keys a backend that records subscriptions in details keeps.
SUBSCRIPTION_KEYS = ("stripe_subscription_id", "subscription_status", "stripe_price_id")
SNAPSHOT_KEYS = ("stripe_customer", "stripe_synced_at")
REFERENCE_DETAIL_KEYS = ("stripe_customer_id", *SUBSCRIPTION_KEYS)
#: Every details key opskit knows (flattened into the accounts frame); others are carried.
DETAIL_KEYS = (
    "stripe_customer_id",
    "stripe_customer",
    "stripe_synced_at",
    *SUBSCRIPTION_KEYS,
)


@dataclass(frozen=True)
class Schema:
    """Maps opskit's view of the backend onto its actual table and column names.

    >>> Schema(accounts_table="customer_accounts", account_details="meta")  # doctest: +ELLIPSIS
    Schema(...)
    >>> Schema.reference().account_email
    'email'

    ``None`` for a column means the backend has no such column. ``account_email``
    says which column holds the customer's email (shop-backend: ``name``);
    ``account_name`` a person's name, compared with Stripe's ``name`` only when
    mapped. ``orders_table``/``products_table`` ``None``: the backend has none.
    Where opskit keeps its own tables (the audit log): ``own_schema`` on
    PostgreSQL (default ``opskit``, never the backend's ``public``), or another
    database altogether with ``own_database_url``; SQLite keeps them in its file.
    """

    profile: str = "shop-backend"  # a label only: which mapping this is

    shops_table: str = "shops"
    shop_id: str = "id"
    shop_name: str = "name"
    shop_secret_key: str = "stripe_secret_key"
    shop_public_key: str | None = "stripe_public_key"

    accounts_table: str = "accounts"
    account_id: str = "id"
    account_shop_id: str = "shop_id"
    account_email: str | None = "name"
    account_name: str | None = None
    account_details: str = "details"
    account_created_at: str | None = None
    account_updated_at: str | None = None

    #: The details keys the backend uses; opskit proposes and writes only these.
    details_keys: tuple[str, ...] = SHOP_BACKEND_DETAIL_KEYS

    orders_table: str | None = "orders"
    order_id: str = "id"
    order_shop_id: str = "shop_id"
    order_account_id: str | None = "account_id"
    order_status: str | None = "status"
    order_total: str = "total"  # float, major units (euros)
    order_currency: str = "eur"  # the currency of every total (shop-backend: EUR only)
    order_created_at: str | None = "created_at"
    order_completed_at: str | None = "completed_at"

    products_table: str | None = "products"
    product_id: str = "id"
    product_shop_id: str = "shop_id"
    product_monthly: str | None = "recurring_price_monthly"  # float euros
    product_yearly: str | None = "recurring_price_yearly"
    #: Stripe price lookup keys that name a local product: ``monthly-<product id>``.
    lookup_key_formats: tuple[tuple[str, str], ...] = (
        ("month", "monthly-{product_id}"),
        ("year", "yearly-{product_id}"),
    )

    audit_table: str = "opskit_audit"
    own_schema: str | None = "opskit"
    own_database_url: str | None = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.details_keys if k not in DETAIL_KEYS]
        if unknown:
            raise ConfigurationError(
                f"Schema.details_keys names key(s) opskit does not know: {', '.join(unknown)}",
                guidance=f"Use some of: {', '.join(DETAIL_KEYS)}.",
            )
        object.__setattr__(self, "details_keys", tuple(self.details_keys))
        object.__setattr__(
            self, "lookup_key_formats", tuple(tuple(x) for x in self.lookup_key_formats)
        )

    # -- profiles ----------------------------------------------------------------------

    @classmethod
    def shop_backend(cls, **overrides: Any) -> Schema:
        """acidjunk/shop-backend's tables (the default)."""
        return replace(cls(), **overrides)

    @classmethod
    def reference(cls, **overrides: Any) -> Schema:
        """opskit's first reference schema: integer ids, ``email`` and ``name`` columns,
        timestamps, subscription fields kept in details, no orders or products."""
        base = cls(
            profile="reference",
            account_email="email",
            account_name="name",
            account_created_at="created_at",
            account_updated_at="updated_at",
            details_keys=REFERENCE_DETAIL_KEYS,
            orders_table=None,
            products_table=None,
        )
        return replace(base, **overrides)

    # -- what the mapping implies -----------------------------------------------------

    @property
    def subscription_fields(self) -> bool:
        """True when the backend records subscriptions in details (else: through the customer)."""
        return "stripe_subscription_id" in self.details_keys

    @property
    def snapshots(self) -> bool:
        """True when the backend keeps ``stripe_customer``/``stripe_synced_at`` snapshots."""
        return all(k in self.details_keys for k in SNAPSHOT_KEYS)

    def shop_columns(self) -> list[str]:
        cols = [self.shop_id, self.shop_name, self.shop_secret_key, self.shop_public_key]
        return [c for c in cols if c]

    def account_columns(self) -> list[str]:
        cols = [
            self.account_id,
            self.account_shop_id,
            self.account_email,
            self.account_name,
            self.account_details,
            self.account_created_at,
            self.account_updated_at,
        ]
        return list(dict.fromkeys(c for c in cols if c))

    def order_columns(self) -> list[str]:
        cols = [
            self.order_id,
            self.order_shop_id,
            self.order_account_id,
            self.order_status,
            self.order_total,
            self.order_created_at,
            self.order_completed_at,
        ]
        return [c for c in cols if c]

    def product_columns(self) -> list[str]:
        cols = [self.product_id, self.product_shop_id, self.product_monthly, self.product_yearly]
        return [c for c in cols if c]

    def describe(self) -> str:
        """One line: which mapping this is and what it reads."""
        email = f"{self.accounts_table}.{self.account_email}" if self.account_email else "none"
        name = f"{self.accounts_table}.{self.account_name}" if self.account_name else "none"
        subs = "in details" if self.subscription_fields else "through the customer"
        extra = [t for t in (self.orders_table, self.products_table) if t]
        return (
            f"{self.profile} mapping: email from {email}, name from {name}, details keys "
            f"{', '.join(self.details_keys)}; subscriptions {subs}"
            + (f"; also {', '.join(extra)}" if extra else "")
        )

    # -- from a file or a mapping ------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Schema:
        """A Schema from a JSON or TOML file of its fields (see :func:`load_schema`)."""
        return load_schema(path)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Schema:
        """A Schema from a dict (e.g. a JSON/TOML file); ``profile`` picks the base.

        ``{"profile": "reference", "accounts_table": "members"}`` starts from
        :meth:`reference`; any other or no profile starts from shop-backend's.
        ``""`` (or JSON null) says the backend has no such column or table.
        """
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown Schema field(s) {', '.join(unknown)}",
                guidance=f"Use some of: {', '.join(sorted(known))}.",
            )
        for key in ("details_keys", "lookup_key_formats"):
            if key in data and isinstance(data[key], Sequence):
                data[key] = tuple(tuple(x) if isinstance(x, list) else x for x in data[key])
        for key, value in list(data.items()):
            if key in ("details_keys", "lookup_key_formats"):
                continue
            if value == "" or value is None:  # files have no null: "" says "no such column"
                data[key] = None
            elif not isinstance(value, str):
                raise ConfigurationError(
                    f"Schema field {key} must be a table or column name (text), not {value!r}",
                    guidance='Write "" for a column the backend does not have.',
                )
        base = cls.reference() if data.get("profile") == "reference" else cls()
        return replace(base, **data)


def load_schema(path: str | Path) -> Schema:
    """A Schema from a JSON or TOML file (``.json`` / ``.toml``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the schema mapping {str(p)!r}: {exc.strerror or exc}",
            guidance="Pass a JSON or TOML file of opskit.Schema fields.",
        ) from None
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(
            f"the schema mapping {str(p)!r} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}",
            guidance="Write a JSON object (or TOML table) of opskit.Schema fields.",
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"the schema mapping {str(p)!r} is not an object of fields")
    return Schema.from_mapping(data)


def detect(tables: Mapping[str, Sequence[str]]) -> Schema:
    """Which mapping fits ``tables`` (table name -> its column names).

    shop-backend when ``accounts`` has ``name`` and ``details`` but no ``email``;
    the reference schema when it has an ``email`` column (its optional
    ``name``/``created_at``/``updated_at`` columns are mapped when present).
    Raises :class:`SchemaMismatch` naming the tables and columns found otherwise.
    """
    base = Schema()
    if base.shops_table not in tables or base.accounts_table not in tables:
        found = ", ".join(sorted(tables)) or "no tables at all"
        raise SchemaMismatch(
            f"no {base.shops_table!r} and {base.accounts_table!r} tables; found: {found}",
            guidance="Map your tables with opskit.Schema(shops_table=..., accounts_table=...) "
            "(or a mapping file: --schema / OPSKIT_SCHEMA).",
        )
    acc = set(tables[base.accounts_table])
    shops = set(tables[base.shops_table])
    if "email" in acc:
        schema = Schema.reference(
            account_name="name" if "name" in acc else None,
            account_created_at="created_at" if "created_at" in acc else None,
            account_updated_at="updated_at" if "updated_at" in acc else None,
            orders_table=None,
            products_table=None,
        )
    else:
        schema = Schema(
            orders_table=base.orders_table if base.orders_table in tables else None,
            products_table=base.products_table if base.products_table in tables else None,
        )
    if base.shop_public_key not in shops:
        schema = replace(schema, shop_public_key=None)
    missing_acc = [c for c in schema.account_columns() if c not in acc]
    missing_shop = [c for c in schema.shop_columns() if c not in shops]
    if missing_acc or missing_shop:
        what = [f"{schema.accounts_table}.{c}" for c in missing_acc]
        what += [f"{schema.shops_table}.{c}" for c in missing_shop]
        raise SchemaMismatch(
            f"neither shop-backend's tables nor the reference schema: missing {', '.join(what)}; "
            f"found {schema.accounts_table}({', '.join(sorted(acc))}) and "
            f"{schema.shops_table}({', '.join(sorted(shops))})",
            guidance="Say where things are with opskit.Schema(account_email=..., "
            "account_details=..., ...) or a mapping file (--schema / OPSKIT_SCHEMA).",
        )
    return schema
