"""The backend's Stripe helper API, importable under the backend's own module name.

Same names and meaning as shop-backend's ``server/services/stripe_client.py``::

    configure_for_shop(shop)           # sets stripe.api_key from shop.stripe_secret_key
    get_customer_id(account)           # account.details["stripe_customer_id"]
    fetch_customer(shop, customer_id)  # configure + retrieve, as a plain dict

The implementation, and opskit's one ``StripeClient`` per shop, live in
:mod:`opskit.stripeapi.clients`.
"""

from opskit.stripeapi.clients import (
    StripeCustomerMissing,
    StripeNotConfigured,
    clear_clients,
    client_for_shop,
    configure_for_shop,
    fetch_customer,
    get_customer_id,
    shop_key,
    shop_mode,
    transport_of,
)

__all__ = [
    "StripeCustomerMissing",
    "StripeNotConfigured",
    "clear_clients",
    "client_for_shop",
    "configure_for_shop",
    "fetch_customer",
    "get_customer_id",
    "shop_key",
    "shop_mode",
    "transport_of",
]
