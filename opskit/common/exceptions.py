"""Every error opskit raises, in one hierarchy.

::

    OpskitError                      base of everything below; has .guidance
    ├── ConfigurationError (ValueError)  the setup is wrong: URL, schema, environment
    │   ├── DatabaseUnavailable          the database cannot be reached or opened
    │   └── SchemaMismatch               a mapped table or column does not exist
    ├── InputError (ValueError)          a caller passed something unusable
    │   ├── UnknownShop                  no shop has that id
    │   ├── UnknownAccount               no account has that id
    │   ├── DuplicateCustomer            Stripe has an unlinked customer of that email: link it
    │   ├── UnknownSubscription          the subscription is not in this shop's Stripe account
    │   └── InvalidAmount                money that is not positive integer minor units
    ├── StripeNotConfigured              the shop has no usable secret key (backend-compatible)
    ├── StripeCustomerMissing            the account has no stripe_customer_id (backend-compatible)
    ├── StripeRetriesExhausted           Stripe kept refusing (429/5xx/network) past the wait budget
    ├── LiveWriteRefused                 a write with a live key lacked confirmation
    ├── StaleWrite                       the database changed since a plan was made
    ├── DetailsUnreadable                details are not a JSON object; opskit won't rewrite them
    ├── AuditUnavailable                 the audit record could not be written; nothing was sent
    ├── WriteOutcomeUnknown              a write's answer was lost and could not be found out
    └── PartialWrite                     Stripe accepted a write but recording it locally failed

Messages never contain a secret key: callers pass masked keys only, and
:func:`opskit.common.keys.redact` is applied to every message as a last line of defence.
"""

from __future__ import annotations

from opskit.common.keys import redact


class OpskitError(Exception):
    """Base class for opskit errors; ``guidance`` says what to do next."""

    default_guidance = ""

    def __init__(self, message: str, *, guidance: str | None = None) -> None:
        self.message = redact(message)
        self.guidance = redact(guidance if guidance is not None else self.default_guidance)
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.guidance:
            return f"{self.message}\n  -> {self.guidance}"
        return self.message


class ConfigurationError(OpskitError, ValueError):
    """The setup is wrong: database URL, schema mapping or environment."""


class DatabaseUnavailable(ConfigurationError):
    """The database cannot be reached or opened."""

    default_guidance = (
        "Check OPSKIT_DATABASE_URL (or the url passed to opskit.connect); "
        "unset it to use the embedded demo database."
    )


class SchemaMismatch(ConfigurationError):
    """A table or column named by the Schema mapping does not exist."""

    default_guidance = (
        "Map your backend's names with opskit.Schema(shops_table=..., accounts_table=..., ...)."
    )


class InputError(OpskitError, ValueError):
    """A caller passed something opskit cannot use."""


class UnknownShop(InputError):
    """No shop has the given id."""

    default_guidance = "List the shops with ops.shops() and pass one of their ids."


class UnknownAccount(InputError):
    """No account has the given id."""

    default_guidance = "List accounts with ops.accounts(shop_ids=[...]) and pass one of their ids."


class DuplicateCustomer(InputError):
    """The shop's Stripe already has a customer with the account's email that no account links.

    ``customer_ids``: those customers, oldest first; linking the first is the usual fix.
    """

    def __init__(
        self, message: str, *, customer_ids: list[str], guidance: str | None = None
    ) -> None:
        super().__init__(message, guidance=guidance)
        self.customer_ids = list(customer_ids)


class InvalidAmount(InputError):
    """An amount or currency that is not a positive integer in a known ISO currency."""

    default_guidance = (
        "Pass integer minor units (e.g. 1999 for 19.99 USD, 500 for 500 JPY) "
        "and a three-letter ISO currency code."
    )


class StripeNotConfigured(OpskitError):
    """The shop is None or has no usable Stripe secret key."""

    default_guidance = "Set a secret key (sk_test_... or sk_live_...) in the shop's row."


class StripeCustomerMissing(OpskitError):
    """The account's details carry no ``stripe_customer_id``."""

    default_guidance = "Create the customer with ops.create_customer(account_id) or link one."


class StripeRetriesExhausted(OpskitError):
    """Stripe kept answering 429/5xx or the network failed beyond the retry budget."""

    default_guidance = "Try again later, or lower the concurrency / per-shop rate limit."

    def __init__(
        self,
        message: str,
        *,
        guidance: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.request_id = request_id
        super().__init__(message, guidance=guidance)


class LiveWriteRefused(OpskitError):
    """A write with a live-mode key was attempted without confirmation."""

    default_guidance = "Pass confirm=True for this call, or set OPSKIT_ALLOW_LIVE_WRITES=1."


class StaleWrite(OpskitError):
    """The database row changed after the plan was made; nothing was overwritten."""

    default_guidance = "Build a fresh plan with ops.sync_plan() and review it again."


class UnknownSubscription(InputError):
    """The subscription id is not in this shop's Stripe account (Stripe answered 404)."""

    default_guidance = (
        "Each shop has its own Stripe account: pass the shop_id the subscription belongs to "
        "(ops.subscriptions() lists them per shop)."
    )


class DetailsUnreadable(OpskitError):
    """The account's details are not a JSON object, so opskit will not rewrite them."""

    default_guidance = (
        "Repair the account's details by hand (it must be a JSON object), then re-run."
    )


class PartialWrite(OpskitError):
    """Stripe accepted the write but recording it in the database failed."""

    # The message says where the Stripe id is recorded (an audit_id) only when that
    # record exists; the guidance claims nothing about the audit log.
    default_guidance = (
        "Call again with the same arguments: the idempotency key replays the same Stripe "
        "object and stores it. `opskit recover` resolves writes whose record is incomplete."
    )


class AuditUnavailable(OpskitError):
    """The audit record of a Stripe write could not be written, so the write was not sent."""

    default_guidance = (
        "Nothing was sent to Stripe. Make the audit table writable (a lock held too long, "
        "a read-only role, a name the database truncates) and call again."
    )


class WriteOutcomeUnknown(OpskitError):
    """Stripe's answer to a write was lost and looking the object up failed too."""

    default_guidance = (
        "The write is recorded as 'unknown' in ops.audit_log(). Run `opskit recover` "
        "(or ops.recover()) when Stripe answers again: it finds out and records the outcome."
    )


# -- shared steps ------------------------------------------------------------------------------
