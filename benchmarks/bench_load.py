"""Loading 1,000,000 accounts through ops.accounts() from SQLite.

Target (issue 2): under 15 s and peak RSS under 2 GiB on a 2-core machine.
Run: .venv/bin/python benchmarks/bench_load.py [--accounts N]
Prints a table and writes benchmarks/results/bench_load.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables

RESULTS = Path(__file__).parent / "results"


def generate(path: Path, n_accounts: int, n_shops: int = 50, seed: int = 1) -> None:
    engine = sa.create_engine(f"sqlite:///{path}")
    create_reference_tables(engine)
    engine.dispose()
    rng = random.Random(seed)
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO shops VALUES (?, ?, ?, ?)",
        [
            (i, f"Shop {i}", f"sk_test_bench{i:04d}xxxxxxxxxxxx", None)
            for i in range(1, n_shops + 1)
        ],
    )
    statuses = ["active", "trialing", "past_due", "canceled"]

    def rows():
        for i in range(1, n_accounts + 1):
            details = {"stripe_customer_id": f"cus_{i:014d}", "note": "x" * rng.randint(0, 20)}
            if i % 3 == 0:
                details |= {
                    "stripe_subscription_id": f"sub_{i:014d}",
                    "subscription_status": statuses[i % 4],
                    "stripe_price_id": "price_basic",
                }
            # A few malformed rows, as real data has.
            text = "{broken" if i % 1000 == 0 else json.dumps(details)
            ts = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} 10:{i % 60:02d}:00.000000"
            yield (i, 1 + i % n_shops, f"user{i}@example.com", f"User {i}", text, ts, ts)

    con.executemany("INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
    con.commit()
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "load.sqlite"
        t0 = time.perf_counter()
        generate(path, args.accounts)
        gen_s = time.perf_counter() - t0
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ops = opskit.connect(f"sqlite:///{path}")
        t0 = time.perf_counter()
        accounts = ops.accounts()
        load_s = time.perf_counter() - t0
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        flagged = int(accounts["details_error"].notna().sum())
    result = {
        "accounts": len(accounts),
        "generate_s": round(gen_s, 2),
        "load_s": round(load_s, 2),
        "peak_rss_mib": round(peak_mib),
        "rss_before_load_mib": round(rss_before),
        "flagged_details": flagged,
        "target": "load < 15 s, peak RSS < 2048 MiB",
        "met": load_s < 15 and peak_mib < 2048,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_load.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'accounts':>10} {'load s':>8} {'peak RSS MiB':>13} {'flagged':>8} {'target met':>10}")
    met = str(result["met"])
    print(f"{result['accounts']:>10,} {load_s:>8.2f} {peak_mib:>13.0f} {flagged:>8} {met:>10}")


if __name__ == "__main__":
    main()
