"""The public surface is exactly what ARCHITECTURE.md promises, and nothing leaks in."""

from __future__ import annotations

import inspect

import opskit


def test_all_is_exactly_the_public_surface() -> None:
    public = {name for name in dir(opskit) if not name.startswith("_")}
    # Submodules imported as a side effect of loading the package are not API.
    modules = {n for n in public if inspect.ismodule(getattr(opskit, n))} - {"stripe_client"}
    assert public - modules == set(opskit.__all__) - {"__version__"}
    assert opskit.__all__ == sorted(opskit.__all__)


def test_ops_has_the_documented_methods() -> None:
    documented = [
        "shops", "accounts", "customers", "subscriptions", "prices", "reconcile_customers",
        "reconcile_subscriptions", "summary", "sync_plan", "apply_sync", "create_customer",
        "create_payment_intent", "create_subscription", "cancel_subscription", "audit_log",
        "refresh", "changes", "recover",
    ]  # fmt: skip
    for name in documented:
        assert callable(getattr(opskit.Ops, name)), name


def test_backend_helper_names() -> None:
    from opskit import stripe_client

    for name in ("configure_for_shop", "get_customer_id", "fetch_customer", "client_for_shop"):
        assert callable(getattr(stripe_client, name))
    assert stripe_client.StripeNotConfigured is opskit.StripeNotConfigured
    assert stripe_client.StripeCustomerMissing is opskit.StripeCustomerMissing


def test_every_error_has_guidance_and_input_errors_are_value_errors() -> None:
    assert issubclass(opskit.UnknownShop, ValueError)
    assert issubclass(opskit.InvalidAmount, ValueError)
    for name in opskit.__all__:
        obj = getattr(opskit, name)
        if inspect.isclass(obj) and issubclass(obj, opskit.OpskitError):
            assert obj.__doc__, name
            assert name in opskit.common.exceptions.__doc__  # drawn in the hierarchy tree
