"""Money in the sandbox: fees, the balance ledger, disputes and payouts, per key (shop).

localstripe charges no fees, knows two reporting categories, has no disputes and
only manual payouts linked to nothing. This module adds, in every key's own store:

- **fees** on card charges at Stripe's published standard card pricing for the
  charge's currency (:data:`CARD_PRICING`, e.g. EUR 1.5% + 25, USD 2.9% + 30),
  with ``fee_details``; refunds return no fee;
- **balance transactions** (``GET /v1/balance_transactions[/{id}]``) with ``type``,
  ``reporting_category`` (charge, refund, dispute, dispute_reversal, payout),
  ``fee``, ``net``, ``available_on`` (charges: two days after creation) and
  ``status`` (pending until ``available_on``), filters ``created``, ``type``,
  ``source``, ``currency`` and ``payout``; ``GET /v1/balance`` computed from them;
- **disputes** on Stripe's dispute test cards (:data:`DISPUTE_CARDS`): a charge on
  4000000000000259 (fraudulent) or 4000000000002685 (product not received) is
  disputed at once (a ``dispute`` adjustment of minus the amount plus the dispute
  fee); 4000000000001976 opens an inquiry (no money moves). ``POST
  /v1/disputes/{id}`` with ``evidence[uncategorized_text]`` ``winning_evidence``
  wins it (a ``dispute_reversal`` gives the amount back, not the fee),
  ``losing_evidence`` loses it; ``POST /v1/disputes/{id}/close`` accepts it (lost);
- **payouts**: a key's payout schedule is ``daily`` (automatic, the default) or
  ``manual`` (:func:`set_payout_schedule`). Daily: every UTC day's newly available
  balance is paid out by one automatic payout per currency created at the next
  midnight, whose transactions ``GET /v1/balance_transactions?payout=po_...``
  lists (its own ``payout`` row included, as at Stripe); a day whose sum is not
  positive rolls over. Payouts are swept lazily when money is read, so the result
  depends only on the data. Manual: ``POST /v1/payouts`` pays out (at most the
  available balance); Stripe does not link a manual payout to transactions, and
  filtering by one is refused with Stripe's message.

:func:`backdate` moves a payment (with its charge, refunds, disputes and their
ledger rows) back in time, for demos and tests that need history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from localstripe import resources as ls
from localstripe.errors import UserError

from opskit.sandbox.stores import IndexedStore

DAY = 86_400
AVAILABLE_AFTER = 2 * DAY  # charges become available two days later
ARRIVAL_AFTER = 2 * DAY  # a payout arrives two days after it is created

# Stripe's published standard card pricing (basis points, fixed minor units) per currency.
CARD_PRICING: dict[str, tuple[int, int]] = {
    "eur": (150, 25),  # EEA standard cards: 1.5% + EUR 0.25
    "gbp": (150, 20),  # UK standard cards: 1.5% + GBP 0.20
    "usd": (290, 30),  # US: 2.9% + USD 0.30
    "cad": (290, 30),
    "chf": (290, 30),  # Switzerland: 2.9% + CHF 0.30
    "aud": (170, 30),
    "jpy": (360, 0),  # Japan: 3.6%
}
DEFAULT_PRICING = (290, 30)
DISPUTE_FEES: dict[str, int] = {"eur": 2000, "gbp": 2000, "usd": 1500, "chf": 2000, "jpy": 2000}
DEFAULT_DISPUTE_FEE = 1500

# Stripe's dispute test cards: number -> (reason, inquiry?)
DISPUTE_CARDS: dict[str, tuple[str, bool]] = {
    "4000000000000259": ("fraudulent", False),
    "4000000000002685": ("product_not_received", False),
    "4000000000001976": ("general", True),
}
MANUAL_FILTER_ERROR = (
    "Balance transaction history can only be filtered on automatic transfers, not manual."
)


def card_fee(amount: int, currency: str) -> int:
    """Stripe's fee for a card charge of ``amount`` minor units (half-up on the percentage)."""
    bps, fixed = CARD_PRICING.get(currency.lower(), DEFAULT_PRICING)
    return (abs(int(amount)) * bps + 5_000) // 10_000 + fixed


def _now() -> int:
    return int(time.time())


def _store() -> IndexedStore:
    return ls.store  # type: ignore[return-value]


# -- objects ------------------------------------------------------------------------------


def _bt_init(
    self: Any,
    amount: Any = None,
    currency: Any = None,
    description: Any = None,
    exchange_rate: Any = None,
    reporting_category: Any = None,
    source: Any = None,
    type: Any = None,
    fee: int | None = None,
    available_on: int | None = None,
    created: int | None = None,
) -> None:
    ls.StripeObject.__init__(self)
    if created is not None:
        _move(_store(), self, created)
    self.amount = int(amount)
    self.currency = str(currency).lower()
    self.description = description
    self.exchange_rate = None
    if fee is None:
        fee = card_fee(self.amount, self.currency) if type == "charge" else 0
    self.fee = int(fee)
    self.fee_details = (
        [
            {
                "amount": self.fee,
                "application": None,
                "currency": self.currency,
                "description": "Stripe processing fees",
                "type": "stripe_fee",
            }
        ]
        if self.fee
        else []
    )
    if available_on is None:
        available_on = self.created + (AVAILABLE_AFTER if type == "charge" else 0)
    self.available_on = int(available_on)
    self.reporting_category = reporting_category
    self.source = source
    self.type = type
    self.balance_type = "payments"
    self._payout = None  # the automatic payout that paid it out


def _bt_status(self: Any) -> str:
    return "available" if _now() >= self.available_on else "pending"


class Dispute(ls.StripeObject):  # type: ignore[misc]
    """A Stripe dispute on a charge (test cards only)."""

    object = "dispute"
    _id_prefix = "du_"

    def __init__(self, charge: Any, reason: str, inquiry: bool) -> None:
        super().__init__()
        self.amount = charge.amount
        self.currency = charge.currency
        self.charge = charge.id
        self.payment_intent = charge.payment_intent
        self.reason = reason
        self.status = "warning_needs_response" if inquiry else "needs_response"
        self.evidence: dict[str, Any] = {}
        self.evidence_details = {
            "due_by": self.created + 7 * DAY,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        }
        self.is_charge_refundable = inquiry
        self.metadata: dict[str, Any] = {}
        self._txns: list[str] = []
        charge._dispute = self.id
        if not inquiry:
            fee = DISPUTE_FEES.get(self.currency, DEFAULT_DISPUTE_FEE)
            txn = ls.BalanceTransaction(
                amount=-self.amount, currency=self.currency, reporting_category="dispute",
                source=self.id, type="adjustment", fee=fee,
                description=f"Chargeback withdrawal for {charge.id}",
            )  # fmt: skip
            self._txns.append(txn.id)

    @property
    def balance_transactions(self) -> list[dict[str, Any]]:
        return [_store().get_obj("balance_transaction", t)._export() for t in self._txns]

    def _settle(self, won: bool) -> None:
        inquiry = self.status.startswith("warning_")
        if won:
            self.status = "warning_closed" if inquiry else "won"
            if not inquiry:
                txn = ls.BalanceTransaction(
                    amount=self.amount, currency=self.currency,
                    reporting_category="dispute_reversal", source=self.id, type="adjustment",
                    description=f"Chargeback reversal for {self.charge}",
                )  # fmt: skip
                self._txns.append(txn.id)
        else:
            self.status = "warning_closed" if inquiry else "lost"


class SandboxPayout(ls.StripeObject):  # type: ignore[misc]
    """A payout with its own ledger row; automatic ones know the rows they paid out."""

    object = "payout"
    _id_prefix = "po_"

    def __init__(
        self,
        amount: int,
        currency: str,
        automatic: bool,
        created: int | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if created is not None:
            _move(_store(), self, created)
        self.amount = int(amount)
        self.currency = currency
        self.automatic = automatic
        self.arrival_date = self.created + ARRIVAL_AFTER
        self.description = description or ("STRIPE PAYOUT" if automatic else None)
        self.destination = "ba_sandbox" + self.id[-10:]
        self.failure_balance_transaction = None
        self.failure_code = None
        self.failure_message = None
        self.metadata = dict(metadata or {})
        self.method = "standard"
        self.original_payout = None
        self.reversed_by = None
        self.source_type = "card"
        self.statement_descriptor = None
        self.type = "bank_account"
        self.application_fee = None
        self.application_fee_amount = None
        txn = ls.BalanceTransaction(
            amount=-self.amount, currency=currency, reporting_category="payout",
            source=self.id, type="payout", description=self.description, created=self.created,
        )  # fmt: skip
        if automatic:
            txn._payout = self.id
        self.balance_transaction = txn.id

    @property
    def status(self) -> str:
        return "paid" if _now() >= self.arrival_date else "in_transit"

    @property
    def reconciliation_status(self) -> str:
        return "completed" if self.automatic else "not_applicable"


def _move(store: IndexedStore, obj: Any, created: int) -> None:
    """Give ``obj`` another ``created`` and keep the store's time index right."""
    key = obj.object + ":" + obj.id
    if key in store:
        store.forget(key)
        obj.created = int(created)
        store[key] = obj
    else:
        obj.created = int(created)


# -- patches ------------------------------------------------------------------------------

_installed = False


def _dispute_card(charge: Any) -> tuple[str, bool] | None:
    try:
        pm = ls.PaymentMethod._api_retrieve(charge.payment_method)
    except UserError:
        return None
    return DISPUTE_CARDS.get(getattr(pm, "_card_number", "") or "")


def apply() -> None:
    """Patch localstripe's ledger classes (idempotent; process-wide like the other patches)."""
    global _installed
    if _installed:
        return
    _installed = True
    ls.BalanceTransaction.__init__ = _bt_init  # type: ignore[method-assign]
    ls.BalanceTransaction.status = property(_bt_status)  # type: ignore[attr-defined]

    orig_trigger = ls.Charge._trigger_payment

    def trigger(self: Any, on_success: Any = None) -> Any:
        out = orig_trigger(self, on_success)
        if self.status == "succeeded" and self.balance_transaction:
            card = _dispute_card(self)
            if card is not None:
                Dispute(self, *card)
        return out

    ls.Charge._trigger_payment = trigger  # type: ignore[method-assign]

    # Refunds indexed on their charge: no store scan per exported charge.
    orig_refund_init = ls.Refund.__init__

    def refund_init(self: Any, *args: Any, **kwargs: Any) -> None:
        orig_refund_init(self, *args, **kwargs)
        charge = ls.Charge._api_retrieve(self.charge)
        charge.__dict__.setdefault("_refund_ids", []).append(self.id)
        if self.payment_intent is None:
            self.payment_intent = charge.payment_intent

    ls.Refund.__init__ = refund_init  # type: ignore[method-assign]

    def amount_refunded(self: Any) -> int:
        ids = self.__dict__.get("_refund_ids", [])
        return sum(_store().get_obj("refund", r).amount for r in ids)

    del ls.Charge.refunds  # modern Stripe no longer embeds them
    ls.Charge.amount_refunded = property(amount_refunded)  # type: ignore[assignment,method-assign]
    ls.Charge.disputed = property(lambda self: bool(self.__dict__.get("_dispute")))  # type: ignore[attr-defined]
    ls.Charge.amount_captured = property(  # type: ignore[attr-defined]
        lambda self: self.amount if self.captured and self.status == "succeeded" else 0
    )

    def amount_received(self: Any) -> int:
        ch = self.latest_charge
        if ch is not None and ch.status == "succeeded" and ch.captured:
            return int(ch.amount)
        return 0

    ls.PaymentIntent.amount_received = property(amount_received)  # type: ignore[attr-defined]


# -- payouts --------------------------------------------------------------------------------


def set_payout_schedule(store: IndexedStore, schedule: str) -> None:
    """``daily`` (automatic payouts, Stripe's default) or ``manual``."""
    if schedule not in ("daily", "manual"):
        raise ValueError("schedule must be 'daily' or 'manual'")
    store.__dict__["payout_schedule"] = schedule


def _schedule(store: IndexedStore) -> str:
    return str(store.__dict__.get("payout_schedule", "daily"))


def _txns(store: IndexedStore) -> list[Any]:
    return [
        store.get_obj("balance_transaction", e[2])
        for e in store.index.get("balance_transaction", [])
        if store.get_obj("balance_transaction", e[2]) is not None
    ]


def sweep(store: IndexedStore, now: int | None = None) -> list[str]:
    """Create the automatic payouts due by ``now`` (daily schedule); returns their ids.

    Each UTC day's newly available rows (charges, refunds, disputes...) are paid out
    at the next midnight, one payout per currency; a non-positive day rolls over.
    """
    if _schedule(store) != "daily":
        return []
    now = _now() if now is None else now
    pending: dict[str, list[Any]] = {}
    for t in _txns(store):
        if t.type != "payout" and t._payout is None and t.available_on <= now:
            pending.setdefault(t.currency, []).append(t)
    made: list[str] = []
    for currency, rows in sorted(pending.items()):
        rows.sort(key=lambda t: (t.available_on, t.created, t.id))
        carry: list[Any] = []
        by_day: dict[int, list[Any]] = {}
        for t in rows:
            by_day.setdefault(t.available_on - t.available_on % DAY, []).append(t)
        for day in sorted(by_day):
            carry += by_day[day]
            payout_at = day + DAY
            if payout_at > now:
                break
            total = sum(t.net for t in carry)
            if total <= 0:
                continue
            po = SandboxPayout(total, currency, automatic=True, created=payout_at)
            for t in carry:
                t._payout = po.id
            made.append(po.id)
            carry = []
    return made


def available_balance(store: IndexedStore, now: int | None = None) -> dict[str, dict[str, int]]:
    """currency -> {"available": ..., "pending": ...} from the ledger."""
    now = _now() if now is None else now
    out: dict[str, dict[str, int]] = {}
    for t in _txns(store):
        part = "available" if t.available_on <= now else "pending"
        out.setdefault(t.currency, {"available": 0, "pending": 0})[part] += t.net
    return out


def backdate(store: IndexedStore, object_id: str, created: int) -> None:
    """Move a payment intent, refund or dispute (and what hangs off it) to ``created``.

    A payment intent takes its charges, their ledger rows, refunds and disputes
    along, keeping their offsets; ``available_on`` moves with ``created``.
    """
    kind = {"pi_": "payment_intent", "re_": "refund", "du_": "dispute"}.get(object_id[:3])
    if kind is None:
        raise ValueError(f"cannot backdate {object_id!r}")
    obj = store.get_obj(kind, object_id)
    if obj is None:
        raise ValueError(f"no such {kind}: {object_id}")
    shift = int(created) - int(obj.created)
    moved: list[Any] = [obj]
    if kind == "payment_intent":
        for ch in [c for c in _all(store, "charge") if c.payment_intent == obj.id]:
            moved.append(ch)
            for r in ch.__dict__.get("_refund_ids", []):
                moved.append(store.get_obj("refund", r))
            if ch.__dict__.get("_dispute"):
                moved.append(store.get_obj("dispute", ch._dispute))
    for o in list(moved):
        if o.object == "charge" and o.balance_transaction:
            moved.append(store.get_obj("balance_transaction", o.balance_transaction))
        if o.object == "refund" and getattr(o, "balance_transaction", None):
            moved.append(store.get_obj("balance_transaction", o.balance_transaction))
        if o.object == "dispute":
            moved += [store.get_obj("balance_transaction", t) for t in o._txns]
    for o in moved:
        if o is None:
            continue
        if o.object == "balance_transaction":
            o.available_on += shift
        if o.object == "refund":
            o.date = int(o.created) + shift
        _move(store, o, int(o.created) + shift)


def _all(store: IndexedStore, kind: str) -> list[Any]:
    return [o for k, o in store.items() if k.startswith(kind + ":")]


# -- HTTP -----------------------------------------------------------------------------------


def _routes() -> Any:
    from opskit.sandbox import routes as r  # the shared list helpers

    return r


def _find_payout(payout_id: str) -> Any:
    obj = _store().get_obj("payout", payout_id)
    if obj is None:
        raise UserError(
            404, f"No such payout: '{payout_id}'", {"code": "resource_missing", "param": "payout"}
        )
    return obj


async def balance_transaction_list(request: web.Request) -> web.StreamResponse:
    r = _routes()
    store = _store()
    sweep(store)
    q, expand = r.list_query(
        "balance_transaction", r.query(request), {"payout", "source", "type", "currency"}
    )
    preds: list[Callable[[Any], bool]] = []
    ex = q.extra
    if "payout" in ex:
        po = _find_payout(str(ex["payout"]))
        if not po.automatic:
            raise UserError(400, MANUAL_FILTER_ERROR, {"param": "payout"})
        preds.append(r._eq("_payout", po.id))
    for name in ("source", "type", "currency"):
        if name in ex:
            preds.append(r._eq(name, ex[name]))
    q.predicate = r._all(preds)
    return r.list_response("/v1/balance_transactions", q, expand)


async def balance_transaction_retrieve(request: web.Request) -> web.StreamResponse:
    r = _routes()
    obj = _store().get_obj("balance_transaction", request.match_info["id"])
    if obj is None:
        raise UserError(
            404,
            f"No such balance transaction: '{request.match_info['id']}'",
            {"code": "resource_missing", "param": "id"},
        )
    return r.json_response(obj._export())


async def balance_retrieve(request: web.Request) -> web.StreamResponse:
    r = _routes()
    store = _store()
    sweep(store)
    parts: dict[str, list[dict[str, Any]]] = {"available": [], "pending": []}
    for cur, amounts in sorted(available_balance(store).items()):
        for part in ("available", "pending"):
            parts[part].append(
                {"amount": amounts[part], "currency": cur, "source_types": {"card": amounts[part]}}
            )
    return r.json_response({"object": "balance", "livemode": False, **parts})


async def dispute_list(request: web.Request) -> web.StreamResponse:
    r = _routes()
    q, expand = r.list_query("dispute", r.query(request), {"charge", "payment_intent"})
    q.predicate = r._all([r._eq(k, v) for k, v in q.extra.items()])
    return r.list_response("/v1/disputes", q, expand)


def _dispute(dispute_id: str) -> Any:
    obj = _store().get_obj("dispute", dispute_id)
    if obj is None:
        raise UserError(
            404, f"No such dispute: '{dispute_id}'", {"code": "resource_missing", "param": "id"}
        )
    return obj


async def dispute_retrieve(request: web.Request) -> web.StreamResponse:
    return _routes().json_response(_dispute(request.match_info["id"])._export())


async def dispute_update(request: web.Request) -> web.StreamResponse:
    r = _routes()
    data = await r.body(request)
    r._expand(data)
    r._split(data, {"evidence", "metadata", "submit"}, set())
    obj = _dispute(request.match_info["id"])
    if obj.status in ("won", "lost", "warning_closed"):
        raise UserError(400, f"This dispute is already closed ({obj.status}).")
    if isinstance(data.get("metadata"), dict):
        obj.metadata.update(data["metadata"])
    evidence = data.get("evidence")
    if isinstance(evidence, dict):
        obj.evidence.update(evidence)
        obj.evidence_details["has_evidence"] = True
        if r._to_bool(data.get("submit", True)) is not False:
            obj.evidence_details["submission_count"] += 1
            text = str(evidence.get("uncategorized_text") or "")
            if text == "winning_evidence":
                obj._settle(won=True)
            elif text == "losing_evidence":
                obj._settle(won=False)
            else:
                obj.status = (
                    "warning_under_review" if obj.status.startswith("w") else "under_review"
                )
    return r.json_response(obj._export())


async def dispute_close(request: web.Request) -> web.StreamResponse:
    obj = _dispute(request.match_info["id"])
    if obj.status in ("won", "lost", "warning_closed"):
        raise UserError(400, f"This dispute is already closed ({obj.status}).")
    obj._settle(won=False)
    return _routes().json_response(obj._export())


async def payout_create(request: web.Request) -> web.StreamResponse:
    r = _routes()
    data = await r.body(request)
    r._expand(data)
    r._split(
        data,
        {"amount", "currency", "description", "metadata"},
        {"method", "statement_descriptor", "source_type", "destination"},
    )
    store = _store()
    if _schedule(store) != "manual":
        raise UserError(
            400,
            "You cannot create manual payouts while automatic payouts are enabled for this "
            "account (the sandbox key's payout schedule is daily).",
        )
    amount = r._to_int(data.get("amount"), "amount")
    currency = str(data.get("currency") or "").lower()
    if amount <= 0 or not currency:
        raise UserError(400, "Missing or invalid amount/currency.", {"param": "amount"})
    have = available_balance(store).get(currency, {}).get("available", 0)
    if amount > have:
        raise UserError(
            400,
            "You have insufficient funds in your Stripe account for this transfer.",
            {"code": "balance_insufficient", "param": "amount"},
        )
    po = SandboxPayout(
        amount, currency, automatic=False, description=data.get("description"),
        metadata=data.get("metadata") if isinstance(data.get("metadata"), dict) else None,
    )  # fmt: skip
    return r.json_response(po._export())


async def payout_list(request: web.Request) -> web.StreamResponse:
    r = _routes()
    sweep(_store())
    q, expand = r.list_query("payout", r.query(request), {"status", "destination"})
    q.predicate = r._all([r._eq(k, v) for k, v in q.extra.items()])
    return r.list_response("/v1/payouts", q, expand)


async def payout_retrieve(request: web.Request) -> web.StreamResponse:
    sweep(_store())
    return _routes().json_response(_find_payout(request.match_info["id"])._export())


def install(app: web.Application) -> None:
    """Apply the patches and register the money routes (before localstripe's own)."""
    apply()
    rt = app.router
    rt.add_get("/v1/balance_transactions", balance_transaction_list)
    rt.add_get("/v1/balance_transactions/{id}", balance_transaction_retrieve)
    rt.add_get("/v1/balance", balance_retrieve)
    rt.add_get("/v1/disputes", dispute_list)
    rt.add_get("/v1/disputes/{id}", dispute_retrieve)
    rt.add_post("/v1/disputes/{id}", dispute_update)
    rt.add_post("/v1/disputes/{id}/close", dispute_close)
    rt.add_post("/v1/payouts", payout_create)
    rt.add_get("/v1/payouts", payout_list)
    rt.add_get("/v1/payouts/{id}", payout_retrieve)
