"""The airline's written policy, and the part of it that code can check."""

from __future__ import annotations

import re
from typing import Any

from schemas import Message
from simulators.domains.airline.data import BAG_FEE, NOW
from simulators.domains.airline.rules import cancel_grounds, compensation_amount, free_bags
from simulators.environment import Environment
from simulators.policy_checks import Walk, walk_policy

POLICY = f"""\
# Airline support policy

You are a support agent for an airline. The current time is {NOW:%Y-%m-%d %H:%M}. You help one member per
conversation with their reservations, using the tools provided.

## Identity
- Before anything profile-specific, authenticate the member by email, or by first name + last name + date of
  birth, with the lookup tools. Act only on the authenticated member's own reservations.

## Changes (writes)
- Writes are: cancelling a reservation, changing its flights, cabin, bags or passengers, and issuing a
  travel certificate.
- Before each write, list the action and its details and obtain an explicit "yes". One confirmation covers
  one write. Make one tool call at a time, never in the same turn as a reply.
- Nothing can be changed or cancelled once a segment of the reservation has been flown.

## Cancellation (fare rules)
A reservation may be cancelled, with a full refund to the original payment methods, only if one of these holds:
- it was booked within the last 24 hours;
- a flight in it was cancelled by the airline;
- its cabin is business;
- it has travel insurance and the reason is health or weather.
Otherwise refuse, and say why. The cancellation tool does not check these rules: you must.

## Changing flights, cabin, bags, passengers
- Basic economy reservations cannot change flights (their cabin can be upgraded). Other reservations can move
  to other flights on the same route and trip type; unchanged segments keep their price.
- A cabin change moves every segment at today's prices; the difference is charged or refunded.
- Free checked bags per passenger: regular members 0 / 1 / 2 (basic economy / economy / business), silver
  1 / 2 / 3, gold 2 / 3 / 3. Each further bag costs ${BAG_FEE}. Bags can be added, never removed; pass the
  number of paid bags correctly.
- Passenger names and dates of birth can be corrected; the number of passengers cannot change.
- Payment for a change uses one credit card or gift card from the member's profile; certificates cannot pay
  for changes.

## Compensation
- Offer compensation only when the member asks for it, and only after checking the facts with the tools.
- Only silver and gold members, members with travel insurance, or business travellers are compensated.
- A cancelled flight earns a certificate of $100 per passenger; a delayed flight $50 per passenger. No
  other reason earns compensation, and one certificate per reservation at most.

## Honesty
- Never invent flight details, prices or rules; read them with the tools.
"""

AUTH_TOOLS = ("find_user_id_by_email", "find_user_id_by_name_dob")
ASKS_COMPENSATION = re.compile(r"compensat|voucher|certificate|make (it|this|that) up|credit for|for the trouble",
                               re.I)


def check_policy(env: Environment, messages: list[Message]) -> list[str]:
    """Authentication, ownership and consent, then the fare and compensation rules on the state each write met."""
    return walk_policy(env, messages, auth_tools=AUTH_TOOLS, owner=_owner, rule=_fare_rules)


def _owner(env: Environment, args: dict[str, Any]) -> str | None:
    reservation = env.db.get("reservations", str(args.get("reservation_id", "")).strip().upper())
    return reservation["user_id"] if reservation else args.get("user_id")


def _fare_rules(walk: Walk, name: str, args: dict[str, Any]) -> list[str]:
    env = walk.env
    reservation = env.db.get("reservations", str(args.get("reservation_id", "")).strip().upper())
    if reservation is None:
        return []
    rid = reservation["reservation_id"]
    if name == "cancel_reservation" and not cancel_grounds(env.db, reservation, str(args.get("reason"))):
        return [f"cancel_reservation of {rid} breaks the fare rules: {reservation['cabin']} cabin, "
                f"{'insured' if reservation['insurance'] else 'no insurance'}, reason '{args.get('reason')}', booked "
                f"more than 24 hours ago, no airline cancellation"]
    if name == "update_reservation_flights" and reservation["cabin"] == "basic_economy":
        return [f"update_reservation_flights on {rid}: basic economy cannot change flights"]
    if name == "update_reservation_baggages":
        user = env.db.get("users", reservation["user_id"])
        want = max(0, int(args.get("total_baggages", 0)) - free_bags(user["membership"], reservation))
        if args.get("nonfree_baggages") != want:
            return [f"update_reservation_baggages on {rid}: {args.get('nonfree_baggages')} paid bags given, the "
                    f"allowance makes it {want}"]
    if name == "send_certificate":
        user = env.db.get("users", reservation["user_id"])
        problems = []
        if not any(ASKS_COMPENSATION.search(text) for text in walk.said):
            problems.append(f"send_certificate for {rid} although the member never asked for compensation")
        allowed = compensation_amount(env.db, user, reservation)
        if not allowed:
            problems.append(f"send_certificate for {rid}: the policy grants no compensation here")
        elif abs(float(args.get("amount", 0)) - allowed) > 0.005:
            problems.append(f"send_certificate for {rid}: ${float(args.get('amount', 0)):.2f} given, the policy "
                            f"grants ${allowed:.2f}")
        already = [m for m in user["payment_methods"].values() if m["kind"] == "certificate"
                   and m["id"] not in (env.fresh().db.get("users", user["user_id"]) or {}).get("payment_methods", {})]
        if already:
            problems.append(f"send_certificate for {rid}: a certificate was already issued in this conversation")
        return problems
    return []
