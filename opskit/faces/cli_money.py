"""``opskit money``: the month-end money report (registered on :data:`opskit.faces.cli.app`).

Orders against payments, payouts against the ledger and a daily overview per
shop, for one period, from each shop's own Stripe account. Exit codes as for
``reconcile``: 0 every payment matches (and every itemized payout adds up),
1 findings, 2 a shop failed (``shop_error`` rows), 3 usage or configuration
error, 4 an unexpected error.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from opskit.faces.cli import (
    _VERDICT,
    DatabaseUrl,
    Debug,
    ExecutorOpt,
    Fmt,
    Out,
    Quiet,
    SchemaFile,
    Shops,
    StripeApiBase,
    _check_shops,
    _connect,
    _console,
    _dask_timeout,
    _df_table,
    _findings,
    _guard,
    _meta,
    _prepare_out,
    _quiet_logs,
    _show_progress,
    _summary_table,
    app,
)

MONEY_NAMES = (
    "payments", "payouts", "payout_report", "daily_overview", "daily_by_currency", "ledger",
)  # fmt: skip


def money_sections(
    ops: Any, period: str | None, shops: Any, executor: Any, quiet: bool
) -> dict[str, Any]:
    """The money frames of ``period`` as report sections (``reconcile --money-period``)."""
    if period is None:
        return {}
    from opskit.reports.money import for_files, run_money

    check_period(period)
    frames = run_money(ops, period, shops, executor=executor, progress=_show_progress(quiet))
    return for_files(frames)


def check_period(period: str | None) -> None:
    """A bad ``--money-period`` is a usage error (exit 3), said before any I/O."""
    if period is not None:
        from opskit.ops_money import period_bounds

        period_bounds(period)


def money_code(sections: dict[str, Any]) -> int:
    """The exit code the money sections stand for (0 when there are none)."""
    from opskit.reports.money import money_outcome

    return money_outcome(sections) if sections else 0


@app.command()
def money(
    period: Annotated[
        str | None,
        typer.Option(
            "--period", "-p", help="A month (2026-11), a day (2026-11-05) or a year, in UTC."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start (ISO date or time, UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (ISO, UTC).")] = None,
    shop: Shops = None,
    out: Out = None,
    fmt: Fmt = None,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    schema: SchemaFile = None,
    executor: ExecutorOpt = "threads",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Follow the money for a period: orders vs payments, payouts vs the ledger, daily totals.

    Writes every frame with --out (xlsx: one sheet per report; html: one page with the
    money sections). Exit 0 all match, 1 findings, 2 a shop failed (shop_error rows,
    wins over 1), 3 usage or configuration error.
    """
    from opskit.common.exceptions import InputError
    from opskit.common.executors import executor_for, parse_executor
    from opskit.ops_money import period_bounds
    from opskit.reports.money import money_outcome, run_money, write_money

    with _guard(debug), _quiet_logs(quiet):
        if period is None and since is None:
            raise InputError(
                "say which money: --period 2026-11 (or --since/--until)",
                guidance="Pass --period YYYY-MM for a month.",
            )
        period_bounds(period, since, until)  # every bad value fails before any I/O
        parse_executor(executor)
        resolved = _prepare_out(out, fmt, MONEY_NAMES)
        ops = _connect(database_url, stripe_api_base, schema=schema)
        shops = _check_shops(ops, shop)
        with executor_for(executor, timeout=_dask_timeout()) as pool:
            frames = run_money(
                ops, period, shops, since=since, until=until, executor=pool,
                progress=_show_progress(quiet),
            )  # fmt: skip
        meta = {**_meta(ops, shops), "period": period or f"{since} .. {until or 'now'}"}
        written = write_money(frames, out, resolved, meta=meta) if out is not None else []
        code = money_outcome(frames)
        console = _console(quiet)
        _print_money(console, frames, findings=out is None)
        for path in written:
            console.print(f"Wrote {path}")
        console.print(f"Result: {_VERDICT[code]} (exit {code})")
    raise typer.Exit(code)


def _print_money(console: Any, frames: dict[str, Any], findings: bool) -> None:
    payments = frames["payments"]
    console.print(_summary_table("payments", payments))
    if findings:
        rows = _findings(payments.assign(account_id=payments["order_id"]))
        if len(rows):
            console.print(_df_table(rows.rename(columns={"account_id": "order_id"}),
                                    title="Payments: findings", limit=40))  # fmt: skip
    payouts = frames["payouts"]
    if len(payouts):
        cols = ["shop_id", "payout_id", "amount", "currency", "automatic", "arrival_at", "check"]
        console.print(_df_table(payouts[cols], title="Payouts", limit=40))
    daily = frames["daily_by_currency"]
    if len(daily):
        totals = (
            daily.groupby("currency")[["sales", "refunds", "disputes", "fees", "net", "payouts"]]
            .sum()
            .reset_index()
        )
        console.print(_df_table(totals, title="Totals per currency (minor units, all shops)"))
    console.print()
