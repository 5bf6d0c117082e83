"""``opskit refresh`` and ``opskit webhooks ...``: following Stripe by events, from the shell.

``opskit refresh`` exits as ``opskit reconcile`` does (0 all match, 1 drift,
2 a shop failed, 3 usage or configuration error, 4 internal error); a shop
whose events could not be read counts as failed (2).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opskit.common.exceptions import InputError
from opskit.faces.cli import (
    _VERDICT,
    DatabaseUrl,
    Debug,
    Fmt,
    Out,
    Quiet,
    Shops,
    StripeApiBase,
    _check_shops,
    _connect,
    _console,
    _df_table,
    _guard,
    _meta,
    _prepare_out,
    _print_reports,
)
from opskit.faces.output import echo
from opskit.reports import files as report

if TYPE_CHECKING:
    import pandas as pd

webhooks_app = typer.Typer(
    name="webhooks",
    help="Receive Stripe's webhook deliveries per shop, replay failed ones, manage secrets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
secret_app = typer.Typer(
    name="secret",
    help="Each shop's webhook signing secrets (whsec_...), shown masked.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
webhooks_app.add_typer(secret_app)

ShopArg = Annotated[str, typer.Option("--shop", "-s", help="The shop's id (UUID or integer).")]


def refresh(
    shop: Shops = None,
    which: Annotated[
        str, typer.Option("--report", "-r", help="customers, subscriptions or all.")
    ] = "all",
    out: Out = None,
    fmt: Fmt = None,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    quiet: Quiet = False,
    debug: Debug = False,
    no_snapshots: Annotated[
        bool,
        typer.Option(
            "--no-snapshots",
            help="Read-only for the backend: do not update the accounts' Customer "
            "snapshots (details stripe_customer / stripe_synced_at) from customer events.",
        ),
    ] = False,
) -> None:
    """Read each shop's Stripe events since the last refresh, then report from the copy.

    Shops never refreshed (or not for 30 days) are read in full once. Customer
    events newer than an account's stored Customer snapshot update it (audited;
    --no-snapshots: don't). Exit 0 all match, 1 drift found, 2 a shop failed,
    3 usage or configuration error.
    """
    with _guard(debug):
        names = report.report_names(which)
        # The changes table is always written beside the reports: checked with them
        # before any event is read, so a bad --out never spends a refresh's findings.
        resolved = _prepare_out(out, fmt, (*names, "changes"), can_pick_one=False)
        ops = _connect(database_url, stripe_api_base)
        shops = _check_shops(ops, shop)
        result = ops.refresh(shops, progress=not quiet, write_snapshots=not no_snapshots)
        reports = {name: result.reports[name] for name in names}
        console = _console(quiet)
        cols = ["shop_id", "mode", "events_read", "applied", "snapshots", "requests", "error"]
        per_shop = result.shops[cols]
        console.print(
            _df_table(per_shop, title=f"Refresh: {result.requests} Stripe requests", limit=50)
        )
        if len(result.gaps):
            console.print(_df_table(result.gaps, title="Gaps (read in full, skipped, failed)"))
        changes = _interesting(result.changes)
        if len(changes):
            cols = ["shop_id", "created_at", "event_type", "stripe_object_id", "account_id"]
            console.print(
                _df_table(
                    changes[[*cols, "status", "detail"]],
                    title=f"Since the last refresh: {len(changes)} changes",
                    limit=50,
                )
            )
        _print_reports(console, reports, findings=out is None)
        if out is not None:
            written = report.write_report(
                {**reports, "changes": result.changes}, out, resolved, meta=_meta(ops, shops)
            )
            for path in written:
                console.print(f"Wrote {path}")
        code = report.outcome(reports)
        if (result.shops["mode"] == "error").any():
            code = report.SHOP_FAILED
        console.print(f"Result: {_VERDICT[code]} (exit {code})")
    raise typer.Exit(code)


def _interesting(changes: pd.DataFrame) -> pd.DataFrame:
    """Events that changed something (not the duplicates, stale or ignored ones)."""
    keep = changes["outcome"].isin(["applied", "refetch", "recorded", "superseded"])
    return changes[keep.fillna(False)]


@webhooks_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (a proxy in front adds TLS).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    tolerance: Annotated[
        int, typer.Option(help="Oldest signature accepted, seconds (Stripe's default 300).")
    ] = 300,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: on Ctrl-C).")
    ] = None,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    debug: Debug = False,
) -> None:
    """Receive deliveries at http://HOST:PORT/stripe/webhook/<shop id>."""
    from opskit import webhooks

    with _guard(debug):
        webhooks.check_serve_options(port, tolerance, duration)  # exit 3 before connecting
        ops = _connect(database_url, stripe_api_base)
        webhooks.serve(
            ops,
            host=host,
            port=port,
            tolerance=tolerance,
            duration=duration,
            on_listening=lambda url: echo(f"opskit webhooks listening on {url}"),
        )


@webhooks_app.command("replay")
def replay(
    shop: Annotated[list[str] | None, typer.Option("--shop", "-s", help="Only this shop.")] = None,
    delivery: Annotated[
        list[int] | None, typer.Option("--delivery", "-d", help="Only this delivery id.")
    ] = None,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Process again the deliveries that failed or were never finished. Exit 2 if one fails."""
    from opskit import webhooks

    with _guard(debug):
        ops = _connect(database_url, stripe_api_base)
        done = webhooks.replay(ops, shop_ids=shop or None, delivery_ids=delivery or None)
        _console(quiet).print(_df_table(done, title=f"Replayed: {len(done)} deliveries"))
        code = report.SHOP_FAILED if (done["outcome"] == "failed").any() else report.OK
    raise typer.Exit(code)


@webhooks_app.command("deliveries")
def deliveries(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest N rows.")] = 50,
    database_url: DatabaseUrl = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """What the receiver got and did, newest first (bodies not shown)."""
    from opskit import webhooks

    with _guard(debug):
        ops = _connect(database_url, None)
        df = webhooks.deliveries(ops)
        _console(quiet).print(_df_table(df, title=f"Deliveries ({len(df)})", limit=limit))


@secret_app.command("add")
def secret_add(
    shop: ShopArg,
    expires: Annotated[
        str | None, typer.Option(help="Stop accepting it after this UTC time (rotation).")
    ] = None,
    database_url: DatabaseUrl = None,
    debug: Debug = False,
) -> None:
    """Add a signing secret for a shop, read from stdin or a hidden prompt (never argv)."""
    from opskit import webhooks

    with _guard(debug):
        when = _expiry(expires) if expires else None  # checked before anything is read
        ops = _connect(database_url, None)
        if sys.stdin.isatty():
            secret = typer.prompt("Signing secret (whsec_...)", hide_input=True)
        else:
            secret = sys.stdin.readline()
        webhooks.add_secret(ops, shop, secret.strip(), when)
        echo(f"Added a signing secret for shop {shop}.")


def _expiry(text: str) -> datetime:
    """``--expires`` as a UTC time in the future; a clear usage error otherwise."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(
            f"--expires {text!r} is not a date or time",
            guidance="Give an ISO date or time in UTC, e.g. 2026-12-31 or 2026-12-31T18:00.",
        ) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when <= datetime.now(UTC):
        raise InputError(
            f"--expires {text!r} is already past",
            guidance="Give a time in the future, or remove the old secret instead.",
        )
    return when


@secret_app.command("list")
def secret_list(database_url: DatabaseUrl = None, debug: Debug = False) -> None:
    """Every shop's signing secrets, masked."""
    from opskit import webhooks

    with _guard(debug):
        ops = _connect(database_url, None)
        df = webhooks.list_secrets(ops)
        _console().print(_df_table(df, title=f"Signing secrets ({len(df)})"))


@secret_app.command("remove")
def secret_remove(
    shop: ShopArg,
    secret: Annotated[
        str | None,
        typer.Option(help="The secret as listed (whsec_…abcd); default: all of the shop's."),
    ] = None,
    database_url: DatabaseUrl = None,
    debug: Debug = False,
) -> None:
    """Stop accepting a shop's signing secret(s)."""
    from opskit import webhooks

    with _guard(debug):
        ops = _connect(database_url, None)
        n = webhooks.remove_secret(ops, shop, secret)
        if n == 0:
            raise InputError(
                f"shop {shop} has no such secret", guidance="See `opskit webhooks secret list`."
            )
        echo(f"Removed {n} signing secret(s) of shop {shop}.")


def register(app: Any) -> None:
    """Add ``refresh`` and the ``webhooks`` group to the ``opskit`` command."""
    app.command("refresh")(refresh)
    app.add_typer(webhooks_app)


def demo_refresh(console: Any, session: Any, quiet: bool) -> None:
    """The demo's last part: refresh, plant a day of Stripe changes, refresh again."""
    import pandas as pd

    from opskit.demo.changes import plant_changes

    ops = session.ops
    console.print()
    first = ops.refresh(progress=not quiet)
    modes = first.shops["mode"].value_counts().to_dict()
    console.print(
        f"First refresh by events: {first.requests} Stripe requests, shops {modes} "
        "(a shop is read in full once, then followed by its events)."
    )
    if not session.owner:
        return
    planted = plant_changes(ops, session.api_base)
    console.print("Planted in Stripe since: " + "; ".join(planted))
    result = ops.refresh(progress=not quiet)
    changes = _interesting(result.changes)
    # The seed records no events (Sandbox.seeding); only what happened since the first
    # refresh is shown, should a world have been built with events (an older opskit).
    since = first.shops["cursor_at"].min()
    if not pd.isna(since):
        changes = changes[changes["created_at"] >= since]
    cols = ["shop_id", "event_type", "stripe_object_id", "account_id", "status", "outcome"]
    console.print(
        _df_table(
            changes[cols],
            title=f"Since the last refresh: {len(changes)} changes, "
            f"{result.requests} Stripe requests",
        )
    )
    written = int(result.shops["snapshots"].sum())
    if written:
        console.print(
            f"Customer snapshots (details stripe_customer / stripe_synced_at) rewritten from "
            f"customer events newer than them: {written} account(s), audited (opskit audit)."
        )
