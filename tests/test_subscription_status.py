"""The one table of what each Stripe subscription status means (live, billing, ends at)."""

from __future__ import annotations

import pandas as pd
import pytest

from opskit.core import subscription_status as ss

PERIOD_END = 1_900_000_000  # the current period's end (epoch seconds)
# status -> (live, bills again when nothing is scheduled)
TABLE = {
    "active": (True, True),
    "trialing": (True, True),
    "past_due": (True, True),
    "unpaid": (True, False),
    "paused": (True, False),
    "incomplete": (True, False),
    "incomplete_expired": (False, False),
    "canceled": (False, False),
}


def test_the_table_covers_every_status_stripe_documents() -> None:
    assert set(TABLE) == set(ss.STATUSES)
    assert set(ss.STATUSES) == ss.LIVE | ss.ENDED and not ss.LIVE & ss.ENDED


@pytest.mark.parametrize("status", list(TABLE))
@pytest.mark.parametrize(
    "schedule",
    ["renews", "cancel_at_period_end", "cancel_at_before_period_end", "cancel_at_after_period_end"],
)
def test_each_status_and_schedule_has_one_defined_effect(status: str, schedule: str) -> None:
    live, billing = TABLE[status]
    sub: dict = {"status": status, "items": {"data": [{"current_period_end": PERIOD_END}]}}
    if schedule == "cancel_at_period_end":
        sub["cancel_at_period_end"] = True
    elif schedule == "cancel_at_before_period_end":
        sub["cancel_at"] = PERIOD_END - 86_400
    elif schedule == "cancel_at_after_period_end":
        sub["cancel_at"] = PERIOD_END + 30 * 86_400
    if not live:
        sub["ended_at"] = 1_700_000_000
    assert ss.is_live_one(sub) is live
    # a subscription scheduled to end before it bills again is no double-billing risk
    bills_again = billing and schedule in ("renews", "cancel_at_after_period_end")
    assert ss.counts_for_multiple_active_one(sub) is bills_again
    ends = ss.ends_at_one(sub)
    if not live:
        assert ends == pd.Timestamp(1_700_000_000, unit="s", tz="UTC")
    elif schedule == "renews":
        assert ends is None
    elif schedule == "cancel_at_period_end":
        assert ends == pd.Timestamp(PERIOD_END, unit="s", tz="UTC")
    else:
        assert ends == pd.Timestamp(sub["cancel_at"], unit="s", tz="UTC")


def test_vectorized_form_matches_and_handles_case_blanks_and_unknown_statuses() -> None:
    status = pd.Series([" Active", "PAUSED", "", None, "something_new"], dtype="string")
    assert list(ss.is_live(status)) == [True, True, False, False, True]
    assert list(ss.counts_for_multiple_active(status)) == [True, False, False, False, False]
    cancel_at = pd.Series([pd.Timestamp("2030-01-01", tz="UTC")] + [pd.NaT] * 4)
    # cancel_at set and the period end unknown: it ends, so it does not count
    assert list(ss.counts_for_multiple_active(status, cancel_at=cancel_at))[0] is False
    assert ss.ends_at(status, cancel_at=cancel_at).iloc[0] == pd.Timestamp("2030-01-01", tz="UTC")
    assert str(ss.ends_at(status).dtype) == "datetime64[ns, UTC]"
