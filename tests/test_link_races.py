"""link_customer and create_customer under concurrency, and their refusals, on SQLite and
PostgreSQL through the sandbox (found by a tester: two links of one customer at the same
moment both succeeded, two creates for one account both sent).

Races are made deterministic without mocking what is tested: a barrier wrapped around the
database's ``load_accounts`` holds both threads right after their first check, the moment
a check-then-write race needs; a create "in flight" is an open intent in the audit table,
exactly what another process's write leaves there.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from opskit.backend import audit
from opskit.backend.db import Database
from opskit.common.config import Settings
from opskit.common.context import Context
from opskit.common.exceptions import DuplicateCustomer, InputError
from opskit.ops import Ops
from opskit.sandbox import Sandbox
from opskit.writes import inflight
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key


class World:
    def __init__(self, url: str, sandbox: Sandbox, key: str) -> None:
        self.url, self.sandbox, self.key = url, sandbox, key
        self.opened: list[Ops] = []
        self.ops = self.new_ops()

    def new_ops(self) -> Ops:
        """Another connection, as another notebook or process would have."""
        settings = Settings(database_url=self.url, stripe_api_base=self.sandbox.url)
        ops = Ops(Context(db=Database(self.url), settings=settings))
        self.opened.append(ops)
        return ops

    def customer(self, email: str) -> str:
        return self.sandbox.seed(self.key, "customers", [{"email": email}])[0]

    def link(self, account_id: int) -> str | None:
        _, raw = self.ops.ctx.db.account(account_id)
        details = (raw if isinstance(raw, dict) else json.loads(raw)) if raw else {}
        return details.get("stripe_customer_id")

    def set_link(self, account_id: int, cid: str) -> None:
        t = self.ops.ctx.db.accounts_table
        value: Any = {"stripe_customer_id": cid}
        if not isinstance(t.c.details.type, sa.JSON):
            value = json.dumps(value)
        with self.ops.ctx.db.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == account_id).values(details=value))

    def creates(self) -> int:
        return sum(
            1
            for r in self.sandbox.requests(self.key)
            if r.method == "POST" and r.path == "/v1/customers"
        )


@pytest.fixture
def w(db_url: str, sandbox: Sandbox) -> Iterator[World]:
    key = make_key("race")
    insert(
        db_url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": key}],
        accounts=[
            {"id": 10, "shop_id": 1, "email": "Ann@X.io", "name": "Ann", "details": {}},
            {"id": 11, "shop_id": 1, "email": "ann@x.io", "name": "Ann", "details": None},
            {"id": 12, "shop_id": 1, "email": "cy@x.io", "name": "Cy", "details": {}},
        ],
    )  # fmt: skip
    world = World(db_url, sandbox, key)
    yield world
    for ops in world.opened:
        ops.ctx.db.engine.dispose()


def _in_threads(*calls: Any) -> list[tuple[str, Any]]:
    """Run each call in its own thread; ``("ok", result)`` or ``("err", exception)`` each."""
    out: list[tuple[str, Any]] = [("none", None)] * len(calls)

    def run(i: int, fn: Any) -> None:
        try:
            out[i] = ("ok", fn())
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test reads
            out[i] = ("err", exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def _hold_after_first_check(ops: Ops, barrier: threading.Barrier) -> None:
    """Both threads meet right after their first read of the shop's accounts."""
    db = ops.ctx.db
    original, first = db.load_accounts, [True]

    def load_accounts(*args: Any, **kwargs: Any) -> Any:
        frame = original(*args, **kwargs)
        if first[0]:
            first[0] = False
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return frame

    db.load_accounts = load_accounts  # type: ignore[method-assign]


# -- 2: two links of one customer at the same moment ------------------------------------------


def test_concurrent_links_of_one_customer_link_it_once(w: World) -> None:
    cid = w.customer("ann@x.io")
    barrier = threading.Barrier(2, timeout=5)
    ops1, ops2 = w.new_ops(), w.new_ops()
    _hold_after_first_check(ops1, barrier)
    _hold_after_first_check(ops2, barrier)
    results = _in_threads(
        lambda: ops1.link_customer(10, cid, actor="race"),
        lambda: ops2.link_customer(11, cid, actor="race"),
    )
    kinds = sorted(kind for kind, _ in results)
    assert kinds == ["err", "ok"], results
    (refused,) = [exc for kind, exc in results if kind == "err"]
    assert isinstance(refused, InputError) and f"{cid} is already linked by account" in str(refused)
    assert [w.link(10), w.link(11)].count(cid) == 1  # never a duplicate_link
    rows = w.ops.audit_log(action="customer.link")
    assert sorted(rows["outcome"]) == ["ok", "refused"]


# -- 3: creates for one email at the same moment ----------------------------------------------


def test_a_create_in_flight_for_the_same_email_is_waited_for(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process is creating account 11's customer (same person: ann@x.io).
    other = audit.begin_intent(
        w.ops.ctx.db, actor="other", shop_id="1", action="customer.create",
        target="account:11", params={"email": "ann@x.io"}, idempotency_key="k-other",
    )  # fmt: skip
    monkeypatch.setattr(inflight, "IN_FLIGHT_WAIT", 0.3)
    with pytest.raises(DuplicateCustomer, match=f"audit_id {other}") as info:
        w.ops.create_customer(10, actor="ana")
    assert "opskit recover" in info.value.guidance
    assert w.creates() == 0 and w.link(10) is None
    assert w.ops.audit_log(limit=1)["outcome"].iloc[0] == "refused"
    # Once the other write ends (here: it failed, nothing made), the create goes ahead.
    monkeypatch.setattr(inflight, "IN_FLIGHT_WAIT", 10.0)
    ends = threading.Timer(0.4, lambda: audit.complete(w.ops.ctx.db, other, outcome="error"))
    started = time.monotonic()
    ends.start()
    created = w.ops.create_customer(10, actor="ana")
    ends.join()
    assert time.monotonic() - started >= 0.4  # it waited for the other write
    assert w.creates() == 1 and w.link(10) == created["id"]


def test_two_different_creates_for_one_account_make_one_customer(w: World) -> None:
    w.sandbox.configure(key=w.key, latency=0.1)  # both calls in flight at once
    try:
        ops1, ops2 = w.new_ops(), w.new_ops()
        results = _in_threads(
            lambda: ops1.create_customer(10, actor="race", nonce="first"),
            lambda: ops2.create_customer(10, actor="race", nonce="second"),
        )
    finally:
        w.sandbox.reset_config()
    assert sorted(kind for kind, _ in results) == ["err", "ok"], results
    (made,) = [c for kind, c in results if kind == "ok"]
    (refused,) = [exc for kind, exc in results if kind == "err"]
    assert isinstance(refused, InputError) and "nothing created" in str(refused)
    assert w.creates() == 1 and w.link(10) == made["id"]  # no orphan second customer


def test_the_duplicate_message_quotes_the_customers_own_email(w: World) -> None:
    cid = w.customer("ann@x.io")  # account 10's email is Ann@X.io
    with pytest.raises(DuplicateCustomer) as info:
        w.ops.create_customer(10, actor="ana")
    assert f"{cid} with the email 'ann@x.io'" in info.value.message


# -- 5: a mode_mismatch link is never replaced, force or not -----------------------------------


def test_force_never_replaces_a_link_to_the_other_mode(w: World) -> None:
    (live,) = w.sandbox.seed_other_mode(w.key, "customers", [{"email": "ann@x.io"}])
    w.set_link(10, live)
    cid = w.customer("ann@x.io")
    with pytest.raises(InputError, match="live mode"):
        w.ops.link_customer(10, cid, actor="ana", force=True)
    assert w.link(10) == live
    assert w.ops.audit_log(limit=1)["outcome"].iloc[0] == "refused"
    with pytest.raises(InputError, match="live mode"):  # the same rule as create_customer's
        w.ops.create_customer(10, actor="ana", force=True, allow_duplicate=True)
    assert w.link(10) == live and w.creates() == 0


# -- 7: what same_email_customers lists for a linked account -----------------------------------


def test_same_email_customers_lists_likely_duplicates_of_a_linked_account(w: World) -> None:
    own, spare = w.customer("ann@x.io"), w.customer("ann@x.io")
    w.set_link(10, own)
    assert [c["id"] for c in w.ops.same_email_customers(10)] == [spare]
