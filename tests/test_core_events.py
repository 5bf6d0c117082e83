"""The pure event rules: which write an event batch means, and when order is unknowable."""

from __future__ import annotations

from opskit.core.events import Stored, full_read_reason, plan_changes


def ev(id_: str, type_: str, created: int, oid: str = "cus_1", **obj: object) -> dict:
    return {
        "id": id_,
        "type": type_,
        "created": created,
        "data": {"object": {"id": oid, "object": type_.split(".")[0], **obj}},
    }


def test_newest_wins_older_are_stale_or_superseded_and_seen_are_duplicates() -> None:
    events = [
        ev("evt_c", "customer.updated", 30, name="c"),
        ev("evt_a", "customer.updated", 10, name="a"),
        ev("evt_b", "customer.updated", 20, name="b"),
        ev("evt_x", "customer.updated", 25, name="x"),
    ]
    plan = plan_changes(events, {("customer", "cus_1"): Stored(15, "evt_old")}, seen={"evt_x"})
    assert plan.outcomes == {
        "evt_a": ("stale", "older than the local copy"),
        "evt_b": ("superseded", "a newer event of the batch"),
        "evt_c": ("applied", None),
        "evt_x": ("duplicate", "already processed"),
    }
    change = plan.changes[("customer", "cus_1")]
    assert (change.version, change.event_id, change.body["name"]) == (30, "evt_c", "c")
    assert [e["id"] for e in plan.order] == ["evt_a", "evt_b", "evt_c"]  # oldest first


def test_a_same_second_tie_is_resolved_by_rereading() -> None:
    events = [ev("evt_1", "customer.updated", 50, name="?"), ev("evt_2", "customer.updated", 50)]
    plan = plan_changes(events, {})
    assert {o for o, _ in plan.outcomes.values()} == {"refetch"}
    assert plan.changes[("customer", "cus_1")].refetch
    # A tie with the stored copy's second, by another event, is just as unknowable.
    one = plan_changes([ev("evt_3", "customer.updated", 50)], {("customer", "cus_1"): Stored(50)})
    assert one.changes[("customer", "cus_1")].refetch
    same = plan_changes(
        [ev("evt_3", "customer.updated", 50)], {("customer", "cus_1"): Stored(50, "evt_3")}
    )
    assert not same.changes[("customer", "cus_1")].refetch


def test_a_deleted_customer_stays_deleted_and_money_events_are_findings_only() -> None:
    events = [
        ev("evt_d", "customer.deleted", 40),
        ev("evt_u", "customer.updated", 40, name="late"),
        ev("evt_p", "payment_intent.succeeded", 41, oid="pi_1", customer="cus_1"),
        ev("evt_i", "invoice.created", 41, oid="in_1"),
    ]
    plan = plan_changes(events, {})
    assert plan.changes[("customer", "cus_1")].body == {
        "id": "cus_1", "object": "customer", "deleted": True,
    }  # fmt: skip
    assert plan.outcomes["evt_u"][0] == "superseded"
    assert plan.outcomes["evt_p"] == ("recorded", None)
    assert plan.outcomes["evt_i"][0] == "ignored"
    assert set(plan.changes) == {("customer", "cus_1")}


def test_full_read_is_needed_without_a_cursor_or_past_retention() -> None:
    now = 2_000_000_000
    assert "no cursor" in (full_read_reason(None, now) or "")
    assert full_read_reason(now - 29 * 86400, now) is None
    assert "30 days" in (full_read_reason(now - 31 * 86400, now) or "")
