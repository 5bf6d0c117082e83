"""Benchmark the money: matching a million orders, and what the money report costs in requests.

(a) Matching, in memory: N orders over 100 shops and their payments (about 90%
    paid exactly, 3% off by a little, 3% by unlinked customers, 2% in ties, 2%
    extra payments, some orders unpaid), then ``reconcile_payments`` (candidate
    search, scoring, assignment and the whole report). Seconds and peak RSS.
(b) Requests: S shops, each with P card payments spread over 30 days (some
    refunded), automatic daily payouts, in the sandbox (no latency); then
    ``ops.money_report`` for the period. Requests per shop against the minimum
    pages the same data needs (``ceil(n/100)`` per listing and per payout, plus
    the balance).

    .venv/bin/python benchmarks/bench_money.py [N] [S] [P]

Writes ``benchmarks/results/bench_money.json``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from opskit.core import frames
from opskit.core.payments import reconcile_payments

RESULTS = Path(__file__).parent / "results" / "bench_money.json"
N_SHOPS = 100
T0 = pd.Timestamp("2026-11-01", tz="UTC")


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def make_frames(n: int, seed: int = 15) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shops, N orders and about N payments with every kind of case planted."""
    rng = np.random.default_rng(seed)
    shop = rng.integers(0, N_SHOPS, n)
    account = rng.integers(0, n // 3, n)
    amount = rng.integers(5, 500, n) * 100 - rng.integers(0, 2, n)
    created = T0.value + rng.integers(0, 30 * 86_400, n).astype(np.int64) * 1_000_000_000
    order_id = np.char.add("o", np.arange(n).astype(str))
    orders = pd.DataFrame(
        {
            "order_id": pd.array(order_id, dtype="string"),
            "shop_id": pd.array(shop.astype(str), dtype="string"),
            "account_id": pd.array(account.astype(str), dtype="string"),
            "status": pd.array(np.where(rng.random(n) < 0.97, "complete", "pending"), "string"),
            "amount": pd.array(amount, dtype="Int64"),
            "currency": pd.array(["eur"] * n, dtype="string"),
            "created_at": pd.to_datetime(created, utc=True),
            "completed_at": pd.to_datetime(created, utc=True),
        }
    )
    case = rng.random(n)
    paid = case < 0.96  # 4% of orders unpaid
    idx = np.flatnonzero(paid)
    p_amount = amount[idx].copy()
    off = case[idx] < 0.03
    p_amount[off] += rng.integers(1, 50, off.sum())  # near-misses
    p_account = account[idx].astype(str).astype(object)
    p_account[(case[idx] >= 0.03) & (case[idx] < 0.06)] = None  # unlinked customers
    p_created = created[idx] + rng.integers(5, 3_600, len(idx)) * 1_000_000_000
    ties = (case[idx] >= 0.06) & (case[idx] < 0.08)
    extra = rng.choice(len(idx), n // 50, replace=False)  # extra payments
    pays = pd.DataFrame(
        {
            "stripe_payment_intent_id": np.char.add("pi_", idx.astype(str)),
            "shop_id": shop[idx].astype(str),
            "account_id": p_account,
            "amount": p_amount,
            "created_at": p_created,
        }
    )
    twins = pays[ties].assign(
        stripe_payment_intent_id=lambda d: d["stripe_payment_intent_id"] + "_twin"
    )
    more = pays.iloc[extra].assign(
        stripe_payment_intent_id=lambda d: d["stripe_payment_intent_id"] + "_extra",
        created_at=lambda d: d["created_at"] + 86_400 * 10**9,
    )
    pays = pd.concat([pays, twins, more], ignore_index=True)
    m = len(pays)
    payments = pd.DataFrame(
        {
            "shop_id": pd.array(pays["shop_id"], dtype="string"),
            "stripe_payment_intent_id": pd.array(pays["stripe_payment_intent_id"], "string"),
            "account_id": pd.array(pays["account_id"], dtype="string"),
            "status": pd.array(["succeeded"] * m, dtype="string"),
            "amount": pd.array(pays["amount"], dtype="Int64"),
            "amount_received": pd.array(pays["amount"], dtype="Int64"),
            "amount_refunded": pd.array(np.zeros(m, np.int64), dtype="Int64"),
            "currency": pd.array(["eur"] * m, dtype="string"),
            "created_at": pd.to_datetime(pays["created_at"].to_numpy(np.int64), utc=True),
        }
    )
    payments = frames.conform(payments, frames.PAYMENTS)
    shops = pd.DataFrame(
        {
            "shop_id": pd.array([str(i) for i in range(N_SHOPS)], dtype="string"),
            "shop_name": pd.array([f"Shop {i}" for i in range(N_SHOPS)], dtype="string"),
            "mode": pd.array(["test"] * N_SHOPS, dtype="string"),
        }
    )
    return shops, orders, payments


def bench_matching(n: int) -> dict[str, object]:
    shops, orders, payments = make_frames(n)
    before = _peak_rss_mib()
    t, cpu = time.perf_counter(), time.process_time()
    report = reconcile_payments(shops, orders, payments)
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    counts = report["status"].value_counts().to_dict()
    return {
        "orders": len(orders),
        "payments": len(payments),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),  # less sensitive to other jobs on a shared machine
        "load_average_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "rss_before_matching_mib": round(before, 1),
        "statuses": {str(k): int(v) for k, v in counts.items() if v},
    }


def bench_requests(shops: int, per_shop: int) -> dict[str, object]:
    from localstripe import resources as ls

    import opskit
    from opskit.backend.db import create_reference_tables
    from opskit.sandbox import Sandbox, money

    sb = Sandbox()
    sb.start()
    tmp = tempfile.TemporaryDirectory(prefix="opskit-bench-money-")
    try:
        url = f"sqlite:///{tmp.name}/bench.sqlite"
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        create_reference_tables(engine)
        keys = [f"sk_test_benchmoney{i}x{int(time.time())}" for i in range(shops)]
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO shops (id, name, stripe_secret_key) VALUES (:i, :n, :k)"),
                [{"i": i + 1, "n": f"Shop {i + 1}", "k": k} for i, k in enumerate(keys)],
            )
        engine.dispose()
        start = int((pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=32)).timestamp())
        rng = np.random.default_rng(7)

        def populate(store: object) -> None:
            cus = ls.Customer(email="bench@example.com")
            for i in range(per_shop):
                pm = ls.PaymentMethod(
                    type="card",
                    card={
                        "number": "4242424242424242",
                        "exp_month": 12,
                        "exp_year": 2034,
                        "cvc": "123",
                    },  # fmt: skip
                )
                ls.PaymentMethod._api_attach(pm.id, customer=cus.id)
                pi = ls.PaymentIntent._api_create(
                    amount=int(rng.integers(5, 300)) * 100, currency="eur", customer=cus.id,
                    payment_method=pm.id, confirm=True,
                )  # fmt: skip
                money.backdate(store, pi.id, start + int(i * 30 * 86_400 / per_shop))  # type: ignore[arg-type]
                if i % 20 == 0:
                    r = ls.Refund(payment_intent=pi.id, amount=100)
                    money.backdate(store, r.id, start + int(i * 30 * 86_400 / per_shop) + 3600)  # type: ignore[arg-type]

        for key in keys:
            sb.with_store(key, populate)
        ops = opskit.connect(url, stripe_api_base=sb.url)
        since = pd.Timestamp(start, unit="s", tz="UTC")
        t = time.perf_counter()
        report = ops.money_report(since=since, progress=False)
        seconds = time.perf_counter() - t
        per_shop_rows = {
            sid: {"requests": report.requests[sid], "minimum_pages": report.minimum[sid]}
            for sid in sorted(report.requests)
        }
        payouts = report.payouts
        return {
            "shops": shops,
            "payments_per_shop": per_shop,
            "seconds": round(seconds, 2),
            "per_shop": per_shop_rows,
            "payouts": len(payouts),
            "payouts_itemized_ok": int((payouts["check"] == "itemized_ok").sum()),
            "max_ratio": round(
                max(v["requests"] / v["minimum_pages"] for v in per_shop_rows.values()), 3
            ),
        }
    finally:
        sb.stop()
        tmp.cleanup()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    shops = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    per_shop = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000
    res = {
        "machine": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "command": f"python benchmarks/bench_money.py {n} {shops} {per_shop}",
        "requests": bench_requests(shops, per_shop),
        "matching": bench_matching(n),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    m, r = res["matching"], res["requests"]
    print(f"(a) matching {m['orders']:,} orders vs {m['payments']:,} payments: "  # type: ignore[index]
          f"{m['seconds']} s ({m['cpu_seconds']} s CPU, load {m['load_average_1m']}), "
          f"peak RSS {m['peak_rss_mib']} MiB")  # type: ignore[index]  # fmt: skip
    print(f"(b) money report, {shops} shops x {per_shop} payments: {r['seconds']} s")  # type: ignore[index]
    for sid, v in r["per_shop"].items():  # type: ignore[index]
        print(f"    shop {sid}: {v['requests']} requests, minimum {v['minimum_pages']} pages")
    print(f"    payouts {r['payouts']}, itemized_ok {r['payouts_itemized_ok']}")  # type: ignore[index]


if __name__ == "__main__":
    main()
