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


# Common URL forms SQLAlchemy does not take as they are, and what to write instead.
_URL_FIXES = (
    (re.compile(r"^postgres(?:ql)?://"), "postgresql+psycopg://"),
    (re.compile(r"^postgresql\+psycopg2://"), "postgresql+psycopg://"),
    (re.compile(r"^sqlite:/(?!//)"), "sqlite:///"),
)


def url_hint(url: str) -> str | None:
    """What to write instead of a common URL form SQLAlchemy rejects, password hidden.

    ``postgres://u@h/db`` (Heroku-style) and ``postgresql://`` (SQLAlchemy's default
    driver, psycopg2, is not installed: opskit ships psycopg 3) -> ``postgresql+psycopg://``.
    None when there is nothing to suggest.
    """
    for pattern, scheme in _URL_FIXES:
        if pattern.match(url):
            fixed = pattern.sub(scheme, url, count=1)
            return (
                f"Use {safe_url(fixed)!r}: SQLAlchemy's name for it with psycopg 3, "
                "the driver opskit installs."
            )
    return None
