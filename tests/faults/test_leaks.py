"""No secret leaves the masking layer: every logger opskit drives at DEBUG (SQLAlchemy's
engine included, which prints result rows), repr(Ops) and report headers with a
password in the Stripe base URL, and live keys never sent to anything but Stripe
over TLS.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import stripe

import opskit
from opskit.common.exceptions import ConfigurationError
from opskit.common.logs import LOGGERS
from opskit.sandbox import Sandbox
from opskit.stripeapi.clients import check_live_destination, client_for_shop
from opskit.writes import actions
from tests.faults.conftest import Tally
from tests.faults.world import make_world
from tests.leakcheck import assert_no_secrets

LIVE = "sk_live_" + "Lv7" * 9


def _leaks(texts: list[str], keys: list[str]) -> int:
    try:
        assert_no_secrets(texts, keys)
    except AssertionError:
        return 1
    return 0


def test_every_logger_at_debug_shows_no_key(
    db_url: str,
    sandbox: Sandbox,
    tally: Tally,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = make_world(db_url, sandbox)
    monkeypatch.setattr(stripe, "log", "debug")
    for name in ("", "sqlalchemy.engine", "sqlalchemy.pool", *LOGGERS):
        caplog.set_level(logging.DEBUG, logger=name)
    ops = opskit.connect(db_url, stripe_api_base=sandbox.url)
    ops.ctx.db.engine.echo = "debug"  # SQLAlchemy's own switch: statements and result rows

    def scenario() -> tuple[str, str]:
        shops = ops.shops()
        ops.accounts()
        ops.reconcile_customers(progress=False)
        actions.create_customer(ops.ctx, 10, actor="t")
        ops.audit_log()
        ops.recover(older_than=0)
        captured = capsys.readouterr()
        texts = [caplog.text, captured.out, captured.err, repr(ops), shops.to_csv()]
        texts += [r.getMessage() for r in caplog.records]
        rows = [r for r in caplog.records if r.name.startswith("sqlalchemy.engine")]
        if not any("stripe_secret_key" in r.getMessage() for r in rows):
            return "wrong", "SQLAlchemy's DEBUG log did not run (the test proves nothing)"
        n = _leaks(texts, [w.key])
        tally.count("secrets_seen", n, "a key in a DEBUG log")
        return ("wrong", "a key in the DEBUG log") if n else ("right", f"{len(texts)} texts")

    assert tally.run("loggers at DEBUG", scenario) == "right"


def test_a_password_in_the_stripe_base_is_hidden_in_repr_and_report_headers(
    db_url: str, sandbox: Sandbox, tally: Tally, tmp_path: Path
) -> None:
    from opskit.faces.cli import _meta

    make_world(db_url, sandbox)
    secret = "Pr0xyPassw0rd"
    base = sandbox.url.replace("http://", f"http://proxyuser:{secret}@")
    ops = opskit.connect(db_url, stripe_api_base=base)

    def scenario() -> tuple[str, str]:
        texts = [repr(ops), str(_meta(ops, None))]
        n = sum(secret in t for t in texts)
        tally.count("secrets_seen", n, "a proxy password shown")
        return ("wrong", f"password in {texts}") if n else ("right", "hidden")

    assert tally.run("password in stripe_api_base", scenario) == "right"


@pytest.mark.parametrize(
    "base",
    ["http://127.0.0.1:9", "https://stripe.example.net", "http://api.stripe.com"],
)
def test_a_live_key_goes_only_to_stripe_over_tls(
    base: str, tally: Tally, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = {"id": 7, "name": "Live", "stripe_secret_key": LIVE}

    def scenario() -> tuple[str, str]:
        try:
            client_for_shop(shop, api_base=base).v1.customers.list()
        except ConfigurationError as exc:
            if LIVE in str(exc) or "nothing was sent" not in exc.message:
                return "wrong", exc.message
            return "right", "refused before sending"
        except stripe.StripeError as exc:
            return "wrong", f"sent: {type(exc).__name__}"
        return "wrong", "sent"

    assert tally.run(f"live key to {base}", scenario) == "right"
    check_live_destination(LIVE, None)  # Stripe itself
    check_live_destination(LIVE, "https://api.stripe.com")
    check_live_destination("sk_test_" + "x" * 24, "http://127.0.0.1:9")  # test keys anywhere
    monkeypatch.setenv("OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE", "1")
    if base.startswith("https://") or "127.0.0.1" in base:
        check_live_destination(LIVE, base)  # explicitly allowed
    else:
        with pytest.raises(ConfigurationError):  # plain http to another host: never
            check_live_destination(LIVE, base)
