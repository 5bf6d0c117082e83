"""``POST /stripe/webhook/<shop id>``: one URL per shop, each with its own signing secrets.

For every delivery, in this order:

1. the shop is found from the URL (a shop's own Stripe account names no account
   in its events, so the URL is the only way to know whose event it is);
   unknown shop: **404**;
2. a body over :data:`MAX_BODY` (1 MiB) is not read further: **413**;
3. ``Stripe-Signature`` is checked against each of that shop's current signing
   secrets with stripe-python's ``WebhookSignature.verify_header`` and an
   explicit age tolerance (default 300 s), before the body is parsed.
   Unsigned, forged, expired or signed for another shop: **400**;
4. every delivery is stored in ``opskit_webhook_deliveries`` before its body is
   parsed, rejected ones too, but what is kept is bounded by who sent it: a
   delivery whose signature verified keeps its whole raw body and headers; any
   other (404, 413, 400 above) keeps the body's length and SHA-256, its first
   :data:`REJECTED_BODY_KEPT` bytes, and a few headers (``Stripe-Signature``,
   ``Content-Type``, ...; cut, secret-free), so unauthenticated requests cannot
   fill the database;
5. the signed body must then be a Stripe event opskit may apply
   (:mod:`opskit.core.event_checks`: JSON nested at most 64 deep, the envelope,
   ``livemode`` matching the shop key's mode, the object's shape and id
   prefixes); if not, the stored delivery becomes ``rejected`` with the reason:
   **400**, never processed, never replayed. A ``created`` in the future is
   not trusted as a version: the object is re-read with the shop's key;
6. a good delivery is answered **200** at once and processed in the
   background by :func:`opskit.writes.refresh.process_event`: idempotent by
   event id in the same transaction as its effect, the object re-read with
   the shop's key when the payload may be stale. A processing failure leaves
   the delivery ``failed`` (or ``accepted`` if the process died): nothing is
   lost, ``opskit webhooks replay`` processes it again.

Signing secrets and keys never appear in responses, logs or stored headers.
:func:`receive` takes the shop id as str, int or UUID and the body as bytes or str.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from opskit.backend.state import state_for
from opskit.common.exceptions import InputError
from opskit.common.ids import IdLike, id_text
from opskit.common.keys import redact
from opskit.common.models import Shop
from opskit.common.stripe_errors import describe_error
from opskit.core import event_checks
from opskit.stripeapi.events import DeliveryRejected, verify_signature
from opskit.writes.refresh import process_event

if TYPE_CHECKING:
    from opskit.ops import Ops

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TOLERANCE",
    "MAX_BODY",
    "REJECTED_BODY_KEPT",
    "Delivery",
    "check_delivery",
    "check_serve_options",
    "make_app",
    "process",
    "receive",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/stripe/webhook"
DEFAULT_TOLERANCE = 300  # seconds; Stripe's own default
MAX_BODY = 1024 * 1024  # bytes; a larger body is answered 413 (Stripe's events are far smaller)
REJECTED_BODY_KEPT = 2048  # bytes of a rejected delivery's body that are stored

OPS_KEY = web.AppKey("opskit_ops", object)
POOL_KEY = web.AppKey("opskit_pool", ThreadPoolExecutor)


def canonical_id(value: Any) -> str:
    """A shop id (str, int or UUID; from a URL or a caller) as opskit stores it.

    UUIDs in their canonical form (lower case, hyphens), integers as digits, other
    text trimmed (:func:`opskit.common.ids.id_text`). Raises :class:`TypeError` for
    what cannot be an id (bool, float with a fraction, None, a container).
    """
    text = id_text(value)
    if text is None:
        raise TypeError(f"{value!r} is not a shop id")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _shop(ops: Ops, shop_id: str) -> Shop | None:
    for key, shop in ops.ctx.db.shop_objects().items():
        if canonical_id(key) == shop_id:
            return shop
    return None


@dataclass
class Delivery:
    """What the receiver answers for one delivery, and what is left to process."""

    status: int  # 200 accepted, 400 rejected, 404 unknown shop, 413 body too large
    body: dict[str, Any]  # the JSON answer (never holds a secret)
    delivery_id: int  # its row in opskit_webhook_deliveries
    shop: Shop | None = field(default=None, repr=False)
    event: dict[str, Any] | None = field(default=None, repr=False)  # None when rejected
    # Why the payload's object is not trusted as is (re-read it), e.g. a future `created`.
    refetch: str | None = field(default=None, repr=False)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _as_headers(headers: Any) -> dict[str, str]:
    """Headers as ``{name: value}`` text: a mapping, or (name, value) pairs as ASGI gives
    them (bytes read as Latin-1, HTTP's own header encoding); None is no headers."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in pairs:
        if isinstance(name, bytes | bytearray):
            name = bytes(name).decode("latin-1")
        if isinstance(value, bytes | bytearray):
            value = bytes(value).decode("latin-1")
        out.setdefault(str(name), str(value))
    return out


def _as_bytes(body: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"a delivery body is bytes or str, not {type(body).__name__}")


def check_delivery(
    shop: Shop, body: bytes, *, received_at: float, tolerance: int = DEFAULT_TOLERANCE
) -> event_checks.EventCheck:
    """Parse and check a signed delivery's body for ``shop`` (raises ``EventInvalid``).

    The same checks on arrival and on replay (with the delivery's receipt time), so
    a body that can never be applied is rejected once, never failed forever.
    """
    event = event_checks.parse_event(body)
    return event_checks.check_event(
        event, mode=shop.key_info.mode, received_at=int(received_at), tolerance=tolerance
    )


def receive(
    ops: Ops,
    shop_id: IdLike,
    body: bytes | str,
    headers: Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]] | None,
    *,
    path: str | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
    body_length: int | None = None,
) -> Delivery:
    """Check and store one delivery (steps 1-3 of the module docstring); blocking I/O.

    ``shop_id``: str, int or :class:`uuid.UUID`; ``body``: the raw request body,
    bytes or str (str is taken as its UTF-8 bytes, which is what Stripe signed);
    ``headers``: the request's (any case), a mapping or (name, value) pairs (ASGI's
    bytes pairs too). ``body_length``: the full length when
    ``body`` is only the start of a larger body (the aiohttp app stops reading
    past :data:`MAX_BODY`). For any web framework: answer ``delivery.status``
    with ``delivery.body`` at once, then call :func:`process` (e.g. as a
    background task). Raises :class:`TypeError` for a shop id or body of another type.

    Stored: a delivery whose signature verified keeps its whole body; any other
    (unknown shop, too large, unsigned, forged, expired) keeps its length and
    SHA-256, the first :data:`REJECTED_BODY_KEPT` bytes and a few headers only.
    """
    received_at = time.time()
    headers = _as_headers(headers)
    raw = _as_bytes(body)
    sid = canonical_id(shop_id)
    length = len(raw) if body_length is None else max(int(body_length), len(raw))
    state = state_for(ops.ctx.db)
    shop = _shop(ops, sid)
    where = path or f"{DEFAULT_PREFIX}/{sid}"

    def rejected(status: int, reason: str) -> Delivery:
        delivery_id = state.record_delivery(
            shop_id=sid if shop is not None else None,
            path=where,
            headers=dict(headers),
            body=raw,
            body_length=length,
            outcome="rejected",
            status_code=status,
            reason=reason,
            keep=REJECTED_BODY_KEPT,
        )
        log.info("opskit webhooks: delivery %s rejected (%s)", delivery_id, reason)
        return Delivery(status, {"error": reason}, delivery_id, shop)

    if shop is None:
        return rejected(404, "unknown shop")
    if length > MAX_BODY:
        return rejected(413, f"body of {length} bytes is over the {MAX_BODY}-byte limit")
    try:
        verify_signature(raw, _header(headers, "stripe-signature"), state.signing_secrets(sid),
                         tolerance)  # fmt: skip
    except DeliveryRejected as exc:
        return rejected(400, str(exc))
    # Signed: stored whole, raw, before the body is parsed.
    delivery_id = state.record_delivery(
        shop_id=sid, path=where, headers=dict(headers), body=raw, outcome="accepted",
        status_code=200,
    )  # fmt: skip
    try:
        checked = check_delivery(shop, raw, received_at=received_at, tolerance=tolerance)
    except event_checks.EventInvalid as exc:
        reason = str(exc)
        state.finish_delivery(delivery_id, outcome="rejected", status_code=400, reason=reason)
        log.info("opskit webhooks: delivery %s rejected (%s)", delivery_id, reason)
        return Delivery(400, {"error": reason}, delivery_id, shop)
    return Delivery(200, {"received": True}, delivery_id, shop, checked.event, checked.note)


def process(ops: Ops, delivery: Delivery) -> None:
    """Apply an accepted delivery's event (step 4); a failure leaves it ``failed``."""
    if delivery.event is None or delivery.shop is None:
        return
    state = state_for(ops.ctx.db)
    try:
        process_event(
            ops.ctx,
            delivery.shop,
            delivery.event,
            source="webhook",
            delivery_id=delivery.delivery_id,
            refetch=delivery.refetch,
        )
    except Exception as exc:  # noqa: BLE001 - kept as "failed"; replay processes it again
        reason = redact(describe_error(exc))
        log.warning("opskit webhooks: delivery %s failed: %s", delivery.delivery_id, reason)
        try:
            state.finish_delivery(
                delivery.delivery_id,
                outcome="failed",
                reason=reason,
                event_id=str(delivery.event.get("id")),
                event_type=str(delivery.event.get("type")),
            )
        except Exception:  # noqa: BLE001 - the row stays "accepted": replay still finds it
            log.exception(
                "opskit webhooks: could not mark delivery %s failed", delivery.delivery_id
            )


async def _read_bounded(request: web.Request) -> tuple[bytes, int]:
    """At most ``MAX_BODY + 1`` bytes of the body, and its length (Content-Length when
    larger, else what was read): a body past the limit is never read whole."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        return await request.content.read(REJECTED_BODY_KEPT), declared
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY:
        chunk = await request.content.read(64 * 1024)
        if not chunk:
            return b"".join(chunks), size
        chunks.append(chunk)
        size += len(chunk)
    # Past the limit (chunked, no length given): the start of it, and at least its size.
    return b"".join(chunks)[:MAX_BODY], size


def make_app(
    ops: Ops,
    *,
    prefix: str = DEFAULT_PREFIX,
    tolerance: int = DEFAULT_TOLERANCE,
    workers: int = 4,
) -> web.Application:
    """The receiver as an aiohttp application (mount it, or run it with :func:`serve`).

    ``prefix``: the path before ``/<shop id>``. ``tolerance``: the oldest signature
    accepted, in seconds. ``workers``: threads for database work and processing.
    """
    app = web.Application(client_max_size=MAX_BODY + 1)
    app[OPS_KEY] = ops
    pool = ThreadPoolExecutor(workers, thread_name_prefix="opskit-webhooks")
    app[POOL_KEY] = pool
    tasks: set[asyncio.Future[None]] = set()  # deliveries being processed

    async def handle(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body, length = await _read_bounded(request)
        headers = {k: v for k, v in request.headers.items()}
        delivery = await loop.run_in_executor(
            pool,
            lambda: receive(
                ops, request.match_info["shop_id"], body, headers, path=request.path,
                tolerance=tolerance, body_length=length,
            ),
        )  # fmt: skip
        if delivery.event is not None:
            task = loop.run_in_executor(pool, process, ops, delivery)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        response = web.json_response(delivery.body, status=delivery.status)
        if length > len(body):
            response.force_close()  # the rest of a too-large body is not read
        return response

    async def on_cleanup(app: web.Application) -> None:
        if tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        app[POOL_KEY].shutdown(wait=True)

    app.router.add_post(prefix.rstrip("/") + "/{shop_id}", handle)
    app.on_cleanup.append(on_cleanup)
    return app


def check_serve_options(
    port: Any, tolerance: Any = DEFAULT_TOLERANCE, duration: Any = None
) -> None:
    """Refuse options :func:`serve` cannot run with, before anything is bound.

    ``port``: an integer 1-65535, or 0 for any free port; ``tolerance``: whole
    seconds, at least 1; ``duration``: seconds > 0 or None. Raises
    :class:`~opskit.common.exceptions.InputError` naming the option.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(
            f"port {port!r} is not a TCP port",
            guidance="Give a port from 1 to 65535 (or 0 for any free port).",
        )
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 1:
        raise InputError(
            f"tolerance {tolerance!r} is not a number of seconds",
            guidance="Give whole seconds, at least 1 (Stripe's default is 300).",
        )
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not duration > 0
        or duration == float("inf")
    ):
        raise InputError(
            f"duration {duration!r} is not a number of seconds",
            guidance="Give seconds > 0, or no duration to run until Ctrl-C.",
        )


def serve(
    ops: Ops,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    prefix: str = DEFAULT_PREFIX,
    tolerance: int = DEFAULT_TOLERANCE,
    duration: float | None = None,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run the receiver until Ctrl-C/SIGTERM, ``stop`` is set, or ``duration`` seconds pass.

    Binds ``host`` (127.0.0.1 by default: put a TLS-terminating proxy in front for
    Stripe to reach it). ``ready`` is set once it listens; ``on_listening`` is
    called then with the URL pattern (the real port when ``port`` is 0). Options
    are checked first (:func:`check_serve_options`: :class:`InputError`).
    """
    check_serve_options(port, tolerance, duration)
    done = stop or threading.Event()

    async def main() -> None:
        runner = web.AppRunner(make_app(ops, prefix=prefix, tolerance=tolerance), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = site._server.sockets[0].getsockname()[1] if site._server else port  # type: ignore[union-attr,attr-defined]
            if on_listening is not None:
                on_listening(f"http://{host}:{bound}{prefix.rstrip('/')}/<shop id>")
            if ready is not None:
                ready.set()
            loop = asyncio.get_running_loop()
            deadline = None if duration is None else loop.time() + duration
            while not done.is_set() and (deadline is None or loop.time() < deadline):
                await asyncio.sleep(0.2)
        finally:
            await runner.cleanup()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: done.set())
    try:
        asyncio.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
