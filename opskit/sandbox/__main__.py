"""``python -m opskit.sandbox --port N [--keys k1,k2] [--latency S] [--rate-limit N]``."""

from __future__ import annotations

import argparse

from opskit.sandbox.serve import serve_forever


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m opskit.sandbox", description=__doc__)
    p.add_argument("--port", type=int, default=12111)
    p.add_argument(
        "--keys", default=None, help="comma-separated keys to accept (default: any sk_test_)"
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    p.add_argument("--rate-limit", type=float, default=None, help="requests per second per key")
    p.add_argument("--rate-mode", choices=("pace", "reject"), default="pace")
    a = p.parse_args(argv)
    keys = [k.strip() for k in a.keys.split(",") if k.strip()] if a.keys else None
    serve_forever(a.port, keys, a.latency, a.rate_limit, a.rate_mode)


if __name__ == "__main__":
    main()
