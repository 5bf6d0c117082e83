"""Every write call leaves an audit row, refused before anything was tried or not.

A write refuses some input before it has an audited write to record on: an
amount that is not integer minor units (``InvalidAmount``), an account without a
customer (``StripeCustomerMissing``), an unknown account or shop, unreadable
details, a bad price id. README promises that every write, ok, failed or refused,
is a row. One mechanism keeps that promise for every write action:
:func:`audited` wraps the public write function; when the call raises an
:class:`~opskit.common.exceptions.OpskitError` having appended no audit row
(:func:`opskit.backend.audit.rows_appended` counts them per thread), it appends
one: outcome ``refused``, the action, the actor, the shop when it can be told,
the target, the call's arguments and the error. No Stripe request was sent: every
request goes through a committed intent row first, so a call with no row sent none.
A refusal that cannot be audited (the database is down) is logged and raised as is.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from opskit.backend import audit
from opskit.common.context import Context
from opskit.common.exceptions import AuditUnavailable, OpskitError
from opskit.common.keys import redact

__all__ = ["audited"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_PLAIN = (str, int, float, bool, type(None))


def audited(action: str, target: str) -> Callable[[F], F]:
    """Audit the refusals ``fn`` raises before it records anything itself.

    ``target``: the argument naming what is written to: ``"account_id"`` (target
    ``account:<id>``, shop from the account) or ``"subscription_id"`` (target
    ``subscription:<id>``, shop from ``shop_id``).
    """

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(ctx: Context, *args: Any, **kwargs: Any) -> Any:
            before = audit.rows_appended()
            try:
                return fn(ctx, *args, **kwargs)
            except AuditUnavailable:
                raise  # the audit is what failed: said in the error, nothing sent
            except OpskitError as exc:
                if audit.rows_appended() == before:
                    _record(ctx, action, target, signature, args, kwargs, exc)
                raise

        return call  # type: ignore[return-value]

    return wrap


def _record(
    ctx: Context,
    action: str,
    target: str,
    signature: inspect.Signature,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    exc: OpskitError,
) -> None:
    try:
        bound = signature.bind(ctx, *args, **kwargs)
    except TypeError:
        bound = None
    given = dict(bound.arguments) if bound is not None else dict(kwargs)
    given.pop("ctx", None)
    actor = given.get("actor") if isinstance(given.get("actor"), str) else None
    if not (actor and actor.strip()):
        # Not given: the function's own default, as the rows of writes it sends say.
        default = signature.parameters.get("actor")
        plain = default.default if default is not None else None
        actor = plain if isinstance(plain, str) and plain.strip() else "opskit"
    subject = given.get(target)
    kind = target.removesuffix("_id")
    shop_id = given.get("shop_id") if kind != "account" else _shop_of(ctx, subject)
    params = {
        k: (v if isinstance(v, _PLAIN) else redact(repr(v)))
        for k, v in given.items()
        if k not in ("actor", target, "shop_id") and v is not None
    }
    try:
        audit.append(
            ctx.db,
            actor=actor,
            shop_id=None if shop_id is None else str(shop_id),
            action=action,
            target=f"{kind}:{subject}",
            params=params | {"refused_before_request": True},
            outcome="refused",
            error=exc.message,
        )
    except (SQLAlchemyError, OpskitError) as failed:  # refused all the same: nothing sent
        log.error("could not audit the refusal of %s on %s: %s", action, subject, failed)


def _shop_of(ctx: Context, account_id: Any) -> Any:
    """The account's shop, or None when the account cannot be read (unknown, bad id)."""
    try:
        account, _ = ctx.db.account(account_id)
    except (OpskitError, SQLAlchemyError, TypeError, ValueError):
        return None
    return account.shop_id
