"""``python -m opskit.faces.lab`` (what ``make lab`` runs): JupyterLab on the notebooks, data ready.

Without ``OPSKIT_DATABASE_URL`` it first starts the demo (a local Stripe sandbox on
127.0.0.1, populated, and a demo SQLite database matching it) and hands both to
every kernel through ``OPSKIT_DATABASE_URL`` and ``OPSKIT_STRIPE_API_BASE``, so all
notebooks see the same data. With ``OPSKIT_DATABASE_URL`` set it starts JupyterLab
only, against that database and ``OPSKIT_STRIPE_API_BASE`` (unset: Stripe itself).

JupyterLab listens on 127.0.0.1 only and opens no browser: open the URL it prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["jupyter_command", "main", "notebooks_dir"]


def notebooks_dir() -> Path:
    """The repository's ``notebooks/`` folder (next to the package), else ``./notebooks``."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def jupyter_command(root: Path, port: int) -> list[str]:
    """The JupyterLab command line: loopback only, no browser, root-safe."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def main(argv: Sequence[str] | None = None) -> int:
    from opskit.common.config import DATABASE_URL_ENV, STRIPE_API_BASE_ENV

    p = argparse.ArgumentParser(
        prog="python -m opskit.faces.lab", description=__doc__.splitlines()[0]
    )
    p.add_argument("--port", type=int, default=8888, help="JupyterLab's port (default 8888)")
    p.add_argument("--notebooks", type=Path, default=None, help="folder to open")
    args = p.parse_args(argv)
    root = (args.notebooks or notebooks_dir()).resolve()
    env = dict(os.environ)
    session = None
    if not env.get(DATABASE_URL_ENV):
        from opskit import demo
        from opskit.demo import session as demo_session

        # The default demo world: the one `opskit demo --serve` and opskit.connect() use.
        session = demo_session.attach()
        if session is None:
            print("opskit: starting the demo Stripe sandbox and database…", flush=True)
            session = demo.start()
        url = session.ops.ctx.db.url
        env[DATABASE_URL_ENV] = url
        env[STRIPE_API_BASE_ENV] = session.api_base
        print(f"opskit: demo ready (sandbox {session.api_base}, database {url})", flush=True)
    else:
        where = env.get(STRIPE_API_BASE_ENV) or "Stripe itself"
        print(f"opskit: using {DATABASE_URL_ENV}; Stripe requests go to {where}", flush=True)
    proc = subprocess.Popen(jupyter_command(root, args.port), env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        if session is not None:
            session.stop()


if __name__ == "__main__":
    raise SystemExit(main())
