"""shop-backend's tables as its migrations create them, for the demo and the tests.

The column types are the backend's own on PostgreSQL: ``uuid`` ids, ``json``
account details, ``jsonb`` order lines and shop config, float euro amounts,
``timestamp without time zone`` on orders. On SQLite (the embedded demo) ids
are their canonical text and JSON columns are SQLite's ``JSON`` (text), which
is what SQLAlchemy's own types become there.

Only what opskit reads and a few neighbours are modelled; the backend has more
columns (VAT rates, urls, translations, licenses...), which opskit ignores.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

__all__ = ["create_shop_backend_tables", "shop_backend_metadata"]


def shop_backend_metadata(dialect: str = "postgresql") -> sa.MetaData:
    """``shops``, ``accounts``, ``orders`` and ``products`` with shop-backend's column types."""
    pg = dialect == "postgresql"
    uuid_t: Any = sa.Uuid(as_uuid=True) if pg else sa.String(36)
    jsonb: Any = postgresql.JSONB() if pg else sa.JSON()
    md = sa.MetaData()
    pk: dict[str, Any] = {"primary_key": True}
    if pg:
        pk["server_default"] = sa.text("gen_random_uuid()")
    sa.Table(
        "shops",
        md,
        sa.Column("id", uuid_t, **pk),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("stripe_secret_key", sa.String(255), nullable=True),
        sa.Column("stripe_public_key", sa.String(255), nullable=True),
        sa.Column("config", jsonb, nullable=True),
        sa.Column("vat_standard", sa.Float, nullable=True),
        sa.Column("discord_webhook", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=True),
    )
    sa.Table(
        "accounts",
        md,
        sa.Column("id", uuid_t, **pk),
        sa.Column("shop_id", uuid_t, sa.ForeignKey("shops.id"), nullable=True, index=True),
        sa.Column("name", sa.String(255), nullable=True),  # the customer's email
        sa.Column("hash_name", sa.String(255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),  # json, not jsonb
    )
    sa.Table(
        "orders",
        md,
        sa.Column("id", uuid_t, **pk),
        sa.Column("customer_order_id", sa.Integer, nullable=True),
        sa.Column("shop_id", uuid_t, sa.ForeignKey("shops.id"), nullable=True, index=True),
        sa.Column(
            "account_id", uuid_t, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("order_info", jsonb, nullable=True),
        sa.Column("total", sa.Float, nullable=True),  # euros
        sa.Column("shipping_fee_inc_btw", sa.Float, nullable=True),
        sa.Column("status", sa.Text, nullable=True, server_default="pending"),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("completed_by", uuid_t, nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=False), nullable=True),
    )
    sa.Table(
        "products",
        md,
        sa.Column("id", uuid_t, **pk),
        sa.Column("shop_id", uuid_t, sa.ForeignKey("shops.id"), nullable=True, index=True),
        sa.Column("price", sa.Float, nullable=True),  # euros
        sa.Column("recurring_price_monthly", sa.Float, nullable=True),
        sa.Column("recurring_price_yearly", sa.Float, nullable=True),
        sa.Column("tax_category", sa.String(255), nullable=True),
        sa.Column("stock", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=True),
    )
    return md


def create_shop_backend_tables(engine: Engine, *, drop: bool = False) -> sa.MetaData:
    """Create shop-backend's tables in ``engine``'s database (dropping them first if asked)."""
    md = shop_backend_metadata(engine.dialect.name)
    if drop:
        md.drop_all(engine)
    md.create_all(engine)
    return md
