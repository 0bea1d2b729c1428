"""The checkable core every support policy shares, walked in dialogue order.

Authentication before any write, writes only on the authenticated customer's
own records, one explicit yes per write. A domain adds its own rules (fare
rules, a refuel cap, a device check after a fix) as a callback that sees the
state *as it was when the call was made*: the walk replays every call, the
user's device actions included, on a fresh environment as it goes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas import Message, UserAction
from simulators.environment import Environment, is_error

# A confirmation is a reply that *starts* with consent, to a message that asked for it.
CONSENT = re.compile(r"^\W*(yes|yeah|yep|sure|go ahead|please do|confirm(ed)?|correct|ok(ay)?)\b", re.I)
ASKED = re.compile(r"\b(proceed|go ahead|shall i|should i|would you like me to|do you want me to)\b", re.I)


@dataclass
class Walk:
    """Where the dialogue stands at a call: who is authenticated, and what has been said and done."""

    env: Environment
    authenticated: str | None = None
    said: list[str] = field(default_factory=list)  # user texts so far
    user_actions: list[UserAction] = field(default_factory=list)  # device actions so far, with results


Rule = Callable[[Walk, str, dict[str, Any]], list[str]]
Owner = Callable[[Environment, dict[str, Any]], str | None]


def walk_policy(env: Environment, messages: list[Message], *, auth_tools: Sequence[str], owner: Owner,
                rule: Rule | None = None, user_actions: Sequence[UserAction] = (), user: str | None = None
                ) -> list[str]:
    """Violations, one line each. ``env`` must be fresh; the walk mutates it.

    ``owner`` names the customer a write's arguments belong to (None: no
    owner to check); ``rule`` is asked about every assistant call before it
    runs (writes and reads: a rule may forbid reading another's data too).
    """
    violations: list[str] = []
    walk = Walk(env)
    pending_auth: set[str] = set()
    confirmed = asked = False
    by_position: dict[int, list[UserAction]] = {}
    for a in user_actions:
        by_position.setdefault(a.at, []).append(a)
    for i, msg in enumerate([*messages, None]):
        for action in by_position.get(i, []):
            env.execute_user_call(user, action.call)
            walk.user_actions.append(action)
        if msg is None:
            break
        if msg.role == "user":
            confirmed = asked and bool(CONSENT.search(msg.content or ""))
            asked = False
            walk.said.append(msg.content or "")
        elif msg.role == "tool" and msg.tool_call_id in pending_auth and not is_error(msg.content or ""):
            walk.authenticated = (msg.content or "").strip().strip('"')
        elif msg.role == "assistant":
            if msg.content:
                asked = bool(ASKED.search(msg.content))
            for call in msg.tool_calls or []:
                name = call.function.name
                try:
                    args = call.parsed_arguments()
                except ValueError:
                    env.execute_call(call)
                    continue  # a format problem, reported by the format filter
                spec = env.specs().get(name)
                if name in auth_tools:
                    pending_auth.add(call.id)
                elif spec is not None and spec.writes:
                    if walk.authenticated is None:
                        violations.append(f"{name} called before the customer was authenticated")
                    else:
                        who = owner(env, args)
                        if who is not None and who != walk.authenticated:
                            violations.append(f"{name} acts on {who}'s data, not the authenticated customer's")
                        if not confirmed:
                            violations.append(f"{name} called without an explicit confirmation from the customer")
                        confirmed = False
                if rule is not None and spec is not None:
                    violations += rule(walk, name, args)
                env.execute_call(call)
    for action in (a for a in user_actions if a.at > len(messages)):
        env.execute_user_call(user, action.call)
    return violations
