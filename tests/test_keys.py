"""Key classification, masking and redaction: the first line of secret hygiene."""

from __future__ import annotations

import pytest

from opskit.common.exceptions import OpskitError
from opskit.common.keys import classify_secret_key, mask_key, redact

LIVE = "sk_live_51HxYzAbCdEfGhIjKlMnOpQrStUv"
TEST = "sk_test_51HxYzAbCdEfGhIjKlMnOpQr1234"


@pytest.mark.parametrize(
    ("raw", "mode", "usable"),
    [
        (LIVE, "live", True),
        (TEST, "test", True),
        ("rk_live_51HxYzAbCdEfGhIjKlMnOp", "live", True),
        ("rk_test_51HxYzAbCdEfGhIjKlMnOp", "test", True),
        (f"  {TEST}\t", "test", True),
        ("pk_test_51HxYzAbCdEfGhIjKlMnOp", "invalid", False),
        ("sk_prod_xyz", "invalid", False),
        ("sk_test_has space", "invalid", False),
        ("", "none", False),
        ("   ", "none", False),
        (None, "none", False),
        (float("nan"), "none", False),
    ],
)
def test_classify(raw: object, mode: str, usable: bool) -> None:
    info = classify_secret_key(raw)
    assert info.mode == mode
    assert info.usable is usable
    assert (info.problem is None) is usable


def test_mask_shows_prefix_and_last_four_only() -> None:
    assert mask_key(LIVE) == "sk_live_…StUv"
    assert mask_key(f" {TEST} ") == "sk_test_…1234"
    assert mask_key("sk_test_abc") == "sk_test_…"  # too short to show a tail safely
    assert mask_key(None) is None
    assert "hunter2" not in (mask_key("hunter2xyzhunter2") or "")


def test_redact_replaces_keys_inside_text() -> None:
    text = f"Invalid API Key provided: {LIVE}; also {TEST}."
    out = redact(text)
    assert LIVE not in out and TEST not in out
    assert "sk_live_…StUv" in out and "sk_test_…1234" in out


def test_errors_redact_their_message_and_guidance() -> None:
    err = OpskitError(f"bad {TEST}", guidance=f"try {LIVE}")
    assert TEST not in str(err) and LIVE not in str(err) and LIVE not in repr(err)


@pytest.mark.parametrize(
    "text",
    [
        f"key_{LIVE}",  # glued to an identifier by an underscore
        f"https://example.test/?k=a%3D{LIVE}",  # URL-encoded '='
        f"Authorization%3ABearer%20{TEST}",  # URL-encoded space before the key
    ],
)
def test_redact_catches_keys_glued_to_other_text(text: str) -> None:
    out = redact(text)
    assert LIVE not in out and TEST not in out


def test_redact_leaves_ordinary_words_alone() -> None:
    assert redact("task_live_update and work_test_results") == (
        "task_live_update and work_test_results"
    )


def test_a_pandas_row_with_missing_values_is_read_as_missing() -> None:
    # Rows of string/Int64 frames hold pd.NA, not None: a missing key is "no secret key",
    # not an invalid one, and NA never leaks into opskit's objects.
    import pandas as pd

    from opskit.common.models import as_account, as_shop

    shops = pd.DataFrame(
        {"id": [1], "name": ["S"], "stripe_secret_key": [None], "stripe_public_key": [None]}
    ).astype({"id": "Int64", "name": "string", "stripe_secret_key": "string"})
    shop = as_shop(shops.iloc[0])
    assert shop is not None and shop.stripe_secret_key is None and shop.mode == "none"
    assert shop.key_info.problem == "no secret key"
    accounts = pd.DataFrame(
        {"account_id": [7], "shop_id": [1], "email": [None], "details": ['{"a": 1}']}
    ).astype({"account_id": "Int64", "shop_id": "Int64", "email": "string", "details": "string"})
    acc = as_account(accounts.iloc[0])
    assert acc.email is None and acc.id == "7" and dict(acc.details) == {"a": 1}
