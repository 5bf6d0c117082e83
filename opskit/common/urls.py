"""Database URLs as they may be shown: any password hidden."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

_SECRET_PARAM = re.compile(r"(?i)([?&][^=&]*pass[^=&]*=)[^&]*")


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        text = sa.make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unreadable: hide everything between the scheme and the last '@'.
        text = re.sub(r"^([^:/]*:/*)?.*@", lambda m: (m.group(1) or "") + "***@", url)
    return _SECRET_PARAM.sub(r"\1***", text)
