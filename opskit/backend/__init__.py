"""The backend database side: schema mapping, loading, writing details, the audit table.

Holds: ``schema`` (table and column names, checked at connect), ``db`` (loading
shops and accounts as frames), ``writeback`` (writing ``details`` keys, keeping
every other key), ``audit`` (opskit's own audit table).
May import: ``opskit.common`` and ``opskit.core``; never the Stripe side, the
writes, the faces or the sandbox.
"""
