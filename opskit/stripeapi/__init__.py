"""The Stripe side: one client per shop, transport and rate limits, paging and fetching.

Holds: ``clients`` (one ``StripeClient`` per shop key; the backend's helper API
is re-exported as ``opskit.stripe_client``), ``transport`` (retries and limits
around stripe-python's HTTP client), ``ratelimit`` (token buckets per key),
``paging`` (splitting a listing into concurrent windows), ``fetch`` (customers,
subscriptions and prices of many shops as frames).
May import: ``opskit.common`` and ``opskit.core``; never the database side, the
writes, the faces or the sandbox.
"""
