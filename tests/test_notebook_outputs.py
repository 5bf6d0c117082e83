"""Executed notebooks show no secret key anywhere in their outputs.

nbval compares chosen cells; this runs every notebook against the demo and
searches every output of every cell (text, HTML, errors) and the panels' widget
state for the demo's raw keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opskit import demo
from opskit.demo import shopbackend
from tests.leakcheck import assert_no_secrets

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("nb-data")
    url = f"sqlite:///{data / 'demo.sqlite'}"
    with demo.start(url) as session:
        yield {
            **os.environ,
            "OPSKIT_DATA_DIR": str(data),
            "OPSKIT_DATABASE_URL": url,
            "OPSKIT_STRIPE_API_BASE": session.sandbox.url,
        }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_outputs_hold_no_secret_key(
    path: Path, demo_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    for name, value in demo_env.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this environment
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {}}).execute()
    outputs = [json.dumps(cell.get("outputs", [])) for cell in nb.cells]
    outputs.append(json.dumps(nb.metadata.get("widgets", {})))  # the panels' widget state
    assert any("Northwind Coffee" in text for text in outputs)  # it did show the shops
    keys = [s.secret_key.strip() for s in shopbackend.build_plan().shops if s.secret_key]
    assert_no_secrets(outputs, keys)
