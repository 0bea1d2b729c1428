"""The store's written policy, and the part of it that code can check."""

from __future__ import annotations

import re

from schemas import Message
from simulators.environment import Environment, is_error

POLICY = """\
# Store support policy

You are a customer support agent for an online store. You help one customer per
conversation with their account and orders, using the tools provided.

## Identity
- Before anything account-specific, authenticate the customer by email, or by
  first name + last name + zip code, with the lookup tools. Do this even if the
  customer gives a customer id.
- Act only on the authenticated customer's own orders and payment methods.

## Changes (writes)
- Writes are: cancelling or modifying a pending order, returning or exchanging
  items of a delivered order, and updating the customer's default address.
- Before each write, list the action and its details and obtain an explicit
  "yes" from the customer. One confirmation covers one write.
- Make at most one tool call at a time, and never in the same turn as a reply.

## Orders
- Only `pending` orders can be cancelled or modified. The cancellation reason is
  either "no longer needed" or "ordered by mistake"; the refund goes to the
  original payment methods.
- Items can only be changed to another available variant of the same product.
  The price difference is charged to, or refunded to, a payment method of the
  customer's; a gift card must hold enough balance.
- Only `delivered` orders can be returned or exchanged. Refunds go to the
  original payment method or to an existing gift card.
- Shipped and processed orders cannot be changed; tell the customer so.

## Honesty
- Never invent order details, prices or policies; read them with the tools.
- Transfer to a human agent only when the request is outside this policy.
"""

# A confirmation is a reply that *starts* with consent, to a message that asked for it.
CONSENT = re.compile(r"^\W*(yes|yeah|yep|sure|go ahead|please do|confirm(ed)?|correct|ok(ay)?)\b", re.I)
ASKED = re.compile(r"\b(proceed|go ahead|shall i|should i|would you like me to|do you want me to)\b", re.I)
AUTH_TOOLS = ("find_customer_id_by_email", "find_customer_id_by_name_zip")


def check_policy(env: Environment, messages: list[Message]) -> list[str]:
    """Violations of the checkable rules: authentication, ownership, confirmation.

    ``env`` must be a fresh environment: ownership is read from the initial
    state, which no tool can change.
    """
    violations: list[str] = []
    authenticated: str | None = None
    pending_auth: dict[str, str] = {}
    confirmed = False
    asked = False
    for msg in messages:
        if msg.role == "user":
            confirmed = asked and bool(CONSENT.search(msg.content or ""))
            asked = False
        elif msg.role == "tool" and msg.tool_call_id in pending_auth and not is_error(msg.content or ""):
            authenticated = (msg.content or "").strip().strip('"')
        elif msg.role == "assistant":
            if msg.content:
                asked = bool(ASKED.search(msg.content))
            for call in msg.tool_calls or []:
                name = call.function.name
                if name in AUTH_TOOLS:
                    pending_auth[call.id] = name
                    continue
                spec = env.specs().get(name)
                if spec is None or not spec.writes:
                    continue
                try:
                    args = call.parsed_arguments()
                except ValueError:
                    continue  # a format problem, reported by the format filter
                if authenticated is None:
                    violations.append(f"{name} called before the customer was authenticated")
                    continue
                owner = _owner(env, args)
                if owner is not None and owner != authenticated:
                    violations.append(f"{name} acts on {owner}'s data, not the authenticated customer's")
                if not confirmed:
                    violations.append(f"{name} called without an explicit confirmation from the customer")
                confirmed = False
    return violations


def _owner(env: Environment, args: dict) -> str | None:
    if "customer_id" in args:
        return args["customer_id"]
    order = env.db.get("orders", str(args.get("order_id", "")))
    return order["customer_id"] if order else None
