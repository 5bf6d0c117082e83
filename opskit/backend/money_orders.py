"""The backend's orders as the money reports read them (a stand-in until ``Ops.orders()``).

shop-backend keeps ``orders(id, shop_id, account_id, total float euros, status,
created_at timestamp without zone, completed_at)``. :func:`load_orders` returns
a ``MONEY_ORDERS`` frame: ids as text, ``amount`` in Int64 cents from the float
total through ``Decimal(repr(total))`` rounded half-up (19.995 -> 2000, never
truncated), ``currency`` ``eur``, times localized to UTC (the backend writes UTC
into zone-less columns). A database without an ``orders`` table gives an empty
frame. :meth:`opskit.Ops.orders`, where the backend mapping provides it, is used
instead (see :mod:`opskit.ops_money`).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa

from opskit.core.frames import MONEY_ORDERS, conform, empty

if TYPE_CHECKING:
    from opskit.backend.db import Database

__all__ = ["cents", "load_orders"]


def cents(total: Any) -> int | None:
    """Euro float -> integer cents, half-up on the decimal the float prints as."""
    if total is None or (isinstance(total, float) and total != total):
        return None
    value = Decimal(repr(float(total))) * 100
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def load_orders(db: Database, shop_ids: Iterable[Any] | None = None) -> pd.DataFrame:
    """The ``orders`` table as ``MONEY_ORDERS`` (see the module docstring)."""
    engine = db.engine
    if not sa.inspect(engine).has_table("orders"):
        return empty(MONEY_ORDERS)
    table = sa.Table("orders", sa.MetaData(), autoload_with=engine)
    cols = [c for c in ("id", "shop_id", "account_id", "total", "status", "created_at",
                        "completed_at") if c in table.c]  # fmt: skip
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*[table.c[c] for c in cols])).all()
    df = pd.DataFrame(rows, columns=cols)
    if not len(df):
        return empty(MONEY_ORDERS)
    out = pd.DataFrame(
        {
            "order_id": df["id"].map(str).astype("string"),
            "shop_id": _text(df["shop_id"]),
            "account_id": _text(df["account_id"]) if "account_id" in df else pd.NA,
            "status": df["status"].astype("string") if "status" in df else pd.NA,
            "amount": pd.array([cents(v) for v in df["total"]], dtype="Int64"),
            "currency": "eur",
            "created_at": _utc(df.get("created_at")),
            "completed_at": _utc(df.get("completed_at")),
        }
    )
    if shop_ids is not None:
        wanted = {str(s) for s in shop_ids}
        out = out[out["shop_id"].isin(wanted)]
    return conform(out.reset_index(drop=True), MONEY_ORDERS)


def _text(values: pd.Series) -> pd.Series:
    """Opaque ids as text (UUID, integer or text alike); missing stays <NA>."""
    return values.map(lambda v: None if v is None or pd.isna(v) else str(v)).astype("string")


def _utc(values: pd.Series | None) -> Any:
    if values is None:
        return pd.NaT
    times = pd.to_datetime(values)
    if getattr(times.dt, "tz", None) is None:
        return times.dt.tz_localize("UTC")
    return times.dt.tz_convert("UTC")
