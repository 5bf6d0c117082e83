"""A real headless Chromium for the browser tests (Debian's package, driven by Playwright).

Never downloads a browser. Where chromium is missing the tests skip with a clear
message, except under CI (CI=true), where .ci/run installs it and absence is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    )
    if path:
        return path
    message = "chromium not installed (apt-get install chromium); the browser test needs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " - under CI, .ci/run must install it")
    pytest.skip(message)


@contextmanager
def browser_page(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A Playwright page in Debian's chromium; requests off 127.0.0.1 are blocked."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})

            def only_loopback(route: Any) -> None:
                url = route.request.url
                if url.startswith(
                    ("http://127.0.0.1", "http://localhost", "file://", "data:", "blob:")
                ):
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", only_loopback)
            yield page
        finally:
            browser.close()
