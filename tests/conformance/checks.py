"""The conformance checks: what the sandbox answers, against what Stripe answers.

Three families, each check one named result (conforms, or the list of departures):

- ``schema``: every object, list envelope, search envelope and error body opskit
  reads, produced by the sandbox through stripe-python 16's real client and
  validated against Stripe's schemas (:mod:`tests.conformance.spec`);
- ``behaviour``: what the issue found the sandbox doing differently from Stripe
  (idempotent 500s, deleted customers' subscriptions, test clocks, decline
  cards, headers, API versions, removed parameters, list filters);
- ``params``: every parameter opskit itself sends (its public API run on the
  demo world, read from the sandbox's request log) exists in Stripe's spec.

``run_sandbox_checks(sandbox)`` and ``run_param_checks()`` return
``{name: [departures]}``; ``python -m tests.conformance`` prints "N of M conform".
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stripe

from tests.conformance import spec

Result = dict[str, list[str]]
CARD = {"exp_month": 12, "exp_year": 2034, "cvc": "123"}


def _key(tag: str) -> str:
    return f"sk_test_conf{tag}{secrets.token_hex(6)}"


def _plain(obj: Any) -> Any:
    """The JSON the sandbox sent (stripe-python's objects turn decimals into Decimal)."""
    resp = getattr(obj, "last_response", None)
    if resp is not None and isinstance(resp.data, dict):
        return resp.data
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def _err_body(fn: Callable[[], Any]) -> tuple[Any, stripe.StripeError | None]:
    try:
        fn()
    except stripe.StripeError as e:
        return e.json_body, e
    return None, None


class World:
    """One store of Stripe objects made through the sandbox's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.key = _key("w")
        self.c = stripe.StripeClient(self.key, base_addresses={"api": url})

    def client(self, **kw: Any) -> stripe.StripeClient:
        return stripe.StripeClient(self.key, base_addresses={"api": self.url}, **kw)

    def pm(self, number: str = "4242424242424242") -> Any:
        return self.c.v1.payment_methods.create(
            params={"type": "card", "card": {"number": number, **CARD}}
        )

    def paying_customer(self) -> Any:
        pm = self.pm()
        return self.c.v1.customers.create(
            params={
                "email": "paying@example.com",
                "payment_method": pm.id,
                "invoice_settings": {"default_payment_method": pm.id},
            }
        )


def run_sandbox_checks(sandbox: Any) -> tuple[Result, Result]:
    """``(schema results, behaviour results)`` for a running sandbox."""
    w = World(sandbox.url)
    schema: Result = {}
    behaviour: Result = {}

    def check(name: str, kind: str, produce: Callable[[], Any]) -> Any:
        try:
            payload = produce()
        except Exception as e:  # noqa: BLE001 - a refusal is a departure, recorded
            schema[name] = [f"the sandbox refused: {type(e).__name__}: {str(e)[:160]}"]
            return None
        schema[name] = spec.violations(payload, kind)
        return payload

    def behave(name: str, probe: Callable[[], list[str]]) -> None:
        try:
            behaviour[name] = probe()
        except Exception as e:  # noqa: BLE001
            behaviour[name] = [f"the sandbox refused: {type(e).__name__}: {str(e)[:160]}"]

    c = w.c
    # ------------------------------------------------------------ customers
    cus = check(
        "customer.create",
        "customer",
        lambda: _plain(
            c.v1.customers.create(
                params={"email": "a@example.com", "name": "A", "metadata": {"k": "v"}}
            )
        ),
    )
    cid = cus["id"] if cus else None
    check(
        "customer.retrieve",
        "GET /v1/customers/{customer}",
        lambda: _plain(c.v1.customers.retrieve(cid)),
    )
    check(
        "customer.retrieve.expand_includable",
        "customer",
        lambda: _plain(
            c.v1.customers.retrieve(cid, params={"expand": ["subscriptions", "tax_ids"]})
        ),
    )
    check(
        "customer.update",
        "customer",
        lambda: _plain(c.v1.customers.update(cid, params={"metadata": {"k": "w"}})),
    )
    check(
        "customer.list",
        "GET /v1/customers",
        lambda: _plain(c.v1.customers.list(params={"limit": 3})),
    )
    check(
        "customer.list.email",
        "GET /v1/customers",
        lambda: _plain(c.v1.customers.list(params={"email": "a@example.com"})),
    )
    check(
        "customer.search",
        "GET /v1/customers/search",
        lambda: _plain(c.v1.customers.search(params={"query": "email:'a@example.com'"})),
    )
    gone = c.v1.customers.create(params={"email": "gone@example.com"})
    check(
        "customer.delete",
        "DELETE /v1/customers/{customer}",
        lambda: _plain(c.v1.customers.delete(gone.id)),
    )
    check(
        "customer.retrieve.deleted",
        "GET /v1/customers/{customer}",
        lambda: _plain(c.v1.customers.retrieve(gone.id)),
    )

    # ------------------------------------------------------------ products and prices
    prod = check(
        "product.create", "product", lambda: _plain(c.v1.products.create(params={"name": "Gold"}))
    )
    pid = prod["id"] if prod else None
    monthly = check(
        "price.create.recurring",
        "price",
        lambda: _plain(
            c.v1.prices.create(
                params={
                    "unit_amount": 1500,
                    "currency": "eur",
                    "recurring": {"interval": "month"},
                    "product": pid,
                    "lookup_key": f"monthly-{pid}",
                }
            )
        ),
    )
    addon = c.v1.prices.create(
        params={
            "unit_amount": 300,
            "currency": "eur",
            "recurring": {"interval": "month"},
            "product": pid,
        }
    )
    check(
        "price.create.one_time",
        "price",
        lambda: _plain(
            c.v1.prices.create(params={"unit_amount": 900, "currency": "eur", "product": pid})
        ),
    )
    check("price.retrieve", "price", lambda: _plain(c.v1.prices.retrieve(monthly["id"])))
    check("price.list", "list:price", lambda: _plain(c.v1.prices.list(params={"active": True})))
    check(
        "price.list.lookup_keys",
        "list:price",
        lambda: _plain(c.v1.prices.list(params={"lookup_keys": [f"monthly-{pid}"]})),
    )

    # ------------------------------------------------------------ subscriptions
    payer = w.paying_customer()
    mid = monthly["id"] if monthly else None
    one = check(
        "subscription.create",
        "subscription",
        lambda: _plain(
            c.v1.subscriptions.create(params={"customer": payer.id, "items": [{"price": mid}]})
        ),
    )
    check(
        "subscription.create.two_items",
        "subscription",
        lambda: _plain(
            c.v1.subscriptions.create(
                params={
                    "customer": payer.id,
                    "items": [{"price": mid}, {"price": addon.id, "quantity": 2}],
                }
            )
        ),
    )
    check(
        "subscription.create.trialing",
        "subscription",
        lambda: _plain(
            c.v1.subscriptions.create(
                params={"customer": payer.id, "items": [{"price": mid}], "trial_period_days": 7}
            )
        ),
    )
    check(
        "subscription.create.default_incomplete",
        "subscription",
        lambda: _plain(
            c.v1.subscriptions.create(
                params={
                    "customer": cid,
                    "items": [{"price": mid}],
                    "payment_behavior": "default_incomplete",
                }
            )
        ),
    )
    sid = one["id"] if one else None
    check("subscription.retrieve", "subscription", lambda: _plain(c.v1.subscriptions.retrieve(sid)))
    check(
        "subscription.update.cancel_at_period_end",
        "subscription",
        lambda: _plain(c.v1.subscriptions.update(sid, params={"cancel_at_period_end": True})),
    )
    check("subscription.cancel", "subscription", lambda: _plain(c.v1.subscriptions.cancel(sid)))
    check(
        "subscription.list.all",
        "list:subscription",
        lambda: _plain(c.v1.subscriptions.list(params={"status": "all", "limit": 100})),
    )

    def customer_subscriptions() -> Any:
        raw = c.raw_request("get", f"/v1/customers/{payer.id}/subscriptions")
        return _plain(c.deserialize(raw, api_mode="V1"))

    check(
        "customer.subscriptions.list",
        "GET /v1/customers/{customer}/subscriptions",
        customer_subscriptions,
    )
    check(
        "invoice.latest",
        "py:Invoice",
        lambda: _plain(c.v1.invoices.retrieve(c.v1.subscriptions.retrieve(sid).latest_invoice)),
    )

    # ------------------------------------------------------------ payment methods and intents
    check("payment_method.create", "py:PaymentMethod", lambda: _plain(w.pm()))
    check(
        "payment_intent.create.succeeded",
        "py:PaymentIntent",
        lambda: _plain(
            c.v1.payment_intents.create(
                params={
                    "amount": 1234,
                    "currency": "eur",
                    "customer": payer.id,
                    "payment_method": w.pm().id,
                    "confirm": True,
                    "metadata": {"order": "1"},
                }
            )
        ),
    )
    check(
        "payment_intent.create.requires_payment_method",
        "py:PaymentIntent",
        lambda: _plain(c.v1.payment_intents.create(params={"amount": 500, "currency": "eur"})),
    )
    check(
        "payment_intent.list",
        "list:py:PaymentIntent",
        lambda: _plain(c.v1.payment_intents.list(params={"limit": 5})),
    )

    # ------------------------------------------------------------ money and events
    # (read by ops.payments / payouts / refresh; served by the sandbox's money and
    # events modules)
    paid = c.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "eur",
            "customer": payer.id,
            "payment_method": w.pm().id,
            "confirm": True,
        }
    )
    check(
        "charge.list",
        "list:py:Charge",
        lambda: _plain(
            c.v1.charges.list(params={"limit": 3, "expand": ["data.balance_transaction"]})
        ),
    )
    check(
        "refund.create",
        "py:Refund",
        lambda: _plain(c.v1.refunds.create(params={"payment_intent": paid.id, "amount": 500})),
    )
    c.v1.payment_intents.create(
        params={
            "amount": 900,
            "currency": "eur",
            "payment_method": w.pm("4000000000000259").id,
            "confirm": True,
        }
    )
    check("dispute.list", "list:py:Dispute", lambda: _plain(c.v1.disputes.list()))
    check(
        "balance_transaction.list",
        "list:py:BalanceTransaction",
        lambda: _plain(c.v1.balance_transactions.list(params={"limit": 10})),
    )
    check("payout.list", "list:py:Payout", lambda: _plain(c.v1.payouts.list()))
    check("balance.retrieve", "py:Balance", lambda: _plain(c.v1.balance.retrieve()))
    check("event.list", "list:py:Event", lambda: _plain(c.v1.events.list(params={"limit": 5})))

    # ------------------------------------------------------------ error bodies
    def error(name: str, fn: Callable[[], Any]) -> stripe.StripeError | None:
        body, exc = _err_body(fn)
        if exc is None:
            schema[name] = ["no error: the sandbox accepted what Stripe refuses"]
            return None
        schema[name] = spec.violations(body, "error")
        return exc

    error("error.resource_missing", lambda: c.v1.customers.retrieve("cus_missing"))
    error(
        "error.parameter_unknown",
        lambda: c.v1.customers.create(params={"bogus": 1}),  # type: ignore[typeddict-unknown-key]
    )
    declined = error(
        "error.card_declined",
        lambda: c.v1.payment_intents.create(
            params={
                "amount": 700,
                "currency": "eur",
                "payment_method": w.pm("4000000000000002").id,
                "confirm": True,
            }
        ),
    )
    error(
        "error.authentication",
        lambda: stripe.StripeClient(
            "sk_test_not-a-key", base_addresses={"api": w.url}
        ).v1.customers.list(),
    )
    ikey: Any = {"idempotency_key": "conf-" + secrets.token_hex(4)}
    c.v1.customers.create(params={"email": "i@example.com"}, options=ikey)
    error(
        "error.idempotency",
        lambda: c.v1.customers.create(params={"email": "j@example.com"}, options=ikey),
    )
    rl_key = _key("rl")
    sandbox.configure(key=rl_key, rate_limit=1, rate_mode="reject")
    rl = stripe.StripeClient(rl_key, base_addresses={"api": w.url})
    rl.v1.customers.list()
    error("error.rate_limit", lambda: rl.v1.customers.list())
    sandbox.configure(key=w.key, fail_next=1)
    server_error = error("error.api", lambda: c.v1.customers.list())

    # ------------------------------------------------------------ behaviour
    def declines() -> list[str]:
        out = []
        if declined is None:
            return ["4000000000000002 was charged: Stripe declines it"]
        err = (declined.json_body or {}).get("error", {})
        if declined.http_status != 402 or err.get("type") != "card_error":
            out.append(f"a decline is {declined.http_status} {err.get('type')}, not 402 card_error")
        if not isinstance(err.get("payment_intent"), dict):
            out.append("the decline has no error.payment_intent")
        if err.get("decline_code") != "generic_decline":
            out.append(f"decline_code is {err.get('decline_code')!r}, not 'generic_decline'")
        return out

    behave("behaviour.decline_card_declines", declines)

    def error_extras() -> list[str]:
        out = []
        if declined is not None:
            err = (declined.json_body or {}).get("error", {})
            for k in ("doc_url", "request_log_url"):
                if k not in err:
                    out.append(f"error bodies lack {k}")
        if server_error is not None and "Stripe-Should-Retry" not in (server_error.headers or {}):
            out.append("a 500 carries no Stripe-Should-Retry header")
        return out

    behave("behaviour.error_extras_and_should_retry", error_extras)

    def idempotent_500() -> list[str]:
        k = _key("idem")
        ci = stripe.StripeClient(k, base_addresses={"api": w.url})
        if hasattr(sandbox, "inject_write_fault"):
            sandbox.inject_write_fault(k, "error_after")
        else:
            sandbox.configure(key=k, fail_next=1)
        opts: Any = {"idempotency_key": "same"}
        first, _ = _err_body(
            lambda: ci.v1.customers.create(params={"email": "x@example.com"}, options=opts)
        )
        second, exc = _err_body(
            lambda: ci.v1.customers.create(params={"email": "x@example.com"}, options=opts)
        )
        if first is None:
            return ["no 500 could be provoked"]
        if exc is None:
            return ["a retry with the key of a 500 succeeded: Stripe replays the saved 500"]
        return []

    behave("behaviour.idempotent_500_replayed", idempotent_500)

    def deleted_customer() -> list[str]:
        cus2 = w.paying_customer()
        s = c.v1.subscriptions.create(params={"customer": cus2.id, "items": [{"price": mid}]})
        c.v1.customers.delete(cus2.id)
        st = c.v1.subscriptions.retrieve(s.id).status
        return [] if st == "canceled" else [f"a deleted customer's subscription is {st}"]

    behave("behaviour.deleting_customer_cancels_subscriptions", deleted_customer)

    def multi_item() -> list[str]:
        s = c.v1.subscriptions.create(
            params={"customer": payer.id, "items": [{"price": mid}, {"price": addon.id}]}
        )
        inv = c.v1.invoices.retrieve(s.latest_invoice)
        out = []
        if len(s["items"].data) != 2:
            out.append("the subscription does not keep both items")
        if inv.total != 1500 + 300:
            out.append(f"the first invoice totals {inv.total}, not 1800 (both items)")
        return out

    behave("behaviour.multi_item_one_invoice", multi_item)

    def clocks() -> list[str]:
        clock = c.v1.test_helpers.test_clocks.create(params={"frozen_time": int(time.time())})
        on = c.v1.customers.create(params={"email": "clock@example.com", "test_clock": clock.id})
        listed = {x.id for x in c.v1.customers.list(params={"limit": 100}).data}
        only = {x.id for x in c.v1.customers.list(params={"test_clock": clock.id}).data}
        out = []
        if on.id in listed:
            out.append("a customer on a test clock is listed without test_clock")
        if only != {on.id}:
            out.append("customers.list(test_clock=...) does not give the clock's customers")
        return out

    behave("behaviour.test_clocks", clocks)

    def versions() -> list[str]:
        out = []
        old = w.client(stripe_version="2024-06-20")
        s = old.v1.subscriptions.create(params={"customer": payer.id, "items": [{"price": mid}]})
        if "current_period_end" not in s.to_dict():
            out.append("a 2024-06-20 client gets no top-level current_period_end")
        _, exc = _err_body(lambda: w.client(stripe_version="2099-99-99").v1.customers.list())
        if exc is None:
            out.append("an invalid Stripe-Version is accepted")
        return out

    behave("behaviour.stripe_version", versions)

    def removed() -> list[str]:
        out = []
        for params in (
            {"customer": payer.id, "plan": mid},
            {"customer": payer.id, "items": [{"price": mid}], "coupon": "X"},
            {"customer": payer.id, "items": [{"price": mid}], "prorate": True},
        ):
            body, exc = _err_body(lambda p=params: c.v1.subscriptions.create(params=p))  # type: ignore[misc]
            name = [k for k in params if k not in ("customer", "items")][0]
            msg = ((body or {}).get("error") or {}).get("message", "")
            if exc is None:
                out.append(f"removed parameter {name} accepted")
            elif msg != f"Received unknown parameter: {name}":
                out.append(f"removed parameter {name} refused with {msg!r}")
        return out

    behave("behaviour.removed_parameters_refused", removed)

    def removed_elsewhere() -> list[str]:
        out = []
        probes: list[tuple[str, Callable[[stripe.StripeClient], Any]]] = [
            (
                "customers.create(coupon)",
                lambda cl: cl.v1.customers.create(params={"coupon": "X"}),  # type: ignore[typeddict-unknown-key]
            ),
            (
                "payment_intents.create(payment_method_types)",
                lambda cl: cl.v1.payment_intents.create(
                    params={"amount": 100, "currency": "eur", "payment_method_types": ["card"]}  # type: ignore[typeddict-unknown-key]
                ),
            ),
        ]
        for label, fn in probes:
            _, exc = _err_body(lambda fn=fn: fn(c))  # type: ignore[misc]
            if exc is None or "Received unknown parameter" not in str(exc.user_message):
                out.append(f"{label} is not refused at 2026-10-28")
        # A client pinned to an older version still may send payment_method_types.
        _, exc = _err_body(
            lambda: w.client(stripe_version="2024-06-20").v1.payment_intents.create(
                params={"amount": 100, "currency": "eur", "payment_method_types": ["card"]}  # type: ignore[typeddict-unknown-key]
            )
        )
        if exc is not None:
            out.append("a 2024-06-20 client may no longer send payment_method_types")
        return out

    behave("behaviour.removed_parameters_refused_everywhere", removed_elsewhere)

    def accepted() -> list[str]:
        """Every parameter the sandbox accepts exists at the pinned version."""
        import stripe.params as sp

        from opskit.sandbox import routes as r
        from opskit.sandbox import subscriptions as s

        pairs = [
            ("CustomerCreateParams", r.CUSTOMER_CREATE | r.CUSTOMER_EXTRAS),
            ("PriceCreateParams", r.PRICE_CREATE),
            ("PaymentIntentCreateParams", (r.PI_CREATE | r.PI_EXTRAS) - {"payment_method_types"}),
            ("SubscriptionCreateParams", s.CREATE_PARAMS),
            ("SubscriptionUpdateParams", s.UPDATE_PARAMS),
            ("SubscriptionCancelParams", s.CANCEL_PARAMS),
            ("SubscriptionItemCreateParams", s.ITEM_CREATE_PARAMS),
            ("SubscriptionItemUpdateParams", s.ITEM_UPDATE_PARAMS),
            ("PaymentIntentConfirmParams", s.CONFIRM_PARAMS),
        ]
        out = []
        for name, mine in pairs:
            extra = sorted(set(mine) - set(spec._td_keys(getattr(sp, name))))
            if extra:
                out.append(f"{name}: the sandbox accepts {extra}, Stripe does not")
        return out

    behave("behaviour.sandbox_accepts_only_stripe_parameters", accepted)

    def filters() -> list[str]:
        out = []
        probes: list[tuple[str, Callable[[], Any]]] = [
            (
                "subscriptions.list(current_period_end[gte])",
                lambda: c.v1.subscriptions.list(params={"current_period_end": {"gte": 1}}),
            ),
            (
                "subscriptions.list(collection_method)",
                lambda: c.v1.subscriptions.list(
                    params={"collection_method": "charge_automatically"}
                ),
            ),
            (
                "subscriptions.list(created[gte])",
                lambda: c.v1.subscriptions.list(params={"created": {"gte": 1}}),
            ),
            (
                "prices.list(recurring[interval])",
                lambda: c.v1.prices.list(params={"recurring": {"interval": "month"}}),
            ),
            (
                "payment_intents.list(created[gte])",
                lambda: c.v1.payment_intents.list(params={"created": {"gte": 1}}),
            ),
            ("invoices.list(status)", lambda: c.v1.invoices.list(params={"status": "paid"})),
            ("products.list(ids)", lambda: c.v1.products.list(params={"ids": [pid]})),
        ]
        for label, fn in probes:
            _, exc = _err_body(fn)
            if exc is not None:
                out.append(f"{label} refused: {str(exc.user_message)[:80]}")
        return out

    behave("behaviour.valid_list_filters", filters)
    return schema, behaviour


# ---------------------------------------------------------------- opskit's parameters


def _normalize(name: str) -> str:
    return re.sub(r"\[\d+\]", "[]", name)


def run_param_checks(workdir: Path) -> Result:
    """Run opskit's public API on the demo world; check each parameter it sent."""
    from opskit import demo

    url = f"sqlite:///{workdir / 'conformance-demo.sqlite'}"
    results: Result = {}
    with demo.start(url) as session:
        sb, ops = session.sandbox, session.ops
        sb.reset_log()
        ops.customers(progress=False)
        ops.subscriptions(progress=False)
        ops.prices(progress=False)
        ops.reconcile_customers(progress=False)
        ops.reconcile_subscriptions(progress=False)
        ops.sync_plan(progress=False)
        year = time.strftime("%Y", time.gmtime())
        for name, kwargs in (
            ("refresh", {"progress": False}),
            ("payments", {"period": year}),
            ("reconcile_payments", {"period": year}),
            ("payouts", {"period": year}),
        ):
            method = getattr(ops, name, None)
            if method is not None:
                with contextlib.suppress(Exception):  # a failed read still shows what was sent
                    method(**kwargs)
        accounts = ops.accounts()
        ok = accounts[accounts["details_error"].isna()]
        unlinked = ok[ok["stripe_customer_id"].isna()]
        linked = ok[ok["stripe_customer_id"].notna()]
        prices = ops.prices(progress=False)

        def first_that_works(attempts: list[Callable[[], Any]]) -> None:
            for attempt in attempts[:8]:
                try:
                    attempt()
                    return
                except Exception:  # noqa: BLE001, S112 - a refused write still shows what was sent
                    continue

        first_that_works(
            [lambda a=a: ops.create_customer(a, confirm=True) for a in unlinked["account_id"]]
        )
        first_that_works(
            [
                lambda a=a: ops.create_payment_intent(a, 1000, "eur", confirm=True)
                for a in linked["account_id"]
            ]
        )
        attempts: list[Callable[[], Any]] = []
        for _, acc in linked.iterrows():
            mine = prices[(prices["shop_id"] == acc["shop_id"]) & prices["interval"].notna()]
            for price in mine["stripe_price_id"][:1]:
                attempts.append(
                    lambda a=acc["account_id"], p=price: ops.create_subscription(
                        a, p, confirm=True, force=True
                    )
                )
        first_that_works(attempts)
        subs = ops.subscriptions(progress=False)
        live = subs[subs["status"] == "active"]
        first_that_works(
            [
                lambda s=s: ops.cancel_subscription(
                    s["stripe_subscription_id"], shop_id=s["shop_id"], confirm=True
                )
                for _, s in live.iterrows()
            ]
        )
        for rec in sb.requests():
            if rec.status in (401,) or not rec.path.startswith("/v1/"):
                continue
            template = spec._template(rec.path)
            for p in rec.params:
                name = f"{rec.method} {template} {_normalize(p)}"
                if name in results:
                    continue
                ok = spec.param_exists(rec.method, rec.path, p)
                results[name] = [] if ok else [f"{p} is not a parameter of {rec.method} {template}"]
    return results


# Every sandbox check by name (the pytest module parametrizes over these; a check
# that run_sandbox_checks() no longer produces, or a new one not listed, fails).
SANDBOX_CHECKS = (
    "customer.create", "customer.retrieve", "customer.retrieve.expand_includable",
    "customer.update", "customer.list",
    "customer.list.email", "customer.search", "customer.delete", "customer.retrieve.deleted",
    "product.create", "price.create.recurring", "price.create.one_time", "price.retrieve",
    "price.list", "price.list.lookup_keys", "subscription.create",
    "subscription.create.two_items", "subscription.create.trialing",
    "subscription.create.default_incomplete", "subscription.retrieve",
    "subscription.update.cancel_at_period_end", "subscription.cancel", "subscription.list.all",
    "customer.subscriptions.list", "invoice.latest", "payment_method.create",
    "payment_intent.create.succeeded", "payment_intent.create.requires_payment_method",
    "payment_intent.list", "charge.list", "refund.create", "dispute.list",
    "balance_transaction.list", "payout.list", "balance.retrieve", "event.list",
    "error.resource_missing", "error.parameter_unknown",
    "error.card_declined", "error.authentication", "error.idempotency", "error.rate_limit",
    "error.api", "behaviour.decline_card_declines", "behaviour.error_extras_and_should_retry",
    "behaviour.idempotent_500_replayed", "behaviour.deleting_customer_cancels_subscriptions",
    "behaviour.multi_item_one_invoice", "behaviour.test_clocks", "behaviour.stripe_version",
    "behaviour.removed_parameters_refused", "behaviour.removed_parameters_refused_everywhere",
    "behaviour.sandbox_accepts_only_stripe_parameters", "behaviour.valid_list_filters",
)  # fmt: skip

# Checks the sandbox is known not to pass, with why (README lists them); each is an
# xfail(strict=True): when the sandbox starts to conform, the test says so.
KNOWN_NONCONFORMING: dict[str, str] = {}
