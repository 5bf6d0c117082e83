"""``POST /stripe/webhook/<shop id>``: one URL per shop, each with its own signing secrets.

For every delivery, in this order:

1. the shop is found from the URL (a shop's own Stripe account names no account
   in its events, so the URL is the only way to know whose event it is);
   unknown shop: **404**;
2. ``Stripe-Signature`` is checked against each of that shop's current signing
   secrets with stripe-python's ``WebhookSignature.verify_header`` and an
   explicit age tolerance (default 300 s), before the body is parsed; then the
   body must be a JSON Stripe event. Unsigned, forged, expired, signed for
   another shop, or malformed: **400**;
3. the delivery is stored raw (headers, body, outcome) in
   ``opskit_webhook_deliveries`` before anything else happens, rejected ones too;
4. a good delivery is answered **200** at once and processed in the
   background by :func:`opskit.writes.refresh.process_event`: idempotent by
   event id in the same transaction as its effect, the object re-read with
   the shop's key when the payload may be stale. A processing failure leaves
   the delivery ``failed`` (or ``accepted`` if the process died): nothing is
   lost, ``opskit webhooks replay`` processes it again.

Signing secrets and keys never appear in responses, logs or stored headers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from opskit.backend.state import state_for
from opskit.common.keys import redact
from opskit.common.models import Shop
from opskit.common.stripe_errors import describe_error
from opskit.stripeapi.events import DeliveryRejected, verify_delivery
from opskit.writes.refresh import process_event

if TYPE_CHECKING:
    from opskit.ops import Ops

__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TOLERANCE",
    "Delivery",
    "make_app",
    "process",
    "receive",
    "serve",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/stripe/webhook"
DEFAULT_TOLERANCE = 300  # seconds; Stripe's own default
MAX_BODY = 1024 * 1024

OPS_KEY = web.AppKey("opskit_ops", object)
POOL_KEY = web.AppKey("opskit_pool", ThreadPoolExecutor)


def canonical_id(text: str) -> str:
    """A shop id from a URL as opskit stores it: UUIDs in their canonical form."""
    text = text.strip()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return text


def _shop(ops: Ops, shop_id: str) -> Shop | None:
    for key, shop in ops.ctx.db.shop_objects().items():
        if canonical_id(str(key)) == shop_id:
            return shop
    return None


@dataclass
class Delivery:
    """What the receiver answers for one delivery, and what is left to process."""

    status: int  # 200 accepted, 400 rejected, 404 unknown shop
    body: dict[str, Any]  # the JSON answer (never holds a secret)
    delivery_id: int  # its row in opskit_webhook_deliveries
    shop: Shop | None = field(default=None, repr=False)
    event: dict[str, Any] | None = field(default=None, repr=False)  # None when rejected


def receive(
    ops: Ops,
    shop_id: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    path: str | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> Delivery:
    """Check and store one delivery (steps 1-3 of the module docstring); blocking I/O.

    For any web framework: answer ``delivery.status`` with ``delivery.body`` at
    once, then call :func:`process` (e.g. as a background task).
    """
    state = state_for(ops.ctx.db)
    sid = canonical_id(shop_id)
    shop = _shop(ops, sid)
    event: dict[str, Any] | None = None
    if shop is None:
        status, outcome, reason = 404, "rejected", "unknown shop"
    else:
        signature = next((v for k, v in headers.items() if k.lower() == "stripe-signature"), None)
        try:
            event = verify_delivery(body, signature, state.signing_secrets(sid), tolerance)
            status, outcome, reason = 200, "accepted", None
        except DeliveryRejected as exc:
            status, outcome, reason = 400, "rejected", str(exc)
    delivery_id = state.record_delivery(
        shop_id=sid if shop is not None else None,
        path=path or f"{DEFAULT_PREFIX}/{sid}",
        headers=dict(headers),
        body=body,
        outcome=outcome,
        status_code=status,
        reason=reason,
        event_id=str(event["id"]) if event else None,
        event_type=str(event.get("type")) if event else None,
    )
    if event is None:
        log.info("opskit webhooks: delivery %s rejected (%s)", delivery_id, reason)
        return Delivery(status, {"error": reason}, delivery_id, shop)
    return Delivery(200, {"received": True}, delivery_id, shop, event)


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
        )
    except Exception as exc:  # noqa: BLE001 - kept as "failed"; replay processes it again
        reason = redact(describe_error(exc))
        log.warning("opskit webhooks: delivery %s failed: %s", delivery.delivery_id, reason)
        try:
            state.finish_delivery(delivery.delivery_id, outcome="failed", reason=reason)
        except Exception:  # noqa: BLE001 - the row stays "accepted": replay still finds it
            log.exception(
                "opskit webhooks: could not mark delivery %s failed", delivery.delivery_id
            )


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
    app = web.Application(client_max_size=MAX_BODY)
    app[OPS_KEY] = ops
    pool = ThreadPoolExecutor(workers, thread_name_prefix="opskit-webhooks")
    app[POOL_KEY] = pool
    tasks: set[asyncio.Future[None]] = set()  # deliveries being processed

    async def handle(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()}
        delivery = await loop.run_in_executor(
            pool,
            lambda: receive(
                ops, request.match_info["shop_id"], body, headers, path=request.path,
                tolerance=tolerance,
            ),
        )  # fmt: skip
        if delivery.event is not None:
            task = loop.run_in_executor(pool, process, ops, delivery)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        return web.json_response(delivery.body, status=delivery.status)

    async def on_cleanup(app: web.Application) -> None:
        if tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        app[POOL_KEY].shutdown(wait=True)

    app.router.add_post(prefix.rstrip("/") + "/{shop_id}", handle)
    app.on_cleanup.append(on_cleanup)
    return app


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
) -> None:
    """Run the receiver until Ctrl-C/SIGTERM, ``stop`` is set, or ``duration`` seconds pass.

    Binds ``host`` (127.0.0.1 by default: put a TLS-terminating proxy in front for
    Stripe to reach it). ``ready`` is set once it listens.
    """
    done = stop or threading.Event()

    async def main() -> None:
        runner = web.AppRunner(make_app(ops, prefix=prefix, tolerance=tolerance), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        if ready is not None:
            ready.set()
        loop = asyncio.get_running_loop()
        deadline = None if duration is None else loop.time() + duration
        try:
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
