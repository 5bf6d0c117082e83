"""The demo's seeded world is the shops' past: no shop's event stream holds it.

A fresh demo keeps its documented snapshots (40 fresh, 12 stale) through any number
of refreshes with no Stripe activity (no event read, nothing rewritten, no change
reported); changes made after the seed (the demo's planted day) emit their events
and a refresh picks exactly those up. The sandbox's seeding path records no events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import stripe

from opskit import demo
from opskit.demo import DemoSession
from opskit.demo import shopbackend as sb
from opskit.demo.changes import plant_changes
from opskit.sandbox import Sandbox


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSession]:
    url = f"sqlite:///{tmp_path_factory.mktemp('quiet-demo') / 'demo.sqlite'}"
    with demo.start(url) as s:
        yield s


def _snapshots(s: DemoSession) -> dict[str, int]:
    report = s.ops.reconcile_customers(progress=False)
    return {str(k): int(v) for k, v in report["snapshot_status"].value_counts().items()}


def test_a_fresh_demo_has_no_events_and_keeps_its_stale_snapshots(session: DemoSession) -> None:
    assert session.sandbox is not None
    keys = [s.secret_key.strip() for s in sb.build_plan().shops if s.reachable and s.secret_key]
    assert all(session.sandbox.events(k) == [] for k in keys)  # seeded: the past, no events
    assert _snapshots(session) == {"fresh": 40, "stale": 12}
    first = session.ops.refresh(progress=False)
    assert set(first.shops["mode"].dropna()) >= {"full_read"}
    for _ in range(2):  # refreshes with no Stripe activity: nothing happened, nothing changes
        again = session.ops.refresh(progress=False)
        assert int(again.shops["events_read"].sum()) == 0
        assert int(again.shops["snapshots"].sum()) == 0
        assert again.changes.empty
    assert _snapshots(session) == {"fresh": 40, "stale": 12}  # the stale ones stay stale

    planted = plant_changes(session.ops, session.api_base)  # a day of changes after the seed
    after = session.ops.refresh(progress=False)
    assert len(planted) == 4
    assert {"customer.updated", "customer.deleted", "customer.created"} <= set(
        after.changes["event_type"].astype(str)
    )
    shop = planted[0].split(":")[0].removeprefix("shop ")
    assert set(after.changes["shop_id"].astype(str)) == {shop}  # only the shop they happened in


def test_the_sandbox_seeding_path_records_no_events(
    sandbox: Sandbox,
    fresh_key: str,
    stripe_client: Callable[[str], stripe.StripeClient],
) -> None:
    client = stripe_client(fresh_key)
    with sandbox.seeding():
        quiet = client.v1.customers.create(params={"email": "past@example.com"})
        client.v1.customers.update(quiet.id, params={"email": "past2@example.com"})
    assert sandbox.events(fresh_key) == []
    assert client.v1.customers.retrieve(quiet.id).email == "past2@example.com"  # but it exists
    client.v1.customers.update(quiet.id, params={"email": "now@example.com"})
    assert [e["type"] for e in sandbox.events(fresh_key)] == ["customer.updated"]
