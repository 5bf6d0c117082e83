"""nbval runs of the notebooks (``make notebooks``): one demo for every kernel.

Starts the demo sandbox and database once in the pytest process and hands them
to the kernels through OPSKIT_DATABASE_URL / OPSKIT_STRIPE_API_BASE (kernels
inherit the environment), as ``make lab`` does; the notebooks only read, so
they can share it. OPSKIT_DATA_DIR points at a temporary folder: a run never
touches the developer's own demo data.
"""

from __future__ import annotations

import os
import tempfile

import pytest

_state: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    from opskit import demo

    tmp = tempfile.TemporaryDirectory(prefix="opskit-nbval-")
    saved = {
        k: os.environ.get(k)
        for k in (
            "OPSKIT_DATA_DIR",
            "OPSKIT_DATABASE_URL",
            "OPSKIT_STRIPE_API_BASE",
            "OPSKIT_ALLOW_LIVE_WRITES",
        )
    }
    os.environ.pop("OPSKIT_ALLOW_LIVE_WRITES", None)
    os.environ["OPSKIT_DATA_DIR"] = tmp.name
    url = f"sqlite:///{tmp.name}/nbval-demo.sqlite"
    session = demo.start(url=url)
    os.environ["OPSKIT_DATABASE_URL"] = url
    os.environ["OPSKIT_STRIPE_API_BASE"] = session.sandbox.url
    _state.update(tmp=tmp, session=session, saved=saved)


def pytest_unconfigure(config: pytest.Config) -> None:
    session = _state.pop("session", None)
    if session is not None:
        session.stop()  # type: ignore[attr-defined]
    saved = _state.pop("saved", {})
    for key, value in saved.items():  # type: ignore[attr-defined]
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    tmp = _state.pop("tmp", None)
    if tmp is not None:
        tmp.cleanup()  # type: ignore[attr-defined]
