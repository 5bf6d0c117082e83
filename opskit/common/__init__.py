"""What every layer shares: settings, the exception tree, secret-key masking, Shop/Account.

Holds: ``config`` (Settings, environment variables), ``exceptions`` (the error
tree), ``keys`` (classify, mask and redact secrets), ``models`` (Shop, Account,
details parsing), ``context`` (database + settings of one connection),
``executors`` (the shop fan-out), ``stripe_errors`` (one line per Stripe error).
May import: the standard library and third-party packages only, no other opskit package.
"""
