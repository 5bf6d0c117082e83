"""A real browser on a real notebook: Voila serves notebooks/01_reconcile.ipynb on
127.0.0.1, Debian's chromium (headless, through Playwright) clicks Run, and the
findings table and the chart must appear.

The kernel has no OPSKIT_DATABASE_URL, so ``open_ops()`` starts its own demo
(sandbox + database in a temporary OPSKIT_DATA_DIR): the path a new user takes.
The screenshot goes to the test's tmp folder; with OPSKIT_SCREENSHOTS=1 (or when
it is missing) also to docs/panel_reconcile.png for the README.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser import browser_page, chromium_path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"voila exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"voila did not listen on 127.0.0.1:{port} within {timeout}s")


@contextmanager
def voila_server(notebook: Path, data_dir: Path, log: Path) -> Iterator[str]:
    """Serve ``notebook`` with Voila on 127.0.0.1; yields its URL; stops it (and its kernels)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    env["OPSKIT_DATA_DIR"] = str(data_dir)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    voila = Path(sys.executable).with_name("voila")
    cmd = [str(voila), str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=notebook.parent, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_for_port(port, proc, timeout=30)
            yield f"http://127.0.0.1:{port}/"
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # our own session: voila and its kernels
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def save_screenshot(page: object, name: str, tmp_path: Path) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    target = DOCS / name
    if os.environ.get("OPSKIT_SCREENSHOTS") == "1" or not target.exists():
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, target)
    return shot


def test_reconcile_notebook_in_a_real_browser(tmp_path: Path) -> None:
    chromium_path()  # skips (or fails under CI=true) with a clear message when missing
    started = time.monotonic()
    log = tmp_path / "voila.log"
    with (
        voila_server(NOTEBOOKS / "01_reconcile.ipynb", tmp_path / "data", log) as url,
        browser_page(viewport=(1400, 2400)) as page,
    ):
        page.goto(url, timeout=90_000)
        panel = page.locator(".opskit-reconcile")
        panel.wait_for(timeout=60_000)
        assert page.locator(".opskit-live").first.is_visible()  # Legacy Outlet has a live key
        assert page.locator(".opskit-findings").count() == 0  # nothing before Run

        panel.locator("button", has_text="Run").click()

        table = page.locator(".opskit-findings table")
        table.wait_for(timeout=60_000)
        assert table.locator("tbody tr").count() > 100
        assert "wrong_shop" in table.inner_text()
        chart = panel.locator("img").first
        chart.wait_for(timeout=10_000)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 300", arg=chart.element_handle()
        )
        assert "Legacy Outlet" in panel.locator(".opskit-message").inner_text()  # shop_error

        shot = save_screenshot(page, "panel_reconcile.png", tmp_path)
    assert shot.stat().st_size > 20_000
    assert time.monotonic() - started < 60, log.read_text(errors="replace")[-2000:]


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
