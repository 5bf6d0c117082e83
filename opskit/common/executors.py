"""``--executor threads|dask://HOST:PORT`` -> a ``concurrent.futures.Executor``.

``threads`` (the default) is opskit's own thread pool across shops (``None`` is
passed on, so the fetch layer sizes it). ``dask://HOST:PORT`` (or
``tcp://HOST:PORT``) connects to a running dask scheduler and uses
``Client.get_executor()``; ``distributed`` is imported only then. Before any work
is sent, every worker must open a sealed canary with its own ``OPSKIT_TASK_SECRET``
(see :mod:`opskit.common.sealing`): workers that cannot would turn every shop into
an error, so the run stops at once with what to do instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from opskit.common.exceptions import ConfigurationError
from opskit.common.sealing import TASK_SECRET_ENV, SealedKey, seal

_DASK = re.compile(
    r"^(?:dask|tcp)://(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})/?$"
)
DASK_TIMEOUT = 5.0  # seconds to reach the scheduler before giving up

_GUIDANCE = (
    "Pass --executor threads, or --executor dask://HOST:PORT for a running scheduler "
    "(start one with `dask scheduler --port 8786`)."
)


def parse_executor(spec: str | None) -> str | None:
    """Validate ``spec``; returns the dask scheduler address (``tcp://...``) or None for threads."""
    if spec is None or spec.strip().lower() in ("", "threads"):
        return None
    m = _DASK.match(spec.strip())
    if not m or not 0 < int(m["port"]) < 65536:
        raise ConfigurationError(f"invalid executor {spec!r}", guidance=_GUIDANCE)
    return f"tcp://{m['host']}:{int(m['port'])}"


_CANARY = "opskit-canary"


def opens_canary(sealed: SealedKey) -> bool:
    """Run on a worker: can this process open what the client sealed? (no secret travels)"""
    try:
        return sealed.open() == _CANARY
    except Exception:  # noqa: BLE001 - any failure means "no"
        return False


def check_workers(client: object) -> None:
    """:class:`ConfigurationError` unless every worker of a dask ``client`` has the task secret."""
    answers = client.run(opens_canary, seal(_CANARY))  # type: ignore[attr-defined]
    missing = sorted(worker for worker, ok in answers.items() if not ok)
    if missing:
        raise ConfigurationError(
            f"{len(missing)} of {len(answers)} dask workers cannot open the sealed Stripe keys "
            f"(no or another {TASK_SECRET_ENV}): {', '.join(missing[:3])}",
            guidance=(
                f"Start the workers with this process's {TASK_SECRET_ENV} in their environment "
                f'(python -c "import os, opskit; print(os.environ[{TASK_SECRET_ENV!r}])").'
            ),
        )


@contextmanager
def executor_for(spec: str | None, *, timeout: float = DASK_TIMEOUT) -> Iterator[Executor | None]:
    """The executor ``spec`` names, closed (dask client disconnected) on exit."""
    address = parse_executor(spec)
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise ConfigurationError(
            "dask executor requested but the 'distributed' package is not installed",
            guidance="pip install 'dask[distributed]', or pass --executor threads.",
        ) from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigurationError(
            f"cannot reach the dask scheduler at {address}: {type(exc).__name__}",
            guidance=_GUIDANCE,
        ) from None
    try:
        check_workers(client)
        yield client.get_executor()
    finally:
        client.close()
