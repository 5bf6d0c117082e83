"""The request pipeline: auth, log, latency, rate limit, faults, store swap, idempotency.

Order matters: latency and pacing sleep *before* taking the store lock, so
requests of different keys overlap their waits; only the (synchronous)
localstripe handler runs under the lock, with ``localstripe.resources.store``
pointing at the caller's own store.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from localstripe import resources as ls
from localstripe.errors import UserError

from opskit.sandbox import errors, idempotency, modes, versions
from opskit.sandbox.control import RequestRecord, Settings, mask, throttle, well_formed_test_key
from opskit.sandbox.patches import swap_lock
from opskit.sandbox.stores import IndexedStore

CONTROL_PREFIX = "/_sandbox/"
REQUEST_ID = web.RequestKey("request_id", str)  # events name the request that caused them
PARAM_NAMES = web.RequestKey("param_names", tuple)  # for the request log (names, no values)


def stripe_error(
    status: int, err: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps({"error": err}).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def api_key_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    parts = header.split(" ")
    if len(parts) != 2:
        return None
    scheme, value = parts
    if scheme == "Bearer":
        return value.strip()
    if scheme == "Basic":
        try:
            return base64.b64decode(value).decode("utf-8").split(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
    return None


class Pipeline:
    """State shared by the middleware: settings, per-key stores and the store lock."""

    def __init__(self, settings: Settings, keys: list[str] | None) -> None:
        self.settings = settings
        self.keys = set(keys) if keys else None
        self.stores: dict[str, IndexedStore] = {}
        self.store_lock: asyncio.Lock | None = None  # created on the server loop
        self.write_faults = idempotency.WriteFaults()

    def valid_key(self, key: str | None) -> bool:
        if not key:
            return False
        if self.keys is not None:
            return key in self.keys
        return well_formed_test_key(key)

    def store_for(self, key: str) -> IndexedStore:
        st = self.stores.get(key)
        if st is None:
            st = self.stores[key] = IndexedStore()
        return st

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        request_id = "req_" + secrets.token_hex(7)
        request[REQUEST_ID] = request_id
        key = api_key_of(request)
        idem = request.headers.get("Idempotency-Key")
        status = 0
        try:
            resp = await self._serve(request, handler, key, idem, request_id)
            status = resp.status
            resp.headers.setdefault("Request-Id", request_id)
            return resp
        finally:
            self.settings.record(
                RequestRecord(
                    key=key or "",
                    method=request.method,
                    path=request.path,
                    status=status,
                    idempotency_key=idem,
                    at=time.time(),
                    params=request.get(PARAM_NAMES, ()),
                )
            )

    async def _serve(
        self,
        request: web.Request,
        handler: Any,
        key: str | None,
        idem: str | None,
        request_id: str,
    ) -> web.StreamResponse:
        if not self.valid_key(key):
            if key:
                msg = f"Invalid API Key provided: {mask(key)}"
            else:
                msg = (
                    "You did not provide an API key. You need to provide your API key in "
                    "the Authorization header, using Bearer auth."
                )
            return stripe_error(401, {"type": "invalid_request_error", "message": msg})
        assert key is not None
        version = request.headers.get("Stripe-Version", "").strip()
        if version and not versions.valid(version):
            return errors.finish(
                stripe_error(
                    400,
                    {
                        "type": "invalid_request_error",
                        "message": f"Invalid Stripe API version: {version}",
                        "param": "Stripe-Version",
                    },
                ),
                request_id,
            )
        idem = idem if request.method == "POST" else None  # GET/DELETE ignore keys
        if idem is not None and len(idem) > idempotency.MAX_KEY_LENGTH:
            return errors.finish(stripe_error(400, idempotency.too_long_error(idem)), request_id)
        ledger = self.store_for(key).idempotency
        if idem is not None and idem in ledger.in_flight:
            busy = stripe_error(409, idempotency.in_use_error(idem))
            busy.headers["Stripe-Should-Retry"] = "true"
            return errors.finish(busy, request_id)
        token = versions.current.set(version or versions.PINNED)
        if idem is not None:
            ledger.in_flight.add(idem)
        try:
            resp = await self._serve_as(request, handler, key, idem, request_id)
        finally:
            versions.current.reset(token)
            if idem is not None:
                ledger.in_flight.discard(idem)
        return errors.finish(resp, request_id)

    async def _serve_as(
        self, request: web.Request, handler: Any, key: str, idem: str | None, request_id: str
    ) -> web.StreamResponse:
        settings = self.settings
        cfg = settings.effective(key)
        loop = asyncio.get_running_loop()
        if cfg.latency:
            await asyncio.sleep(cfg.latency)
        if not await throttle(cfg, settings.key_state(key), loop):
            headers = {}
            if cfg.retry_after:
                headers["Retry-After"] = str(int(cfg.retry_after + 0.999))
            return stripe_error(
                429,
                {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Request rate limit exceeded. You can learn more about rate "
                    "limits here https://stripe.com/docs/rate-limits.",
                },
                headers,
            )
        fault = settings.take_fault(key)
        if fault is not None and fault[0] == "drop":
            # No response at all: the client sees a reset/closed connection.
            _drop(request)
        if fault is not None:
            # Refused before executing: nothing saved, a retry with the same key runs.
            refused = stripe_error(fault[1], idempotency.injected_error())
            refused.headers["Stripe-Should-Retry"] = "true"
            return refused
        body = await request.read()  # cached by aiohttp: handlers read it again
        request[PARAM_NAMES] = _param_names(body, request)
        assert self.store_lock is not None
        async with self.store_lock:
            store = self.store_for(key)
            fingerprint: tuple[Any, ...] = ()
            if idem is not None:
                fingerprint = (request.method, request.path, _params(body, request))
                prev = store.idempotency.lookup(idem)
                if prev is not None:
                    if prev.fingerprint != fingerprint:
                        return stripe_error(400, idempotency.mismatch_error(idem))
                    return _replay(prev)
            write_fault = (
                self.write_faults.take(key)
                if request.method == "POST" and request.path.startswith("/v1/")
                else None
            )
            resp: web.StreamResponse
            if write_fault is not None and write_fault.kind == "error_before":
                resp = errors.finish(
                    stripe_error(write_fault.status, idempotency.injected_error()), request_id
                )
            else:
                with swap_lock:
                    ls.store = store
                    try:
                        resp = await self._call(request, handler)
                    finally:
                        ls.store = _EMPTY
                resp = modes.with_other_mode_message(self.stores, key, resp)
                resp = errors.finish(resp, request_id)
                if write_fault is not None and write_fault.kind == "error_after":
                    resp = errors.finish(
                        stripe_error(write_fault.status, idempotency.injected_error()),
                        request_id,
                    )
            if isinstance(resp, web.Response) and idempotency.saves(resp.status):
                if resp.status >= 500:
                    # Saved: a retry with this key gets the same answer for 24 hours.
                    resp.headers["Stripe-Should-Retry"] = "false"
                if idem is not None:
                    store.idempotency.save(
                        idem,
                        idempotency.Saved(
                            fingerprint,
                            resp.status,
                            _body_bytes(resp),
                            resp.content_type,
                            request_id,
                        ),
                    )
            if write_fault is not None and write_fault.kind == "drop_after":
                _drop(request)
            return resp

    async def _call(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except UserError as e:
            err = dict(e.body["error"])
            if e.code == 402:
                err = errors.card_error(err)
            elif e.code >= 500:
                err["type"] = "api_error"
            return stripe_error(e.code, err)
        except web.HTTPException as e:
            if e.status == 404:
                msg = f"Unrecognized request URL ({request.method}: {request.path})."
            else:
                msg = e.reason
            return stripe_error(e.status, {"type": "invalid_request_error", "message": msg})
        except Exception as e:  # noqa: BLE001 - any handler bug must still be Stripe-shaped
            return stripe_error(
                500, {"type": "api_error", "message": f"Sandbox error: {type(e).__name__}"}
            )


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError


def _replay(prev: idempotency.Saved) -> web.Response:
    replay = web.Response(body=prev.body, status=prev.status, content_type=prev.content_type)
    replay.headers["Idempotent-Replayed"] = "true"
    replay.headers["Original-Request"] = prev.request_id
    if prev.status >= 500:
        replay.headers["Stripe-Should-Retry"] = "false"
    return replay


def _body_bytes(resp: web.Response) -> bytes:
    b = resp.body
    return bytes(b) if isinstance(b, (bytes, bytearray)) else b""


def _param_names(body: bytes, request: web.Request) -> tuple[str, ...]:
    names = list(request.query.keys())
    if request.content_type == "application/json":
        try:
            data = json.loads(body or b"null")
        except ValueError:
            data = None
        if isinstance(data, dict):
            names += list(data)
    else:
        names += [k for k, _ in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)]
    return tuple(dict.fromkeys(names))


def _params(body: bytes, request: web.Request) -> tuple[tuple[str, str], ...]:
    text = body.decode("utf-8", "replace")
    if request.content_type == "application/json":
        try:
            return (("json", json.dumps(json.loads(text or "null"), sort_keys=True)),)
        except ValueError:
            pass
    return tuple(sorted(parse_qsl(text, keep_blank_values=True)))


# Between requests localstripe's global store points at an empty store, so
# nothing can leak across keys by accident.
_EMPTY = IndexedStore()
