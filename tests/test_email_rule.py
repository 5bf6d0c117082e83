"""One email rule (NFKC, every invisible character, lower-case, ``ß`` != ``ss``) for the
customer report, orphan pairing and the sync plan, on the sandbox through stripe-python."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

import opskit
from opskit.backend.db import create_reference_tables
from opskit.core.normalize import email_key, email_keys, same_email
from opskit.sandbox import Sandbox
from tests.conftest import fresh_sqlite_url
from tests.dbutil import insert
from tests.fixtures_sandbox import make_key

# -- the rule itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("ann@x.io\u00a0", "ann@x.io", True),  # trailing no-break space
        ("\u00a0ann@x.io", "ann@x.io", True),  # leading no-break space
        (" Ann@X.IO\t", "ann@x.io", True),  # case, ASCII white space
        ("li.wei @x.io", "li.wei@x.io", True),  # a space inside: a typo
        ("eve\u200b@x.io", "eve@x.io", True),  # zero-width space
        ("\ufeffeve@x.io", "eve@x.io", True),  # byte order mark
        ("ｅｖｅ@x.io", "eve@x.io", True),  # full-width letters (NFKC)
        ("e\u0301@x.io", "\u00e9@x.io", True),  # decomposed vs composed accent
        ("straße@x.io", "strasse@x.io", False),  # ß is not ss
        ("STRASSE@x.io", "strasse@x.io", True),
        ("a+tag@x.io", "a@x.io", False),  # tags are the provider's business, kept
        ("", "", False),  # blank never equals anything
        (None, None, False),
    ],
)
def test_the_email_rule(a: Any, b: Any, same: bool) -> None:
    assert same_email(a, b) is same


def test_every_unicode_space_and_format_character_is_invisible() -> None:
    invisible = [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if chr(c).isspace() or unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp", "Cf")
    ]
    assert len(invisible) > 150
    keys = email_keys(pd.Series([f"a{ch}b@x.io" for ch in invisible], dtype="string"))
    assert set(keys) == {"ab@x.io"}
    assert email_key("Straße@X.io") == "straße@x.io"


# -- through the reports and the plan ----------------------------------------------------------


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path) -> Iterator[dict[str, Any]]:
    key = make_key("email")
    cus = dict(
        zip(
            ["ann", "bob", "strasse", "liwei", "eve", "dup_a", "dup_b", "old", "new_twin"],
            sandbox.seed(
                key,
                "customers",
                [
                    {"email": "ann@x.io"},
                    {"email": "bob@x.io"},
                    {"email": "strasse@x.io"},
                    {"email": "li.wei@x.io"},
                    {"email": "eve@x.io"},
                    {"email": "dup@x.io"},
                    {"email": "DUP@x.io "},  # the double submit at checkout
                    {"email": "new@x.io"},  # linked by account 11, whose local email is old
                    {"email": "new@x.io"},  # ... and its duplicate
                ],
            ),
            strict=True,
        )
    )
    url = fresh_sqlite_url(tmp_path)
    engine = sa.create_engine(url)
    create_reference_tables(engine)
    engine.dispose()

    def linked(cid: str) -> dict[str, str]:
        return {"stripe_customer_id": cid}

    insert(
        url,
        shops=[{"id": 1, "name": "One", "stripe_secret_key": key}],
        accounts=[
            {"id": 1, "shop_id": 1, "email": "ann@x.io\u00a0", "details": linked(cus["ann"])},
            {"id": 2, "shop_id": 1, "email": "\u00a0bob@x.io", "details": {}},
            {"id": 3, "shop_id": 1, "email": "straße@x.io", "details": {}},
            {"id": 4, "shop_id": 1, "email": "li.wei @x.io", "details": {}},
            {"id": 5, "shop_id": 1, "email": "ｅｖｅ\u200b@x.io", "details": {}},
            {"id": 10, "shop_id": 1, "email": "dup@x.io", "details": linked(cus["dup_a"])},
            {"id": 11, "shop_id": 1, "email": "old@x.io", "details": linked(cus["old"])},
        ],
    )
    ops = opskit.connect(url, stripe_api_base=sandbox.url)
    yield {"ops": ops, "cus": cus}
    ops.ctx.db.engine.dispose()


def _row(report: pd.DataFrame, **where: Any) -> dict[str, Any]:
    mask = pd.Series(True, index=report.index)
    for col, value in where.items():
        mask &= report[col].astype("string") == str(value)
    rows = report[mask]
    assert len(rows) == 1, f"{where}: {len(rows)} rows"
    return rows.iloc[0].to_dict()


def test_report_and_plan_use_one_rule_and_name_duplicates(world: dict[str, Any]) -> None:
    ops, cus = world["ops"], world["cus"]
    reports = ops.reconcile(progress=False)
    report = reports["customers"]
    # a trailing no-break space is no email mismatch
    assert _row(report, account_id=1)["status"] == "match"
    orphan = {
        c: _row(report, stripe_customer_id=cus[c]) for c in cus if c not in ("ann", "dup_a", "old")
    }
    assert {r["status"] for r in orphan.values()} == {"orphan_in_stripe"}
    # leading no-break space, a space inside, zero-width space and full-width letters pair
    assert orphan["bob"]["suggested_action"] == "link to account 2"
    assert orphan["liwei"]["suggested_action"] == "link to account 4"
    assert orphan["eve"]["suggested_action"] == "link to account 5"
    assert _row(report, account_id=2)["suggested_action"] == f"link to customer {cus['bob']}"
    # ß and ss are different addresses
    assert orphan["strasse"]["suggested_action"] == "review: no local account with this email"
    assert _row(report, account_id=3)["suggested_action"] == (
        "create a Stripe customer or link an existing one"
    )
    # the double submit: a duplicate of the customer account 10 links, and the row says so
    dup = orphan["dup_b"]
    assert dup["suggested_action"] == (
        f"review: likely a duplicate of customer {cus['dup_a']} (linked by account 10); "
        "keep one customer per person"
    )
    assert f"same email as customer {cus['dup_a']} (linked by account 10)" in dup["detail"]
    # a duplicate found through the linked customer's Stripe email (the local one is old)
    assert f"customer {cus['old']} (linked by account 11)" in orphan["new_twin"]["detail"]

    plan = ops.sync_plan(reports=reports)
    links = plan[plan["key"] == "stripe_customer_id"]
    proposed = {str(a): v for a, v in zip(links["account_id"], links["new_value"], strict=True)}
    assert proposed == {"2": cus["bob"], "4": cus["liwei"], "5": cus["eve"]}
    # the report and the plan agree on every certain link
    for c, row in orphan.items():
        action = row["suggested_action"]
        if action.startswith("link to account "):
            assert proposed[action.removeprefix("link to account ")] == cus[c]
        else:
            assert cus[c] not in proposed.values()
    applied = ops.apply_sync(links, actor="test")
    assert set(applied["outcome"]) == {"applied"}
    details = ops.accounts()
    got = dict(zip(details["account_id"].astype(str), details["details"], strict=True))
    assert json.loads(got["4"])["stripe_customer_id"] == cus["liwei"]


def test_the_panels_account_search_reads_emails_by_the_same_rule() -> None:
    from opskit.faces.widgets._common import account_matches

    accounts = pd.DataFrame(
        {
            "account_id": pd.array(["1", "2", "3"], dtype="string"),
            "email": pd.array(["li.wei @x.io", "\u00a0ann@x.io", "straße@x.io"], dtype="string"),
            "name": pd.array([None, None, None], dtype="string"),
        }
    )

    def found(search: str) -> list[str]:
        return list(account_matches(accounts, search)["account_id"])

    assert found("li.wei@x.io") == ["1"]  # a space inside the stored email
    assert found("ANN@x.io") == ["2"]
    assert found("strasse@x.io") == []  # ß is not ss
    assert found("x.io") == ["1", "2", "3"]


def test_names_are_read_the_same_way_but_keep_case_and_inner_spaces() -> None:
    from opskit.core.normalize import name_keys

    names = pd.Series(["Ann\u00a0 Lee ", "\u3000Ann Lee", "An\u200bn Lee", "ann lee", None])
    assert list(name_keys(names)) == ["Ann Lee", "Ann Lee", "Ann Lee", "ann lee", ""]
