"""The carrier's written policy, and the part of it that code can check (both sides of dual control)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas import Message, UserAction
from simulators.domains.telecom.data import TODAY
from simulators.environment import Environment
from simulators.policy_checks import Walk, walk_policy

MAX_REFUEL_GB = 2.0

POLICY = f"""\
# Mobile carrier support policy

You are a technical and account support agent for a mobile carrier. Today is {TODAY:%Y-%m-%d}. You help one
customer per conversation with their account and the phone in their hand.

## Identity
- Before anything account-specific, authenticate the customer by a phone number on the account, or by first
  name + last name + date of birth, with the lookup tools. Act only on the authenticated customer's lines and
  bills.

## Changes on the account (writes)
- Writes are: paying a bill, resuming or suspending a line, enabling roaming, adding data, changing plan.
- Before each write, state the action and its cost and obtain an explicit "yes". One confirmation covers one
  write. Make one tool call at a time, never in the same turn as a reply.
- A line suspended for an overdue bill may be resumed only once no bill of the customer is overdue. A line
  suspended because its contract ended must not be resumed by you: transfer the customer to a human agent.
- Data can be added at most {MAX_REFUEL_GB:g} GB at a time, at the plan's price per GB.

## The customer's phone
- You cannot see or change the phone. The customer can: ask them to check things (status bar, network status,
  SIM, speed test, APN settings, sending a picture message, app permissions) and to change settings (airplane
  mode, mobile data, data roaming, data saver, preferred network type, Wi-Fi Calling, VPN, SIM, APN reset,
  app permissions, restart). Ask for one step or a short sequence at a time and wait for what they see.
- Look up the line first: a problem on the account (suspension, no roaming, no data left) is fixed on the
  account, not on the phone.
- After resuming a line or resetting the APN settings, the customer must restart the phone.
- Do not tell the customer a problem is solved until they have checked it on the phone after the last change
  (a status bar check, a speed test, a picture message).

## Honesty
- Never invent account details, prices or settings; read them with the tools or ask the customer.
"""

AUTH_TOOLS = ("find_customer_by_phone", "find_customer_by_name_dob")


def check_policy(env: Environment, messages: list[Message], user_actions: Sequence[UserAction] = (),
                 user: str | None = None) -> list[str]:
    """Authentication, ownership and consent; the suspension and refuel rules on the state each write met;
    and the device rules: a restart after a resume, a check after the last change on the phone."""
    violations = walk_policy(env, messages, auth_tools=AUTH_TOOLS, owner=_owner, rule=_account_rules,
                             user_actions=user_actions, user=user)
    return violations + _device_rules(env, messages, user_actions)


def _owner(env: Environment, args: dict[str, Any]) -> str | None:
    if "line_id" in args:
        line = env.db.get("lines", str(args["line_id"]))
        return line["customer_id"] if line else None
    if "bill_id" in args:
        bill = env.db.get("bills", str(args["bill_id"]))
        return bill["customer_id"] if bill else None
    return None


def _account_rules(walk: Walk, name: str, args: dict[str, Any]) -> list[str]:
    env = walk.env
    if name == "resume_line":
        line = env.db.get("lines", str(args.get("line_id", "")))
        if line is None:
            return []
        problems = []
        if line["contract_end"] < TODAY.isoformat():
            problems.append(f"resume_line on {line['line_id']}: its contract ended on {line['contract_end']}; "
                            "only a human agent may act")
        customer = env.db.get("customers", line["customer_id"])
        overdue = [b for b in customer["bills"] if env.db.get("bills", b)["status"] == "overdue"]
        if overdue:
            problems.append(f"resume_line on {line['line_id']} while bill {overdue[0]} is overdue")
        return problems
    if name == "refuel_data" and float(args.get("gb", 0)) > MAX_REFUEL_GB:
        return [f"refuel_data of {args.get('gb')} GB: at most {MAX_REFUEL_GB:g} GB at a time"]
    return []


def _device_rules(env: Environment, messages: list[Message], user_actions: Sequence[UserAction]) -> list[str]:
    specs = env.user_specs()
    problems = []
    changes = [a for a in user_actions if (s := specs.get(a.call.function.name)) is not None and s.writes]
    if changes and specs.get(user_actions[-1].call.function.name) is not None \
            and specs[user_actions[-1].call.function.name].writes:
        problems.append(f"the customer's last change on the phone ({changes[-1].call.function.name}) was never "
                        "checked afterwards")
    for i, m in enumerate(messages):
        for call in m.tool_calls or []:
            if call.function.name == "resume_line" and not any(
                    a.at > i and a.call.function.name == "reboot_device" for a in user_actions):
                problems.append("resume_line without having the customer restart the phone afterwards")
    return problems
