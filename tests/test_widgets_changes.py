"""The "since last refresh" panel, driven like a user would, without a kernel."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from opskit.backend.db import create_reference_tables
from opskit.faces.widgets import changes_panel
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.test_refresh import World, connect


def test_refresh_shows_reads_gaps_and_changes_with_statuses(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()
    world = World(sandbox, url, n_shops=2, seed=5)
    cid = world.new_customer(1)
    world.new_customer(2)
    panel = changes_panel(connect(world))

    panel.refresh_button.click()
    assert panel.message.kind == "success", panel.message.text
    assert "full_read" in panel.shop_table.value and "no cursor yet" in panel.gap_table.value

    world.clients[1].v1.customers.update(cid, params={"email": "moved@example.com"})
    world.clients[1].v1.customers.create(params={"email": "nobody@example.com"})
    panel.refresh_button.click()
    assert panel.message.kind == "success", panel.message.text
    assert ">events<" in panel.shop_table.value and panel.gap_table.value == ""
    shown = panel.filtered()
    assert set(shown["status"]) == {"mismatch", "orphan_in_stripe"}
    assert "customer.updated" in panel.table.value
    panel.only_findings.value = False
    assert len(panel.filtered()) >= len(shown)

    panel.period.value = "24 hours"
    panel.show_button.click()
    assert "customer.updated" in panel.table.value
    for key in world.keys.values():
        assert key not in panel.shop_table.value + panel.table.value + panel.message.text

    panel.shops.value = ()
    panel.refresh_button.click()
    assert panel.message.kind == "warning"
