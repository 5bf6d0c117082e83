"""opskit: reconcile a multi-shop backend with each shop's own Stripe account.

>>> import opskit
>>> ops = opskit.connect()                 # OPSKIT_DATABASE_URL, else the embedded demo
>>> ops.reconcile_customers()              # one row per finding, across all shops
"""

from opskit import stripe_client
from opskit.backend.schema import Schema
from opskit.common.config import Settings
from opskit.common.exceptions import (
    AuditUnavailable,
    ConfigurationError,
    DatabaseUnavailable,
    DetailsUnreadable,
    InputError,
    InvalidAmount,
    LiveWriteRefused,
    OpskitError,
    PartialWrite,
    SchemaMismatch,
    StaleWrite,
    StripeCustomerMissing,
    StripeNotConfigured,
    StripeRetriesExhausted,
    UnknownAccount,
    UnknownShop,
    UnknownSubscription,
    WriteOutcomeUnknown,
)
from opskit.common.logs import install_redaction as _install_redaction
from opskit.common.models import Account, Shop
from opskit.connection import connect
from opskit.ops import Ops

__version__ = "0.1.0"

_install_redaction()  # every logger opskit drives masks keys, whoever sets it to DEBUG

__all__ = [
    "Account",
    "AuditUnavailable",
    "ConfigurationError",
    "DatabaseUnavailable",
    "DetailsUnreadable",
    "InputError",
    "InvalidAmount",
    "LiveWriteRefused",
    "Ops",
    "OpskitError",
    "PartialWrite",
    "Schema",
    "SchemaMismatch",
    "Settings",
    "Shop",
    "StaleWrite",
    "StripeCustomerMissing",
    "StripeNotConfigured",
    "StripeRetriesExhausted",
    "UnknownAccount",
    "UnknownShop",
    "UnknownSubscription",
    "WriteOutcomeUnknown",
    "__version__",
    "connect",
    "stripe_client",
]
