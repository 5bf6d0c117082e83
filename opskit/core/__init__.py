"""The pure core: frame specs, normalization, reconciliation and money rules.

Holds: ``frames`` (every frame's columns and dtypes, declared once), ``reconcile``
(local accounts against Stripe objects: frames in, frames out), ``money``
(minor units and currencies), ``subscription_status`` (what each Stripe
subscription status means: live, billing, when it ends; shared by every
subscription report and write guard), ``normalize`` (the one email rule),
``pairing`` (orphan customers paired with accounts by email, for the report and
the plan), ``currencies`` (Stripe's currency table: decimals and amount steps).
May import: ``opskit.common`` (no I/O in it is used here), pandas and numpy.
Never a database or HTTP package, the Stripe side, the database side or a face.
"""
