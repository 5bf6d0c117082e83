"""Matching orders to payments in the pure core: ties, near-misses, determinism, one-to-one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from opskit.core import frames
from opskit.core.payments import MatchRules, match_orders, reconcile_payments

T = pd.Timestamp("2026-11-10 12:00", tz="UTC")


def _orders(*rows: tuple[Any, ...]) -> pd.DataFrame:
    cols = ["order_id", "shop_id", "account_id", "status", "amount", "currency", "created_at"]
    return frames.conform(pd.DataFrame(list(rows), columns=cols), frames.MONEY_ORDERS)


def _pays(*rows: tuple[Any, ...]) -> pd.DataFrame:
    cols = ["stripe_payment_intent_id", "shop_id", "account_id", "amount", "currency",
            "created_at", "metadata_order_id"]  # fmt: skip
    df = pd.DataFrame(list(rows), columns=cols)
    df["amount_received"] = df["amount"]
    df["amount_refunded"] = 0
    df["status"] = "succeeded"
    return frames.conform(df, frames.PAYMENTS)


SHOPS = pd.DataFrame({"shop_id": ["s1"], "shop_name": ["Shop"], "mode": ["test"]})


def _report(orders: pd.DataFrame, pays: pd.DataFrame, **rules: Any) -> pd.DataFrame:
    return reconcile_payments(SHOPS, orders, pays, rules=MatchRules(**rules))


def _by_order(report: pd.DataFrame) -> dict[str, tuple[str, Any]]:
    rows = report[report["order_id"].notna()]
    return {
        o: (str(s), p if isinstance(p, str) else None)
        for o, s, p in zip(
            rows["order_id"], rows["status"], rows["stripe_payment_intent_id"], strict=True
        )  # fmt: skip
    }


def test_exact_tie_is_ambiguous_for_both_orders_and_names_the_runner_up() -> None:
    orders = _orders(("o1", "s1", "a", "complete", 1500, "eur", T),
                     ("o2", "s1", "a", "complete", 1500, "eur", T))  # fmt: skip
    pays = _pays(("pi_1", "s1", "a", 1500, "eur", T, None),
                 ("pi_2", "s1", "a", 1500, "eur", T, None))  # fmt: skip
    rep = _report(orders, pays)
    assert {o: s for o, (s, _) in _by_order(rep).items()} == {"o1": "ambiguous", "o2": "ambiguous"}
    row = rep[rep["order_id"] == "o1"].iloc[0]
    assert {row["stripe_payment_intent_id"], row["runner_up_payment_intent_id"]} == {"pi_1", "pi_2"}
    assert row["score"] == row["runner_up_score"]
    assert "paid_no_order" not in set(rep["status"])  # the candidates are not orphans


def test_two_payments_for_one_order_within_the_margin_is_ambiguous() -> None:
    orders = _orders(("o1", "s1", "a", "complete", 1000, "eur", T))
    pays = _pays(("pi_1", "s1", "a", 1000, "eur", T + pd.Timedelta(minutes=1), None),
                 ("pi_2", "s1", "a", 1000, "eur", T + pd.Timedelta(minutes=3), None))  # fmt: skip
    rep = _report(orders, pays)
    assert _by_order(rep)["o1"][0] == "ambiguous"
    assert set(rep.loc[rep["order_id"].isna(), "status"]) == {"ambiguous"}


def test_near_miss_outside_the_margin_matches_the_closer_and_shows_the_runner_up() -> None:
    # Same account; one payment has the exact amount, the other is 3% off.
    orders = _orders(("o1", "s1", "a", "complete", 1000, "eur", T))
    pays = _pays(("pi_exact", "s1", "a", 1000, "eur", T + pd.Timedelta(hours=1), None),
                 ("pi_near", "s1", "a", 1030, "eur", T, None))  # fmt: skip
    rep = _report(orders, pays)
    row = rep[rep["order_id"] == "o1"].iloc[0]
    assert (row["status"], row["stripe_payment_intent_id"]) == ("match", "pi_exact")
    assert row["runner_up_payment_intent_id"] == "pi_near"
    assert row["score"] - row["runner_up_score"] >= 0.05
    assert list(rep.loc[rep["order_id"].isna(), "status"]) == ["paid_no_order"]


def test_a_one_cent_difference_is_an_amount_mismatch_not_a_miss() -> None:
    orders = _orders(("o1", "s1", "a", "complete", 1999, "eur", T))
    pays = _pays(("pi_1", "s1", "a", 2000, "eur", T, None))
    assert _by_order(_report(orders, pays))["o1"] == ("amount_mismatch", "pi_1")


def test_unlinked_payment_matches_only_on_exact_amount_and_close_time() -> None:
    orders = _orders(("o1", "s1", "a", "complete", 1000, "eur", T),
                     ("o2", "s1", "b", "complete", 2000, "eur", T))  # fmt: skip
    pays = _pays(("pi_guest", "s1", None, 1000, "eur", T + pd.Timedelta(minutes=5), None),
                 ("pi_far", "s1", None, 2000, "eur", T + pd.Timedelta(days=3), None))  # fmt: skip
    rep = _report(orders, pays)
    assert _by_order(rep) == {"o1": ("match", "pi_guest"), "o2": ("order_unpaid", None)}
    assert rep.loc[rep["stripe_payment_intent_id"] == "pi_far", "status"].tolist() == [
        "paid_no_order"
    ]


def test_other_shop_and_other_account_never_match() -> None:
    shops = pd.DataFrame({"shop_id": ["s1", "s2"], "shop_name": ["A", "B"], "mode": ["test"] * 2})
    orders = _orders(("o1", "s1", "a", "complete", 1000, "eur", T))
    pays = _pays(("pi_s2", "s2", "a", 1000, "eur", T, None),
                 ("pi_b", "s1", "b", 1000, "eur", T, None))  # fmt: skip
    rep = reconcile_payments(shops, orders, pays)
    assert _by_order(rep)["o1"] == ("order_unpaid", None)


def test_metadata_wins_and_a_second_claim_is_a_double_payment() -> None:
    orders = _orders(("o1", "s1", "a", "complete", 1000, "eur", T))
    pays = _pays(("pi_late", "s1", "a", 1000, "eur", T + pd.Timedelta(hours=2), "o1"),
                 ("pi_later", "s1", "a", 1000, "eur", T + pd.Timedelta(hours=3), "o1"),
                 ("pi_close", "s1", "a", 1000, "eur", T, None),
                 ("pi_bad", "s1", "a", 1000, "eur", T, "o404"))  # fmt: skip
    rep = _report(orders, pays)
    row = rep[rep["order_id"] == "o1"].iloc[0]
    assert (row["stripe_payment_intent_id"], row["match_method"]) == ("pi_late", "metadata")
    orphans = rep[rep["order_id"].isna()].set_index("stripe_payment_intent_id")
    assert "double payment" in orphans.loc["pi_later", "detail"]
    assert "o404" in orphans.loc["pi_bad", "detail"]
    assert orphans.loc["pi_close", "status"] == "paid_no_order"


def test_currency_mismatch_and_window() -> None:
    orders = _orders(("o1", "s1", "a", "complete", 1000, "eur", T))
    pays = _pays(("pi_usd", "s1", "a", 1000, "usd", T, None))
    assert _by_order(_report(orders, pays))["o1"] == ("currency_mismatch", "pi_usd")
    late = _pays(("pi_1", "s1", "a", 1000, "eur", T + pd.Timedelta(days=2, seconds=1), None))
    assert _by_order(_report(orders, late))["o1"] == ("order_unpaid", None)
    assert _by_order(_report(orders, late, window=timedelta(days=3)))["o1"][0] == "match"


def _random(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    accounts = rng.integers(0, n // 3 + 1, n).astype(str)
    amounts = rng.choice([500, 1000, 1500, 2000], n)
    times = T + pd.to_timedelta(rng.integers(0, 5 * 86400, n), unit="s")
    orders = _orders(*[(f"o{i}", "s1", accounts[i], "complete", int(amounts[i]), "eur", times[i])
                       for i in range(n)])  # fmt: skip
    jitter = pd.to_timedelta(rng.integers(0, 600, n), unit="s")
    pays = _pays(*[(f"pi_{i}", "s1", accounts[i] if i % 7 else None, int(amounts[i]), "eur",
                    times[i] + jitter[i], None) for i in range(n)])  # fmt: skip
    return orders, pays


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matching_is_deterministic_and_one_to_one_in_any_row_order(seed: int) -> None:
    orders, pays = _random(300, seed)
    base = _report(orders, pays)
    shuffled = _report(
        orders.sample(frac=1, random_state=seed), pays.sample(frac=1, random_state=seed + 9)
    )
    pd.testing.assert_frame_equal(base, shuffled)
    m = match_orders(orders, pays)
    taken = m.order_payment[(m.order_payment >= 0) & ~m.order_ambiguous]
    assert len(set(taken.tolist())) == len(taken)
    assert (m.payment_order[m.payment_order >= 0] >= 0).all()
    # Every order and every paid payment is accounted for exactly once.
    assert base["order_id"].dropna().is_unique
    named = base["stripe_payment_intent_id"].dropna()
    ambiguous_orders = base[(base["status"] == "ambiguous") & base["order_id"].notna()]
    assert named.drop(ambiguous_orders.index, errors="ignore").is_unique
