"""The sandbox answers like Stripe: every check of tests.conformance.checks, one test each.

``python -m tests.conformance`` prints the same results as "N of M conform".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from opskit.sandbox import Sandbox
from tests.conformance import spec
from tests.conformance.checks import (
    KNOWN_NONCONFORMING,
    SANDBOX_CHECKS,
    Result,
    run_param_checks,
    run_sandbox_checks,
)


@pytest.fixture(scope="module")
def results(sandbox: Sandbox) -> Result:
    schema, behaviour = run_sandbox_checks(sandbox)
    return {**schema, **behaviour}


@pytest.fixture(scope="module")
def param_results(tmp_path_factory: pytest.TempPathFactory) -> Result:
    return run_param_checks(tmp_path_factory.mktemp("conformance"))


def test_every_check_ran(results: Result) -> None:
    assert sorted(results) == sorted(SANDBOX_CHECKS)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_NONCONFORMING[n]))
        if n in KNOWN_NONCONFORMING
        else n
        for n in SANDBOX_CHECKS
    ],
)
def test_sandbox_conforms(results: Result, name: str) -> None:
    assert results[name] == [], "\n".join(results[name])


def test_at_least_90_percent_conform(results: Result) -> None:
    ok = sum(1 for v in results.values() if not v)
    assert ok >= 0.9 * len(results), f"{ok} of {len(results)} conform"


def test_every_parameter_opskit_sends_exists_in_stripe(param_results: Result) -> None:
    sent = {" ".join(k.split(" ")[:2]) for k in param_results}
    # opskit's reads and writes really ran (else the check proves nothing).
    calls = ["GET /v1/customers", "GET /v1/subscriptions", "GET /v1/prices"]
    calls += ["POST /v1/customers", "POST /v1/payment_intents", "POST /v1/subscriptions"]
    for call in calls:
        assert call in sent, sorted(param_results)
    bad = {k: v for k, v in param_results.items() if v}
    assert bad == {}


# ---------------------------------------------------------------- the checker itself


def test_checker_flags_what_stripe_removed() -> None:
    """A drifted subscription (top-level period, plan, no item period) fails the check."""
    good = {
        "id": "sub_1", "object": "subscription",
        "automatic_tax": {"enabled": False, "disabled_reason": None, "liability": None},
        "billing_cycle_anchor": 1, "billing_mode": {"type": "flexible"}, "billing_schedules": [],
        "cancel_at_period_end": False, "collection_method": "charge_automatically",
        "created": 1, "currency": "eur", "customer": "cus_1", "discounts": [],
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {"object": "list", "data": [], "has_more": False, "url": "/v1/x"},
        "livemode": False, "metadata": {}, "start_date": 1, "status": "active",
    }  # fmt: skip
    assert spec.violations(good, "subscription") == []
    drifted = {**good, "current_period_end": 2, "plan": {}, "status": "ok"}
    problems = " ".join(spec.violations(drifted, "subscription"))
    assert "current_period_end" in problems and "'plan'" in problems and "'ok'" in problems
    item = {"id": "si_1", "object": "subscription_item", "created": 1}
    problems = " ".join(
        spec.violations({**good, "items": {**good["items"], "data": [item]}}, "subscription")
    )
    assert "current_period_end" in problems


def test_checker_knows_parameters() -> None:
    assert spec.param_exists("POST", "/v1/subscriptions", "items[0][price]")
    assert spec.param_exists("GET", "/v1/prices", "lookup_keys[0]")
    assert spec.param_exists("GET", "/v1/customers", "test_clock")
    assert not spec.param_exists("POST", "/v1/subscriptions", "plan")
    assert not spec.param_exists("POST", "/v1/subscriptions", "items[0][bogus]")
    assert not spec.param_exists("GET", "/v1/customers", "shop_id")


def test_spec_excerpt_copy_matches_the_shared_one() -> None:
    ours = Path(spec.__file__).with_name(spec.SPEC_NAME)
    assert ours.read_text() == spec.spec_path().read_text()
