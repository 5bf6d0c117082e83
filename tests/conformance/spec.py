"""Stripe's schemas as JSON Schema: the spec excerpt first, stripe-python 16's types for the rest.

``spec3-excerpt.json`` (shared/stripe-openapi, transcribed from stripe/openapi's
spec3.json at API 2026-07-29) gives customer, deleted customer, subscription,
subscription item, price, recurring, product, the error body and the list and
search envelopes. stripe-python 16.1.0 pins API 2026-10-28; its generated
resource classes (``stripe.PaymentIntent``, ``stripe.Subscription`` ...) carry
every field of that version as annotations, so they fill what the excerpt
lacks (payment intents, invoices, payment methods, plans, and every ``$ref``
the excerpt does not transcribe) and add the fields that are newer than it.

Objects are checked strictly: a field neither the excerpt nor the pinned
stripe-python knows (a removed one, such as a subscription's top-level
``current_period_end``) is a violation, as is a missing required field, a wrong
type or a value outside an enum.
"""

from __future__ import annotations

import json
import typing
from functools import cache
from pathlib import Path
from typing import Any, ForwardRef, Literal, Union, get_args, get_origin

import jsonschema
import stripe
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject, UntypedStripeObject

HERE = Path(__file__).resolve().parent
SPEC_NAME = "spec3-excerpt.json"

# Resources whose stripe-python class is expanded into a full (strict) schema when
# referenced; any other referenced resource is just "an object" here.
DEEP = {
    "Customer", "Invoice", "PaymentIntent", "PaymentMethod", "Plan", "Price", "Product",
    "Subscription", "SubscriptionItem", "Charge", "TestClock", "Event", "Refund", "Dispute",
    "BalanceTransaction", "Payout", "Balance",
}  # fmt: skip

# Excerpt schema name -> stripe-python class name, for the $refs it leaves out.
EXCERPT_CLASS = {
    "customer": "Customer",
    "subscription": "Subscription",
    "subscription_item": "SubscriptionItem",
    "price": "Price",
    "recurring": "Price.Recurring",
    "product": "Product",
    "subscription_automatic_tax": "Subscription.AutomaticTax",
    "subscriptions_resource_billing_mode": "Subscription.BillingMode",
}


def spec_path() -> Path:
    """The shared excerpt beside the checkout (as laid for sessions and CI), else our copy."""
    for parent in HERE.parents:
        candidate = parent / "shared" / "stripe-openapi" / SPEC_NAME
        if candidate.is_file():
            return candidate
    return HERE / SPEC_NAME


@cache
def spec() -> dict[str, Any]:
    return typing.cast(dict[str, Any], json.loads(spec_path().read_text()))


def stripe_class(name: str) -> type | None:
    obj: Any = stripe
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) else None


class Builder:
    """Collects ``$defs`` while converting, so recursive references terminate."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}

    # ------------------------------------------------------------ stripe-python types
    def py_class(self, cls: type) -> dict[str, Any]:
        name = "py:" + cls.__qualname__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder against recursion
            hints = _annotations(cls)
            props = {k: self.py_type(t, cls) for k, t in hints.items()}
            required = sorted(k for k, t in hints.items() if not _optional(t) and k != "deleted")
            self.defs[name] = {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            }
        return {"$ref": "#/$defs/" + name}

    def py_type(self, tp: Any, owner: type) -> dict[str, Any]:
        origin = get_origin(tp)
        args = get_args(tp)
        if tp is Any:
            return {}
        if isinstance(tp, ForwardRef | str):
            name = tp.__forward_arg__ if isinstance(tp, ForwardRef) else tp
            cls = stripe_class(name)
            if cls is not None and name in DEEP:
                return self.py_class(cls)
            return {"type": "object"}
        if origin is Union or (origin is not None and str(origin) == "types.UnionType"):
            return {"anyOf": [self.py_type(a, owner) for a in args]}
        if tp is type(None):
            return {"type": "null"}
        if origin is Literal:
            return {"enum": list(args)}
        if tp is str:
            return {"type": "string"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if origin in (list, typing.List):  # noqa: UP006
            return {"type": "array", "items": self.py_type(args[0], owner) if args else {}}
        if origin in (dict, typing.Dict):  # noqa: UP006
            return {
                "type": "object",
                "additionalProperties": self.py_type(args[1], owner) if len(args) > 1 else {},
            }
        if origin is UntypedStripeObject or tp is UntypedStripeObject:
            return {
                "type": "object",
                "additionalProperties": self.py_type(args[0], owner) if args else {},
            }
        if origin is ListObject:
            return list_schema(self.py_type(args[0], owner) if args else {})
        if isinstance(tp, type) and issubclass(tp, StripeObject):
            if tp.__qualname__.split(".")[0] in DEEP or "." in tp.__qualname__:
                return self.py_class(tp)
            return {"type": "object"}
        return {}

    # ------------------------------------------------------------ the excerpt
    def excerpt(self, name: str) -> dict[str, Any]:
        key = "spec:" + name
        if key not in self.defs:
            self.defs[key] = {}
            raw = spec()["schemas"][name]
            cls = stripe_class(EXCERPT_CLASS.get(name, ""))
            py_hints = _annotations(cls) if cls is not None else {}
            props: dict[str, Any] = {}
            for prop, node in raw["properties"].items():
                if _has_unknown_ref(node) and prop in py_hints:
                    assert cls is not None
                    props[prop] = self.py_type(py_hints[prop], cls)
                else:
                    props[prop] = self.node(node)
            required = list(raw.get("required", []))
            # Fields newer than the excerpt (API 2026-10-28), from stripe-python.
            for prop, tp in py_hints.items():
                if prop not in props:
                    assert cls is not None
                    props[prop] = self.py_type(tp, cls)
                    if not _optional(tp):
                        required.append(prop)
            self.defs[key] = {
                "type": "object",
                "properties": props,
                "required": sorted(set(required)),
                "additionalProperties": name == "list_envelope" or False,
            }
        return {"$ref": "#/$defs/" + key}

    def node(self, node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any]
        if "$ref" in node:
            ref = node["$ref"]
            if ref in spec()["schemas"]:
                out = self.excerpt(ref)
            else:
                cls = stripe_class(_class_name(ref))
                out = self.py_class(cls) if cls is not None and _class_name(ref) in DEEP else {}
                if not out:
                    out = {"type": "object"}
        elif "anyOf" in node:
            out = {"anyOf": [self.node(n) for n in node["anyOf"]]}
        else:
            out = {}
            t = node.get("type")
            if t:
                out["type"] = t
            if "enum" in node:
                out["enum"] = list(node["enum"])
            if t == "array":
                out["items"] = self.node(node.get("items") or {})
            if t == "object":
                if "properties" in node:
                    out["properties"] = {k: self.node(v) for k, v in node["properties"].items()}
                    out["additionalProperties"] = False
                if "required" in node:
                    out["required"] = list(node["required"])
                if isinstance(node.get("additionalProperties"), dict):
                    out["additionalProperties"] = self.node(node["additionalProperties"])
            if "maxLength" in node:
                out["maxLength"] = node["maxLength"]
        if node.get("nullable"):
            out = {"anyOf": [out, {"type": "null"}]}
        return out


def list_schema(item: dict[str, Any], url_pattern: str | None = None) -> dict[str, Any]:
    url: dict[str, Any] = {"type": "string"}
    if url_pattern:
        url["pattern"] = url_pattern
    return {
        "type": "object",
        "required": ["data", "has_more", "object", "url"],
        "properties": {
            "object": {"enum": ["list"]},
            "data": {"type": "array", "items": item},
            "has_more": {"type": "boolean"},
            "url": url,
        },
        "additionalProperties": False,
    }


def search_schema(item: dict[str, Any]) -> dict[str, Any]:
    """spec3.json's ``SearchResult`` envelope."""
    return {
        "type": "object",
        "required": ["data", "has_more", "next_page", "object", "url"],
        "properties": {
            "object": {"enum": ["search_result"]},
            "data": {"type": "array", "items": item},
            "has_more": {"type": "boolean"},
            "next_page": {"type": ["string", "null"]},
            "url": {"type": "string"},
            "total_count": {"type": "integer"},
        },
        "additionalProperties": False,
    }


def _class_name(ref: str) -> str:
    return "".join(p.capitalize() for p in ref.replace(".", "_").split("_"))


def _has_unknown_ref(node: Any) -> bool:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in spec()["schemas"]:
            return True
        return any(_has_unknown_ref(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_unknown_ref(v) for v in node)
    return False


def _annotations(cls: type | None) -> dict[str, Any]:
    if cls is None:
        return {}
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("stripe.") and not klass.__name__.startswith("_"):
            for k, v in getattr(klass, "__annotations__", {}).items():
                if k.startswith("_") or k == "OBJECT_NAME" or get_origin(v) is typing.ClassVar:
                    continue
                if str(v).startswith("typing.ClassVar"):
                    continue
                out[k] = v
    return out


def _optional(tp: Any) -> bool:
    return get_origin(tp) is Union and type(None) in get_args(tp)


# ---------------------------------------------------------------- the checks' schemas


@cache
def schema(kind: str) -> dict[str, Any]:
    """A JSON Schema (with its ``$defs``) for one kind of answer.

    ``kind``: an excerpt schema (``customer``, ``deleted_customer``, ``subscription``,
    ``price``, ``product``, ``error`` ...), ``py:<Class>`` for a stripe-python class,
    ``list:<kind>`` / ``search:<kind>`` for an envelope of them, or an excerpt
    operation (``GET /v1/customers``) for its response.
    """
    b = Builder()
    root = _root(b, kind)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": b.defs}


def _root(b: Builder, kind: str) -> dict[str, Any]:
    if kind.startswith("list:"):
        return list_schema(_root(b, kind[5:]))
    if kind.startswith("search:"):
        return search_schema(_root(b, kind[7:]))
    if kind.startswith("py:"):
        cls = stripe_class(kind[3:])
        assert cls is not None, kind
        return b.py_class(cls)
    ops = spec()["operations"]
    if kind in ops:
        resp = ops[kind]["response"]
        if "list_of" in resp:
            return list_schema(b.excerpt(resp["list_of"]), resp.get("url_pattern"))
        if "search_of" in resp:
            return search_schema(b.excerpt(resp["search_of"]))
        if "anyOf" in resp:
            return {"anyOf": [b.excerpt(n) for n in resp["anyOf"]]}
        return b.excerpt(resp["ref"])
    return b.excerpt(kind)


def violations(instance: Any, kind: str) -> list[str]:
    """Every way ``instance`` departs from ``kind``'s schema (empty: it conforms)."""
    validator = jsonschema.Draft202012Validator(schema(kind))
    out = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        out.append(f"{where}: {_short(err)}")
    return out


def _short(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed ", "not in Stripe: ")
    if err.validator == "anyOf" and err.context:
        # Explain the branch that fits best, never "is not of type 'null'".
        real = [
            e for e in err.context if not (e.validator == "type" and e.validator_value == "null")
        ]
        best = jsonschema.exceptions.best_match(real or err.context)
        where = "/".join(str(p) for p in best.relative_path)
        return (where + ": " if where else "") + _short(best)
    return err.message[:200]


# ---------------------------------------------------------------- parameters


def param_class(method: str, path: str) -> type | None:
    """stripe-python 16's params TypedDict for a request (``GET /v1/customers/cus_1``)."""
    parts = [p for p in path.split("?")[0].strip("/").split("/") if p][1:]
    if not parts:
        return None
    resource = "".join(w.capitalize() for w in _singular(parts[0]).split("_"))
    verb: str | None
    rest = parts[1:]
    if not rest:
        verb = {"GET": "List", "POST": "Create"}.get(method)
    elif rest == ["search"]:
        verb = "Search"
    elif len(rest) == 1:
        verb = {"GET": "Retrieve", "POST": "Update", "DELETE": "Delete"}.get(method)
        if resource in ("Subscription",) and method == "DELETE":
            verb = "Cancel"
    elif len(rest) == 2:
        sub = "".join(w.capitalize() for w in rest[1].split("_"))
        if method == "POST" and rest[1] in ("confirm", "cancel", "capture", "attach", "pay"):
            verb = sub
        else:
            return None
    else:
        return None
    if verb is None:
        return None
    import stripe.params as sp

    return getattr(sp, f"{resource}{verb}Params", None)


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("ses"):
        return word[:-2]
    return word[:-1] if word.endswith("s") else word


def param_exists(method: str, path: str, name: str) -> bool:
    """Whether the wire parameter ``name`` (``items[0][price]``) exists for the request."""
    ops = spec()["operations"]
    template = _template(path)
    top, nested = _split_param(name)
    if f"{method} {template}" in ops:
        return top in ops[f"{method} {template}"]["params"]
    cls = param_class(method, path)
    if cls is None:
        return False
    hints = _td_keys(cls)
    if top not in hints:
        return False
    return _nested_ok(hints[top], nested)


def _td_keys(cls: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(getattr(cls, "__mro__", (cls,))):
        out.update(getattr(klass, "__annotations__", {}))
    return out


def _nested_ok(tp: Any, nested: list[str]) -> bool:
    """Follow ``[0][price]`` into the TypedDicts behind a parameter's annotation."""
    if not nested:
        return True
    key, rest = nested[0], nested[1:]
    for cand in _unwrap(tp):
        if get_origin(cand) in (list, typing.List) and key.isdigit() or key == "":  # noqa: UP006
            inner = get_args(cand)
            if inner and _nested_ok(inner[0], rest):
                return True
            if not inner:
                return True
        keys = _td_keys(cand) if isinstance(cand, type) else {}
        if keys and key in keys and _nested_ok(keys[key], rest):
            return True
        if get_origin(cand) in (dict, typing.Dict):  # noqa: UP006
            return True
    return False


def _unwrap(tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Union:
        return [x for a in get_args(tp) for x in _unwrap(a)]
    if str(origin).endswith("NotRequired") or str(origin).endswith("Required"):
        return _unwrap(get_args(tp)[0])
    if isinstance(tp, ForwardRef | str):
        import stripe.params as sp

        text = tp.__forward_arg__ if isinstance(tp, ForwardRef) else tp
        out: list[Any] = []
        for alt in text.split("|"):
            alt = alt.strip()
            if alt.startswith(("Dict[", "UntypedStripeObject[")):
                out.append(dict[str, Any])  # free-form keys (metadata ...)
            elif alt.startswith("List[") and alt.endswith("]"):
                out.append(list[_unwrap(alt[5:-1])[0] if _unwrap(alt[5:-1]) else Any])  # type: ignore[misc]
            elif getattr(sp, alt, None) is not None:
                out.append(getattr(sp, alt))
        return out
    return [tp]


def _split_param(name: str) -> tuple[str, list[str]]:
    head, _, rest = name.partition("[")
    nested = [p for p in ("[" + rest).replace("]", "").split("[")[1:]] if rest else []
    return head, nested


def _template(path: str) -> str:
    parts = path.split("?")[0].strip("/").split("/")
    names = {"customers": "{customer}"}
    out = []
    for i, p in enumerate(parts):
        if i >= 2 and i % 2 == 0 and p != "search":
            out.append(names.get(parts[i - 1], "{id}"))
        else:
            out.append(p)
    return "/" + "/".join(out)
