"""Which local accounts a Stripe customer no account links (an orphan) belongs with, by email.

One pure function, used by the customer report (its ``suggested_action``) and by
the sync plan (its certain links), so the two never disagree. Emails are
compared with :func:`opskit.core.normalize.email_keys` (the one email rule).

An orphan customer of a shop is paired with the accounts of the same shop
whose email is the same:

- ``link``: an account that links no customer (a link candidate);
- ``duplicate``: an account that already links another customer, when the
  account's email or its linked customer's Stripe email is the orphan's email.
  The orphan is then most likely a second customer for one person (a double
  submit at checkout), not a customer without an account.
"""

from __future__ import annotations

import pandas as pd

from opskit.core.normalize import email_keys

__all__ = ["PAIRS", "email_pairs"]

#: Columns of :func:`email_pairs`'s result (dtypes follow the inputs' id columns).
PAIRS = ("shop_id", "stripe_customer_id", "account_id", "kind", "linked_customer_id")


def email_pairs(orphans: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """(orphan customer, account) pairs of one shop with the same non-empty email.

    ``orphans``: ``shop_id``, ``stripe_customer_id``, ``email`` (Stripe's).
    ``accounts``: ``shop_id``, ``account_id``, ``email`` (local),
    ``stripe_customer_id`` (the link; <NA>/blank when unlinked) and optionally
    ``linked_email`` (the linked customer's Stripe email).

    Returns :data:`PAIRS` columns: ``kind`` is ``"link"`` (the account links no
    customer) or ``"duplicate"`` (it links ``linked_customer_id``, whose
    account or Stripe email is the orphan's). One row per (orphan, account),
    sorted by shop_id, stripe_customer_id, kind, account_id.
    """
    o = pd.DataFrame(
        {
            "shop_id": orphans["shop_id"].to_numpy(),
            "stripe_customer_id": orphans["stripe_customer_id"].to_numpy(),
            "_key": email_keys(orphans["email"]).to_numpy(),
        }
    )
    o = o[o["_key"] != ""]
    link = accounts["stripe_customer_id"].astype("string").str.strip().fillna("")
    linked = (link != "").to_numpy(dtype=bool)
    base = pd.DataFrame(
        {
            "shop_id": accounts["shop_id"].to_numpy(),
            "account_id": accounts["account_id"].to_numpy(),
            "linked_customer_id": link.where(link != "", pd.NA).to_numpy(),
            "kind": pd.array(["duplicate" if x else "link" for x in linked], dtype="string"),
        }
    )
    keyed = [base.assign(_key=email_keys(accounts["email"]).to_numpy())]
    if "linked_email" in accounts.columns:
        keyed.append(
            base[linked].assign(_key=email_keys(accounts["linked_email"])[linked].to_numpy())
        )
    a = pd.concat(keyed, ignore_index=True)
    a = a[a["_key"] != ""]
    if not len(o) or not len(a):
        return _empty(orphans, accounts)
    o = o.astype({"shop_id": accounts["shop_id"].dtype}) if len(o) else o
    pairs = o.merge(a, on=["shop_id", "_key"], how="inner")
    # an orphan is never its own duplicate (it is linked by no account, but be safe)
    pairs = pairs[
        pairs["linked_customer_id"].astype("string").fillna("") != pairs["stripe_customer_id"]
    ]
    pairs = pairs.drop_duplicates(["shop_id", "stripe_customer_id", "account_id"])
    pairs = pairs.sort_values(
        ["shop_id", "stripe_customer_id", "kind", "account_id"], kind="stable", ignore_index=True
    )
    out = pairs[list(PAIRS)].copy()
    out["kind"] = out["kind"].astype("string")
    out["linked_customer_id"] = out["linked_customer_id"].astype("string")
    out["stripe_customer_id"] = out["stripe_customer_id"].astype("string")
    return out.reset_index(drop=True)


def _empty(orphans: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "shop_id": pd.Series(dtype=accounts["shop_id"].dtype),
            "stripe_customer_id": pd.Series(dtype="string"),
            "account_id": pd.Series(dtype=accounts["account_id"].dtype),
            "kind": pd.Series(dtype="string"),
            "linked_customer_id": pd.Series(dtype="string"),
        }
    )
