"""Names of the backend's tables and columns, configurable because real backends differ."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schema:
    """Maps opskit's reference schema onto a backend's actual table and column names.

    >>> Schema(accounts_table="customer_accounts", account_details="meta")  # doctest: +ELLIPSIS
    Schema(...)
    """

    shops_table: str = "shops"
    shop_id: str = "id"
    shop_name: str = "name"
    shop_secret_key: str = "stripe_secret_key"
    shop_public_key: str = "stripe_public_key"

    accounts_table: str = "accounts"
    account_id: str = "id"
    account_shop_id: str = "shop_id"
    account_email: str = "email"
    account_name: str = "name"
    account_details: str = "details"
    account_created_at: str | None = "created_at"
    account_updated_at: str | None = "updated_at"

    audit_table: str = "opskit_audit"

    def shop_columns(self) -> list[str]:
        return [self.shop_id, self.shop_name, self.shop_secret_key, self.shop_public_key]

    def account_columns(self) -> list[str]:
        cols = [
            self.account_id,
            self.account_shop_id,
            self.account_email,
            self.account_name,
            self.account_details,
        ]
        return cols + [c for c in (self.account_created_at, self.account_updated_at) if c]
