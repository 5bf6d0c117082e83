"""The ``opskit`` command: the same reconciliation as the notebooks, as a command and a file.

Exit codes (a scheduler alerts on anything but 0)::

    0  every row of every report is ``match``
    1  drift found: a finding an analyst must act on (``shop_not_configured`` included)
    2  a shop failed: ``shop_error`` rows (Stripe refused or failed); wins over 1
    3  usage or configuration error: bad option, unknown shop, unwritable output,
       unreachable database, invalid dask address; nothing was reconciled
    4  an unexpected internal error (a bug): rerun with --debug for the traceback
  130  interrupted (Ctrl-C / SIGINT): one line says so; files are only ever
       replaced whole, so nothing half-written is left at the --out path

Progress bars go to stderr only when it is a terminal (never when piped or
under a scheduler), and never with --quiet.

Errors are one line on stderr with what to do next; tracebacks only with ``--debug``.
Secret keys never appear in any output: shops are shown masked and every message
passes :func:`opskit.common.keys.redact`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from opskit.common.exceptions import DatabaseUnavailable, InputError, OpskitError, UnknownShop
from opskit.common.keys import redact
from opskit.common.logs import redacting_handler
from opskit.faces.output import echo, safe
from opskit.reports import files as report

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from opskit.ops import Ops

INTERNAL_ERROR = 4
INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

_CLI_GUIDANCE: dict[type[OpskitError], str] = {
    UnknownShop: "Run `opskit shops` to list the shop ids, then pass them with --shop.",
    DatabaseUnavailable: "Check --database-url / OPSKIT_DATABASE_URL; "
    "unset both to use the embedded demo database.",
}


# typer vendors its own click: take its exception classes from the public ones.
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


class _Group(TyperGroup):
    """Usage errors exit 3 (click's default 2 would read as "a shop failed"), in one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _UsageError as exc:
            _usage_exit(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            _usage_exit(exc)


def _usage_exit(exc: Any) -> Any:
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # bare `opskit` or `opskit sync`: help
        echo(ctx.get_help() if ctx else "")
        raise typer.Exit(0)
    where = ctx.command_path if ctx else "opskit"
    message = " ".join(redact(exc.format_message()).split())
    echo(f"error: {message} (see `{where} --help`)", err=True)
    raise typer.Exit(report.USAGE_ERROR)


app = typer.Typer(
    cls=_Group,
    name="opskit",
    help="Reconcile a multi-shop backend's accounts with each shop's own Stripe account.\n\n"
    "Exit codes: 0 all match; 1 drift found (shop_not_configured counts as drift); "
    "2 a shop failed (shop_error rows; wins over 1); 3 usage or configuration error; "
    "4 unexpected error (rerun with --debug); 130 interrupted (Ctrl-C).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals: they may hold secret keys
    rich_markup_mode=None,
)

# -- shared options ------------------------------------------------------------------------

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="OPSKIT_DATABASE_URL",
        help="SQLAlchemy URL of the backend database (default: the embedded demo SQLite).",
        show_envvar=True,
    ),
]
StripeApiBase = Annotated[
    str | None,
    typer.Option(
        "--stripe-api-base",
        envvar="OPSKIT_STRIPE_API_BASE",
        help="Where Stripe requests go (default: Stripe itself; a sandbox URL in demos/tests).",
        show_envvar=True,
    ),
]
Shops = Annotated[
    list[str] | None,
    typer.Option(
        "--shop",
        "-s",
        help="Shop id(s) to include, as the database has them (a UUID on shop-backend, an "
        "integer elsewhere): repeat, or a comma list (--shop 1,2); default: all. "
        "Other shops' Stripe accounts are asked only about this shop's links found "
        "nowhere else, and never those with a live key unless a live shop is included.",
    ),
]
SchemaFile = Annotated[
    Path | None,
    typer.Option(
        "--schema",
        envvar="OPSKIT_SCHEMA",
        help="A JSON or TOML file of opskit.Schema fields mapping your tables (default: "
        "detected: shop-backend's tables, or opskit's reference schema).",
        show_envvar=True,
    ),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        envvar="OPSKIT_EXECUTOR",
        help="threads (opskit's own pool across shops) or dask://HOST:PORT (a running "
        "dask scheduler).",
        show_envvar=True,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", envvar="OPSKIT_QUIET", help="Print nothing but errors."),
]
Debug = Annotated[
    bool,
    typer.Option("--debug", envvar="OPSKIT_DEBUG", help="Show tracebacks and debug logging."),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Write the report here (format from the suffix): one file per --out. csv and "
        "parquet hold one table, so with several reports put {report} in the name "
        "(--out 'daily-{report}.csv' writes daily-customers.csv and daily-subscriptions.csv).",
    ),
]
Fmt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help=f"One of {', '.join(report.FORMATS)} (default: from the --out suffix).",
    ),
]


# -- error handling --------------------------------------------------------------------------


@contextmanager
def _guard(debug: bool) -> Iterator[None]:
    """OpskitError -> one line + exit 3; anything unexpected -> one line + exit 4."""
    from opskit.faces.output import log_handler

    logger = logging.getLogger("opskit")
    level = logger.level
    # opskit's warnings (and with --debug its debug lines; never third-party debug logs,
    # which echo whole responses) reach stderr through the one safe path.
    handler = redacting_handler(
        log_handler("%(levelname)s %(name)s: %(message)s" if debug else "%(message)s")
    )
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)
    try:
        yield
    except KeyboardInterrupt as exc:
        if debug:  # the traceback, and the same exit code as without --debug
            _traceback(exc)
        _error("interrupted (Ctrl-C): nothing more was done; a report file is written whole or not")
        raise typer.Exit(INTERRUPTED) from None
    except (typer.Exit, typer.Abort, _ClickException):
        raise
    except OpskitError as exc:
        if debug:
            _traceback(exc)
        guidance = exc.guidance
        if exc.guidance == getattr(type(exc), "default_guidance", None):  # said for Python
            guidance = _CLI_GUIDANCE.get(type(exc), exc.guidance)
        _error(f"{exc.message}" + (f" — {guidance}" if guidance else ""))
        raise typer.Exit(report.USAGE_ERROR) from None
    except Exception as exc:
        if debug:
            _traceback(exc)
        _error(
            f"unexpected {type(exc).__name__}: {_first_line(exc)} "
            "— rerun with --debug for the traceback, and please report it"
        )
        raise typer.Exit(INTERNAL_ERROR) from None
    finally:  # this command's stderr only: never left behind on the process's logger
        logger.removeHandler(handler)
        logger.setLevel(level)


def _traceback(exc: BaseException) -> None:
    """The traceback on stderr, secrets masked (``--debug`` / ``OPSKIT_DEBUG=1``); the exit
    code stays the one the contract gives, so a scheduler reads the same code in debug."""
    import traceback

    sys.stderr.write(safe("".join(traceback.format_exception(exc))))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else "")


def _error(message: str) -> None:
    echo("error: " + " ".join(redact(message).split()), err=True)


def _show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal: never piped, scheduled or quiet."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def _quiet_logs(quiet: bool) -> Iterator[None]:
    """Under --quiet, opskit's warnings (a lookup in another shop failed, ...) stay silent:
    what matters is in the report rows and the exit code."""
    if not quiet:
        yield
        return
    import warnings

    logger = logging.getLogger("opskit")
    handler = logging.NullHandler()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    logger.propagate = False
    try:
        with warnings.catch_warnings():  # a library's warning is a log line, silent here
            warnings.showwarning = lambda message, category, *_a, **_k: logger.warning(
                "%s: %s", category.__name__, message
            )
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _console(quiet: bool = False) -> Console:
    """The one console of every command: strings shown as text (opskit.faces.output)."""
    from opskit.faces import output

    return output.console(quiet)


def _connect(
    database_url: str | None,
    stripe_api_base: str | None,
    *,
    needs_stripe: bool = True,
    schema: Path | None = None,
) -> Ops:
    """The backend; on the demo database, the demo's running sandbox, or one line on how to
    start it (a short-lived command never starts, or re-seeds, a demo world itself).
    ``schema``: a mapping file (JSON/TOML of opskit.Schema fields); else detected."""
    import opskit

    mapping = opskit.Schema.from_file(schema) if schema is not None else None
    return opskit.connect(
        database_url,
        schema=mapping,
        stripe_api_base=stripe_api_base,
        demo="attach" if needs_stripe else "local",
    )


def _shop_ids(values: list[str] | None) -> list[str] | None:
    """``--shop 1 --shop 2`` and ``--shop 1,2`` alike; blanks between commas ignored."""
    if not values:
        return None
    ids = [part.strip() for value in values for part in str(value).split(",")]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError("--shop needs a shop id", guidance="Pass --shop 1 or --shop 1,2.")
    return list(dict.fromkeys(ids))


def _check_shops(ops: Ops, shops: list[str] | None) -> list[Any] | None:
    ids = _shop_ids(shops)
    if not ids:
        return None
    ops.shops(ids)  # type: ignore[arg-type]  # raises UnknownShop before any Stripe request
    known = {str(s): s for s in ops.shops()["shop_id"].tolist()}
    return sorted({known.get(i, i) for i in ids}, key=str)


def _prepare_out(
    out: Path | None,
    fmt: str | None,
    names: tuple[str, ...] = ("report",),
    *,
    can_pick_one: bool = True,
) -> str | None:
    """Resolve and check the output before a long run, so bad input fails in a second.

    ``names``: every table the command will write there (all of them: a table left
    out here would fail only after the run's work is done, and its findings spent)."""
    resolved = report.format_for(out, fmt)
    if out is None and fmt is not None:
        raise InputError("--format needs --out", guidance="Pass --out PATH as well.")
    if out is not None:
        assert resolved is not None
        for path in report.output_paths(out, names, resolved, can_pick_one=can_pick_one).values():
            report.check_writable(path)
    return resolved


def _meta(ops: Ops, shops: list[str] | None) -> dict[str, str]:
    from opskit.common.urls import safe_url

    return {
        "database": safe_url(ops.ctx.db.url),
        "stripe": safe_url(ops.ctx.api_base) if ops.ctx.api_base else "api.stripe.com",
        "shops": ", ".join(map(str, shops)) if shops else "all",
    }


# -- rendering ---------------------------------------------------------------------------------


def _df_table(df: pd.DataFrame, title: str | None = None, limit: int | None = None) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    shown = df if limit is None else df.head(limit)
    for rec in shown.itertuples(index=False, name=None):
        table.add_row(*(Text("" if _isna(v) else safe(v)) for v in rec))
    if limit is not None and len(df) > limit:
        table.caption = f"first {limit} of {len(df)} rows"
    return table


def _isna(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _summary_table(name: str, df: pd.DataFrame) -> Any:
    """Compact: shop | rows | match | the other statuses with their counts."""
    from rich.table import Table

    counts = report.status_counts(df)
    matched = counts.get("match", 0)
    title = f"{name.capitalize()}: {len(df)} rows, {matched} match, {len(df) - matched} findings"
    table = Table(title=title, title_justify="left", pad_edge=False)
    table.add_column("shop", overflow="fold")
    table.add_column("rows", justify="right")
    table.add_column("match", justify="right")
    table.add_column("findings", overflow="fold")
    for rec in report.summaries({name: df})[name].to_dict("records"):
        other = [
            f"{s} {int(rec[s])}"
            for s in report.status_counts(df)
            if s != "match" and s in rec and int(rec[s])
        ]
        table.add_row(
            f"{rec['shop_id']} {rec['shop_name']}",
            str(int(rec["total"])),
            str(int(rec.get("match", 0))),
            ", ".join(other) or "-",
        )
    return table


_SHOP_LEVEL = ("shop_error", "shop_not_configured")


def _findings(df: pd.DataFrame) -> pd.DataFrame:
    """Non-match rows, compact: shop-level statuses collapsed to one row per shop."""
    import pandas as pd

    rows = df[df["status"].astype("string") != "match"]
    shop_level = rows["status"].astype("string").isin(_SHOP_LEVEL).fillna(False)
    ids = [c for c in ("stripe_customer_id", "stripe_subscription_id") if c in df.columns]
    note = pd.Series(pd.NA, index=rows.index, dtype="string")
    for col, prefix in (
        ("suggested_action", ""),
        ("detail", ""),
        ("mismatch_fields", "fields differ: "),
    ):
        if col in rows.columns:
            text = prefix + rows[col].astype("string")
            note = text.where(text.notna(), note)
    per_row = rows.loc[~shop_level, ["shop_id", "account_id", *ids, "status"]].copy()
    per_row["note"] = note[~shop_level]
    collapsed = (
        rows.loc[shop_level]
        .assign(note=note[shop_level])
        .groupby(["shop_id", "status"], observed=True, sort=True)
        .agg(n=("status", "size"), note=("note", "first"))
        .reset_index()
    )
    if len(collapsed):
        collapsed["account_id"] = collapsed["n"].map(lambda n: f"({n} rows)")
        collapsed = collapsed.drop(columns="n")
    out = pd.concat([per_row.astype({"account_id": "string"}), collapsed], ignore_index=True)
    return out.reindex(columns=["shop_id", "account_id", *ids, "status", "note"])


def _print_reports(console: Console, reports: dict[str, pd.DataFrame], findings: bool) -> None:
    for name, df in reports.items():
        console.print(_summary_table(name, df))
        if findings:
            rows = _findings(df)
            if len(rows):
                console.print(_df_table(rows, title=f"{name.capitalize()}: findings"))
        console.print()


def _plan_table(plan: pd.DataFrame, limit: int | None = 25) -> Any:
    compact = plan[["shop_id", "account_id", "key", "old_value", "new_value", "source_status"]]
    compact = compact.assign(  # a Customer snapshot is kilobytes of JSON: show its start
        old_value=_shortened(compact["old_value"]), new_value=_shortened(compact["new_value"])
    )
    title = f"Sync plan (dry run, nothing written): {len(plan)} changes"
    return _df_table(compact, title=title, limit=limit)


def _shortened(values: pd.Series, width: int = 48) -> pd.Series:
    text = values.astype("string")
    long = text.str.len().fillna(0) > width
    return text.where(~long, text.str.slice(0, width - 1) + "…")


_SHOP_COLUMNS = ["shop_id", "shop_name", "mode", "secret_key", "key_problem"]

_VERDICT = {
    report.OK: "all match",
    report.DRIFT: "drift found",
    report.SHOP_FAILED: "a shop failed (shop_error rows)",
}


# -- commands ----------------------------------------------------------------------------------


@app.command()
def reconcile(
    shop: Shops = None,
    which: Annotated[
        str,
        typer.Option(
            "--report", "-r", help="customers, subscriptions or all.", envvar="OPSKIT_REPORT"
        ),
    ] = "all",
    out: Out = None,
    fmt: Fmt = None,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    schema: SchemaFile = None,
    executor: ExecutorOpt = "threads",
    quiet: Quiet = False,
    debug: Debug = False,
    money_period: Annotated[
        str | None,
        typer.Option(
            "--money-period",
            help="Add the money sections of this period (2026-11): payments, payouts, "
            "payout report, daily overview (see `opskit money`).",
        ),
    ] = None,
) -> None:
    """Compare every shop's accounts with its own Stripe account; optionally write a report.

    Exit 0 all match, 1 drift found (shop_not_configured counts as drift: someone
    must add the shop's key), 2 a shop failed (shop_error rows, wins over 1),
    3 usage or configuration error, 4 internal error, 130 interrupted (Ctrl-C).
    """
    from opskit.common.executors import executor_for, parse_executor

    with _guard(debug), _quiet_logs(quiet):
        names = report.report_names(which)
        parse_executor(executor)
        _cli_money.check_period(money_period)  # every argument checked before any I/O
        resolved = _prepare_out(out, fmt, names)
        ops = _connect(database_url, stripe_api_base, schema=schema)
        shops = _check_shops(ops, shop)
        with executor_for(executor, timeout=_dask_timeout()) as pool:
            reports = report.run_reports(
                ops, which, shops, executor=pool, progress=_show_progress(quiet)
            )
            money = _cli_money.money_sections(ops, money_period, shops, pool, quiet)
        written = (
            report.write_report({**reports, **money}, out, resolved, meta=_meta(ops, shops))
            if out is not None
            else []
        )
        code = max(report.outcome(reports), _cli_money.money_code(money))
        console = _console(quiet)
        console.print(f"Mapping: {ops.mapping}")
        _print_reports(console, reports, findings=out is None)
        for path in written:
            console.print(f"Wrote {path}")
        console.print(f"Result: {_VERDICT[code]} (exit {code})")
    raise typer.Exit(code)


def _dask_timeout() -> float:
    try:
        return float(os.environ.get("OPSKIT_DASK_TIMEOUT", "5"))
    except ValueError:
        return 5.0


@app.command()
def sync(
    plan_out: Annotated[
        Path | None,
        typer.Option(
            "--plan-out", help="Dry run: write the proposed changes here (.csv/.parquet)."
        ),
    ] = None,
    apply: Annotated[
        Path | None,
        typer.Option("--apply", help="Apply a plan file (csv/parquet), or a filtered copy of one."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option("--actor", envvar="OPSKIT_ACTOR", help="Who applies (recorded in the audit)."),
    ] = None,
    shop: Shops = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="csv or parquet (default: from the --plan-out suffix)."
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    schema: SchemaFile = None,
    executor: ExecutorOpt = "threads",
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Pull Stripe's state into local account details: plan first (dry run), then apply.

    --plan-out: writes the plan, nothing else; exit 0 nothing to change, 1 changes
    proposed, 2 a shop failed. --apply PLAN --actor NAME: checks each row against the
    shop's Stripe now (an edited link, snapshot or time is refused with its account),
    writes the rest, audited; exit 0 all applied (or already applied), 1 some rows
    refused, stale or in error (see the table).
    """
    with _guard(debug), _quiet_logs(quiet):
        if (plan_out is None) == (apply is None):
            raise InputError(
                "pass exactly one of --plan-out PATH or --apply PLAN",
                guidance="Make a plan with --plan-out plan.csv, review it, then --apply plan.csv.",
            )
        if apply is not None:
            code = _sync_apply(apply, actor, database_url, stripe_api_base, quiet, schema)
        else:
            assert plan_out is not None
            code = _sync_plan(
                plan_out, fmt, shop, database_url, stripe_api_base, executor, quiet, schema
            )
    raise typer.Exit(code)


def _sync_plan(
    plan_out: Path,
    fmt: str | None,
    shop: list[str] | None,
    database_url: str | None,
    stripe_api_base: str | None,
    executor: str,
    quiet: bool,
    schema: Path | None = None,
) -> int:
    from opskit.common.executors import executor_for, parse_executor

    parse_executor(executor)
    resolved = _prepare_out(plan_out, fmt)
    if resolved not in ("csv", "parquet"):
        raise InputError(
            f"cannot write the plan as {resolved}: --apply reads csv or parquet only",
            guidance="Pass --plan-out plan.csv (or plan.parquet).",
        )
    ops = _connect(database_url, stripe_api_base, schema=schema)
    shops = _check_shops(ops, shop)
    with executor_for(executor, timeout=_dask_timeout()) as pool:
        reports = report.run_reports(
            ops, "all", shops, executor=pool, progress=_show_progress(quiet)
        )
    plan = ops.sync_plan(shops, reports=reports)
    written = report.write_report({"plan": plan}, plan_out, resolved)
    code = (
        report.SHOP_FAILED
        if report.outcome(reports) == report.SHOP_FAILED
        else int(bool(len(plan)))
    )
    console = _console(quiet)
    console.print(_plan_table(plan, limit=None))
    for path in written:
        console.print(f"Wrote {path}")
    console.print(f"Review it, then: opskit sync --apply {plan_out} --actor YOUR.NAME")
    return code


def _read_plan(path: Path) -> pd.DataFrame:
    import warnings

    import pandas as pd

    from opskit.core import frames

    if not path.is_file():
        raise InputError(
            f"plan file {str(path)!r} not found", guidance="Pass the file --plan-out wrote."
        )
    fmt = report.format_for(path, None)
    if fmt not in ("csv", "parquet"):
        raise InputError(
            f"cannot apply a {fmt} plan",
            guidance="Apply the .csv or .parquet file --plan-out wrote.",
        )
    try:  # whatever the file holds: empty, not CSV, not Parquet, bad values, unreadable
        if fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            dtypes = {
                c: ("Int64" if d == "Int64" else "string") for c, d in frames.SYNC_PLAN.items()
            }
            dtypes.update(shop_id="string", account_id="string")  # ids are text (UUIDs, integers)
            with warnings.catch_warnings():  # a row with more fields than the header: refused
                warnings.simplefilter("error")  # (index_col=False: never taken as an index)
                df = pd.read_csv(
                    path,
                    dtype=dtypes,  # type: ignore[arg-type]
                    keep_default_na=False,
                    na_values=[""],
                    index_col=False,
                )
        missing = [
            c for c in ("shop_id", "account_id", "key", "old_value", "new_value") if c not in df
        ]
        if not missing:
            return frames.conform(df, frames.SYNC_PLAN)
    except Exception as exc:  # noqa: BLE001 - any reader's error means the same to the user
        raise InputError(
            f"cannot read the plan {str(path)!r} as {fmt}: {type(exc).__name__}: "
            + (str(exc).strip().splitlines() or [""])[0],
            guidance=f"Apply the {fmt} file `opskit sync --plan-out` wrote (or a copy with rows "
            "removed); make a new one with `opskit sync --plan-out plan.csv`.",
        ) from None
    raise InputError(
        f"{str(path)!r} is not a sync plan: no column {', '.join(missing)}",
        guidance="Make one with `opskit sync --plan-out plan.csv`.",
    )


def _sync_apply(
    plan_path: Path,
    actor: str | None,
    database_url: str | None,
    stripe_api_base: str | None,
    quiet: bool,
    schema: Path | None = None,
) -> int:
    if not actor or not actor.strip():
        raise InputError(
            "--apply needs --actor NAME", guidance="Say who applies: --actor your.name."
        )
    plan = _read_plan(plan_path)
    # Stripe is asked: every row is checked against the shop's Stripe as it is now.
    ops = _connect(database_url, stripe_api_base, schema=schema)
    result = ops.apply_sync(plan, actor=actor)
    applied = int((result["outcome"] == "applied").sum())
    already = int((result["outcome"] == "already_applied").sum())
    console = _console(quiet)
    console.print(f"Applied {applied} of {len(result)} changes (actor {actor}).")
    if already:  # applied by an earlier (perhaps interrupted) run: success, said so
        console.print(f"{already} were already applied; nothing to write for them.")
    rest = result[~result["outcome"].isin(["applied", "already_applied"])]
    if len(rest):
        cols = ["shop_id", "account_id", "key", "outcome", "detail"]
        console.print(_df_table(rest[cols], title="Not applied"))
    return report.OK if len(rest) == 0 else report.DRIFT


@app.command()
def demo(
    out: Out = None,
    fmt: Fmt = None,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Keep the sandbox running afterwards (Ctrl-C stops it)."),
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Sandbox port (0: any free port).")] = 0,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Run the whole thing on seeded demo data: a local Stripe sandbox plus the embedded database.

    The demo world is the database and its sandbox together (in the data dir, the
    sandbox's URL recorded beside the database). Rebuilds the world from the seed,
    unless another process is running it (then reports on it as it is: nothing
    re-seeds a database in use), and prints the shops (keys masked), the first
    accounts, both reports, the summary and the sync plan (dry run: nothing is
    written). With --serve the sandbox keeps running, and `opskit reconcile`,
    `opskit sync` and `opskit.connect()` in other shells use it with no settings.
    Needs no configuration and no network.
    """
    from opskit import demo as demo_mod
    from opskit.demo import session as demo_session

    with _guard(debug):
        resolved = _prepare_out(out, fmt, report.REPORTS)
        console = _console(quiet)
        session = demo_session.attach()
        if session is None:
            console.print("Starting a local Stripe sandbox and building the demo database ...")
            session = demo_mod.start(port=port)
        else:
            console.print(
                f"The demo world is already running (sandbox {session.api_base}, started by "
                "another process): reporting on it as it is, without re-seeding it."
            )
        with session:
            ops = session.ops
            console.print(
                f"Stripe sandbox: {session.api_base}  database: {_meta(ops, None)['database']}\n"
            )
            console.print(_df_table(ops.shops()[_SHOP_COLUMNS], title="Shops (keys masked)"))
            accounts = ops.accounts()
            cols = ["account_id", "shop_id", "email", "name", "stripe_customer_id",
                    "subscription_status", "details_error"]  # fmt: skip
            cols = [c for c in cols if c in accounts.columns]
            console.print(_df_table(accounts[cols], title=f"Accounts ({len(accounts)})", limit=5))
            console.print()
            reports = report.run_reports(ops, "all", progress=_show_progress(quiet))
            _print_reports(console, reports, findings=True)
            plan = ops.sync_plan(reports=reports)
            console.print(_plan_table(plan))
            if out is not None:
                for path in report.write_report(reports, out, resolved, meta=_meta(ops, None)):
                    console.print(f"Wrote {path}")
            code = report.outcome(reports)
            console.print(f"Reconcile would exit {code}: {_VERDICT[code]}.")
            cli_events.demo_refresh(console, session, quiet)  # keeping up by events
            if serve and session.owner:
                _serve_demo(console, session.api_base)
            elif serve:
                console.print(f"Its own process keeps serving it at {session.api_base}.")
    raise typer.Exit(0)


def _serve_demo(console: Console, url: str) -> None:
    import threading

    console.print(
        f"\nSandbox kept running at {url}; its URL is recorded beside the demo database, "
        "so in another shell, with no settings:\n"
        "  opskit reconcile --out report.html\n"
        "  python -c 'import opskit; print(opskit.connect().reconcile_customers())'\n"
        "Ctrl-C stops it."
    )
    with suppress(KeyboardInterrupt):
        threading.Event().wait()


@app.command()
def sandbox(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 12111,
    keys: Annotated[
        str | None,
        typer.Option(
            "--keys",
            envvar="OPSKIT_SANDBOX_KEYS",
            help="Comma-separated keys to accept (default: any sk_test_ key gets its own store).",
        ),
    ] = None,
    latency: Annotated[float, typer.Option("--latency", help="Seconds added per request.")] = 0.0,
    rate_limit: Annotated[
        float | None, typer.Option("--rate-limit", help="Requests per second per key.")
    ] = None,
    rate_mode: Annotated[
        str, typer.Option("--rate-mode", help="pace (wait) or reject (429) over the limit.")
    ] = "pace",
    debug: Debug = False,
) -> None:
    """Serve the local multi-tenant Stripe sandbox in the foreground (test keys only)."""
    from opskit.demo import serve_forever

    with _guard(debug):
        if rate_mode not in ("pace", "reject"):
            raise InputError(f"unknown rate mode {rate_mode!r}", guidance="Use pace or reject.")
        if not 0 <= port < 65536:
            raise InputError(f"port {port} out of range", guidance="Use 1-65535 (0: any free).")
        key_list = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
        serve_forever(port, key_list, latency, rate_limit, rate_mode)


@app.command()
def shops(
    out: Out = None,
    fmt: Fmt = None,
    database_url: DatabaseUrl = None,
    schema: SchemaFile = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """List the shops with their key mode; secret keys masked."""
    with _guard(debug):
        resolved = _prepare_out(out, fmt)
        ops = _connect(database_url, None, needs_stripe=False, schema=schema)
        df = ops.shops()
        console = _console(quiet)
        console.print(_df_table(df, title=f"Shops ({len(df)})"))
        if out is not None:
            for path in report.write_report({"shops": df}, out, resolved, title="opskit shops"):
                console.print(f"Wrote {path}")


@app.command()
def audit(
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Newest N rows (1 or more).")
    ] = 50,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    shop: Shops = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Action, or a prefix with *: 'sync.*'.")
    ] = None,
    out: Out = None,
    fmt: Fmt = None,
    database_url: DatabaseUrl = None,
    schema: SchemaFile = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Show every write opskit made (newest first), from the audit table."""
    with _guard(debug):
        resolved = _prepare_out(out, fmt)
        ops = _connect(database_url, None, needs_stripe=False, schema=schema)
        ids = _shop_ids(shop)
        df = ops.audit_log(limit=limit, actor=actor, shop_id=ids or None, action=action)
        console = _console(quiet)
        cols = ["audit_id", "at", "actor", "shop_id", "action", "target", "outcome", "error"]
        # A write that returned an earlier result (a replay, already done) says so here.
        done = df["params"].astype("string").str.contains('"already_done": ?true', regex=True)
        shown = df[cols].assign(
            outcome=df["outcome"].where(~done.fillna(False), df["outcome"] + " (already done)")
        )
        console.print(_df_table(shown, title=f"Audit log ({len(df)} rows, newest first)"))
        if out is not None:
            for path in report.write_report({"audit": df}, out, resolved, title="opskit audit"):
                console.print(f"Wrote {path}")


@app.command()
def recover(
    actor: Annotated[
        str, typer.Option("--actor", help="Who resolves (recorded on any details write).")
    ] = "opskit",
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            help="Leave intents younger than this many seconds (default: the write deadline "
            "plus a margin). A writer still waiting for Stripe is left alone whatever this says.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Ask Stripe, record nothing.")] = False,
    database_url: DatabaseUrl = None,
    stripe_api_base: StripeApiBase = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Resolve Stripe writes left without an outcome (killed mid-write, answer lost).

    Each one is looked up in Stripe by the tag opskit puts on what it creates and
    recorded: found (ok, and linked locally), or not written. An intent whose
    request may still be in flight (its writer alive and within its deadline) is
    never called "not written": it is left alone. Exit 0 every open intent
    resolved (or none open); 2 some are still open (could not be found out now,
    or left alone as young or in flight: run again later); 3 a negative age.
    """
    with _guard(debug):
        if older_than is not None and not older_than >= 0:
            raise InputError(
                f"--older-than {older_than:g} is not an age",
                guidance="Give seconds >= 0 (0: every intent whose writer is gone), or leave "
                "it out for the default (the write deadline plus a margin).",
            )
        ops = _connect(database_url, stripe_api_base)
        df = ops.recover(actor=actor, older_than=older_than, dry_run=dry_run)
        console = _console(quiet)
        cols = ["audit_id", "shop_id", "action", "target", "outcome", "result", "detail"]
        title = f"Open Stripe-write intents ({len(df)})" + (" — dry run" if dry_run else "")
        console.print(_df_table(df[cols], title=title))
        unresolved = int((df["outcome"] == "unknown").sum())
        if unresolved:
            console.print(f"{unresolved} could not be found out now: run again later.")
        # Filtered in SQL: the audit log grows with every write.
        still_open = len(ops.audit_log(outcome=["pending", "unknown"]))
        young = still_open - (len(df) if dry_run else unresolved)
        if young > 0:  # never silent about intents it left alone
            age = f"{older_than:g} s" if older_than is not None else "the write deadline"
            console.print(
                f"{young} left alone (younger than {age}, or their writer may still be "
                "waiting for Stripe): run again later."
            )
    # Open intents remaining (unknown now, or left alone) are an incomplete run: 2.
    raise typer.Exit(report.SHOP_FAILED if unresolved or young > 0 else report.OK)


# `opskit refresh` and `opskit webhooks ...` live in their own module.
from opskit.faces import cli_events  # noqa: E402 - uses the helpers above

cli_events.register(app)


def main() -> None:
    """Entry point of the ``opskit`` script and ``python -m opskit``."""
    app()


from opskit.faces import cli_money as _cli_money  # noqa: E402,F401 - registers `opskit money`
