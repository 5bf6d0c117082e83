"""The demo's money report shows every payment status, and its sums hold."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from opskit import demo
from opskit.core import frames
from opskit.demo import DemoSession


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSession]:
    url = f"sqlite:///{tmp_path_factory.mktemp('money-demo') / 'demo.sqlite'}"
    with demo.start(url) as s:
        yield s


def test_demo_money_report_shows_every_status_in_every_reachable_shop(
    session: DemoSession,
) -> None:
    period = pd.Timestamp.now(tz="UTC").strftime("%Y-%m")
    report = session.ops.money_report(period=period, progress=False)
    payments = report.payments
    assert set(payments["status"].astype(str)) == set(frames.PAYMENT_STATUSES)
    shops = session.ops.shops()
    reachable = shops.loc[shops["mode"] == "test", "shop_id"].astype("string")
    for shop in reachable:
        mine = set(payments.loc[payments["shop_id"] == shop, "status"].astype(str))
        assert mine >= set(frames.PAYMENT_STATUSES) - {"shop_not_configured", "shop_error"}, shop
    # Every itemized payout adds up; one shop pays out by hand.
    payouts = report.payouts
    auto = payouts[payouts["itemized"].fillna(False)]
    assert len(auto) and (auto["check"] == "itemized_ok").all()
    assert (auto["itemized_net"] == auto["amount"]).all()
    assert (payouts["check"] == "manual_not_itemizable").any()
    assert {"category", "manual_payout", "unpaid_balance"} <= set(report.payout_report["line"])
    daily = report.daily_overview
    assert (daily["fees"] > 0).any() and (daily["failed_charge_count"] > 0).any()
