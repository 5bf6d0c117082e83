"""One line, free of secrets, that says what a Stripe call's failure was.

Used for the ``detail`` column of ``shop_error`` rows and for log lines::

    AuthenticationError (401): Invalid API Key provided: sk_test_…abcd [request req_123]

Stripe masks keys in its own messages; opskit redacts again regardless.
"""

from __future__ import annotations

import stripe

from opskit.common.exceptions import OpskitError, StripeRetriesExhausted
from opskit.common.keys import redact

__all__ = ["describe_error", "is_stripe_error", "is_stripe_failure"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(exc: BaseException) -> str:
    """``Type (status): message [request req_…]`` with every key-shaped token masked."""
    name = type(exc).__name__
    if isinstance(exc, stripe.StripeError):
        message = exc.user_message or ""
        if not message and isinstance(exc, stripe.APIConnectionError):
            message = "could not reach Stripe"
        status = f" ({exc.http_status})" if exc.http_status else ""
        request = f" [request {exc.request_id}]" if exc.request_id else ""
        return redact(_one_line(f"{name}{status}: {message}{request}"))
    if isinstance(exc, StripeRetriesExhausted):
        status = f" ({exc.http_status})" if exc.http_status else ""
        return redact(_one_line(f"{name}{status}: {exc.message}"))
    if isinstance(exc, OpskitError):
        return redact(_one_line(f"{name}: {exc.message}"))
    return redact(_one_line(f"{name}: {exc}"))


def is_stripe_failure(exc: BaseException) -> bool:
    """True for what bulk runs record as ``shop_error``: Stripe refused or failed."""
    return isinstance(exc, stripe.StripeError | StripeRetriesExhausted)


def is_stripe_error(exc: BaseException) -> bool:
    """True when Stripe (or stripe-python) raised it: faces test this without importing stripe."""
    return isinstance(exc, stripe.StripeError)
