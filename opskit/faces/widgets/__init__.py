"""ipywidgets panels over the same :class:`opskit.Ops` methods the CLI and API use.

>>> from opskit.faces.widgets import reconcile_panel   # doctest: +SKIP
>>> reconcile_panel(ops)                          # doctest: +SKIP

Each function returns the panel (an ``ipywidgets.VBox``) with its important
children as attributes (``run_button``, ``status_filter``, ``table``,
``message``, ...), so tests drive it by setting ``.value`` and calling
``.click()`` without a kernel. Errors show inside the panel with their
guidance; writes go through a confirmation step (``panel.confirm``), marked
LIVE for shops with a live key. ``import opskit`` does not import ipywidgets.
"""

from __future__ import annotations

try:
    import ipywidgets  # noqa: F401
except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency of opskit
    raise ImportError(
        "opskit.faces.widgets needs ipywidgets: pip install 'ipywidgets>=8' (or reinstall opskit)"
    ) from exc

from opskit.faces.widgets.changes import ChangesPanel, changes_panel
from opskit.faces.widgets.money import MoneyPanel, money_panel
from opskit.faces.widgets.payment import PaymentPanel, payment_panel
from opskit.faces.widgets.reconcile import ReconcilePanel, reconcile_panel
from opskit.faces.widgets.subscription import SubscriptionPanel, subscription_panel
from opskit.faces.widgets.sync import SyncPanel, sync_panel

__all__ = [
    "ChangesPanel",
    "MoneyPanel",
    "PaymentPanel",
    "ReconcilePanel",
    "SubscriptionPanel",
    "SyncPanel",
    "changes_panel",
    "money_panel",
    "payment_panel",
    "reconcile_panel",
    "subscription_panel",
    "sync_panel",
]
