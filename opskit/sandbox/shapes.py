"""Customers, products, payment intents and invoices in Stripe's shape at API 2026-10-28.

localstripe exports these objects as Stripe's API looked years ago
(``account_balance`` and ``business_vat_id`` on customers, ``charges`` on payment
intents, ``caption`` on products, a ``latest_charge`` inlined instead of its id,
invoices without ``issuer``, ``amount_remaining`` ...). Here each is rendered
field by field as the pinned API version returns it; the conformance suite
(tests/conformance) checks them against Stripe's published schemas.

Version-shaped: requests naming a ``Stripe-Version`` older than 2025-03-31.basil
also get ``invoice.payment_intent`` / ``subscription`` / ``charge`` and
``payment_intent.invoice``.
"""

from __future__ import annotations

from typing import Any

from localstripe import resources as ls

from opskit.sandbox import versions

_base_export: Any = None


def _base(obj: Any) -> dict[str, Any]:
    return dict(_base_export(obj))


def _id(value: Any) -> Any:
    return getattr(value, "id", value)


def _expand(out: dict[str, Any], expand: Any) -> dict[str, Any]:
    if expand:
        from opskit.sandbox.subscriptions import expand_path

        for path in [expand] if isinstance(expand, str) else expand:
            expand_path(out, path)
    return out


def customer_view(c: Any, expand: Any = None) -> dict[str, Any]:
    settings = dict(c.invoice_settings or {})
    out = {
        "id": c.id,
        "object": "customer",
        "address": c.address,
        "balance": -int(c.account_balance or 0),
        "created": c.created,
        "currency": c.__dict__.get("_currency"),
        "default_source": c.default_source,
        "delinquent": bool(c.delinquent),
        "description": c.description,
        "discount": None,
        "email": c.email,
        "invoice_prefix": c.id[4:12].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": settings.get("default_payment_method"),
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(c.metadata or {}),
        "name": c.name,
        "next_invoice_sequence": 1,
        "phone": c.phone,
        "preferred_locales": list(c.preferred_locales or []),
        "shipping": c.shipping,
        "tax_exempt": c.__dict__.get("tax_exempt") or "none",
        "test_clock": c.__dict__.get("test_clock"),
    }
    heads = {p.split(".")[0] for p in ([expand] if isinstance(expand, str) else expand or [])}
    # Includable lists: returned only when expanded (since 2020-08-27).
    if "subscriptions" in heads:
        subs = [
            o._export()
            for k, o in list(ls.store.items())
            if k.startswith("subscription:") and o.customer == c.id
            and o.status not in ("canceled", "incomplete_expired")
        ]  # fmt: skip
        out["subscriptions"] = _list(subs, f"/v1/customers/{c.id}/subscriptions")
    if "sources" in heads:
        out["sources"] = _list([], f"/v1/customers/{c.id}/sources")
    if "tax_ids" in heads:
        out["tax_ids"] = _list([], f"/v1/customers/{c.id}/tax_ids")
    return _expand(out, [p for p in ([expand] if isinstance(expand, str) else expand or [])
                         if p.split(".")[0] not in ("subscriptions", "sources", "tax_ids")
                         or "." in p])  # fmt: skip


def _list(data: list[Any], url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": False, "url": url}


def product_view(p: Any, expand: Any = None) -> dict[str, Any]:
    out = {
        "id": p.id,
        "object": "product",
        "active": bool(p.active),
        "created": p.created,
        "default_price": None,
        "description": p.description,
        "images": list(getattr(p, "images", None) or []),
        "livemode": False,
        "marketing_features": [],
        "metadata": dict(p.metadata or {}),
        "name": p.name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": p.__dict__.get("_updated") or p.created,
        "url": None,
    }
    return _expand(out, expand)


def _last_payment_error(pi: Any) -> dict[str, Any] | None:
    if pi._authentication_failed:
        return {
            "code": "payment_intent_authentication_failure",
            "message": "The provided PaymentMethod has failed authentication.",
            "type": "card_error",
        }
    ch = pi.latest_charge
    if ch is None or ch.status != "failed":
        return None
    out = {
        "charge": ch.id,
        "code": ch.failure_code,
        "message": ch.failure_message,
        "type": "card_error",
    }
    decline = ch.__dict__.get("_decline_code")
    if decline:
        out["decline_code"] = decline
        out["doc_url"] = "https://stripe.com/docs/error-codes/" + str(ch.failure_code).replace(
            "_", "-"
        )
    pm = ls.store.get("payment_method:" + str(ch.payment_method))
    if pm is not None:
        out["payment_method"] = pm._export()
    return out


def payment_intent_view(pi: Any, expand: Any = None) -> dict[str, Any]:
    status = pi.status
    ch = pi.latest_charge
    captured = ch is not None and ch.status == "succeeded"
    out: dict[str, Any] = {
        "id": pi.id,
        "object": "payment_intent",
        "amount": pi.amount,
        "amount_capturable": pi.amount if status == "requires_capture" else 0,
        "amount_received": pi.amount if status == "succeeded" and captured else 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": pi.__dict__.get("automatic_payment_methods"),
        "canceled_at": pi.__dict__.get("_canceled_at"),
        "cancellation_reason": None,
        "capture_method": pi.capture_method,
        "client_secret": pi.client_secret,
        "confirmation_method": "automatic",
        "created": pi.created,
        "currency": pi.currency,
        "customer": pi.customer,
        "description": pi.__dict__.get("description"),
        "excluded_payment_method_types": None,
        "last_payment_error": _last_payment_error(pi),
        "latest_charge": _id(ch),
        "livemode": False,
        "metadata": dict(pi.metadata or {}),
        "next_action": pi.next_action,
        "on_behalf_of": None,
        "payment_method": pi.payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": pi.__dict__.get("receipt_email"),
        "review": None,
        "setup_future_usage": pi.__dict__.get("setup_future_usage"),
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    if not versions.at_least(versions.BASIL):
        out["invoice"] = pi.invoice
    return _expand(out, expand)


def invoice_view(inv: Any, expand: Any = None) -> dict[str, Any]:
    base = _base(inv)
    status = inv.status
    paid = inv.amount_paid
    transitions = dict(inv.status_transitions or {})
    parent = None
    if inv.subscription:
        sub = ls.store.get("subscription:" + inv.subscription)
        parent = {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(getattr(sub, "metadata", None) or {}),
                "subscription": inv.subscription,
            },
            "type": "subscription_details",
        }
    lines = base.get("lines") or {}
    out: dict[str, Any] = {
        "id": inv.id,
        "object": "invoice",
        "account_country": "DE",
        "account_name": None,
        "account_tax_ids": None,
        "amount_due": inv.amount_due,
        "amount_overpaid": 0,
        "amount_paid": paid,
        "amount_remaining": max(0, inv.amount_due - paid),
        "amount_shipping": 0,
        "application": None,
        "attempt_count": inv.attempt_count,
        "attempted": inv.attempted,
        "auto_advance": status == "draft",
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": inv.billing_reason,
        "collection_method": inv.collection_method,
        "created": inv.created,
        "currency": inv.currency,
        "custom_fields": None,
        "customer": inv.customer,
        "customer_address": None,
        "customer_email": inv.customer_email,
        "customer_name": None,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": inv.description,
        "discounts": [],
        "due_date": None,
        "effective_at": transitions.get("finalized_at"),
        "ending_balance": inv.ending_balance,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines.get("data", []),
            "has_more": bool(lines.get("has_more", False)),
            "url": lines.get("url") or f"/v1/invoices/{inv.id}/lines",
        },
        "livemode": False,
        "metadata": dict(inv.metadata or {}),
        "next_payment_attempt": inv.next_payment_attempt,
        "number": None if status == "draft" else inv.id[3:11].upper() + "-0001",
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": inv.period_end or inv.date,
        "period_start": inv.period_start or inv.date,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": inv.starting_balance,
        "statement_descriptor": None,
        "status": status,
        "status_transitions": {
            "finalized_at": transitions.get("finalized_at"),
            "marked_uncollectible_at": None,
            "paid_at": transitions.get("paid_at"),
            "voided_at": transitions.get("voided_at"),
        },
        "subtotal": inv.subtotal,
        "subtotal_excluding_tax": inv.subtotal,
        "test_clock": None,
        "threshold_reason": None,
        "total": inv.total,
        "total_discount_amounts": [],
        "total_excluding_tax": inv.total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": inv.webhooks_delivered_at,
    }
    if not versions.at_least(versions.BASIL):
        out["payment_intent"] = inv.payment_intent
        out["subscription"] = inv.subscription
        out["charge"] = _id(inv.charge)
    return _expand(out, expand)


# Objects of the sandbox's money module and localstripe's charges/refunds: the few
# fields that differ from the pinned version, fixed after their own export.


def _fix_balance_transaction(out: dict[str, Any]) -> None:
    out.pop("livemode", None)  # balance transactions have no livemode
    out.setdefault("balance_type", "payments")


def _fix_refund(out: dict[str, Any]) -> None:
    out.pop("date", None)  # removed long ago; ``created`` says when
    out.pop("livemode", None)


def _fix_charge(out: dict[str, Any]) -> None:
    if versions.at_least(versions.BASIL):
        out.pop("invoice", None)  # removed at 2025-03-31.basil
    out.setdefault(
        "billing_details",
        {"address": None, "email": None, "name": None, "phone": None, "tax_id": None},
    )
    bt = out.get("balance_transaction")
    if isinstance(bt, dict):
        _fix_balance_transaction(bt)


def _fix_dispute(out: dict[str, Any]) -> None:
    out.setdefault("enhanced_eligibility_types", [])
    evidence = out.get("evidence")
    if isinstance(evidence, dict):
        evidence.setdefault("enhanced_evidence", {})
    details = out.get("evidence_details")
    if isinstance(details, dict):
        details.setdefault("enhanced_eligibility", {})
        submitted = bool(details.get("submission_count"))
        details.setdefault("submission_method", "manual" if submitted else "not_submitted")
    for bt in out.get("balance_transactions") or []:
        if isinstance(bt, dict):
            _fix_balance_transaction(bt)


def _wrap(cls: Any, fix: Any) -> None:
    orig = cls._export

    def export(self: Any, expand: Any = None) -> dict[str, Any]:
        out = orig(self, expand=expand)
        fix(out)
        return out  # type: ignore[no-any-return]

    cls._export = export


_applied = False


def apply() -> None:
    """Render these objects in the pinned version's shape (idempotent; after patches)."""
    global _applied, _base_export
    if _applied:
        return
    _applied = True
    _base_export = ls.StripeObject._export
    ls.Customer._export = customer_view  # type: ignore[method-assign,assignment]
    ls.Product._export = product_view  # type: ignore[method-assign,assignment]
    ls.PaymentIntent._export = payment_intent_view  # type: ignore[method-assign,assignment]
    ls.Invoice._export = invoice_view  # type: ignore[method-assign,assignment]
    _wrap(ls.BalanceTransaction, _fix_balance_transaction)
    _wrap(ls.Refund, _fix_refund)
    _wrap(ls.Charge, _fix_charge)
    from opskit.sandbox import money

    dispute = getattr(money, "Dispute", None)
    if dispute is not None:
        _wrap(dispute, _fix_dispute)
