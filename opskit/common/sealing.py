"""Secret keys inside task payloads: sealed, never in clear text.

A shop's work item (``opskit.stripeapi.fetch.ShopJob``) may be pickled and sent
to another process or machine (a dask.distributed worker). It never carries the
raw Stripe key: :func:`seal` encrypts it with Fernet (AES-128-CBC plus
HMAC-SHA256, from the ``cryptography`` package) under a *task secret* that is
itself never part of any payload:

- the task secret is ``OPSKIT_TASK_SECRET`` (a Fernet key, 44 URL-safe base64
  characters) from the environment of each process;
- when the client process has none, one is created when this module is first
  imported (``import opskit`` does) and put into the process's own ``os.environ``,
  so every worker process it starts afterwards
  (``distributed.LocalCluster(processes=True)``, ``multiprocessing``) inherits
  it through the operating system, not the network;
- workers on other machines need the same value in their environment (e.g.
  ``OPSKIT_TASK_SECRET=... dask worker tls://scheduler:8786``); a worker without
  it cannot open the key, and that shop becomes an error row naming the variable.

A :class:`SealedKey` shows only the masked key in its ``repr``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from opskit.common.exceptions import ConfigurationError
from opskit.common.keys import mask_key

__all__ = ["TASK_SECRET_ENV", "SealedKey", "seal", "task_secret"]

TASK_SECRET_ENV = "OPSKIT_TASK_SECRET"

_lock = threading.Lock()


def task_secret(*, create: bool = True) -> bytes:
    """This process's task secret; created (and exported to ``os.environ``) when missing."""
    from cryptography.fernet import Fernet

    with _lock:
        value = os.environ.get(TASK_SECRET_ENV, "").strip()
        if not value:
            if not create:
                raise ConfigurationError(
                    f"this process has no {TASK_SECRET_ENV}, so it cannot open the sealed "
                    "Stripe keys of its tasks",
                    guidance=(
                        f"Start every worker with the client's {TASK_SECRET_ENV} in its "
                        "environment (LocalCluster workers started by the client inherit it)."
                    ),
                )
            value = Fernet.generate_key().decode("ascii")
            os.environ[TASK_SECRET_ENV] = value
        return value.encode("ascii")


def _fernet(*, create: bool) -> object:
    from cryptography.fernet import Fernet

    secret = task_secret(create=create)
    try:
        return Fernet(secret)
    except ValueError:
        raise ConfigurationError(
            f"{TASK_SECRET_ENV} is not a Fernet key",
            guidance="Use the value from cryptography.fernet.Fernet.generate_key(), or unset it.",
        ) from None


@dataclass(frozen=True)
class SealedKey:
    """A secret key encrypted under the task secret; ``repr`` shows the masked key only."""

    token: bytes = field(repr=False)
    masked: str | None = None

    def open(self) -> str:
        """The raw key; :class:`ConfigurationError` when this process cannot decrypt it."""
        from cryptography.fernet import InvalidToken

        fernet = _fernet(create=False)
        try:
            return fernet.decrypt(self.token).decode("utf-8")  # type: ignore[attr-defined,no-any-return]
        except InvalidToken:
            raise ConfigurationError(
                f"the sealed Stripe key {self.masked or ''} does not open with this "
                f"process's {TASK_SECRET_ENV}",
                guidance=f"Give every worker the client's {TASK_SECRET_ENV}.",
            ) from None


def seal(key: str) -> SealedKey:
    """Encrypt ``key`` under this process's task secret (created if missing)."""
    token: bytes = _fernet(create=True).encrypt(key.encode("utf-8"))  # type: ignore[attr-defined]
    return SealedKey(token, mask_key(key))


task_secret()  # before any worker process is started from this one (see the module docstring)
