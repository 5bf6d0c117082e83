"""HTTP handlers that replace or complete localstripe's for the objects opskit uses.

Every handler runs with ``localstripe.resources.store`` already swapped to the
calling key's :class:`IndexedStore` (see middleware). Handlers are registered
before localstripe's own routes, so they take precedence on the same path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from localstripe import resources as ls
from localstripe.errors import UserError

from opskit.sandbox import subscriptions, testclocks, versions
from opskit.sandbox.patches import ls_server, price_dict
from opskit.sandbox.stores import IndexedStore, ListQuery, iter_objects, run_list

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def store() -> IndexedStore:
    return cast(IndexedStore, ls.store)


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(obj).encode(), status=status, content_type="application/json"
    )


def unknown_param(name: str) -> UserError:
    return UserError(
        400, f"Received unknown parameter: {name}", {"param": name, "code": "parameter_unknown"}
    )


async def body(request: web.Request) -> dict[str, Any]:
    data = await ls_server.get_post_data(request)
    return dict(data or {})


def query(request: web.Request) -> dict[str, Any]:
    return dict(ls_server.unflatten_data(request.query) or {})


def _expand(data: dict[str, Any]) -> list[str] | None:
    exp = data.pop("expand", None)
    if exp is None:
        return None
    if isinstance(exp, str):
        exp = [exp]
    return list(exp)


def _split(data: dict[str, Any], allowed: set[str], extras: set[str]) -> dict[str, Any]:
    """Keep ``allowed`` params in ``data``; pop and return ``extras``; 400 on others."""
    out: dict[str, Any] = {}
    for k in list(data):
        if k in allowed:
            continue
        if k in extras:
            out[k] = data.pop(k)
        else:
            raise unknown_param(k)
    return out


def _to_bool(v: Any) -> Any:
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def _to_int(v: Any, name: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise UserError(400, f"Invalid integer: {v}", {"param": name}) from None


def _clean_metadata(obj: Any) -> None:
    # Stripe: setting a metadata value to "" deletes that key.
    md = getattr(obj, "metadata", None)
    if isinstance(md, dict):
        for k in [k for k, v in md.items() if v == ""]:
            del md[k]


# ---------------------------------------------------------------- lists


def list_query(kind: str, data: dict[str, Any], filters: set[str]) -> tuple[ListQuery, list[str]]:
    q = ListQuery(kind)
    limit = data.pop("limit", None)
    if limit is not None:
        q.limit = _to_int(limit, "limit")
        if not 1 <= q.limit <= 100:
            raise UserError(400, "Invalid limit: must be between 1 and 100", {"param": "limit"})
    q.starting_after = data.pop("starting_after", None) or None
    q.ending_before = data.pop("ending_before", None) or None
    created = data.pop("created", None)
    if isinstance(created, dict):
        for op, v in created.items():
            n = _to_int(v, f"created[{op}]")
            if op == "gte":
                q.gte = n if q.gte is None else max(q.gte, n)
            elif op == "gt":
                q.gte = n + 1 if q.gte is None else max(q.gte, n + 1)
            elif op == "lte":
                q.lte = n if q.lte is None else min(q.lte, n)
            elif op == "lt":
                q.lte = n - 1 if q.lte is None else min(q.lte, n - 1)
            else:
                raise unknown_param(f"created[{op}]")
    elif created not in (None, ""):
        q.gte = q.lte = _to_int(created, "created")
    expand = [e[5:] if e.startswith("data.") else e for e in (_expand(data) or [])]
    for k in list(data):
        if k in filters:
            q.extra[k] = data.pop(k)
        else:
            raise unknown_param(k)
    return q, expand


def list_response(
    url: str, q: ListQuery, expand: list[str], export: Callable[[Any], dict[str, Any]] | None = None
) -> web.Response:
    page = run_list(store(), q)
    if export is None:
        data = [o._export(expand=expand or None) for o in page.items]
    else:
        data = [export(o) for o in page.items]
    return json_response({"object": "list", "data": data, "has_more": page.has_more, "url": url})


def _eq(attr: str, value: Any) -> Callable[[Any], bool]:
    return lambda o: getattr(o, attr, None) == value


def _one_of(attr: str, values: list[Any]) -> Callable[[Any], bool]:
    return lambda o: getattr(o, attr, None) in values


def _period(pos: int) -> Callable[[Any], Any]:
    return lambda o: subscriptions.item_period(o.items._list[0])[pos]


def _range(get: Callable[[Any], Any], spec: Any, name: str) -> Callable[[Any], bool]:
    """A Stripe range filter (``{"gte": ...}`` or one value) on ``get(obj)``."""
    if not isinstance(spec, dict):
        v = _to_int(spec, name)
        return lambda o: get(o) == v
    bounds = {op: _to_int(x, f"{name}[{op}]") for op, x in spec.items()}
    for op in bounds:
        if op not in ("gt", "gte", "lt", "lte"):
            raise unknown_param(f"{name}[{op}]")

    def pred(o: Any) -> bool:
        x = get(o)
        return (
            ("gt" not in bounds or x > bounds["gt"])
            and ("gte" not in bounds or x >= bounds["gte"])
            and ("lt" not in bounds or x < bounds["lt"])
            and ("lte" not in bounds or x <= bounds["lte"])
        )

    return pred


def _all(preds: list[Callable[[Any], bool]]) -> Callable[[Any], bool] | None:
    if not preds:
        return None
    return lambda o: all(p(o) for p in preds)


def generic_list(kind: str, url: str, filters: dict[str, str]) -> Handler:
    """List handler where each filter param compares one attribute for equality."""

    async def handler(request: web.Request) -> web.StreamResponse:
        q, expand = list_query(kind, query(request), set(filters))
        preds: list[Callable[[Any], bool]] = []
        for k, v in q.extra.items():
            if isinstance(v, list):  # ids[]=...: any of them
                preds.append(_one_of(filters[k], v))
                continue
            v = _to_bool(v)
            preds.append(_eq(filters[k], v))
        q.predicate = _all(preds)
        return list_response(url, q, expand)

    return handler


# ---------------------------------------------------------------- customers

CUSTOMER_CREATE = {
    "name", "description", "email", "phone", "address", "invoice_settings",
    "preferred_locales", "tax_id_data", "metadata", "payment_method", "balance", "source",
}  # fmt: skip
# coupon/promotion_code were removed at 2025-03-31.basil (discounts replace them).
CUSTOMER_EXTRAS = {"shipping", "tax_exempt", "test_clock", "tax"}


async def customer_create(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    expand = _expand(data)
    extras = _split(data, CUSTOMER_CREATE, CUSTOMER_EXTRAS)
    clock = None
    if extras.get("test_clock"):
        clock = testclocks.get_clock(extras["test_clock"])
    obj = ls.Customer._api_create(**data)
    if "shipping" in extras:
        obj.shipping = extras["shipping"]
    if clock is not None:
        obj.test_clock = clock.id
    _clean_metadata(obj)
    return json_response(obj._export(expand=expand))


async def customer_retrieve(request: web.Request) -> web.StreamResponse:
    id_ = request.match_info["id"]
    expand = _expand(query(request))
    obj = store().get_obj("customer", id_)
    if obj is None:
        tomb = store().tombstones.get(id_)
        if tomb is not None:
            return json_response(dict(tomb))
        obj = ls.Customer._api_retrieve(id_)  # raises the Stripe-shaped 404
    return json_response(obj._export(expand=expand))


async def customer_update(request: web.Request) -> web.StreamResponse:
    id_ = request.match_info["id"]
    data = await body(request)
    expand = _expand(data)
    _split(
        data, CUSTOMER_CREATE - {"payment_method", "tax_id_data"}, CUSTOMER_EXTRAS - {"test_clock"}
    )
    obj = ls.Customer._api_retrieve(id_)
    if data.get("metadata") == "":
        obj.metadata = {}
        del data["metadata"]
    if "invoice_settings" in data and isinstance(data["invoice_settings"], dict):
        merged = dict(obj.invoice_settings or {})
        merged.update(data["invoice_settings"])
        data["invoice_settings"] = merged
    if data:
        obj = ls.Customer._api_update(id_, **data)
    _clean_metadata(obj)
    return json_response(obj._export(expand=expand))


async def customer_delete(request: web.Request) -> web.StreamResponse:
    id_ = request.match_info["id"]
    deleted = ls.Customer._api_delete(id_)._export()
    subscriptions.cancel_customer_subscriptions(id_)  # Stripe cancels them at once
    return json_response(deleted)


async def customer_list(request: web.Request) -> web.StreamResponse:
    q, expand = list_query("customer", query(request), {"email", "test_clock"})
    clock = q.extra.get("test_clock")  # Stripe lists objects on a test clock only when asked
    preds = [lambda o: testclocks.on_clock(o, clock)]
    if "email" in q.extra:
        preds.append(_eq("email", q.extra["email"]))
    q.predicate = _all(preds)
    return list_response("/v1/customers", q, expand)


_CLAUSE = re.compile(
    r"""^\s*(?P<field>email|name|description|phone|metadata\[(?P<q>['"])(?P<mk>.+?)(?P=q)\])"""
    r"""\s*:\s*(?P<vq>['"])(?P<value>.*)(?P=vq)\s*$"""
)


def _metadata_eq(key: str, value: str) -> Callable[[Any], bool]:
    return lambda o: (o.metadata or {}).get(key) == value


def _price_is(price_id: str) -> Callable[[Any], bool]:
    return lambda o: any(si.plan.id == price_id for si in o.items._list)


def parse_search(text: str) -> Callable[[Any], bool]:
    preds: list[Callable[[Any], bool]] = []
    for clause in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        m = _CLAUSE.match(clause)
        if not m:
            raise UserError(
                400,
                f"Invalid search query: {text!r} (this sandbox supports field:'value' "
                "clauses on email, name, description, phone, metadata['key'], joined by AND)",
                {"param": "query"},
            )
        value = m.group("value")
        if m.group("mk") is not None:
            mk = m.group("mk")
            preds.append(_metadata_eq(mk, value))
        else:
            preds.append(_eq(m.group("field"), value))
    return lambda o: all(p(o) for p in preds)


async def customer_search(request: web.Request) -> web.StreamResponse:
    data = query(request)
    text = data.pop("query", None)
    if not text:
        raise UserError(400, "Missing required param: query.", {"param": "query"})
    limit = _to_int(data.pop("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise UserError(400, "Invalid limit: must be between 1 and 100", {"param": "limit"})
    page = data.pop("page", None)
    expand = [e[5:] if e.startswith("data.") else e for e in (_expand(data) or [])]
    for k in data:
        raise unknown_param(k)
    offset = 0
    if page:
        m = re.match(r"^page_(\d+)$", str(page))
        if not m:
            raise UserError(400, f"Invalid page: {page}", {"param": "page"})
        offset = int(m.group(1))
    pred = parse_search(str(text))
    matched = [o for o in iter_objects(store(), "customer") if pred(o)]
    chunk = matched[offset : offset + limit]
    more = offset + limit < len(matched)
    return json_response(
        {
            "object": "search_result",
            "data": [o._export(expand=expand or None) for o in chunk],
            "has_more": more,
            "next_page": f"page_{offset + limit}" if more else None,
            "url": "/v1/customers/search",
            "total_count": len(matched),
        }
    )


# ---------------------------------------------------------------- prices

PRICE_CREATE = {
    "unit_amount", "currency", "recurring", "product", "product_data", "nickname",
    "metadata", "active", "lookup_key", "tax_behavior", "billing_scheme", "unit_amount_decimal",
    "transfer_lookup_key",
}  # fmt: skip


def _price_not_found(id_: str) -> UserError:
    return UserError(404, f"No such price: '{id_}'", {"code": "resource_missing", "param": "price"})


def get_plan(id_: str) -> Any:
    obj = store().get_obj("plan", id_)
    if obj is None:
        raise _price_not_found(id_)
    return obj


def create_price(data: dict[str, Any], price_id: str | None = None) -> Any:
    _split(data, PRICE_CREATE, set())
    recurring = data.get("recurring") or None
    if recurring is not None and not isinstance(recurring, dict):
        raise UserError(400, "Invalid recurring", {"param": "recurring"})
    product = data.get("product")
    pdata = data.get("product_data")
    if product is None and not isinstance(pdata, dict):
        raise UserError(400, "Missing required param: product.", {"param": "product"})
    if product is None:
        assert isinstance(pdata, dict)
        product = ls.Product(
            name=pdata.get("name"),
            metadata=pdata.get("metadata"),
            active=pdata.get("active", True),
        ).id
    amount = data.get("unit_amount", data.get("unit_amount_decimal"))
    if amount is None:
        raise UserError(400, "Missing required param: unit_amount.", {"param": "unit_amount"})
    plan = ls.Plan(
        id=price_id or "price_" + ls.random_id(24),
        amount=_to_int(float(amount), "unit_amount"),
        currency=data.get("currency"),
        interval=(recurring or {}).get("interval", "month"),
        interval_count=(recurring or {}).get("interval_count", 1),
        trial_period_days=(recurring or {}).get("trial_period_days"),
        usage_type=(recurring or {}).get("usage_type", "licensed"),
        product=product,
        nickname=data.get("nickname"),
        metadata=data.get("metadata"),
        active=_to_bool(data.get("active", True)),
    )
    if recurring is None:
        plan._one_time = True
    plan.lookup_key = None
    set_lookup_key(plan, data.get("lookup_key"), _to_bool(data.get("transfer_lookup_key")) is True)
    return plan


def set_lookup_key(plan: Any, key: Any, transfer: bool) -> None:
    """Stripe's lookup keys are unique per account; ``transfer_lookup_key`` moves one."""
    if not key:
        plan.lookup_key = None
        return
    for other in iter_objects(store(), "plan"):
        if other is not plan and getattr(other, "lookup_key", None) == key:
            if not transfer:
                raise UserError(
                    400,
                    f"A price (`{other.id}`) already uses that lookup key.",
                    {"param": "lookup_key"},
                )
            other.lookup_key = None
    plan.lookup_key = str(key)


async def price_create(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    _expand(data)
    with store().all_or_nothing():  # a refused lookup key leaves no price behind
        plan = create_price(data)
    return json_response(price_dict(plan))


async def price_retrieve(request: web.Request) -> web.StreamResponse:
    return json_response(price_dict(get_plan(request.match_info["id"])))


async def price_update(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    _expand(data)
    _split(
        data,
        {"metadata", "active", "nickname", "lookup_key", "tax_behavior", "transfer_lookup_key"},
        set(),
    )
    plan = get_plan(request.match_info["id"])
    if "active" in data:
        plan.active = bool(_to_bool(data["active"]))
    if "nickname" in data:
        plan.nickname = data["nickname"] or None
    if "lookup_key" in data:
        set_lookup_key(plan, data["lookup_key"], _to_bool(data.get("transfer_lookup_key")) is True)
    md = data.get("metadata")
    if md == "":
        plan.metadata = {}
    elif isinstance(md, dict):
        plan.metadata = {**(plan.metadata or {}), **md}
        _clean_metadata(plan)
    return json_response(price_dict(plan))


async def price_list(request: web.Request) -> web.StreamResponse:
    q, _ = list_query(
        "plan",
        query(request),
        {"active", "product", "currency", "type", "lookup_keys", "recurring"},
    )
    preds: list[Callable[[Any], bool]] = []
    ex = q.extra
    if "active" in ex:
        preds.append(_eq("active", _to_bool(ex["active"])))
    if "product" in ex:
        preds.append(_eq("product", ex["product"]))
    if "currency" in ex:
        preds.append(_eq("currency", ex["currency"]))
    if "type" in ex:
        one = ex["type"] == "one_time"
        preds.append(lambda o: bool(getattr(o, "_one_time", False)) == one)
    rec = ex.get("recurring")
    if isinstance(rec, dict):
        if "interval" in rec:
            preds.append(
                lambda o: not getattr(o, "_one_time", False) and o.interval == rec["interval"]
            )
        if "usage_type" in rec:
            preds.append(lambda o: o.usage_type == rec["usage_type"])
    if "lookup_keys" in ex:
        keys = ex["lookup_keys"] if isinstance(ex["lookup_keys"], list) else [ex["lookup_keys"]]
        preds.append(lambda o: getattr(o, "lookup_key", None) in keys)
    q.predicate = _all(preds)
    return list_response("/v1/prices", q, [], export=price_dict)


# ---------------------------------------------------------------- subscriptions

SUB_STATUSES = {
    "all", "incomplete", "incomplete_expired", "trialing", "active", "past_due", "unpaid",
    "canceled", "ended", "paused",
}  # fmt: skip


def _sub_list(data: dict[str, Any], url: str) -> web.Response:
    q, expand = list_query(
        "subscription",
        data,
        {
            "customer", "status", "price", "plan", "test_clock", "collection_method",
            "current_period_end", "current_period_start", "automatic_tax", "customer_account",
        },
    )  # fmt: skip
    ex = q.extra
    clock = ex.get("test_clock")
    preds: list[Callable[[Any], bool]] = [lambda o: testclocks.on_clock(o, clock)]
    if "collection_method" in ex:
        preds.append(_eq("collection_method", ex["collection_method"]))
    for field, pos in (("current_period_start", 0), ("current_period_end", 1)):
        if field in ex:
            preds.append(
                _range(
                    _period(pos),
                    ex[field],
                    field,
                )
            )
    if "automatic_tax" in ex and _to_bool((ex["automatic_tax"] or {}).get("enabled")) is True:
        preds.append(lambda o: False)  # the sandbox computes no tax
    status = ex.get("status")
    if status is not None and status not in SUB_STATUSES:
        raise UserError(400, f"Invalid status: {status}", {"param": "status"})
    if status is None:
        preds.append(lambda o: o.status not in ("canceled", "incomplete_expired"))
    elif status == "ended":
        preds.append(lambda o: o.status in ("canceled", "incomplete_expired"))
    elif status != "all":
        preds.append(_eq("status", status))
    if "customer" in ex:
        preds.append(_eq("customer", ex["customer"]))
    for k in ("price", "plan"):
        if k in ex:
            preds.append(_price_is(ex[k]))
    q.predicate = _all(preds)
    return list_response(url, q, expand)


async def subscription_list(request: web.Request) -> web.StreamResponse:
    return _sub_list(query(request), "/v1/subscriptions")


async def customer_subscriptions(request: web.Request) -> web.StreamResponse:
    id_ = request.match_info["id"]
    ls.Customer._api_retrieve(id_)
    data = query(request)
    data["customer"] = id_
    return _sub_list(data, f"/v1/customers/{id_}/subscriptions")


# ---------------------------------------------------------------- payment intents

PI_CREATE = {
    "amount", "currency", "customer", "payment_method", "metadata", "payment_method_types",
    "capture_method", "payment_method_options", "confirm", "off_session",
}  # fmt: skip
PI_EXTRAS = {
    "allowed_payment_method_types", "excluded_payment_method_types",
    "description", "receipt_email", "automatic_payment_methods", "statement_descriptor",
    "statement_descriptor_suffix", "setup_future_usage", "return_url", "error_on_requires_action",
    "mandate", "use_stripe_sdk", "shipping", "confirmation_method",
}  # fmt: skip


async def payment_intent_create(request: web.Request) -> web.StreamResponse:
    data = await body(request)
    expand = _expand(data)
    if "payment_method_types" in data and versions.at_least(versions.PINNED):
        # Gone at 2026-10-28 (allowed_payment_method_types replaces it).
        raise unknown_param("payment_method_types")
    extras = _split(data, PI_CREATE, PI_EXTRAS)
    confirm = _to_bool(data.get("confirm"))
    if _to_bool(data.get("off_session")) is True and confirm is not True:
        data.pop("off_session")

    # Attributes are set before confirming so a declined confirm (402) still
    # leaves a payment intent that shows what was asked.
    created: list[Any] = []
    orig = ls.PaymentIntent._confirm

    def confirm_hook(self: Any, on_failure_now: Any) -> Any:
        created.append(self)
        _decorate_pi(self, extras)
        return orig(self, on_failure_now)

    ls.PaymentIntent._confirm = confirm_hook  # type: ignore[method-assign]
    try:
        obj = ls.PaymentIntent._api_create(**data)
    finally:
        ls.PaymentIntent._confirm = orig  # type: ignore[method-assign]
    _decorate_pi(obj, extras)
    return json_response(obj._export(expand=expand))


def _decorate_pi(obj: Any, extras: dict[str, Any]) -> None:
    obj.description = extras.get("description")
    obj.receipt_email = extras.get("receipt_email")
    apm = extras.get("automatic_payment_methods")
    if isinstance(apm, dict):
        obj.automatic_payment_methods = {"enabled": _to_bool(apm.get("enabled")) is True}
    else:
        obj.automatic_payment_methods = None


async def payment_intent_list(request: web.Request) -> web.StreamResponse:
    q, expand = list_query("payment_intent", query(request), {"customer"})
    if "customer" in q.extra:
        q.predicate = _eq("customer", q.extra["customer"])
    return list_response("/v1/payment_intents", q, expand)


async def payment_method_list(request: web.Request) -> web.StreamResponse:
    q, expand = list_query("payment_method", query(request), {"customer", "type"})
    preds = [_eq(k, v) for k, v in q.extra.items()]
    q.predicate = _all(preds)
    return list_response("/v1/payment_methods", q, expand)


# ---------------------------------------------------------------- registration


def add_routes(app: web.Application) -> None:
    subscriptions.add_routes(app)
    testclocks.add_routes(app)
    r = app.router
    r.add_get("/v1/customers/search", customer_search)
    r.add_post("/v1/customers", customer_create)
    r.add_get("/v1/customers", customer_list)
    r.add_get("/v1/customers/{id}", customer_retrieve)
    r.add_post("/v1/customers/{id}", customer_update)
    r.add_delete("/v1/customers/{id}", customer_delete)
    r.add_get("/v1/customers/{id}/subscriptions", customer_subscriptions)
    r.add_post("/v1/prices", price_create)
    r.add_get("/v1/prices", price_list)
    r.add_get("/v1/prices/{id}", price_retrieve)
    r.add_post("/v1/prices/{id}", price_update)
    r.add_get("/v1/subscriptions", subscription_list)
    r.add_post("/v1/payment_intents", payment_intent_create)
    r.add_get("/v1/payment_intents", payment_intent_list)
    r.add_get("/v1/payment_methods", payment_method_list)
    for kind, url, filters in (
        (
            "product",
            "/v1/products",
            {"active": "active", "ids": "id", "shippable": "shippable", "url": "url"},
        ),
        ("plan", "/v1/plans", {"active": "active", "product": "product"}),
        ("charge", "/v1/charges", {"customer": "customer", "payment_intent": "payment_intent"}),
        (
            "invoice",
            "/v1/invoices",
            {
                "customer": "customer",
                "subscription": "subscription",
                "status": "status",
                "collection_method": "collection_method",
            },
        ),  # fmt: skip
        ("refund", "/v1/refunds", {"charge": "charge", "payment_intent": "payment_intent"}),
    ):
        r.add_get(url, generic_list(kind, url, filters))
