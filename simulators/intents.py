"""Intents: what a customer of a domain can want, grounded in its data.

A domain lists its intents; the blueprint generator picks one by walking the
tool-dependency graph, asks it to ground itself on real entities, and the
scripted assistant asks it how to phrase confirmations and reports. Keeping
the phrasing with the domain lets a new domain bring its own voice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from schemas import Action


@dataclass
class Grounding:
    """An intent tied to real entities of one customer."""

    target: Action
    bindings: dict[str, list[str]]
    goal: str
    opening: str
    details: str
    known_info: dict[str, str] = field(default_factory=dict)
    unknown_info: list[str] = field(default_factory=list)
    lookups: list[Action] = field(default_factory=list)  # calls before the target that find what the user does not know


@dataclass
class Identity:
    """How one user proves who they are: the lookup call and what they say for it (none where nobody signs in)."""

    user_id: str
    first_name: str
    action: Action | None
    says: str
    known_info: dict[str, str]
    bindings: dict[str, list[str]]


class Intent:
    name: ClassVar[str]
    target_tool: ClassVar[str]

    def ground(self, env: Any, rng: random.Random, customer: dict[str, Any]) -> Grounding | None:
        """Tie the intent to entities of ``customer``; None when the customer has none that fit.

        ``env`` is the domain's own ``Environment`` (its ``db`` holds the seeded tables); it is not typed as
        one here because ``simulators.environment`` imports this module for the hooks' types.
        """
        raise NotImplementedError

    def outputs(self, target: Action, result: dict[str, Any]) -> list[str]:
        """Values from the target's result that the assistant must tell the user."""
        return []

    @property
    def tells_user(self) -> bool:
        """Whether this intent has outputs the user must hear."""
        return type(self).outputs is not Intent.outputs

    def ask(self, rng: random.Random) -> str:
        return "Could you tell me more about what you need?"

    def confirm(self, target: Action, rng: random.Random) -> str:
        return f"I am about to run {target.name}. Shall I proceed?"

    def report(self, target: Action, outputs: list[str], rng: random.Random) -> str:
        return "Done." + (" " + ", ".join(outputs) if outputs else "")
