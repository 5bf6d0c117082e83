"""The backend's database: engine, schema check, fast loading, reference tables.

I/O lives here; the rest of opskit works on the DataFrames this returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from opskit.backend.schema import Schema
from opskit.common.exceptions import (
    DatabaseUnavailable,
    SchemaMismatch,
    UnknownAccount,
    UnknownShop,
)
from opskit.common.keys import classify_secret_key, mask_key
from opskit.common.models import Account, Shop, detail_text, parse_details
from opskit.common.urls import safe_url
from opskit.core import frames

# The details keys opskit flattens into columns; every other key is carried untouched.
DETAIL_KEYS = (
    "stripe_customer_id",
    "stripe_subscription_id",
    "subscription_status",
    "stripe_price_id",
)


# Query parameters that carry a secret (libpq takes ?password=... and ?sslpassword=...).


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
    """One backend database, its schema mapping checked at construction."""

    def __init__(self, url: str, schema: Schema | None = None) -> None:
        self.url = url
        self.schema = schema or Schema()
        self.engine = create_engine(url)
        self._check_schema()

    def __repr__(self) -> str:
        return f"Database({safe_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- schema ----------------------------------------------------------------------

    def _check_schema(self) -> None:
        try:
            inspector = sa.inspect(self.engine)
            tables = set(inspector.get_table_names())
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {safe_url(self.url)!r}: {_first_line(exc)}"
            ) from None
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
            columns = {c["name"] for c in inspector.get_columns(table)}
            missing = [c for c in wanted if c not in columns]
            if missing:
                raise SchemaMismatch(
                    f"table {table!r} has no column {', '.join(map(repr, missing))}; "
                    f"found: {', '.join(sorted(columns))}"
                )
        metadata = sa.MetaData()
        self.shops_table = sa.Table(s.shops_table, metadata, autoload_with=self.engine)
        self.accounts_table = sa.Table(s.accounts_table, metadata, autoload_with=self.engine)

    # -- shops -----------------------------------------------------------------------

    def shop_objects(self) -> dict[int, Shop]:
        """Every shop with its raw key, by id: for building Stripe clients, never for display."""
        s, t = self.schema, self.shops_table
        stmt = sa.select(
            t.c[s.shop_id], t.c[s.shop_name], t.c[s.shop_secret_key], t.c[s.shop_public_key]
        ).order_by(t.c[s.shop_id])
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        return {
            int(r[0]): Shop(id=int(r[0]), name=r[1], stripe_secret_key=r[2], stripe_public_key=r[3])
            for r in rows
        }

    def shop(self, shop_id: int) -> Shop:
        shops = self.shop_objects()
        try:
            return shops[int(shop_id)]
        except (KeyError, ValueError, TypeError):
            raise UnknownShop(
                f"no shop with id {shop_id!r}; known shop ids: {_id_list(shops)}"
            ) from None

    def check_shop_ids(self, shop_ids: Iterable[int] | None) -> list[int] | None:
        """Validate a shop filter; None means all shops. Unknown ids are an error, not ignored."""
        if shop_ids is None:
            return None
        if isinstance(shop_ids, int | str):
            shop_ids = [shop_ids]  # type: ignore[list-item]
        known = self.shop_objects()
        wanted: list[int] = []
        for sid in shop_ids:
            try:
                wanted.append(int(sid))
            except (TypeError, ValueError):
                raise UnknownShop(f"shop id {sid!r} is not an integer") from None
        unknown = [sid for sid in wanted if sid not in known]
        if unknown:
            raise UnknownShop(
                f"unknown shop id(s) {', '.join(map(str, unknown))}; known: {_id_list(known)}"
            )
        return sorted(set(wanted))

    def load_shops(self, shop_ids: Iterable[int] | None = None) -> pd.DataFrame:
        wanted = self.check_shop_ids(shop_ids)
        shops = [s for s in self.shop_objects().values() if wanted is None or s.id in wanted]
        return shops_frame(shops)

    # -- accounts --------------------------------------------------------------------

    def load_accounts(self, shop_ids: Iterable[int] | None = None) -> pd.DataFrame:
        wanted = self.check_shop_ids(shop_ids)
        s, t = self.schema, self.accounts_table
        raw_details = t.c[s.account_details]
        extraction = _details_extraction(self.dialect, raw_details)
        cols: list[Any] = [
            t.c[s.account_id],
            t.c[s.account_shop_id],
            t.c[s.account_email],
            t.c[s.account_name],
            raw_details if self.dialect == "sqlite" else sa.cast(raw_details, sa.Text),
        ]
        for name in (s.account_created_at, s.account_updated_at):
            cols.append(_as_text(t.c[name], self.dialect) if name else sa.null())
        if extraction is not None:
            cols += extraction
        stmt = sa.select(*cols).order_by(t.c[s.account_shop_id], t.c[s.account_id])
        if wanted is not None:
            stmt = stmt.where(t.c[s.account_shop_id].in_(wanted))
        with self._connect() as conn:
            # Straight from the DBAPI cursor: a million Row objects cost seconds.
            rows = conn.execute(stmt).cursor.fetchall()  # type: ignore[attr-defined]
        if extraction is None:
            return accounts_frame(rows)
        return accounts_frame_extracted(rows)

    def account(self, account_id: int) -> tuple[Account, str | None]:
        """One account and its raw details text (for optimistic checks)."""
        s, t = self.schema, self.accounts_table
        details: Any = t.c[s.account_details]
        if self.dialect != "sqlite":
            details = sa.cast(details, sa.Text)
        stmt = sa.select(
            t.c[s.account_id],
            t.c[s.account_shop_id],
            t.c[s.account_email],
            t.c[s.account_name],
            details,
        ).where(t.c[s.account_id] == _int_or_unknown(account_id))
        with self._connect() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise UnknownAccount(f"no account with id {account_id!r}")
        parsed, _ = parse_details(row[4])
        return Account(id=row[0], shop_id=row[1], email=row[2], name=row[3], details=parsed), row[4]

    def _connect(self) -> sa.Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {safe_url(self.url)!r}: {_first_line(exc)}"
            ) from None


# -- frame builders (pure, shared by the loaders and the benchmark) ------------------------


def shops_frame(shops: Sequence[Shop]) -> pd.DataFrame:
    infos = [classify_secret_key(s.stripe_secret_key) for s in shops]
    public = [_public_key_display(s.stripe_public_key) for s in shops]
    return frames.conform(
        pd.DataFrame(
            {
                "shop_id": pd.array([s.id for s in shops], dtype="Int64"),
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
        typeof = "jsonb_typeof" if details.type.__class__.__name__ == "JSONB" else "json_typeof"
        is_object = sa.case((getattr(sa.func, typeof)(details) == "object", 1), else_=0)
        values = [
            sa.case((is_object == 1, details.op("->>")(key)), else_=sa.null())
            for key in DETAIL_KEYS
        ]
        return [is_object, *values]
    return None


def accounts_frame_extracted(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Like :func:`accounts_frame`, for rows whose details keys the database extracted.

    Row layout: (id, shop_id, email, name, details_text, created_at, updated_at,
    is_object, *DETAIL_KEYS). Only rows that are not JSON objects are parsed in
    Python, to explain what is wrong with them.
    """
    if not rows:
        return frames.empty(frames.ACCOUNTS)
    columns = list(zip(*rows, strict=True))
    ids, shop_ids, emails, names, texts, created, updated, is_object = columns[:8]
    errors = [
        None if ok else parse_details(text)[1] for ok, text in zip(is_object, texts, strict=True)
    ]
    flat = dict(zip(DETAIL_KEYS, columns[8:], strict=True))
    return _accounts_from_columns(
        ids, shop_ids, emails, names, flat, texts, errors, created, updated
    )


def _public_key_display(raw: str | None) -> str | None:
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    # Publishable keys are public by design; anything else in that column is masked.
    return text if text.startswith("pk_") else mask_key(text)


def accounts_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Rows of (id, shop_id, email, name, details, created_at, updated_at) to the ACCOUNTS frame."""
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
            if not isinstance(value, dict):  # e.g. '{' ... valid only as a prefix
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
        ids, shop_ids, emails, names, flat, texts, errors, created, updated
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
) -> pd.DataFrame:
    """The ACCOUNTS frame from its columns, in spec order and dtypes."""
    return pd.DataFrame(
        {
            "account_id": pd.array(ids, dtype="Int64"),
            "shop_id": pd.array(shop_ids, dtype="Int64"),
            "email": pd.array(emails, dtype="string"),
            "name": pd.array(names, dtype="string"),
            **{k: pd.array(flat[k], dtype="string") for k in DETAIL_KEYS},
            "details": pd.array(texts, dtype="string"),
            "details_error": pd.array(errors, dtype="string"),
            "created_at": _utc(created),
            "updated_at": _utc(updated),
        }
    )


def _fast_json_loads() -> Any:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback
        return json.loads


def _utc(values: Sequence[Any]) -> pd.Series:
    # Naive timestamps from the database are taken as UTC (the backend stores UTC).
    return pd.Series(
        pd.to_datetime(pd.Series(values, dtype="object"), utc=True, format="ISO8601")
    ).astype(frames.UTC_TIME)


def _as_text(col: Any, dialect: str) -> Any:
    # SQLite stores datetimes as text already; casting elsewhere avoids per-row conversion.
    return col if dialect == "sqlite" else sa.cast(col, sa.Text)


def _int_or_unknown(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UnknownAccount(f"account id {value!r} is not an integer") from None


def _id_list(shops: dict[int, Shop]) -> str:
    ids = sorted(shops)
    text = ", ".join(map(str, ids[:20]))
    return text + (", ..." if len(ids) > 20 else "") if ids else "none"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


# -- reference tables (the demo database and tests create them) ----------------------------


def reference_metadata(
    schema: Schema | None = None, *, dialect: str = "sqlite", details_as_text: bool = False
) -> sa.MetaData:
    """The reference schema of ARCHITECTURE.md: JSON details on PostgreSQL, text on SQLite.

    ``details_as_text`` models backends that keep details in a text column on PostgreSQL too.
    """
    s = schema or Schema()
    as_text = dialect == "sqlite" or details_as_text
    details_type: Any = sa.Text() if as_text else sa.JSON()
    md = sa.MetaData()
    sa.Table(
        s.shops_table,
        md,
        sa.Column(s.shop_id, sa.Integer, primary_key=True),
        sa.Column(s.shop_name, sa.Text, nullable=False),
        sa.Column(s.shop_secret_key, sa.Text, nullable=True),
        sa.Column(s.shop_public_key, sa.Text, nullable=True),
    )
    columns: list[Any] = [
        sa.Column(s.account_id, sa.Integer, primary_key=True),
        sa.Column(
            s.account_shop_id, sa.Integer, sa.ForeignKey(f"{s.shops_table}.{s.shop_id}"), index=True
        ),
        sa.Column(s.account_email, sa.Text),
        sa.Column(s.account_name, sa.Text),
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
