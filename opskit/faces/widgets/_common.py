"""Pieces every panel shares: the message area, the LIVE badge, the confirmation step,
the progress bar, shop pickers and HTML tables.

Callbacks never write with ``with out:`` (that output leaks into the cell under
nbval and is lost in JupyterLab); they set widget values, or append to an
``Output`` with ``append_stdout`` / ``append_display_data``.
"""

from __future__ import annotations

import getpass
import html
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as w
import pandas as pd

from opskit.common.exceptions import OpskitError
from opskit.common.keys import redact
from opskit.common.stripe_errors import is_stripe_error

log = logging.getLogger("opskit.faces.widgets")

MAX_TABLE_ROWS = 500

_STYLE = {
    "error": ("#fde8e8", "#7f1d1d", "#b42318"),
    "warning": ("#fff4e5", "#7a4100", "#b54708"),
    "success": ("#e8f5e9", "#1b4d23", "#2f7d32"),
    "info": ("#eef2f7", "#243b53", "#7b93ad"),
}


def default_actor() -> str:
    """Who the audit log names for writes made from a panel."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user} (notebook)"


def esc(value: Any) -> str:
    """HTML-escaped, redacted text of a cell; empty for missing values."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return ""
    return html.escape(redact(str(value)))


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(what happened, what to do next)`` for any exception, without a traceback."""
    if isinstance(exc, OpskitError):
        return exc.message, exc.guidance
    if is_stripe_error(exc):
        request_id = getattr(exc, "request_id", None)
        request = f" [request {request_id}]" if request_id else ""
        text = getattr(exc, "user_message", None) or str(exc) or type(exc).__name__
        return (
            redact(f"Stripe refused: {text}{request}"),
            "Check the shop's key and the object ids; the request id helps Stripe support.",
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return (
        redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__),
        "Unexpected error: nothing more was attempted. The traceback is in the "
        "'opskit.faces.widgets' log; please report it with the steps that led here.",
    )


class Message(w.HTML):
    """The panel's one message line: error (with guidance), warning, success or info.

    ``kind`` and ``text`` hold what is shown, as plain text, for tests and logs.
    """

    def __init__(self) -> None:
        super().__init__(value="")
        self.kind = ""
        self.text = ""
        self.add_class("opskit-message")

    def show(self, kind: str, text: str, guidance: str = "") -> None:
        bg, fg, border = _STYLE[kind]
        self.kind = kind
        self.text = redact(text + (f"\n{guidance}" if guidance else ""))
        body = esc(text).replace("\n", "<br>")
        hint = f'<div style="margin-top:4px"><b>What to do:</b> {esc(guidance)}</div>'
        self.value = (
            f'<div class="opskit-{kind}" style="background:{bg};color:{fg};'
            f"border-left:4px solid {border};padding:6px 10px;margin:4px 0;"
            f'white-space:pre-wrap">{body}{hint if guidance else ""}</div>'
        )

    def error(self, exc: BaseException) -> None:
        text, guidance = describe_error(exc)
        self.show("error", text, guidance)

    def clear(self) -> None:
        self.kind = ""
        self.text = ""
        self.value = ""


class LiveBadge(w.HTML):
    """A red LIVE badge, visible while a shop with a live key is selected."""

    def __init__(self) -> None:
        super().__init__(value="")
        self.live = False

    def update(self, live_shops: list[str]) -> None:
        self.live = bool(live_shops)
        if not live_shops:
            self.value = ""
            return
        names = ", ".join(esc(n) for n in live_shops)
        self.value = (
            '<span class="opskit-live" style="background:#b42318;color:#fff;font-weight:700;'
            'padding:2px 10px;border-radius:10px;letter-spacing:1px">LIVE</span> '
            f'<span style="color:#b42318">real money: {names} uses a live Stripe key; '
            "writes ask for confirmation</span>"
        )


class Confirm(w.VBox):
    """The confirmation step: a question with Confirm / Cancel, hidden until asked."""

    def __init__(self) -> None:
        self.question = w.HTML()
        self.confirm_button = w.Button(description="Confirm", button_style="danger", icon="check")
        self.cancel_button = w.Button(description="Cancel", icon="times")
        super().__init__([self.question, w.HBox([self.confirm_button, self.cancel_button])])
        self.layout.display = "none"
        self._action: Callable[[], None] | None = None
        self.confirm_button.on_click(lambda _b: self._answer(True))
        self.cancel_button.on_click(lambda _b: self._answer(False))

    @property
    def pending(self) -> bool:
        return self._action is not None

    def ask(self, question: str, action: Callable[[], None], *, live: bool = False) -> None:
        warn = (
            '<b style="color:#b42318">LIVE key: this acts on real customers and money.</b><br>'
            if live
            else ""
        )
        self.question.value = f'<div style="padding:4px 0">{warn}{esc(question)}</div>'
        self.confirm_button.description = "Confirm LIVE" if live else "Confirm"
        self._action = action
        self.layout.display = "flex"

    def reset(self) -> None:
        self._action = None
        self.question.value = ""
        self.layout.display = "none"

    def _answer(self, yes: bool) -> None:
        action = self._action
        self.reset()
        if yes and action is not None:
            action()


class Progress(w.HBox):
    """An IntProgress with a caption; ``step()`` advances it, ``done()`` fills it."""

    def __init__(self) -> None:
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="320px"))
        self.caption = w.Label("")
        super().__init__([self.bar, self.caption])
        self.layout.visibility = "hidden"

    def start(self, total: int, caption: str) -> None:
        self.bar.max = max(int(total), 1)
        self.bar.value = 0
        self.bar.bar_style = "info"
        self.caption.value = caption
        self.layout.visibility = "visible"

    def step(self, caption: str | None = None, n: int = 1) -> None:
        self.bar.value = min(self.bar.value + n, self.bar.max)
        if caption is not None:
            self.caption.value = caption

    def done(self, caption: str, ok: bool = True) -> None:
        self.bar.value = self.bar.max
        self.bar.bar_style = "success" if ok else "danger"
        self.caption.value = caption


class _OutputLog(logging.Handler):
    """Appends opskit's warnings to an Output widget while a panel action runs."""

    def __init__(self, out: w.Output) -> None:
        super().__init__(logging.WARNING)
        self.out = out
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.append_stdout(redact(self.format(record)) + "\n")
        except Exception:  # a log line must never break the action
            self.handleError(record)


@contextmanager
def log_to(out: w.Output) -> Iterator[None]:
    """Route the ``opskit`` logger's warnings into ``out`` for the duration."""
    handler = _OutputLog(out)
    logger = logging.getLogger("opskit")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def guarded(
    message: Message,
    *buttons: w.Button,
    log_out: w.Output | None = None,
    after: Callable[[], None] | None = None,
) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Decorate an action: buttons disabled while it runs, any error shown in ``message``.

    ``after`` runs last, whatever happened (e.g. to disable a button the action spent).
    """

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            for b in buttons:
                b.disabled = True
            try:
                if log_out is not None:
                    with log_to(log_out):
                        fn()
                else:
                    fn()
            except Exception as exc:
                if not (isinstance(exc, OpskitError) or is_stripe_error(exc)):
                    log.exception("panel action failed")
                message.error(exc)
            finally:
                for b in buttons:
                    b.disabled = False
                if after is not None:
                    after()

        return run

    return wrap


# -- shops -------------------------------------------------------------------------------


def shop_choices(shops: pd.DataFrame) -> list[tuple[str, int]]:
    """``("1 · Northwind Coffee", 1)`` options; live shops say LIVE, unusable keys say why."""
    out = []
    for row in shops.to_dict("records"):
        label = f"{row['shop_id']} · {row['shop_name']}"
        if row["mode"] == "live":
            label += "  [LIVE]"
        elif isinstance(row["key_problem"], str):
            label += f"  ({row['key_problem']})"
        out.append((label, int(row["shop_id"])))
    return out


def live_names(shops: pd.DataFrame, ids: list[int] | tuple[int, ...]) -> list[str]:
    """Names of the shops among ``ids`` that carry a live key."""
    mine = shops[shops["shop_id"].isin(list(ids)) & shops["mode"].eq("live")]
    return [f"{r.shop_id} · {r.shop_name}" for r in mine.itertuples(index=False)]


def account_picker(shops: pd.DataFrame) -> tuple[w.Dropdown, LiveBadge, w.Text, w.Dropdown]:
    """The shop dropdown, its LIVE badge, the email/name search and the account dropdown."""
    shop = w.Dropdown(
        options=shop_choices(shops), description="Shop", layout=w.Layout(width="420px")
    )
    search = w.Text(description="Search", placeholder="email or name", continuous_update=False)
    account = w.Dropdown(options=[], description="Account", layout=w.Layout(width="620px"))
    return shop, LiveBadge(), search, account


def account_choices(accounts: pd.DataFrame, search: str) -> list[tuple[str, int]]:
    """Accounts whose email or name contains ``search`` (case-insensitive)."""
    text = search.strip().lower()
    rows = accounts
    if text:
        hit = accounts["email"].str.lower().str.contains(text, regex=False) | accounts[
            "name"
        ].str.lower().str.contains(text, regex=False)
        rows = accounts[hit.fillna(False).astype(bool)]
    out = []
    for row in rows.to_dict("records"):
        linked = "" if isinstance(row["stripe_customer_id"], str) else "  (no Stripe customer)"
        label = f"{row['email']} · {row['name']} (#{row['account_id']}){linked}"
        out.append((label, int(row["account_id"])))
    return out


# -- tables ------------------------------------------------------------------------------


_TABLE_CSS = (
    ".opskit-table th,.opskit-table td{padding:2px 8px;text-align:left;white-space:nowrap;"
    "border-bottom:1px solid #e4e7eb}"
)


def frame_html(df: pd.DataFrame, *, max_rows: int = MAX_TABLE_ROWS, css_class: str = "") -> str:
    """An escaped HTML table of ``df`` (first ``max_rows`` rows, with a note when cut)."""
    cols = list(df.columns)
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for rec in df.head(max_rows).itertuples(index=False, name=None):
        body.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in rec) + "</tr>")
    note = ""
    if len(df) > max_rows:
        note = f"<p><i>showing the first {max_rows} of {len(df)} rows</i></p>"
    if not len(df):
        note = "<p><i>no rows</i></p>"
    return (
        f"<style>{_TABLE_CSS}</style>"
        f'<div class="opskit-table {css_class}" style="max-height:420px;overflow:auto">'
        '<table style="border-collapse:collapse;font-size:12px">'
        f'<thead style="position:sticky;top:0;background:#f0f4f8"><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def heading(text: str) -> w.HTML:
    return w.HTML(f"<h3 style='margin:4px 0'>{esc(text)}</h3>")


def set_options(dropdown: w.Dropdown, options: list[tuple[str, Any]]) -> None:
    """Replace a Dropdown's options, keeping its value when still offered, else the first."""
    keep = dropdown.value
    dropdown.options = options
    values = [v for _, v in options]
    if keep in values:
        dropdown.value = keep
    elif values:
        dropdown.value = values[0]
