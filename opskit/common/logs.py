"""Every log record opskit configures or triggers passes :func:`opskit.common.keys.redact`.

Loggers of the libraries opskit drives (SQLAlchemy's engine and pool, which at
DEBUG print result rows such as a shop's ``stripe_secret_key``; stripe-python;
urllib3/requests; aiohttp for the sandbox; dask) and opskit's own get a filter
that rewrites a record's message with every key-shaped token masked before any
handler sees it. Filters on a logger apply to records that logger creates, so
each record-creating logger is listed; :func:`redacting_handler` covers handlers
opskit itself adds (the CLI's ``--debug``, panels' log outputs).
"""

from __future__ import annotations

import logging

from opskit.common.keys import redact

__all__ = ["LOGGERS", "RedactingFilter", "install_redaction", "redacting_handler"]

# The loggers that create records on opskit's paths (names as the libraries use them).
LOGGERS = (
    "sqlalchemy.engine.Engine",
    "sqlalchemy.engine",
    "sqlalchemy.pool.impl.QueuePool",
    "sqlalchemy.pool.impl.SingletonThreadPool",
    "sqlalchemy.pool.impl.NullPool",
    "sqlalchemy.pool",
    "sqlalchemy.dialects",
    "stripe",
    "urllib3.connectionpool",
    "urllib3",
    "requests",
    "aiohttp.access",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.client",
    "distributed",
    "distributed.worker",
    "distributed.scheduler",
    "opskit",
)


class RedactingFilter(logging.Filter):
    """Masks secret keys in a record's final message; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_redaction(extra: tuple[str, ...] = ()) -> None:
    """Attach the redacting filter to every logger in :data:`LOGGERS` (idempotent)."""
    for name in (*LOGGERS, *extra):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("opskit.", "sqlalchemy.engine", "sqlalchemy.pool")):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


def redacting_handler(handler: logging.Handler) -> logging.Handler:
    """``handler`` with the redacting filter (records from any logger it receives)."""
    if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)
    return handler
