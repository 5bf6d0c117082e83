"""Benchmark the reconciliation diff at a million accounts, in memory.

Builds N accounts over 50 shops, their Stripe customers and subscriptions with
about 5% planted drift of every kind, then times ``reconcile_customers`` and
``reconcile_subscriptions``. Prints a small table and writes
``benchmarks/results/bench_diff.json``.

    .venv/bin/python benchmarks/bench_diff.py [N]

``run(n_accounts)`` returns the same numbers as a dict, for other scripts.
Targets on a 2-core machine: under 10 s per diff and 3 GiB peak RSS.
"""

from __future__ import annotations

import gc
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from opskit.core import frames
from opskit.core.reconcile import reconcile_customers, reconcile_subscriptions

N_SHOPS = 50
UNCONFIGURED_SHOP = 49  # mode "none"
FAILING_SHOP = 50  # in shop_errors
RESULTS = Path(__file__).parent / "results" / "bench_diff.json"

# per-account planted case, about 5% each; the rest match
CUSTOMER_CASES = [
    "email",
    "name",
    "no_id",
    "missing",
    "deleted",
    "wrong_shop",
    "duplicate",
]
SUBSCRIPTION_CASES = ["status", "price", "missing", "orphan", "multiple", "none"]


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def _rss_mib() -> float:
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a test dependency
        return float("nan")
    return psutil.Process().memory_info().rss / 1024 / 1024


def _ids(prefix: str, numbers: np.ndarray) -> pd.Series:
    return prefix + pd.Series(numbers).astype("string")


def _case(rng: np.random.Generator, n: int, cases: list[str]) -> np.ndarray:
    """-1 for 'no drift', else the index of the planted case (each about 5%)."""
    draw = rng.random(n)
    case = np.full(n, -1, dtype=np.int8)
    for i in range(len(cases)):
        case[(draw >= 0.05 * i) & (draw < 0.05 * (i + 1))] = i
    return case


def build(n_accounts: int, seed: int = 7) -> dict[str, object]:
    """Shops, accounts, customers and subscriptions frames, in the frames.py specs."""
    rng = np.random.default_rng(seed)
    n = n_accounts
    idx = np.arange(n)
    shop = (idx % N_SHOPS + 1).astype(np.int64)

    modes = ["test"] * N_SHOPS
    modes[UNCONFIGURED_SHOP - 1] = "none"
    shops = frames.conform(
        pd.DataFrame(
            {
                "shop_id": np.arange(1, N_SHOPS + 1),
                "shop_name": [f"Shop {i}" for i in range(1, N_SHOPS + 1)],
                "mode": modes,
                "key_problem": ["no secret key" if m == "none" else None for m in modes],
            }
        ),
        frames.SHOPS,
    )
    shop_errors = {FAILING_SHOP: "Stripe API error 500 (request req_bench)"}

    # ---- accounts and customers
    case = _case(rng, n, CUSTOMER_CASES)
    cid = _ids("cus_", idx)
    email = _ids("user", idx) + "@example.com"
    name = _ids("User ", idx)

    acc_cid = cid.copy()
    acc_cid[case == CUSTOMER_CASES.index("no_id")] = pd.NA
    dup = np.flatnonzero(case == CUSTOMER_CASES.index("duplicate"))
    # link the id of the previous account of the same shop
    acc_cid.iloc[dup] = cid.iloc[np.maximum(dup - N_SHOPS, 0)].to_numpy()
    acc_email = email.copy()
    e = case == CUSTOMER_CASES.index("email")
    acc_email[e] = "OLD." + email[e]
    acc_name = name.copy()
    nm = case == CUSTOMER_CASES.index("name")
    acc_name[nm] = name[nm] + " Jr"
    # some harmless noise the normalization must absorb
    noisy = rng.random(n) < 0.05
    acc_email[noisy & ~e] = ("  " + acc_email[noisy & ~e].str.upper() + " ").to_numpy()

    # ---- subscriptions (each account records its own, with planted drift)
    scase = _case(rng, n, SUBSCRIPTION_CASES)
    sid = _ids("sub_", idx)
    acc_sid = sid.copy()
    acc_sid[scase == SUBSCRIPTION_CASES.index("orphan")] = pd.NA
    acc_sid[scase == SUBSCRIPTION_CASES.index("none")] = pd.NA
    acc_status = pd.Series("active", index=idx, dtype="string")
    acc_status[scase == SUBSCRIPTION_CASES.index("status")] = "past_due"
    acc_price = pd.Series("price_basic", index=idx, dtype="string")
    acc_price[scase == SUBSCRIPTION_CASES.index("price")] = "price_old"

    accounts = pd.DataFrame(
        {
            "account_id": pd.array(idx + 1, dtype="Int64"),
            "shop_id": pd.array(shop, dtype="Int64"),
            "email": acc_email,
            "name": acc_name,
            "stripe_customer_id": acc_cid,
            "stripe_subscription_id": acc_sid,
            "subscription_status": acc_status,
            "stripe_price_id": acc_price,
        }
    )
    accounts = frames.conform(accounts, frames.ACCOUNTS)

    keep = case != CUSTOMER_CASES.index("missing")
    cus_shop = shop.copy()
    wrong = case == CUSTOMER_CASES.index("wrong_shop")
    cus_shop[wrong] = cus_shop[wrong] % (N_SHOPS - 2) + 1  # another usable shop
    deleted = case == CUSTOMER_CASES.index("deleted")
    n_orphans = n // 20
    orphan_no = np.arange(n, n + n_orphans)
    orphan_email = _ids("user", orphan_no) + "@example.com"
    # half the orphans share an email with an unlinked account (a link suggestion)
    no_id = np.flatnonzero(case == CUSTOMER_CASES.index("no_id"))
    k = min(len(no_id), n_orphans // 2)
    orphan_email.iloc[:k] = email.iloc[no_id[:k]].to_numpy()
    customers = pd.DataFrame(
        {
            "shop_id": pd.array(
                np.concatenate([cus_shop[keep], (orphan_no % N_SHOPS + 1)]), dtype="Int64"
            ),
            "stripe_customer_id": pd.concat(
                [cid[keep], _ids("cus_orphan_", orphan_no)], ignore_index=True
            ),
            "email": pd.concat([email[keep], orphan_email], ignore_index=True),
            "name": pd.concat([name[keep], _ids("Orphan ", orphan_no)], ignore_index=True),
            "deleted": pd.array(
                np.concatenate([deleted[keep], np.zeros(n_orphans, dtype=bool)]), dtype="boolean"
            ),
        }
    )
    customers.loc[customers["deleted"].to_numpy(dtype=bool), ["email", "name"]] = pd.NA
    customers = frames.conform(customers, frames.CUSTOMERS)

    skeep = scase != SUBSCRIPTION_CASES.index("missing")
    skeep &= scase != SUBSCRIPTION_CASES.index("none")
    multi = np.flatnonzero(scase == SUBSCRIPTION_CASES.index("multiple"))
    subscriptions = pd.DataFrame(
        {
            "shop_id": pd.array(np.concatenate([shop[skeep], shop[multi]]), dtype="Int64"),
            "stripe_subscription_id": pd.concat(
                [sid[skeep], _ids("sub_extra_", multi)], ignore_index=True
            ),
            "stripe_customer_id": pd.concat([cid[skeep], cid.iloc[multi]], ignore_index=True),
            "status": pd.Series(
                np.concatenate(
                    [np.full(int(skeep.sum()), "active"), np.full(len(multi), "trialing")]
                ),
                dtype="string",
            ),
            "stripe_price_id": "price_basic",
        }
    )
    subscriptions = frames.conform(subscriptions, frames.SUBSCRIPTIONS)
    return {
        "shops": shops,
        "accounts": accounts,
        "customers": customers,
        "subscriptions": subscriptions,
        "shop_errors": shop_errors,
    }


def run(n_accounts: int = 1_000_000) -> dict:
    """Build the data, time both diffs; returns rows, seconds and memory figures."""
    t0 = time.perf_counter()
    data = build(n_accounts)
    build_s = time.perf_counter() - t0
    gc.collect()
    rss_inputs = _rss_mib()

    results: dict = {
        "n_accounts": n_accounts,
        "n_customers": len(data["customers"]),  # type: ignore[arg-type]
        "n_subscriptions": len(data["subscriptions"]),  # type: ignore[arg-type]
        "n_shops": N_SHOPS,
        "build_seconds": round(build_s, 3),
        "rss_after_build_mib": round(rss_inputs, 1),
        "pandas": pd.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "diffs": {},
    }
    for label, fn, stripe_frame in (
        ("customers", reconcile_customers, "customers"),
        ("subscriptions", reconcile_subscriptions, "subscriptions"),
    ):
        t = time.perf_counter()
        report = fn(
            data["shops"],  # type: ignore[arg-type]
            data["accounts"],  # type: ignore[arg-type]
            data[stripe_frame],  # type: ignore[arg-type]
            shop_errors=data["shop_errors"],  # type: ignore[arg-type]
        )
        seconds = time.perf_counter() - t
        counts = report["status"].value_counts(sort=False)
        results["diffs"][label] = {
            "report_rows": len(report),
            "seconds": round(seconds, 3),
            "peak_rss_mib": round(_peak_rss_mib(), 1),
            "statuses": {str(k): int(v) for k, v in counts.items()},
        }
        del report
        gc.collect()
    results["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return results


def main(argv: list[str]) -> int:
    n = int(argv[1].replace("_", "")) if len(argv) > 1 else 1_000_000
    res = run(n)
    print(
        f"{n:,} accounts, {res['n_customers']:,} customers, "
        f"{res['n_subscriptions']:,} subscriptions over {N_SHOPS} shops "
        f"(built in {res['build_seconds']:.1f} s, RSS {res['rss_after_build_mib']:.0f} MiB)"
    )
    print(f"{'diff':<15}{'report rows':>13}{'seconds':>10}{'peak RSS MiB':>15}")
    for label, d in res["diffs"].items():
        print(f"{label:<15}{d['report_rows']:>13,}{d['seconds']:>10.2f}{d['peak_rss_mib']:>15.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
