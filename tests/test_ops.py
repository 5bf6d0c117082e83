"""The public API end to end on the seeded demo: a fresh sandbox and a database to match."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from opskit import demo
from opskit.core import frames
from opskit.demo import DemoSession


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSession]:
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.sqlite'}"
    with demo.start(url) as s:
        yield s


def _raw_keys() -> list[str]:
    return [s.secret_key.strip() for s in demo.build_plan().shops if s.secret_key]


def test_demo_plants_every_status_of_both_reports(session: DemoSession) -> None:
    customers = session.ops.reconcile_customers(progress=False)
    subscriptions = session.ops.reconcile_subscriptions(progress=False)
    assert set(customers["status"]) == set(frames.CUSTOMER_STATUSES)
    assert set(subscriptions["status"]) == set(frames.SUBSCRIPTION_STATUSES)
    pd.testing.assert_frame_equal(customers.iloc[:0], frames.empty(frames.CUSTOMER_REPORT))
    pd.testing.assert_frame_equal(subscriptions.iloc[:0], frames.empty(frames.SUBSCRIPTION_REPORT))
    # The JPY shop's prices are whole yen, the others' minor units of their currency.
    subs = session.ops.subscriptions(progress=False)
    jpy = subs[subs["currency"] == "jpy"]
    assert not jpy.empty and set(jpy["unit_amount"]) <= {1200, 3800}


def test_one_rejected_shop_never_hides_or_stops_the_others(
    session: DemoSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="opskit"):
        customers = session.ops.customers(progress=False)
    assert set(customers["shop_id"]) == {1, 2, 3, 4}
    errors = customers.attrs["shop_errors"]
    # The demo's live shop: its key is never sent to the sandbox (plain http, not Stripe).
    assert list(errors) == [6] and "will not send it over plain http" in errors[6]
    assert any("shop 6" in r.getMessage() for r in caplog.records)
    text = repr(errors) + caplog.text + customers.to_csv()
    assert not [k for k in _raw_keys() if k in text]


def test_reports_follow_the_shop_filter(session: DemoSession) -> None:
    report = session.ops.reconcile_customers([2, 5], progress=False)
    assert set(report["shop_id"]) == {2, 5}
    assert set(report.loc[report["shop_id"] == 5, "status"]) == {"shop_not_configured"}
    summary = session.ops.summary(report)
    assert int(summary["total"].sum()) == len(report)


def test_repr_of_ops_shows_no_secret(session: DemoSession, tmp_path: Path) -> None:
    text = repr(session.ops) + repr(session.ops.ctx.db)
    assert "sqlite" in text and not [k for k in _raw_keys() if k in text]


def test_a_shop_filter_still_tells_wrong_shop_from_missing(session: DemoSession) -> None:
    full = session.ops.reconcile_customers(progress=False)
    only_one = session.ops.reconcile_customers([1], progress=False)
    assert set(only_one["shop_id"]) == {1}  # the other shops are asked, never reported
    wrong = only_one[only_one["status"] == "wrong_shop"]
    assert len(wrong) == 1 and "belongs to shop 2 (Blue Harbor Books)" in wrong["detail"].iloc[0]
    shop1 = full[full["shop_id"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(only_one, shop1)


def test_prices_are_listed_per_shop_in_minor_units(session: DemoSession) -> None:
    prices = session.ops.prices(progress=False)
    pd.testing.assert_frame_equal(prices.iloc[:0], frames.empty(frames.PRICES))
    assert sorted(prices.groupby("shop_id").size().items()) == [(1, 2), (2, 2), (3, 2), (4, 2)]
    kyoto = prices[prices["shop_id"] == 4]
    assert set(kyoto["currency"]) == {"jpy"} and set(kyoto["unit_amount"]) == {1200, 3800}
    assert set(prices["interval"]) == {"month"}
    assert list(prices.attrs["shop_errors"]) == [6]
