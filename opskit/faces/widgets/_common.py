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
import traitlets

from opskit.common.exceptions import OpskitError
from opskit.common.keys import redact
from opskit.common.stripe_errors import is_stripe_error
from opskit.core.normalize import email_key, email_keys

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


# What to do, in a panel's own terms (its buttons and fields), for errors whose own
# guidance speaks Python (``ops.sync_plan()``, ``confirm=True``): a panel user has no REPL.
PANEL_GUIDANCE: dict[str, str] = {
    "UnknownShop": "Pick a shop from the Shop list; it only offers the backend's shops.",
    "UnknownAccount": "Search again and pick the account from the Account list.",
    "InvalidAmount": "Type the amount as digits with a dot for decimals (19.99), and a "
    "three-letter currency such as usd.",
    "StaleWrite": "The data changed since the plan was built: press Build plan again and "
    "review the rows.",
    "StripeCustomerMissing": "Press Create Stripe customer first, or pick a linked account.",
    "LiveWriteRefused": "Press the button again and answer the LIVE confirmation.",
    "PartialWrite": "Press the same button again: Stripe returns the same object and it is "
    "recorded then. The Stripe id is shown above.",
    "UnknownSubscription": "Press Refresh: the subscription list is out of date.",
    "StripeRetriesExhausted": "Stripe did not answer in time: wait a minute and press the "
    "button again.",
}


def panel_guidance(exc: OpskitError) -> str:
    """``exc``'s guidance as a panel shows it: no Python calls, only buttons and fields."""
    for cls in type(exc).__mro__:
        if cls.__name__ in PANEL_GUIDANCE:
            return PANEL_GUIDANCE[cls.__name__]
    return exc.guidance


def describe_error(exc: BaseException) -> tuple[str, str]:
    """``(what happened, what to do next)`` for any exception, without a traceback.

    The "what to do" is in the panel's own terms (:func:`panel_guidance`).
    """
    if isinstance(exc, OpskitError):
        return exc.message, panel_guidance(exc)
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
    """The confirmation step: a question answered with verbs, hidden until asked.

    The buttons say what they do ("Cancel subscription" / "Keep it"), never a bare
    Confirm / Cancel, which reads backwards when the action itself is a cancel.
    """

    def __init__(self) -> None:
        self.question = w.HTML()
        self.confirm_button = w.Button(
            description="Confirm", button_style="danger", icon="check",
            layout=w.Layout(width="auto"),
        )  # fmt: skip
        self.cancel_button = w.Button(
            description="Go back", icon="times", layout=w.Layout(width="auto")
        )
        super().__init__([self.question, w.HBox([self.confirm_button, self.cancel_button])])
        self.layout.display = "none"
        self._action: Callable[[], None] | None = None
        self.confirm_button.on_click(lambda _b: self._answer(True))
        self.cancel_button.on_click(lambda _b: self._answer(False))

    @property
    def pending(self) -> bool:
        return self._action is not None

    def ask(
        self,
        question: str,
        action: Callable[[], None],
        *,
        live: bool = False,
        yes: str = "Confirm",
        no: str = "Go back",
    ) -> None:
        """Show ``question`` with a ``yes`` button (runs ``action``) and a ``no`` button."""
        warn = (
            '<b style="color:#b42318">LIVE key: this acts on real customers and money.</b><br>'
            if live
            else ""
        )
        self.question.value = f'<div style="padding:4px 0">{warn}{esc(question)}</div>'
        self.confirm_button.description = f"{yes} (LIVE)" if live else yes
        self.cancel_button.description = no
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


class CheckList(w.VBox):
    """Rows with a checkbox each: a click toggles that row only (a native multi-select
    replaces the whole selection on a plain click).

    ``options`` is a list of ``(label, value)``; ``value`` is the tuple of checked
    values, in option order, and can be set or observed like a SelectMultiple's.
    """

    value = traitlets.Tuple()

    def __init__(self, *, max_height: str = "360px", css_class: str = "") -> None:
        super().__init__([])
        self._options: list[tuple[str, Any]] = []
        self._boxes: list[w.Checkbox] = []
        self._syncing = False
        self.layout = w.Layout(max_height=max_height, overflow="auto", width="100%")
        if css_class:
            self.add_class(css_class)

    @property
    def options(self) -> list[tuple[str, Any]]:
        return list(self._options)

    @options.setter
    def options(self, options: list[tuple[str, Any]]) -> None:
        self._options = list(options)
        self._boxes = []
        for label, _value in self._options:
            box = w.Checkbox(
                value=False, description=label, tooltip=label, indent=False,
                layout=w.Layout(width="auto", margin="0"),
            )  # fmt: skip
            box.add_class("opskit-check")
            box.observe(lambda _c: self._from_boxes(), names="value")
            self._boxes.append(box)
        self.children = tuple(self._boxes)
        self.value = ()

    @traitlets.observe("value")
    def _to_boxes(self, change: Any) -> None:
        if self._syncing:
            return
        wanted = set(change["new"])
        self._syncing = True
        try:
            for box, (_label, value) in zip(self._boxes, self._options, strict=True):
                box.value = value in wanted
        finally:
            self._syncing = False
        ordered = tuple(v for _, v in self._options if v in wanted)
        if ordered != tuple(change["new"]):
            self.value = ordered

    def _from_boxes(self) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self.value = tuple(
                v for box, (_, v) in zip(self._boxes, self._options, strict=True) if box.value
            )
        finally:
            self._syncing = False


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


def shop_choices(shops: pd.DataFrame) -> list[tuple[str, str]]:
    """``("1 · Northwind Coffee", 1)`` options; live shops say LIVE, unusable keys say why."""
    out = []
    for row in shops.to_dict("records"):
        label = f"{row['shop_id']} · {row['shop_name']}"
        if row["mode"] == "live":
            label += "  [LIVE]"
        elif isinstance(row["key_problem"], str):
            label += f"  ({row['key_problem']})"
        out.append((label, str(row["shop_id"])))
    return out


def live_now(ops: Any, shop_id: Any) -> bool:
    """Whether the shop's key is live *now* (read from the database at this moment).

    Panels ask this when they put a write to the user, and pass the answer as the
    write's ``confirm``: a key that turned live after the question was put is
    refused by the write's own guard (which reads the key it writes with), never
    confirmed by an ordinary "Confirm".
    """
    if shop_id is None:
        return False
    shops = ops.shops([shop_id])
    return bool(len(shops)) and bool((shops["mode"] == "live").any())


def live_names(shops: pd.DataFrame, ids: list[str] | tuple[str, ...]) -> list[str]:
    """Names of the shops among ``ids`` that carry a live key."""
    mine = shops[shops["shop_id"].isin(list(ids)) & shops["mode"].eq("live")]
    return [f"{r.shop_id} · {r.shop_name}" for r in mine.itertuples(index=False)]


def account_picker(shops: pd.DataFrame) -> tuple[w.Dropdown, LiveBadge, w.Text, w.Dropdown]:
    """The shop dropdown, its LIVE badge, the account search and the account dropdown."""
    shop = w.Dropdown(
        options=shop_choices(shops), description="Shop", layout=w.Layout(width="420px")
    )
    search = w.Text(
        description="Search",
        placeholder="email, name, account id or cus_…",
        continuous_update=False,
        layout=w.Layout(width="420px"),
    )
    account = w.Dropdown(options=[], description="Account", layout=w.Layout(width="620px"))
    return shop, LiveBadge(), search, account


def account_matches(accounts: pd.DataFrame, search: str) -> pd.DataFrame:
    """Accounts ``search`` finds: part of the email or name, or the account id or the
    Stripe customer id (what the reports show), case-insensitive; emails also as the
    one email rule reads them (:mod:`opskit.core.normalize`); all when empty."""
    text = search.strip().lower()
    if not text or not len(accounts):
        return accounts
    hit = pd.Series(False, index=accounts.index)
    for col in ("email", "name", "stripe_customer_id"):
        if col in accounts.columns:
            found = accounts[col].astype("string").str.lower().str.contains(text, regex=False)
            hit |= found.fillna(False).astype(bool)
    if "email" in accounts.columns and email_key(search):
        # emails also by the one email rule (no-break spaces, a space inside, full-width ...)
        keys = email_keys(accounts["email"])
        hit |= keys.str.contains(email_key(search), regex=False).fillna(False).astype(bool)
    if "account_id" in accounts.columns:
        ident = accounts["account_id"].astype("string").str.lower()
        hit |= ident.eq(text.removeprefix("#")).fillna(False).astype(bool)
    return accounts[hit]


def account_choices(accounts: pd.DataFrame, search: str) -> list[tuple[str, Any]]:
    """Dropdown options for the accounts :func:`account_matches` finds."""
    out = []
    for row in account_matches(accounts, search).to_dict("records"):
        linked = row.get("stripe_customer_id")
        tail = f"  · {linked}" if isinstance(linked, str) else "  (no Stripe customer)"
        email, name = row.get("email"), row.get("name")
        who = " · ".join(dict.fromkeys(str(v) for v in (email, name) if isinstance(v, str) and v))
        out.append((f"{who} (#{row['account_id']}){tail}", row["account_id"]))
    return out


def no_account_found(
    message: Message, all_accounts: pd.DataFrame, search: str, shop_label: str
) -> None:
    """Say that ``search`` found nothing in this shop, and in which shop it would."""
    elsewhere = account_matches(all_accounts, search)
    if len(elsewhere) and "shop_id" in elsewhere.columns:
        shops = ", ".join(dict.fromkeys(str(s) for s in elsewhere["shop_id"]))
        message.show(
            "warning",
            f"No account of shop {shop_label} matches {search.strip()!r}; "
            f"it matches {len(elsewhere)} account(s) of shop {shops}.",
            "Pick that shop in the Shop list: each shop has its own accounts and Stripe.",
        )
        return
    message.show(
        "warning",
        f"No account of shop {shop_label} matches {search.strip()!r} "
        "(searched email, name, account id and Stripe customer id).",
        "Check the spelling, or clear Search to list every account of the shop.",
    )


# -- tables ------------------------------------------------------------------------------


_TABLE_CSS = (
    ".opskit-table th,.opskit-table td{padding:2px 8px;text-align:left;white-space:nowrap;"
    "border-bottom:1px solid #e4e7eb;vertical-align:top}"
    ".opskit-table td.wrap{white-space:normal;min-width:220px;max-width:420px}"
)
# Prose columns wrap, so the reason stays beside the row instead of pushing the rest
# of the table (and the page) off to the right.
_WRAP = ("why", "to do", "detail", "suggested_action", "reason")
_WRAP_ATTR = ' class="wrap"'


_LINK_PREFIX = "https://dashboard.stripe.com/"


def _cell_html(column: str, value: Any) -> str:
    linkable = column in ("dashboard_url", "stripe") and isinstance(value, str)
    if linkable and value.startswith(_LINK_PREFIX):
        return (
            f'<a href="{esc(value)}" target="_blank" rel="noopener noreferrer" '
            f'title="{esc(value)}">open ↗</a>'
        )
    return esc(value)


def frame_html(df: pd.DataFrame, *, max_rows: int = MAX_TABLE_ROWS, css_class: str = "") -> str:
    """An escaped HTML table of ``df`` (first ``max_rows`` rows, with a note when cut).

    A ``dashboard_url`` (or ``stripe``) column shows as an "open ↗" link to the
    object's page in the Stripe dashboard.
    """
    cols = [str(c) for c in df.columns]
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for rec in df.head(max_rows).itertuples(index=False, name=None):
        cells = "".join(
            f"<td{_WRAP_ATTR if c in _WRAP else ''}>{_cell_html(c, v)}</td>"
            for c, v in zip(cols, rec, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    note = ""
    if len(df) > max_rows:
        note = f"<p><i>showing the first {max_rows} of {len(df)} rows</i></p>"
    if not len(df):
        note = "<p><i>no rows</i></p>"
    return (
        f"<style>{_TABLE_CSS}</style>"
        f'<div class="opskit-table {css_class}" '
        'style="max-height:420px;max-width:100%;overflow:auto">'
        '<table style="border-collapse:collapse;font-size:12px">'
        f'<thead style="position:sticky;top:0;background:#f0f4f8"><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}"
    )


def money_text(amount: Any, currency: Any) -> str:
    """``"USD 9.00"`` for minor units and a currency; empty when either is missing."""
    from opskit.core.money import format_money

    if amount is None or currency is None or pd.isna(amount) or pd.isna(currency):
        return ""
    return format_money(int(amount), str(currency))


def finding_view(report: pd.DataFrame) -> pd.DataFrame:
    """A report as a panel shows it: who, status and *why* side by side, then the
    amount and period (subscriptions) and the Stripe link; the full frame is exported.

    ``why`` is the row's own reason (detail, the differing fields, else what the
    status means) and ``to do`` its suggested action.
    """
    from opskit.reports.files import STATUS_HELP

    n = len(report)
    out: dict[str, Any] = {}
    if "shop_name" in report.columns:
        out["shop"] = [
            f"{i} · {name}" if isinstance(name, str) else str(i)
            for i, name in zip(report["shop_id"], report["shop_name"], strict=True)
        ]
    for col in ("account_id", "stripe_customer_id", "stripe_subscription_id", "status"):
        if col in report.columns:
            out[col] = report[col].astype("string").tolist()
    why = pd.Series(pd.NA, index=report.index, dtype="string")
    if "detail" in report.columns:
        why = report["detail"].astype("string")
    if "mismatch_fields" in report.columns:
        fields = "differ: " + report["mismatch_fields"].astype("string")
        why = why.fillna(fields)
    if "status" in report.columns:
        why = why.fillna(report["status"].astype("string").map(STATUS_HELP).astype("string"))
    out["why"] = why.tolist()
    if "suggested_action" in report.columns:
        out["to do"] = report["suggested_action"].astype("string").tolist()
    if {"unit_amount", "currency"} <= set(report.columns):
        per = report["interval"] if "interval" in report.columns else [pd.NA] * n
        out["amount"] = [
            money_text(a, c) + (f" / {i}" if isinstance(i, str) and money_text(a, c) else "")
            for a, c, i in zip(report["unit_amount"], report["currency"], per, strict=True)
        ]
    if "current_period_end_at" in report.columns:
        out["period ends"] = report["current_period_end_at"].dt.strftime("%Y-%m-%d").tolist()
    if "dashboard_url" in report.columns:
        out["stripe"] = report["dashboard_url"].astype("string").tolist()
    return pd.DataFrame(out, index=range(n))


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
