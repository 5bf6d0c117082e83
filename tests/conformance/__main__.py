"""``python -m tests.conformance``: run every check once and print "N of M conform".

Runs against whatever ``opskit.sandbox`` is importable, so the same command
measures another checkout's sandbox (``PYTHONPATH=<its root>``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from opskit.sandbox import Sandbox
from tests.conformance.checks import run_param_checks, run_sandbox_checks


def main() -> int:
    with Sandbox() as sb:
        schema, behaviour = run_sandbox_checks(sb)
    families = {"schema": schema, "behaviour": behaviour}
    if "--no-params" not in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            families["params"] = run_param_checks(Path(tmp))
    total_ok = total = 0
    for family, results in families.items():
        ok = sum(1 for v in results.values() if not v)
        total_ok += ok if family != "params" else 0
        total += len(results) if family != "params" else 0
        print(f"{family}: {ok} of {len(results)} conform")
        for name, problems in sorted(results.items()):
            if problems:
                print(f"  x {name}")
                for p in problems[:8]:
                    print(f"      {p}")
                if len(problems) > 8:
                    print(f"      ... and {len(problems) - 8} more")
    print(f"sandbox (schema + behaviour): {total_ok} of {total} conform")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
