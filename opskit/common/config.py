"""Settings from the environment, read once per :func:`opskit.connect`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

DATABASE_URL_ENV = "OPSKIT_DATABASE_URL"
STRIPE_API_BASE_ENV = "OPSKIT_STRIPE_API_BASE"
ALLOW_LIVE_WRITES_ENV = "OPSKIT_ALLOW_LIVE_WRITES"
DATA_DIR_ENV = "OPSKIT_DATA_DIR"
# Live keys go to Stripe itself over TLS only; this says "also to the configured base".
ALLOW_LIVE_KEYS_ELSEWHERE_ENV = "OPSKIT_ALLOW_LIVE_KEYS_ELSEWHERE"
EXPORT_DIR_ENV = "OPSKIT_EXPORT_DIR"


def data_dir() -> Path:
    """Per-user directory for the embedded demo database (never the repo or cwd)."""
    override = os.environ.get(DATA_DIR_ENV)
    path = Path(override) if override else Path(platformdirs.user_data_dir("opskit"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_dir() -> Path:
    """Where panels write their exports: ``OPSKIT_EXPORT_DIR``, else the per-user
    documents folder's ``opskit`` (never the repository or the notebooks folder, so
    files with customer emails do not land next to the code). Created on demand."""
    override = os.environ.get(EXPORT_DIR_ENV)
    path = Path(override) if override else Path(platformdirs.user_documents_dir()) / "opskit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def demo_database_url() -> str:
    """The default demo world's database (``opskit.demo.home.default_world``)."""
    folder = data_dir() / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'demo.sqlite'}"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Settings:
    """Everything opskit reads from the environment, overridable per connect()."""

    database_url: str | None = field(default=None, repr=False)  # may hold a password
    stripe_api_base: str | None = None  # None: Stripe itself
    allow_live_writes: bool = False
    test_rate_limit: float = 20.0  # requests/s per shop with a test key (Stripe allows 25)
    live_rate_limit: float = 90.0  # requests/s per shop with a live key (Stripe allows 100)
    max_shop_workers: int = 32  # shops fetched concurrently (threads; see README Performance)
    max_retry_wait: float = 60.0  # seconds of backoff per request before giving up
    connect_timeout: float = 10.0  # seconds to open a connection to Stripe (per attempt)
    read_timeout: float = 30.0  # seconds to wait for one answer from Stripe (per attempt)
    request_deadline: float = 120.0  # wall-clock seconds for one Stripe call, retries included

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get(DATABASE_URL_ENV) or None,
            stripe_api_base=os.environ.get(STRIPE_API_BASE_ENV) or None,
            allow_live_writes=_flag(ALLOW_LIVE_WRITES_ENV),
        )
