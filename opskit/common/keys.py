"""Stripe key classification, masking and redaction.

A raw secret key must never reach a DataFrame, repr, log line, exception, report
or audit row. Everything that shows a key calls :func:`mask_key`; everything that
formats free text from the outside world (Stripe messages, exceptions) goes
through :func:`redact`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Mode = Literal["live", "test", "none", "invalid"]

# Stripe keys: sk_/rk_/pk_ + live|test + "_" + token. Tokens are alphanumeric.
_KEY_RE = re.compile(r"^(sk|rk|pk)_(live|test)_([A-Za-z0-9]+)$")
# Anything that looks like a key inside free text (for redaction). Not ``\b``: a key glued
# to "_", a digit or "%3D"/"%20" (URL-encoded text) must be caught too; only a lowercase
# letter before it ("task_live_...") marks an ordinary word.
_KEY_IN_TEXT = re.compile(r"(?<![a-z])(sk|rk)_(live|test)_[A-Za-z0-9_\-]+")
# Webhook signing secrets (``whsec_`` + token) are as secret as the keys.
_WHSEC_IN_TEXT = re.compile(r"(?<![a-z])whsec_[A-Za-z0-9_\-]+")


@dataclass(frozen=True)
class KeyInfo:
    """What opskit knows about one secret-key cell: never the key itself."""

    mode: Mode
    masked: str | None
    problem: str | None  # why the key is unusable, None when usable

    @property
    def usable(self) -> bool:
        return self.problem is None and self.mode in ("live", "test")


def mask_key(raw: object) -> str | None:
    """``sk_live_…abcd``: prefix and last four characters, or None for no key."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    m = re.match(r"^([a-z]{2}_(?:live|test)_|whsec_)", text)
    prefix = m.group(1) if m else ""
    tail = text[-4:] if len(text) - len(prefix) > 8 else ""
    return f"{prefix}…{tail}" if prefix else f"…{tail}" if tail else "…"


def classify_secret_key(raw: object) -> KeyInfo:
    """Classify the content of a ``stripe_secret_key`` cell.

    Surrounding whitespace is tolerated (it is a common copy-paste artefact);
    a publishable key, a malformed value or a missing key is reported, not raised.
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        return KeyInfo("none", None, "no secret key")
    text = str(raw).strip()
    if not text:
        return KeyInfo("none", None, "no secret key (blank)")
    masked = mask_key(text)
    m = _KEY_RE.match(text)
    if not m:
        return KeyInfo(
            "invalid", masked, "not a Stripe secret key (expected sk_live_/sk_test_/rk_)"
        )
    kind, mode, _token = m.groups()
    if kind == "pk":
        return KeyInfo("invalid", masked, "a publishable pk_ key is in the secret-key column")
    return KeyInfo(mode, masked, None)  # type: ignore[arg-type]


def clean_secret_key(raw: object) -> str | None:
    """The usable secret key with whitespace stripped, or None."""
    info = classify_secret_key(raw)
    return str(raw).strip() if info.usable else None


def redact(text: str | None) -> str:
    """Replace anything shaped like a secret or restricted key, or a webhook signing
    secret (``whsec_``), with its masked form."""
    if not text:
        return ""
    text = _KEY_IN_TEXT.sub(lambda m: mask_key(m.group(0)) or "…", str(text))
    return _WHSEC_IN_TEXT.sub(lambda m: mask_key(m.group(0)) or "…", text)
