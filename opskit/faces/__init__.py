"""The faces people use: the CLI, the notebook widgets, the JupyterLab launcher.

Holds: ``cli`` (the ``opskit`` command), ``widgets`` (ipywidgets panels),
``notebook`` (what a notebook's first cell opens), ``lab`` (``make lab``).
May import: the public API (``opskit``, ``opskit.ops``, ``opskit.connection``),
``opskit.reports``, ``opskit.demo``, ``opskit.common`` and the pure rules in
``opskit.core``; never the database side, the Stripe side or the writes directly.
"""
