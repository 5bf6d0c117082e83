"""Error bodies and card declines as Stripe sends them.

Every error body gets ``request_log_url`` (the dashboard log of the request) and,
when it has a ``code``, ``doc_url`` (``https://stripe.com/docs/error-codes/<code>``).
A card decline (402) is a ``card_error`` with ``code``, ``decline_code``,
``charge``, the ``payment_intent`` it happened on and its ``payment_method``,
as stripe-python's ``CardError`` exposes them.

Stripe's decline test cards decline when charged (localstripe declined most of
them only when attached to a customer, so ``4000000000000002`` charged fine):

=================== =============== ==================== ===============================
card                code            decline_code         message
=================== =============== ==================== ===============================
4000000000000002    card_declined   generic_decline      Your card was declined.
4000000000000341    card_declined   generic_decline      Your card was declined.
4000000000009995    card_declined   insufficient_funds   Your card has insufficient funds.
4000000000009987    card_declined   lost_card            Your card was declined.
4000000000009979    card_declined   stolen_card          Your card was declined.
4000000000000069    expired_card    expired_card         Your card has expired.
4000000000000127    incorrect_cvc   incorrect_cvc        Your card's security code is ...
4000000000000119    processing_error processing_error    An error occurred while ...
4242424242424241    incorrect_number incorrect_number    Your card number is incorrect.
=================== =============== ==================== ===============================
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from localstripe import resources as ls

DECLINES: dict[str, tuple[str, str, str]] = {
    "4000000000000002": ("card_declined", "generic_decline", "Your card was declined."),
    "4000000000000341": ("card_declined", "generic_decline", "Your card was declined."),
    "4000000000009995": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "4000000000009987": ("card_declined", "lost_card", "Your card was declined."),
    "4000000000009979": ("card_declined", "stolen_card", "Your card was declined."),
    "4000000000000069": ("expired_card", "expired_card", "Your card has expired."),
    "4000000000000127": (
        "incorrect_cvc",
        "incorrect_cvc",
        "Your card's security code is incorrect.",
    ),
    "4000000000000119": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "4242424242424241": ("incorrect_number", "incorrect_number", "Your card number is incorrect."),
}


def doc_url(code: str) -> str:
    return "https://stripe.com/docs/error-codes/" + code.replace("_", "-")


def request_log_url(request_id: str) -> str:
    return f"https://dashboard.stripe.com/test/logs/{request_id}?t={int(time.time())}"


def finish(resp: web.StreamResponse, request_id: str) -> web.StreamResponse:
    """Add ``request_log_url`` / ``doc_url`` to a JSON error body (in place of ``resp``)."""
    if not isinstance(resp, web.Response) or resp.status < 400:
        return resp
    if resp.content_type != "application/json" or not isinstance(resp.body, bytes | bytearray):
        return resp
    try:
        data = json.loads(bytes(resp.body))
    except ValueError:
        return resp
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict) or "request_log_url" in err:
        return resp
    err["request_log_url"] = request_log_url(request_id)
    code = err.get("code")
    if isinstance(code, str) and code and "doc_url" not in err:
        err["doc_url"] = doc_url(code)
    out = web.Response(
        body=json.dumps(data).encode(), status=resp.status, content_type="application/json"
    )
    for k, v in resp.headers.items():
        if k.lower() not in ("content-type", "content-length"):
            out.headers[k] = v
    return out


def card_error(err: dict[str, Any]) -> dict[str, Any]:
    """Complete a 402's error with what Stripe adds (runs with the caller's store swapped in)."""
    err["type"] = "card_error"
    charge = ls.store.get("charge:" + str(err.get("charge"))) if err.get("charge") else None
    if charge is None:
        return err
    decline = charge.__dict__.get("_decline_code")
    if decline:
        err.setdefault("decline_code", decline)
    pi_id = getattr(charge, "payment_intent", None)
    pi = ls.store.get("payment_intent:" + pi_id) if pi_id else None
    if pi is not None:
        err["payment_intent"] = pi._export()
    pm = ls.store.get("payment_method:" + str(charge.payment_method))
    if pm is not None:
        err["payment_method"] = pm._export()
    return err


_applied = False


def apply() -> None:
    """Make Stripe's decline test cards decline when charged (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    orig_declined = ls.PaymentMethod._charging_is_declined

    def charging_is_declined(self: Any) -> bool:
        if self.type == "card" and self.__dict__.get("_card_number") in DECLINES:
            return True
        return bool(orig_declined(self))

    ls.PaymentMethod._charging_is_declined = charging_is_declined  # type: ignore[method-assign]

    def set_auth_failure(self: Any) -> None:
        pm = ls.store.get("payment_method:" + str(self.payment_method))
        number = pm.__dict__.get("_card_number") if pm is not None else None
        code, decline, message = DECLINES.get(
            number or "", ("card_declined", "generic_decline", "Your card was declined.")
        )
        self.status = "failed"
        self.failure_code = code
        self.failure_message = message
        self._decline_code = decline

    ls.Charge._set_auth_failure = set_auth_failure  # type: ignore[method-assign]
