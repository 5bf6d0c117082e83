"""Report files: bulk runs over :class:`opskit.Ops` written as HTML, Excel, Parquet, CSV, JSON.

Holds: ``files`` (running the reports, summaries, charts and writing files).
May import: the public API (``opskit.ops``) and what lies below it; never a face
or the sandbox.
"""
