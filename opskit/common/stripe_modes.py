"""A 404 is not always "absent": Stripe's "a similar object exists in live mode" answer.

Test-mode and live-mode objects of one Stripe account are separate. Asked with
a test key for a live-mode object (or the reverse), Stripe answers 404
``resource_missing`` with "No such customer: 'cus_…'; a similar object exists in
live mode, but a test mode key was used to make this request." The object is
not missing: the link points at the other mode. Reports give it its own status
(``mode_mismatch``) and writes never treat it as absent.
"""

from __future__ import annotations

import re

import stripe

__all__ = ["other_mode", "stripe_message"]

_OTHER = re.compile(
    r"similar object exists in (live|test) mode,? but a (?:test|live) mode key was used",
    re.IGNORECASE,
)


def stripe_message(error: BaseException | str | None) -> str:
    """Stripe's own message of an error (``user_message``), else its text."""
    if error is None:
        return ""
    if isinstance(error, stripe.StripeError):
        return str(error.user_message or "")
    return str(error)


def other_mode(error: BaseException | str | None) -> str | None:
    """``"live"`` or ``"test"``: the mode where Stripe says the object exists; None otherwise.

    Only a 404 (or its message) can say so; any other error gives None.
    """
    if isinstance(error, stripe.StripeError) and error.http_status not in (None, 404):
        return None
    m = _OTHER.search(stripe_message(error))
    return m.group(1).lower() if m else None
