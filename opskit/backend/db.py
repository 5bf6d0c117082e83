"""The backend's database: engine, schema check, fast loading, reference tables.

I/O lives here; the rest of opskit works on the DataFrames this returns.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from opskit.backend.schema import DETAIL_KEYS, Schema, detect
from opskit.common import rows as rows_rules
from opskit.common.exceptions import (
    DatabaseUnavailable,
    SchemaMismatch,
    UnknownAccount,
    UnknownShop,
)
from opskit.common.ids import digits_only, id_list, id_sort_key, id_text
from opskit.common.keys import classify_secret_key, mask_key
from opskit.common.models import (
    ID_KEYS,
    Account,
    Shop,
    detail_text,
    id_problem,
    parse_details,
    stripe_id_problem,
)
from opskit.common.urls import safe_url
from opskit.core import frames

log = logging.getLogger(__name__)


def create_engine(url: str) -> Engine:
    # NullPool: opskit runs few, short transactions; pooled connections would outlive
    # notebook sessions and leak as unclosed sockets when an Ops object is dropped.
    try:
        engine = sa.create_engine(url, poolclass=NullPool)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        # A ValueError quotes the unparseable part of the URL, which may be the password.
        why = "malformed URL" if isinstance(exc, ValueError) else f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, NoSuchModuleError):  # "Can't load plugin: sqlalchemy.dialects:x"
            why = f"SQLAlchemy knows no database kind {url.split(':', 1)[0]!r}"
        from opskit.common.urls import url_hint

        raise DatabaseUnavailable(
            f"cannot use database URL {safe_url(url)!r}: {why}",
            guidance=url_hint(url)
            or "Use a SQLAlchemy URL such as postgresql+psycopg://user@host/db "
            "or sqlite:///path/to/file.sqlite.",
        ) from None
    if engine.dialect.name == "sqlite":
        # Reads run from worker threads; SQLite's own locking keeps that safe.
        engine = sa.create_engine(
            url, poolclass=NullPool, connect_args={"check_same_thread": False}
        )
    return engine


class Database:
    """One backend database, its schema mapping detected or checked at construction.

    ``schema`` None: the tables say which mapping fits (:func:`opskit.backend.schema.detect`:
    shop-backend's, or opskit's first reference schema); ``mapping`` tells which.
    Local ids go in and out as text; each query converts them to the column's own type.
    """

    def __init__(self, url: str, schema: Schema | None = None) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.detected = schema is None
        self.schema = schema or Schema()
        self._check_schema(detect_mapping=schema is None)
        self._own_engine: Engine | None = None
        self._warned: list[Any] = []  # the unusable shop rows last warned about

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r}, {self.schema.profile})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def mapping(self) -> str:
        """Which mapping opskit uses here, and whether it was detected or given."""
        how = "detected from the tables" if self.detected else "given"
        return f"{self.schema.describe()} ({how})"

    # -- opskit's own tables -------------------------------------------------------------

    @property
    def own_engine(self) -> Engine:
        """Where opskit's own tables live: ``Schema.own_database_url``, else this database."""
        if self.schema.own_database_url is None:
            return self.engine
        if self._own_engine is None:
            self._own_engine = create_engine(self.schema.own_database_url)
        return self._own_engine

    @property
    def own_schema(self) -> str | None:
        """The PostgreSQL schema of opskit's own tables (``opskit``), None on SQLite.

        Never ``public``: the backend's migrations own that schema. In another
        database (``own_database_url``) its default schema is used.
        """
        if self.schema.own_database_url is not None or self.own_engine.dialect.name == "sqlite":
            return None
        return self.schema.own_schema

    def ensure_own_schema(self) -> None:
        """Create opskit's PostgreSQL schema if it is missing (idempotent)."""
        name = self.own_schema
        if name is None:
            return
        with self.own_engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(name, if_not_exists=True))

    # -- schema ----------------------------------------------------------------------

    def _check_schema(self, *, detect_mapping: bool) -> None:
        try:
            inspector = sa.inspect(self.engine)
            tables = set(inspector.get_table_names())
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {safe_url(self.url)!r}: {_first_line(exc)}"
            ) from None
        columns: dict[str, list[str]] = {}

        def cols(table: str) -> list[str]:
            if table not in columns:
                columns[table] = [c["name"] for c in inspector.get_columns(table)]
            return columns[table]

        if detect_mapping:
            self.schema = detect(
                {t: cols(t) for t in tables if t in ("shops", "accounts")}
                | {t: [] for t in tables if t not in ("shops", "accounts")}
            )
            log.info("opskit: %s", self.mapping)
        s = self.schema
        for table, wanted in (
            (s.shops_table, s.shop_columns()),
            (s.accounts_table, s.account_columns()),
        ):
            if table not in tables:
                found = ", ".join(sorted(tables)) or "no tables at all"
                raise SchemaMismatch(
                    f"table {table!r} not found in {safe_url(self.url)!r}; found: {found}"
                )
            missing = [c for c in wanted if c not in cols(table)]
            if missing:
                raise SchemaMismatch(
                    f"table {table!r} has no column {', '.join(map(repr, missing))}; "
                    f"found: {', '.join(sorted(cols(table)))}"
                )
        self._tables = tables
        metadata = sa.MetaData()
        self.shops_table = sa.Table(s.shops_table, metadata, autoload_with=self.engine)
        self.accounts_table = sa.Table(s.accounts_table, metadata, autoload_with=self.engine)
        self._metadata = metadata

    def _optional_table(self, name: str | None, wanted: list[str], what: str) -> sa.Table:
        """A reflected orders/products table, or SchemaMismatch naming what exists."""
        if name is None:
            raise SchemaMismatch(
                f"this backend's mapping has no {what} table ({self.schema.profile})",
                guidance=f"Map it with opskit.Schema({what}_table='...').",
            )
        if name in self._metadata.tables:
            return self._metadata.tables[name]
        inspector = sa.inspect(self.engine)
        if not inspector.has_table(name):
            found = ", ".join(sorted(inspector.get_table_names())) or "no tables at all"
            raise SchemaMismatch(f"table {name!r} not found; found: {found}")
        found_cols = [c["name"] for c in inspector.get_columns(name)]
        missing = [c for c in wanted if c not in found_cols]
        if missing:
            raise SchemaMismatch(
                f"table {name!r} has no column {', '.join(map(repr, missing))}; "
                f"found: {', '.join(sorted(found_cols))}"
            )
        return sa.Table(name, self._metadata, autoload_with=self.engine)

    # -- ids -------------------------------------------------------------------------

    def _ids_for(self, col: sa.Column[Any], ids: Iterable[str]) -> list[Any]:
        """Id texts as values of ``col``'s own type; ids that cannot be one are dropped."""
        out = []
        for text in ids:
            try:
                out.append(to_column_type(col, text))
            except (TypeError, ValueError):
                continue
        return out

    # -- shops -----------------------------------------------------------------------

    def shop_objects(self) -> dict[str, Shop]:
        """Every usable shop with its raw key, by id text: for Stripe clients, never for display.

        Shop rows whose id is NULL, not of the column's kind (text or ``1.5`` in an
        integer column) or held by several rows are left out (never coerced, and
        neither of two rows sharing an id has its key used): :meth:`unusable_shops`.
        """
        return self._read_shops()[0]

    def unusable_shops(self) -> pd.DataFrame:
        """The shop rows opskit cannot use, and why: ``shop_id`` (the id as the database
        renders it as text, <NA> for NULL), ``shop_name`` and ``row_error`` (string);
        one row per database row, so both rows of a duplicated id are listed."""
        bad = self._read_shops()[1]
        return pd.DataFrame(
            {
                "shop_id": pd.array([b[0] for b in bad], dtype="string"),
                "shop_name": pd.array([b[1] for b in bad], dtype="string"),
                "row_error": pd.array([b[2] for b in bad], dtype="string"),
            }
        )

    def _read_shops(self) -> tuple[dict[str, Shop], list[tuple[str | None, str | None, str]]]:
        s, t = self.schema, self.shops_table
        public = t.c[s.shop_public_key] if s.shop_public_key else sa.null()
        stmt = sa.select(
            sa.cast(t.c[s.shop_id], sa.Text), t.c[s.shop_name], t.c[s.shop_secret_key], public
        )
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        column = f"{s.shops_table}.{s.shop_id}"
        texts = [_id_or_none(r[0]) for r in rows]
        problems = rows_rules.id_problems(texts, column, _type_name(t.c[s.shop_id]))
        ids = [x if p is None else None for x, p in zip(texts, problems, strict=True)]
        for sid, where in rows_rules.duplicate_ids(ids).items():
            names = ", ".join(repr(rows[i][1]) for i in where)
            for i in where:
                problems[i] = (
                    f"{column} {sid!r} is on {len(where)} rows ({names}): neither row's "
                    "key is used (one row per shop id)"
                )
        bad = [(texts[i], rows[i][1], p) for i, p in enumerate(problems) if p is not None]
        if bad and self._warned != bad:
            self._warned = list(bad)
            log.warning(
                "opskit: %d shop row(s) cannot be used: %s",
                len(bad),
                "; ".join(list(dict.fromkeys(b[2] for b in bad))[:5]),
            )
        shops = [
            Shop(id=texts[i], name=r[1], stripe_secret_key=r[2], stripe_public_key=r[3])
            for i, r in enumerate(rows)
            if problems[i] is None
        ]
        order = id_sort_key(pd.Series([x.id for x in shops], dtype="string"))
        good = {shops[i].id: shops[i] for i in order.argsort(kind="stable")}
        return good, bad  # type: ignore[return-value]

    def shop(self, shop_id: Any) -> Shop:
        shops = self.shop_objects()
        canon = self._canonical_shop_ids(id_list(shop_id) or [], shops)
        if len(canon) == 1 and canon[0] in shops:
            return shops[canon[0]]
        self._refuse_unusable(canon)
        raise UnknownShop(f"no shop with id {_shown(shop_id)}; known shop ids: {_id_list(shops)}")

    def _refuse_unusable(self, ids: list[str]) -> None:
        """UnknownShop naming the reason when one of ``ids`` is an unusable shop row."""
        bad = self.unusable_shops()
        for sid in ids:
            hit = bad[bad["shop_id"].eq(sid).fillna(False).astype(bool)]
            if len(hit):
                raise UnknownShop(
                    f"shop {sid} cannot be used: {hit['row_error'].iloc[0]}",
                    guidance="Fix the shops row (one row per id, an id of the column's "
                    "kind), then rerun.",
                )

    def _canonical_shop_ids(self, texts: list[str], known: Mapping[str, Shop]) -> list[str]:
        col = self.shops_table.c[self.schema.shop_id]
        out = []
        for text in texts:
            try:
                out.append(id_text(to_column_type(col, text)) or text)
            except (TypeError, ValueError):
                out.append(text)
            if out[-1] not in known:  # a text column holding UUIDs: try the canonical form
                try:
                    alt = str(uuid.UUID(text))
                except ValueError:
                    continue
                if alt in known:
                    out[-1] = alt
        return out

    def check_shop_ids(self, shop_ids: Any) -> list[str] | None:
        """Validate a shop filter (str, int, UUID or a list of them); None means all shops.

        Returns the shops' ids as text, in the database's canonical form. Unknown
        ids are an error (:class:`UnknownShop`), not ignored.
        """
        try:
            texts = id_list(shop_ids)
        except TypeError as exc:
            raise UnknownShop(f"shop ids: {exc}") from None
        if texts is None:
            return None
        known = self.shop_objects()
        wanted = self._canonical_shop_ids(texts, known)
        unknown = [sid for sid in wanted if sid not in known]
        if unknown:
            self._refuse_unusable(unknown)
            raise UnknownShop(f"unknown shop id(s) {', '.join(unknown)}; known: {_id_list(known)}")
        return [sid for sid in known if sid in set(wanted)]

    def load_shops(self, shop_ids: Any = None) -> pd.DataFrame:
        wanted = self.check_shop_ids(shop_ids)
        shops = [s for s in self.shop_objects().values() if wanted is None or s.id in wanted]
        return shops_frame(shops)

    # -- accounts --------------------------------------------------------------------

    def load_accounts(self, shop_ids: Any = None, *, mentioning: str | None = None) -> pd.DataFrame:
        """The ACCOUNTS frame (see :data:`opskit.core.frames.ACCOUNTS`) of the shops.

        ``email`` comes from ``Schema.account_email`` (shop-backend: ``accounts.name``),
        ``name`` from ``Schema.account_name`` (<NA> when the backend has none); the
        known details keys are flattened; details that are NULL, JSON null or ``{}``
        are empty (``details_error`` <NA>); only invalid JSON or a non-object is flagged.
        ``mentioning``: only accounts whose details text contains it (e.g. one customer
        id, for the webhook receiver; a superset of the accounts linking it).
        """
        wanted = self.check_shop_ids(shop_ids)
        s, t = self.schema, self.accounts_table
        raw_details = t.c[s.account_details]
        extraction = _details_extraction(self.dialect, raw_details)

        def opt(name: str | None) -> Any:
            return t.c[name] if name else sa.null()

        cols: list[Any] = [
            sa.cast(t.c[s.account_id], sa.Text),
            sa.cast(t.c[s.account_shop_id], sa.Text),
            opt(s.account_email),
            opt(s.account_name),
            raw_details if self.dialect == "sqlite" else sa.cast(raw_details, sa.Text),
        ]
        for name in (s.account_created_at, s.account_updated_at):
            cols.append(_as_text(t.c[name], self.dialect) if name else sa.null())

        def query(extracted: list[Any] | None) -> Any:
            # Ordered in the ids' own types: integers numerically, UUIDs as their text sorts.
            stmt = sa.select(*cols, *(extracted or [])).order_by(
                t.c[s.account_shop_id], t.c[s.account_id]
            )
            if wanted is not None:
                shop_col = t.c[s.account_shop_id]
                stmt = stmt.where(shop_col.in_(self._ids_for(shop_col, wanted)))
            if mentioning:
                stmt = stmt.where(
                    sa.cast(raw_details, sa.Text).contains(mentioning, autoescape=True)
                )
            return stmt

        try:
            with self._connect() as conn:
                # Straight from the DBAPI cursor: a million Row objects cost seconds.
                rows = conn.execute(query(extraction)).cursor.fetchall()  # type: ignore[attr-defined]
        except sa.exc.DataError as exc:
            if extraction is None:
                raise
            # A value the database cannot decode in one row (an escape its encoding lacks):
            # read every details as text and let parse_details judge each row.
            log.warning("opskit: details read as text (%s)", _first_line(exc))
            extraction = None
            with self._connect() as conn:
                rows = conn.execute(query(None)).cursor.fetchall()  # type: ignore[attr-defined]
        labels = RowLabels(
            account_id=(f"{s.accounts_table}.{s.account_id}", _type_name(t.c[s.account_id])),
            shop_id=(f"{s.accounts_table}.{s.account_shop_id}", _type_name(t.c[s.account_shop_id])),
            created_at=f"{s.accounts_table}.{s.account_created_at}",
            updated_at=f"{s.accounts_table}.{s.account_updated_at}",
        )
        frame = (
            accounts_frame(rows, labels)
            if extraction is None
            else accounts_frame_extracted(rows, labels)
        )
        return frames.conform(frame, frames.ACCOUNTS)

    def account(self, account_id: Any) -> tuple[Account, Any]:
        """One account and its raw details (for optimistic checks); ids as text."""
        s, t = self.schema, self.accounts_table
        details: Any = t.c[s.account_details]
        # As text on every dialect: a JSON-typed column's own reader raises on invalid
        # JSON, which must become DetailsUnreadable (refused before any request).
        details = (
            sa.type_coerce(details, sa.Text)
            if self.dialect == "sqlite"
            else sa.cast(details, sa.Text)
        )

        def opt(name: str | None) -> Any:
            return t.c[name] if name else sa.null()

        col = t.c[s.account_id]
        value = self.account_key(account_id)
        stmt = sa.select(
            sa.cast(col, sa.Text),
            sa.cast(t.c[s.account_shop_id], sa.Text),
            opt(s.account_email),
            opt(s.account_name),
            details,
        ).where(col == value)
        with self._connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise UnknownAccount(f"no account with id {_shown(account_id)}")
        parsed, _ = parse_details(row[4])
        account = Account(
            id=id_text(row[0]), shop_id=id_text(row[1]), email=row[2], name=row[3], details=parsed
        )
        return account, row[4]

    def account_key(self, account_id: Any) -> Any:
        """``account_id`` (str, int or UUID) in the account id column's own type.

        :class:`UnknownAccount` when it cannot be one (e.g. "abc" for a UUID column).
        """
        col = self.accounts_table.c[self.schema.account_id]
        try:
            return to_column_type(col, account_id)
        except (TypeError, ValueError):
            raise UnknownAccount(
                f"no account with id {_shown(account_id)}: not a valid "
                f"{_type_name(col)} id for {self.schema.accounts_table}.{self.schema.account_id}"
            ) from None

    # -- orders and products -----------------------------------------------------------

    def load_orders(self, shop_ids: Any = None) -> pd.DataFrame:
        """The ORDERS frame (:data:`opskit.core.frames.ORDERS`) of the shops.

        ``amount``: the float ``total`` (major units) in integer minor units, through
        ``Decimal(repr(total))`` rounded half-up, never truncated (19.995 -> 2000);
        ``currency``: ``Schema.order_currency``; times from columns without a zone are
        taken as UTC. A mapping without orders (``Schema.orders_table=None``, e.g. the
        reference schema) gives an empty frame; a mapped table that does not exist
        raises :class:`SchemaMismatch`.
        """
        wanted = self.check_shop_ids(shop_ids)
        s = self.schema
        if s.orders_table is None:  # the mapping says this backend keeps no orders
            return frames.empty(frames.ORDERS)
        t = self._optional_table(s.orders_table, s.order_columns(), "orders")

        def opt(name: str | None, text: bool = False) -> Any:
            if not name:
                return sa.null()
            return sa.cast(t.c[name], sa.Text) if text else t.c[name]

        stmt = sa.select(
            opt(s.order_id, True),
            opt(s.order_shop_id, True),
            opt(s.order_account_id, True),
            opt(s.order_status),
            opt(s.order_total),
            _as_text(t.c[s.order_created_at], self.dialect) if s.order_created_at else sa.null(),
            _as_text(t.c[s.order_completed_at], self.dialect)
            if s.order_completed_at
            else sa.null(),
        )
        if wanted is not None:
            shop_col = t.c[s.order_shop_id]
            stmt = stmt.where(shop_col.in_(self._ids_for(shop_col, wanted)))
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        table = s.orders_table

        def label(name: str | None) -> tuple[str, str]:
            return (f"{table}.{name}", _type_name(t.c[name]) if name else "text")

        return orders_frame(
            rows,
            s.order_currency,
            ids=(label(s.order_id), label(s.order_shop_id), label(s.order_account_id)),
            times=(
                f"{table}.{s.order_created_at}" if s.order_created_at else None,
                f"{table}.{s.order_completed_at}",
            ),
            total=f"{table}.{s.order_total}",
        )

    def load_products(self, shop_ids: Any = None) -> pd.DataFrame:
        """The PRODUCTS frame: each product's recurring list prices in minor units.

        A price that is no amount (NaN, Infinity, 1e20 beyond Int64, text) is <NA> and
        ``row_error`` says why (:func:`opskit.common.rows.read_amounts`): the
        subscriptions naming that product are flagged, the rest is unaffected.
        """
        wanted = self.check_shop_ids(shop_ids)
        s = self.schema
        if s.products_table is None:
            return frames.empty(frames.PRODUCTS)
        t = self._optional_table(s.products_table, s.product_columns(), "products")

        def opt(name: str | None) -> Any:
            return t.c[name] if name else sa.null()

        stmt = sa.select(
            sa.cast(t.c[s.product_id], sa.Text),
            sa.cast(t.c[s.product_shop_id], sa.Text),
            opt(s.product_monthly),
            opt(s.product_yearly),
        )
        if wanted is not None:
            shop_col = t.c[s.product_shop_id]
            stmt = stmt.where(shop_col.in_(self._ids_for(shop_col, wanted)))
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return frames.empty(frames.PRODUCTS)
        ids, shops, monthly, yearly = zip(*rows, strict=True)
        table = s.products_table
        product_t = [_id_or_none(x) for x in ids]
        monthly_c, monthly_p = rows_rules.read_amounts(monthly, f"{table}.{s.product_monthly}")
        yearly_c, yearly_p = rows_rules.read_amounts(yearly, f"{table}.{s.product_yearly}")
        problems = rows_rules.join_problems(
            _with_duplicates(
                rows_rules.id_problems(
                    product_t, f"{table}.{s.product_id}", _type_name(t.c[s.product_id])
                ),
                product_t,
                f"{table}.{s.product_id}",
            ),
            monthly_p,
            yearly_p,
        )
        df = pd.DataFrame(
            {
                "product_id": pd.array(product_t, dtype="string"),
                "shop_id": pd.array([id_text(x) for x in shops], dtype="string"),
                "monthly_amount": pd.array(monthly_c, dtype="Int64"),
                "yearly_amount": pd.array(yearly_c, dtype="Int64"),
                "currency": pd.array([s.order_currency] * len(ids), dtype="string"),
                "row_error": pd.array(problems, dtype="string"),
            }
        )
        return _sorted_ids(frames.conform(df, frames.PRODUCTS), ["shop_id", "product_id"])

    def has_table(self, name: str | None) -> bool:
        return name is not None and sa.inspect(self.engine).has_table(name)

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {safe_url(self.url)!r}: {_first_line(exc)}"
            ) from None


# -- ids in the database's own type ----------------------------------------------------------


def to_column_type(col: sa.Column[Any] | Any, value: Any) -> Any:
    """``value`` (str, int or UUID) as a value of ``col``'s Python type, for comparisons.

    A UUID column gets a :class:`uuid.UUID`, an integer column an int (only from
    decimal digits), a text column the canonical text (a UUID in text form: lower
    case, as ``str(uuid)`` writes it). Raises ``ValueError`` or
    ``TypeError`` when ``value`` cannot be such an id.
    """
    text = id_text(value)
    if text is None:
        raise ValueError("no id")
    try:
        py = col.type.python_type
    except (NotImplementedError, AttributeError):
        py = str
    if py is uuid.UUID:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(text)
    if isinstance(py, type) and issubclass(py, int | Decimal | float) and not issubclass(py, bool):
        if not digits_only(text):
            raise ValueError(f"{text!r} is not an integer id")
        return py(text)
    if len(text) == 36 and text.count("-") == 4:  # a UUID kept as text: its canonical form
        try:
            return str(uuid.UUID(text))
        except ValueError:
            return text
    return text


def _with_duplicates(
    problems: list[str | None], ids: Sequence[str | None], column: str
) -> list[str | None]:
    """``problems`` with "``column`` 'x' is on N rows" for each id several rows hold."""
    for value, where in rows_rules.duplicate_ids(
        [x if p is None else None for x, p in zip(ids, problems, strict=True)]
    ).items():
        for i in where:
            problems[i] = f"{column} {value!r} is on {len(where)} rows (ids must be unique)"
    return problems


def _id_or_none(value: Any) -> str | None:
    """An id the database rendered as text (cast in SQL): stripped, None when NULL/blank."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _type_name(col: Any) -> str:
    """The kind of id ``col`` holds: "UUID", "integer" (integer, numeric and float
    columns: a fraction there is never an id) or "text"."""
    try:
        py = col.type.python_type
    except (NotImplementedError, AttributeError):
        return "text"
    return {uuid.UUID: "UUID", int: "integer", Decimal: "integer", float: "integer"}.get(py, "text")


def _shown(value: Any) -> str:
    try:
        text = id_text(value)
    except TypeError:
        return repr(value)
    return repr(text) if text is not None else repr(value)


def _sorted_ids(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``df`` sorted by id columns: integer ids numerically, others as text."""
    if len(df) < 2:
        return df.reset_index(drop=True)
    order = pd.DataFrame({k: id_sort_key(df[k]) for k in keys})
    idx = order.sort_values(keys, kind="stable", na_position="last").index
    return df.loc[idx].reset_index(drop=True)


def to_cents(value: Any) -> int | None:
    """Float major units (euros) in integer minor units, half-up through Decimal; None stays.

    Raises ``ValueError`` naming why for a value that is no amount (NaN, Infinity,
    text, beyond Int64): :func:`opskit.common.rows.read_amounts` reads columns of them.
    """
    [cents], [problem] = rows_rules.read_amounts([value], "value")
    if problem:
        raise ValueError(problem)
    return cents


def orders_frame(
    rows: Sequence[Sequence[Any]],
    currency: str,
    *,
    ids: tuple[tuple[str, str], ...] = (
        ("orders.id", "text"),
        ("orders.shop_id", "text"),
        ("orders.account_id", "text"),
    ),
    times: tuple[str | None, str] = ("orders.created_at", "orders.completed_at"),
    total: str = "orders.total",
) -> pd.DataFrame:
    """Rows of (id, shop_id, account_id, status, total, created_at, completed_at) to ORDERS.

    Ids and times are read by :mod:`opskit.common.rows` (``ids``: each id column's
    label and kind; ``times``: the time columns' labels): a value that is not one
    is <NA>/NaT and ``row_error`` says why (``created_at`` is required: the payment
    report matches by it, unless the mapping has no such column: ``times[0]`` None;
    an order with no account is allowed). ``amount``: ``total`` (labelled ``total``)
    by :func:`opskit.common.rows.read_amounts`: NaN, Infinity, 1e300 or text are
    <NA> and flagged, never coerced; an order id on several rows flags each of them.
    """
    if not rows:
        return frames.empty(frames.ORDERS)
    order_ids, shops, accounts, status, totals, created, completed = zip(*rows, strict=True)
    order_t = [_id_or_none(x) for x in order_ids]
    shop_t = [_id_or_none(x) for x in shops]
    account_t = [_id_or_none(x) for x in accounts]
    created_at, created_p = rows_rules.read_times(
        created, times[0] or "orders.created_at", required=times[0] is not None
    )
    completed_at, completed_p = rows_rules.read_times(completed, times[1])
    amounts, amount_p = rows_rules.read_amounts(totals, total)
    account_p = [
        None if x is None else p
        for x, p in zip(account_t, rows_rules.id_problems(account_t, *ids[2]), strict=True)
    ]
    problems = rows_rules.join_problems(
        _with_duplicates(rows_rules.id_problems(order_t, *ids[0]), order_t, ids[0][0]),
        rows_rules.id_problems(shop_t, *ids[1]),
        account_p,
        amount_p,
        created_p,
        completed_p,
    )
    df = pd.DataFrame(
        {
            "order_id": pd.array(order_t, dtype="string"),
            "shop_id": pd.array(shop_t, dtype="string"),
            "account_id": pd.array(account_t, dtype="string"),
            "status": pd.array(status, dtype="string"),
            "amount": pd.array(amounts, dtype="Int64"),
            "currency": pd.array([currency.lower()] * len(order_ids), dtype="string"),
            "created_at": created_at,
            "completed_at": completed_at,
            "row_error": pd.array(problems, dtype="string"),
        }
    )
    return _sorted_ids(frames.conform(df, frames.ORDERS), ["shop_id", "order_id"])


# -- frame builders (pure, shared by the loaders and the benchmark) ------------------------


def shops_frame(shops: Sequence[Shop]) -> pd.DataFrame:
    infos = [classify_secret_key(s.stripe_secret_key) for s in shops]
    public = [_public_key_display(s.stripe_public_key) for s in shops]
    return frames.conform(
        pd.DataFrame(
            {
                "shop_id": pd.array([s.id for s in shops], dtype="string"),
                "shop_name": pd.array([s.name for s in shops], dtype="string"),
                "mode": pd.array([i.mode for i in infos], dtype="string"),
                "secret_key": pd.array([i.masked for i in infos], dtype="string"),
                "public_key": pd.array(public, dtype="string"),
                "key_problem": pd.array([i.problem for i in infos], dtype="string"),
            }
        ),
        frames.SHOPS,
    )


def _details_extraction(dialect: str, details: Any) -> list[Any] | None:
    """SQL that flattens the known details keys inside the database (C speed).

    Returns [is_object, key1, key2, ...] expressions, or None when Python does it:
    SQLite before 3.45 re-parses the JSON text for every json_extract call (slower
    than one orjson parse per row), and a text column on PostgreSQL cannot be cast
    to json when one row is malformed.
    """
    if dialect == "postgresql" and isinstance(details.type, sa.JSON):
        typeof = getattr(
            sa.func, "jsonb_typeof" if details.type.__class__.__name__ == "JSONB" else "json_typeof"
        )
        # An object whose Stripe ids are text (or absent / null) is read here; any other
        # row is explained by parse_details, as in Python (an id 123 is no link).
        ids_text = [
            sa.func.coalesce(typeof(details.op("->")(key)), "null").in_(["string", "null"])
            for key in ID_KEYS
        ]
        # A json value holding \u0000 (or an escape the database encoding lacks) cannot be
        # decoded by ->>: one such row would fail the whole query. Those rows are read
        # as text and judged in Python (CASE never evaluates ->> for them).
        decodable = sa.func.strpos(sa.cast(details, sa.Text), "\\u0000") == 0
        is_object = sa.case(
            (sa.and_(decodable, typeof(details) == "object", *ids_text), 1), else_=0
        )
        values = [
            sa.case((is_object == 1, details.op("->>")(key)), else_=sa.null())
            for key in DETAIL_KEYS
        ]
        return [is_object, *values]
    return None


def accounts_frame_extracted(
    rows: Sequence[Sequence[Any]], labels: RowLabels | None = None
) -> pd.DataFrame:
    """Like :func:`accounts_frame`, for rows whose details keys the database extracted.

    Row layout: (id, shop_id, email, name, details_text, created_at, updated_at,
    is_object, *DETAIL_KEYS). Only rows that are not JSON objects (or whose Stripe
    ids are not text) are parsed in Python, to explain what is wrong with them
    (SQL NULL and JSON null are not wrong).
    """
    if not rows:
        return frames.empty(frames.ACCOUNTS)
    columns = list(zip(*rows, strict=True))
    ids, shop_ids, emails, names, texts, created, updated, is_object = columns[:8]
    flat = {k: list(v) for k, v in zip(DETAIL_KEYS, columns[8:], strict=True)}
    # Rows the database left to Python: not an object, a Stripe id that is not text, a
    # value ->> cannot decode (\u0000); and objects whose Stripe ids break the one id
    # rule (models.stripe_id_problem: too long, wrong prefix, other characters).
    again = [not ok for ok in is_object]
    for key in ID_KEYS:
        for i, value in enumerate(flat[key]):
            if value is not None and not again[i] and stripe_id_problem(key, value):
                again[i] = True
    errors: list[str | None] = [None] * len(rows)
    for i in [i for i, redo in enumerate(again) if redo]:
        value, errors[i] = parse_details(texts[i])
        for key in DETAIL_KEYS:  # what parse_details read (nothing when unreadable)
            flat[key][i] = detail_text(value.get(key))
    return _accounts_from_columns(
        ids, shop_ids, emails, names, flat, texts, errors, created, updated, labels
    )


def _public_key_display(raw: str | None) -> str | None:
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    # Publishable keys are public by design; anything else in that column is masked.
    return text if text.startswith("pk_") else mask_key(text)


def accounts_frame(rows: Sequence[Sequence[Any]], labels: RowLabels | None = None) -> pd.DataFrame:
    """Rows of (id, shop_id, email, name, details, created_at, updated_at) to the ACCOUNTS frame.

    details follow :func:`parse_details` (the fast path for well-formed objects
    applies the same rules, Stripe ids included); ids and times are read by
    :mod:`opskit.common.rows` (``labels``: the columns' names and id kinds), what
    cannot be read is <NA>/NaT and ``row_error`` says why.
    """
    if not rows:
        return frames.empty(frames.ACCOUNTS)
    ids, shop_ids, emails, names, raw_details, created, updated = zip(*rows, strict=True)
    flat: dict[str, list[Any]] = {k: [] for k in DETAIL_KEYS}
    errors: list[str | None] = []
    texts: list[str | None] = []
    loads = _fast_json_loads()
    for raw in raw_details:
        # Fast path for well-formed objects; parse_details explains everything else.
        if isinstance(raw, str) and raw[:1] == "{":
            try:
                value = loads(raw)
                err = None
            except ValueError:
                value, err = parse_details(raw)
            # '{' ... valid only as a prefix, or {"stripe_customer_id": 123}: explained.
            if not isinstance(value, dict) or (err is None and id_problem(value)):
                value, err = parse_details(raw)
        else:
            value, err = parse_details(raw)
            if isinstance(raw, dict):
                raw = json.dumps(raw)
        errors.append(err)
        texts.append(raw if isinstance(raw, str) else None)
        for key in DETAIL_KEYS:
            flat[key].append(detail_text(value.get(key)))
    return _accounts_from_columns(
        ids, shop_ids, emails, names, flat, texts, errors, created, updated, labels
    )


def _accounts_from_columns(
    ids: Sequence[Any],
    shop_ids: Sequence[Any],
    emails: Sequence[Any],
    names: Sequence[Any],
    flat: Mapping[str, Sequence[Any]],
    texts: Sequence[Any],
    errors: Sequence[Any],
    created: Sequence[Any],
    updated: Sequence[Any],
    labels: RowLabels | None = None,
) -> pd.DataFrame:
    """The ACCOUNTS frame from its columns, in spec order and dtypes."""
    labels = labels or RowLabels()
    synced, synced_p = rows_rules.read_times(
        flat["stripe_synced_at"], "details['stripe_synced_at']"
    )
    created_at, created_p = rows_rules.read_times(created, labels.created_at)
    updated_at, updated_p = rows_rules.read_times(updated, labels.updated_at)
    id_texts, shop_texts = ids, shop_ids  # text already (cast in SQL)
    problems = rows_rules.join_problems(
        _with_duplicates(
            rows_rules.id_problems(id_texts, *labels.account_id),
            [_id_or_none(x) for x in id_texts],
            labels.account_id[0],
        ),
        rows_rules.id_problems(shop_texts, *labels.shop_id),
        created_p,
        updated_p,
        synced_p,
    )
    return pd.DataFrame(
        {
            "account_id": pd.array(id_texts, dtype="string"),  # text already (cast in SQL)
            "shop_id": pd.array(shop_texts, dtype="string"),
            "email": pd.array(emails, dtype="string"),
            "name": pd.array(names, dtype="string"),
            **{
                k: pd.array(flat[k], dtype="string") for k in DETAIL_KEYS if k != "stripe_synced_at"
            },
            "stripe_synced_at": synced,
            "details": pd.array(texts, dtype="string"),
            "details_error": pd.array(errors, dtype="string"),
            "created_at": created_at,
            "updated_at": updated_at,
            "row_error": pd.array(problems, dtype="string"),
        }
    )


@dataclass(frozen=True)
class RowLabels:
    """How an accounts loader names its columns in ``row_error`` (and each id's kind)."""

    account_id: tuple[str, str] = ("accounts.id", "text")
    shop_id: tuple[str, str] = ("accounts.shop_id", "text")
    created_at: str = "accounts.created_at"
    updated_at: str = "accounts.updated_at"


def _fast_json_loads() -> Any:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback
        return json.loads


def _as_text(col: Any, dialect: str) -> Any:
    # SQLite stores datetimes as text already (its DateTime reader would raise on a bad one:
    # the raw value goes to opskit.common.rows instead); casting elsewhere avoids per-row
    # conversion, and PostgreSQL's 'infinity' arrives as text, not as a psycopg error.
    return sa.type_coerce(col, sa.Text) if dialect == "sqlite" else sa.cast(col, sa.Text)


def _id_list(shops: Mapping[str, Shop]) -> str:
    ids = list(shops)
    text = ", ".join(ids[:20])
    return text + (", ..." if len(ids) > 20 else "") if ids else "none"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


# -- reference tables (the demo database and tests create them) ----------------------------


def reference_metadata(
    schema: Schema | None = None, *, dialect: str = "sqlite", details_as_text: bool = False
) -> sa.MetaData:
    """opskit's first reference schema (integer ids, an email column, timestamps):
    JSON details on PostgreSQL, text on SQLite. shop-backend's own tables:
    :func:`opskit.backend.tables.shop_backend_metadata`.

    ``details_as_text`` models backends that keep details in a text column on PostgreSQL too.
    """
    s = schema or Schema.reference()
    as_text = dialect == "sqlite" or details_as_text
    details_type: Any = sa.Text() if as_text else sa.JSON()
    md = sa.MetaData()
    sa.Table(
        s.shops_table,
        md,
        sa.Column(s.shop_id, sa.Integer, primary_key=True),
        sa.Column(s.shop_name, sa.Text, nullable=False),
        sa.Column(s.shop_secret_key, sa.Text, nullable=True),
        *([sa.Column(s.shop_public_key, sa.Text, nullable=True)] if s.shop_public_key else []),
    )
    columns: list[Any] = [
        sa.Column(s.account_id, sa.Integer, primary_key=True),
        sa.Column(
            s.account_shop_id, sa.Integer, sa.ForeignKey(f"{s.shops_table}.{s.shop_id}"), index=True
        ),
        *[sa.Column(c, sa.Text) for c in (s.account_email, s.account_name) if c],
        sa.Column(s.account_details, details_type, nullable=True),
    ]
    for name in (s.account_created_at, s.account_updated_at):
        if name:
            columns.append(sa.Column(name, sa.DateTime(timezone=dialect != "sqlite")))
    sa.Table(s.accounts_table, md, *columns)
    return md


def create_reference_tables(
    engine: Engine,
    schema: Schema | None = None,
    *,
    drop: bool = False,
    details_as_text: bool = False,
) -> None:
    md = reference_metadata(schema, dialect=engine.dialect.name, details_as_text=details_as_text)
    if drop:
        md.drop_all(engine)
    md.create_all(engine)
