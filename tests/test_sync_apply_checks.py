"""``sync --apply`` holds every row of an (edited) plan file to the planner's rules, asking
the shop's Stripe now: a forged link, a forged or outdated snapshot, an impossible time is
refused (reported and audited) with the rest of its account, and every other row applies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import stripe
from typer.testing import CliRunner

import opskit
from opskit.faces.cli import app
from opskit.sandbox import Sandbox
from tests import shopbackend
from tests.conftest import fresh_sqlite_url
from tests.fixtures_sandbox import make_key


@dataclass
class W:
    url: str
    sandbox: Sandbox
    shop: str
    other_shop: str
    acc: dict[str, str]  # label -> account id
    cus: dict[str, str]  # label -> customer id

    def ops(self) -> opskit.Ops:
        return opskit.connect(self.url, stripe_api_base=self.sandbox.url)

    def details(self) -> dict[str, dict[str, Any]]:
        df = self.ops().accounts()
        return {str(a): json.loads(d) if isinstance(d, str) else {}
                for a, d in zip(df["account_id"], df["details"], strict=True)}  # fmt: skip


def make_world(tmp: Path, sandbox: Sandbox) -> W:
    url = fresh_sqlite_url(tmp)
    shopbackend.create(url)
    shop, other = uuid.uuid4(), uuid.uuid4()
    keys = {shop: make_key("chkA"), other: make_key("chkB")}
    shopbackend.insert(url, shops=[
        {"id": s, "name": f"Shop {n}", "stripe_secret_key": keys[s]}
        for n, s in ((1, shop), (2, other))
    ])  # fmt: skip
    a = stripe.StripeClient(keys[shop], base_addresses={"api": sandbox.url})
    b = stripe.StripeClient(keys[other], base_addresses={"api": sandbox.url})
    cus = {
        "one": a.v1.customers.create({"email": "one@x.io"}).id,
        "two": a.v1.customers.create({"email": "two@x.io"}).id,
        "orphan": a.v1.customers.create({"email": "three@x.io"}).id,  # account three's email
        "attacker": a.v1.customers.create({"email": "attacker@evil.io"}).id,
        "taken": a.v1.customers.create({"email": "four@x.io"}).id,
        "foreign": b.v1.customers.create({"email": "three@x.io"}).id,
    }
    acc = {k: str(uuid.uuid4()) for k in ("one", "two", "three", "four")}
    links = {"one": cus["one"], "two": cus["two"], "three": None, "four": cus["taken"]}
    shopbackend.insert(url, accounts=[
        {"id": uuid.UUID(acc[k]), "shop_id": shop, "name": f"{k}@x.io",
         "details": {"stripe_customer_id": links[k]} if links[k] else {}}
        for k in acc
    ])  # fmt: skip
    return W(url, sandbox, str(shop), str(other), acc, cus)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sandbox: Sandbox) -> Iterator[W]:
    yield make_world(tmp_path_factory.mktemp("apply-checks"), sandbox)


@pytest.fixture(scope="module")
def plan(world: W) -> pd.DataFrame:
    p = world.ops().sync_plan(progress=False)
    rows = {(str(a), str(k)) for a, k in zip(p["account_id"], p["key"], strict=True)}
    assert (world.acc["three"], "stripe_customer_id") in rows  # the certain link
    assert (world.acc["one"], "stripe_customer") in rows  # missing snapshots
    assert (world.acc["one"], "stripe_synced_at") in rows
    return p


def _edit(plan: pd.DataFrame, account: str, key: str, value: str | None) -> pd.DataFrame:
    p = plan.copy()
    mask = (p["account_id"] == account) & (p["key"] == key)
    assert mask.sum() == 1
    p.loc[mask, "new_value"] = value
    return p


def _snapshot(world: W, label: str, plan: pd.DataFrame) -> dict[str, Any]:
    p = plan[(plan["account_id"] == world.acc[label]) & (plan["key"] == "stripe_customer")]
    return dict(json.loads(p["new_value"].item()))


Edit = Callable[[W, pd.DataFrame], tuple[pd.DataFrame, str, str]]
FORGED: dict[str, Edit] = {
    # name: edit -> (plan, the account refused, a word of the reason)
    "link to a customer that does not exist": lambda w, p: (
        _edit(p, w.acc["three"], "stripe_customer_id", "cus_ATTACKER"), "three", "is not in"),
    "link to a customer of another email": lambda w, p: (
        _edit(p, w.acc["three"], "stripe_customer_id", w.cus["attacker"]), "three", "email"),
    "link to a customer another account links": lambda w, p: (
        _edit(p, w.acc["three"], "stripe_customer_id", w.cus["taken"]), "three", "linked by"),
    "link to another shop's customer": lambda w, p: (
        _edit(p, w.acc["three"], "stripe_customer_id", w.cus["foreign"]), "three", "is not in"),
    "link that is not an id": lambda w, p: (
        _edit(p, w.acc["three"], "stripe_customer_id", "hello"), "three", "not a Stripe"),
    "snapshot of another customer": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_customer",
              json.dumps({"id": "cus_other", "email": "x@evil"})), "one", "links"),
    "snapshot with an edited field": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_customer",
              json.dumps({**_snapshot(w, "one", p), "email": "x@evil.io"})), "one", "email"),
    "snapshot with an edited field outside the compared ones": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_customer",
              json.dumps({**_snapshot(w, "one", p), "metadata": {"x": "1"}})), "one", "differs"),
    "snapshot that is not JSON": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_customer", "{nope"), "one", "not JSON"),
    "synced_at infinity": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_synced_at", "infinity"), "one", "ISO-8601"),
    "synced_at in the future": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_synced_at", "2999-01-01T00:00:00+00:00"), "one",
        "can have been taken"),
    "synced_at without a zone": lambda w, p: (
        _edit(p, w.acc["one"], "stripe_synced_at", "2026-01-01T00:00:00"), "one", "zone"),
    "snapshot without its time": lambda w, p: (
        p[~((p["account_id"] == w.acc["one"]) & (p["key"] == "stripe_synced_at"))],
        "one", "one sync"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(FORGED))
def test_a_forged_row_is_refused_with_its_account_and_nothing_written(
    world: W, plan: pd.DataFrame, name: str
) -> None:
    edited, label, word = FORGED[name](world, plan)
    aid = world.acc[label]
    before = world.details()
    ops = world.ops()
    audits = len(ops.audit_log())
    # Only the forged account's rows, so the world stays as it is for the next case.
    mine = edited[edited["account_id"] == aid]
    result = ops.apply_sync(mine, actor="ann")
    assert (result["outcome"] == "refused").all(), result[["key", "outcome", "detail"]]
    assert word in " ".join(result["detail"].astype(str)), result["detail"].tolist()
    assert world.details() == before  # nothing half-written
    log = ops.audit_log()
    assert len(log) == audits + len(mine) and set(log.head(len(mine))["outcome"]) == {"refused"}


def test_the_plan_as_made_applies_and_a_forged_account_does_not_stop_the_others(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    w = make_world(tmp_path, sandbox)
    plan = w.ops().sync_plan(progress=False)
    forged = _edit(plan, w.acc["one"], "stripe_synced_at", "infinity")
    path = tmp_path / "plan.csv"
    forged.to_csv(path, index=False)
    result = CliRunner().invoke(
        app, ["sync", "--apply", str(path), "--actor", "ann"],
        env={"OPSKIT_DATABASE_URL": w.url, "OPSKIT_STRIPE_API_BASE": sandbox.url,
             "COLUMNS": "250"},
    )  # fmt: skip
    assert result.exit_code == 1, result.output  # some rows not applied
    assert "refused" in result.stdout and "infinity" in result.stdout
    details = w.details()
    assert "stripe_customer" not in details[w.acc["one"]]  # its whole sync refused
    assert details[w.acc["three"]]["stripe_customer_id"] == w.cus["orphan"]
    assert details[w.acc["two"]]["stripe_customer"]["id"] == w.cus["two"]
    # The rest, as made, applied: applying it again changes nothing.
    again = w.ops().apply_sync(plan[plan["account_id"] != w.acc["one"]], actor="ann")
    assert set(again["outcome"]) == {"already_applied"}


def test_a_row_of_an_unknown_shop_does_not_let_the_others_go_unchecked(
    world: W, plan: pd.DataFrame
) -> None:
    forged = _edit(plan, world.acc["three"], "stripe_customer_id", world.cus["attacker"])
    forged = forged[forged["account_id"] == world.acc["three"]]
    stray = forged.assign(shop_id=str(uuid.uuid4()), account_id=str(uuid.uuid4()))
    before = world.details()
    result = world.ops().apply_sync(pd.concat([forged, stray], ignore_index=True), actor="ann")
    assert (result["outcome"] == "refused").all(), result[["shop_id", "outcome", "detail"]]
    assert world.details() == before
