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

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TOLERANCE", "make_app", "serve"]

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


def _json(status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=status)


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
    state = state_for(ops.ctx.db)

    async def receive(request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        body = await request.read()
        shop_id = canonical_id(request.match_info["shop_id"])
        headers = {k: v for k, v in request.headers.items()}
        signature = request.headers.get("Stripe-Signature")

        def check() -> tuple[int, str, str | None, dict[str, Any] | None, Shop | None]:
            shop = _shop(ops, shop_id)
            if shop is None:
                return 404, "rejected", "unknown shop", None, None
            try:
                event = verify_delivery(body, signature, state.signing_secrets(shop_id), tolerance)
            except DeliveryRejected as exc:
                return 400, "rejected", str(exc), None, shop
            return 200, "accepted", None, event, shop

        status, outcome, reason, event, shop = await loop.run_in_executor(pool, check)

        def store() -> int:
            return state.record_delivery(
                shop_id=shop_id if shop is not None else None,
                path=request.path,
                headers=headers,
                body=body,
                outcome=outcome,
                status_code=status,
                reason=reason,
                event_id=str(event["id"]) if event else None,
                event_type=str(event.get("type")) if event else None,
            )

        delivery_id = await loop.run_in_executor(pool, store)
        if event is None or shop is None:
            log.info("opskit webhooks: delivery %s rejected (%s)", delivery_id, reason)
            return _json(status, error=reason)
        task = loop.run_in_executor(pool, _process, ops, shop, event, delivery_id)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return _json(200, received=True)

    async def on_cleanup(app: web.Application) -> None:
        if tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        app[POOL_KEY].shutdown(wait=True)

    app.router.add_post(prefix.rstrip("/") + "/{shop_id}", receive)
    app.on_cleanup.append(on_cleanup)
    return app


def _process(ops: Ops, shop: Shop, event: Mapping[str, Any], delivery_id: int) -> None:
    state = state_for(ops.ctx.db)
    try:
        process_event(ops.ctx, shop, event, source="webhook", delivery_id=delivery_id)
    except Exception as exc:  # noqa: BLE001 - kept as "failed"; replay processes it again
        reason = redact(describe_error(exc))
        log.warning("opskit webhooks: delivery %s failed: %s", delivery_id, reason)
        try:
            state.finish_delivery(delivery_id, outcome="failed", reason=reason)
        except Exception:  # noqa: BLE001 - the row stays "accepted": replay still finds it
            log.exception("opskit webhooks: could not mark delivery %s failed", delivery_id)


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
