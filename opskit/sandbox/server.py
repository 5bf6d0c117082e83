"""The Sandbox: an aiohttp app (our routes + localstripe's) on a private loop thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from types import TracebackType
from typing import Any

from aiohttp import web

from opskit.sandbox import events, money, patches
from opskit.sandbox.control import RequestRecord, Settings
from opskit.sandbox.middleware import CONTROL_PREFIX, Pipeline
from opskit.sandbox.patches import as_async, ls_server
from opskit.sandbox.routes import add_routes
from opskit.sandbox.seed import seed_into
from opskit.sandbox.webhooks import EventsControl, WebhookHub

HOST = "127.0.0.1"
_CONFIG_FIELDS = (
    "latency", "rate_limit", "rate_mode", "fail_next", "drop_next", "fail_status", "retry_after",
)  # fmt: skip


def build_app(pipeline: Pipeline, sandbox: Sandbox) -> web.Application:
    patches.apply()
    events.install()
    events_mw = events.middleware_for(sandbox.hub.enqueue, lambda: sandbox.events_muted)
    app = web.Application(middlewares=[pipeline.middleware, events_mw])
    _add_control_routes(app, sandbox)
    events.add_routes(app)
    money.install(app)  # fees, ledger, disputes, payouts (before the generic routes)
    add_routes(app)  # ours first: aiohttp takes the first matching route
    for route in ls_server.app.router.routes():
        info = route.resource.canonical if route.resource is not None else None
        if not info or not info.startswith("/v1/"):
            continue  # skip /_config (webhooks to other hosts) and the JS shim
        app.router.add_route(route.method, info, as_async(route.handler))
    return app


def _add_control_routes(app: web.Application, sb: Sandbox) -> None:
    async def config(request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                data = await request.json() if request.can_read_body else {}
            except ValueError:
                return web.json_response({"error": "body must be JSON"}, status=400)
            kwargs = {k: data[k] for k in _CONFIG_FIELDS if k in data}
            try:
                sb.configure(key=data.get("key"), **kwargs)
            except (TypeError, ValueError) as e:
                return web.json_response({"error": str(e)}, status=400)
        return web.json_response(sb.settings.snapshot())

    async def requests(request: web.Request) -> web.Response:
        key = request.query.get("key")
        return web.json_response([r.public() for r in sb.requests(key)])

    async def reset(request: web.Request) -> web.Response:
        what = request.query.get("what", "all")
        if what in ("all", "config"):
            sb.reset_config()
        if what in ("all", "log"):
            sb.reset_log()
        if what in ("all", "data"):
            # Already on the loop thread: clear directly, the lock is not held here.
            sb.pipeline.stores.clear()
        return web.json_response({"ok": True})

    async def write_faults(request: web.Request) -> web.Response:
        try:
            data = await request.json() if request.can_read_body else {}
            sb.inject_write_fault(
                data["key"],
                data.get("kind", "error_after"),
                count=int(data.get("count", 1)),
                status=int(data.get("status", 500)),
            )
        except (KeyError, TypeError, ValueError) as e:
            return web.json_response({"error": f"bad write fault: {e}"}, status=400)
        return web.json_response({"pending": sb.pipeline.write_faults.pending(data["key"])})

    app.router.add_post(CONTROL_PREFIX + "write_faults", write_faults)
    app.router.add_route("*", CONTROL_PREFIX + "config", config)
    app.router.add_get(CONTROL_PREFIX + "requests", requests)
    app.router.add_post(CONTROL_PREFIX + "reset", reset)


class Sandbox(EventsControl):
    """A local multi-tenant Stripe: one isolated store per API key.

    ``keys=None`` accepts any well-formed ``sk_test_``/``rk_test_`` key; a list
    accepts only those keys. The server binds 127.0.0.1 only.
    """

    def __init__(
        self,
        keys: list[str] | None = None,
        host: str = HOST,
        port: int = 0,
        latency: float = 0.0,
        rate_limit: float | None = None,
        rate_mode: str = "pace",
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the sandbox binds 127.0.0.1 only")
        self.host = "127.0.0.1"
        self._want_port = port
        self.port: int = 0
        self.settings = Settings(latency, rate_limit, rate_mode)
        self.pipeline = Pipeline(self.settings, keys)
        self.hub = WebhookHub()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._state_lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> str:
        with self._state_lock:
            if self._loop is not None:
                return self.url
            loop = asyncio.new_event_loop()
            ready: Future[int] = Future()
            thread = threading.Thread(
                target=self._run, args=(loop, ready), name="opskit-sandbox", daemon=True
            )
            thread.start()
            try:
                self.port = ready.result(timeout=30)
            except BaseException:
                thread.join(timeout=5)
                if not loop.is_closed():
                    loop.close()
                raise
            self._loop, self._thread = loop, thread
            return self.url

    def _run(self, loop: asyncio.AbstractEventLoop, ready: Future[int]) -> None:
        asyncio.set_event_loop(loop)
        try:
            port = loop.run_until_complete(self._setup())
        except BaseException as e:
            ready.set_exception(e)
            loop.run_until_complete(self._cleanup())
            loop.close()
            return
        ready.set_result(port)
        loop.run_forever()
        # stop(): finish cleanup on this thread, then close the loop here.
        loop.run_until_complete(self._cleanup())
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _setup(self) -> int:
        self.pipeline.store_lock = asyncio.Lock()
        app = build_app(self.pipeline, self)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, self._want_port, reuse_address=True)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        assert sockets, "the sandbox site did not bind"
        return int(sockets[0].getsockname()[1])

    async def _cleanup(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def stop(self) -> None:
        with self._state_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            if loop is None or thread is None:
                return
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<Sandbox {state}>"

    # ---------------------------------------------------------------- behaviour
    def configure(
        self,
        key: str | None = None,
        latency: float | None = None,
        rate_limit: float | None = None,
        rate_mode: str | None = None,
        fail_next: int | None = None,
        drop_next: int | None = None,
        fail_status: int = 500,
        retry_after: float | None = None,
    ) -> None:
        """Change behaviour for ``key`` (or the default for all keys); None = unchanged."""
        self.settings.configure(
            key, latency, rate_limit, rate_mode, fail_next, drop_next, fail_status, retry_after
        )

    def inject_write_fault(
        self, key: str, kind: str = "error_after", count: int = 1, status: int = 500
    ) -> None:
        """Make ``key``'s next ``count`` POSTs fail in a way the client cannot see through.

        ``kind``: ``"error_after"`` executes the write (the object exists) and answers
        ``status``; ``"error_before"`` executes nothing and answers ``status``;
        ``"drop_after"`` executes and drops the connection. Either answer is saved
        under the request's ``Idempotency-Key`` and replayed to every retry with that
        key for 24 hours, as Stripe does once a request has started executing (see
        :mod:`opskit.sandbox.idempotency`). Also ``POST /_sandbox/write_faults`` with
        JSON ``{"key", "kind", "count", "status"}``. ``reset_config()`` clears them.
        """
        if not self.pipeline.valid_key(key):
            raise ValueError("inject_write_fault() needs a key this sandbox accepts")
        self.pipeline.write_faults.add(key, kind, count, status)

    def reset_config(self) -> None:
        """Back to the constructor's latency/rate settings, no per-key settings or faults."""
        self.settings.reset()
        self.pipeline.write_faults.clear()

    def requests(self, key: str | None = None) -> list[RequestRecord]:
        return self.settings.requests(key)

    def request_count(self, key: str | None = None) -> int:
        return len(self.settings.requests(key))

    def reset_log(self) -> None:
        self.settings.reset_log()

    # ---------------------------------------------------------------- data
    def _on_loop(self, fn: Any) -> Any:
        """Run ``fn()`` under the store lock on the server loop (or inline if stopped)."""
        loop = self._loop
        if loop is None:
            return fn()

        async def locked() -> Any:
            assert self.pipeline.store_lock is not None
            async with self.pipeline.store_lock:
                return fn()

        return asyncio.run_coroutine_threadsafe(locked(), loop).result()

    def seed(self, key: str, kind: str, objects: list[dict[str, Any]]) -> list[str]:
        """Bulk-insert ``objects`` into ``key``'s store; returns their ids.

        kinds and fields (all optional unless noted; ``id``/``created`` on any):
        - customers: email, name, description, phone, metadata, invoice_settings
        - products: name, description, metadata, active
        - prices (or plans): unit_amount (or amount), currency (required),
          recurring={"interval": "month"} (or interval=...; omit for one-time),
          product (an existing product id; else one is created), nickname,
          metadata, active, lookup_key. ``id`` must start with a letter.
        - subscriptions: customer (required, existing), price (an existing
          price/plan id) or items=[{"price": ..., "quantity": ...}, ...] (several
          allowed), status (default "active"; "canceled" is listed only with
          status="all"), quantity, metadata, start_date (default: created),
          current_period_start / current_period_end (on every item; default one
          interval from start_date), trial_end, cancel_at_period_end, cancel_at,
          canceled_at, default_payment_method. On a customer with a test clock,
          the subscription is on that clock too.
        - payment_intents: amount, currency, customer, description, metadata, status.
        - payment_methods: card={number, exp_month, exp_year, cvc}, customer.
        """
        if not self.pipeline.valid_key(key):
            raise ValueError("seed() needs a key this sandbox accepts")
        objs = list(objects)
        return self._on_loop(lambda: seed_into(self.pipeline.store_for(key), kind, objs))  # type: ignore[no-any-return]

    def with_store(self, key: str, fn: Any) -> Any:
        """Run ``fn(store)`` on ``key``'s store, under the store lock, with localstripe's
        global store pointed at it (e.g. :func:`opskit.sandbox.money.backdate`)."""
        if not self.pipeline.valid_key(key):
            raise ValueError("with_store() needs a key this sandbox accepts")

        def run() -> Any:
            store = self.pipeline.store_for(key)
            with patches.swap_lock:
                old, patches.ls.store = patches.ls.store, store
                try:
                    return fn(store)
                finally:
                    patches.ls.store = old

        return self._on_loop(run)

    def seed_other_mode(self, key: str, kind: str, objects: list[dict[str, Any]]) -> list[str]:
        """:meth:`seed` into the other mode of ``key``'s account (``sk_live_X`` for ``sk_test_X``).

        Requests with ``key`` for those ids then get Stripe's 404 "a similar object
        exists in live mode, but a test mode key was used" (see
        :mod:`opskit.sandbox.modes`).
        """
        from opskit.sandbox.modes import other_mode_key

        twin = other_mode_key(key) if self.pipeline.valid_key(key) else None
        if twin is None:
            raise ValueError("seed_other_mode() needs an sk_/rk_ key this sandbox accepts")
        objs = list(objects)
        return self._on_loop(lambda: seed_into(self.pipeline.store_for(twin), kind, objs))  # type: ignore[no-any-return]

    def clear(self, key: str | None = None) -> None:
        """Drop ``key``'s store (or every store)."""

        def do() -> None:
            if key is None:
                self.pipeline.stores.clear()
            else:
                self.pipeline.stores.pop(key, None)

        self._on_loop(do)
