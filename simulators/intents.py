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
    """An intent tied to real entities of one customer.

    ``before`` and ``after`` are calls the request needs around its target that
    the tool graph cannot know: a bill paid before the line it suspended is
    resumed; in a dual-control domain, the checks the user runs on their phone
    to diagnose, and to confirm the fix (actions with ``actor='user'``).
    """

    target: Action
    bindings: dict[str, list[str]]
    goal: str
    opening: str
    details: str
    known_info: dict[str, str] = field(default_factory=dict)
    unknown_info: list[str] = field(default_factory=list)
    before: list[Action] = field(default_factory=list)
    after: list[Action] = field(default_factory=list)
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


class DeviceVoice:
    """How a dual-control domain's user-side actions are put into words.

    The scripted assistant ``guide``s the user to actions on their device; the
    scripted user ``parse``s what it was asked to do (it does what it hears,
    not what the blueprint says, so a wrong instruction leads to a wrong
    device state) and ``report``s what it saw. Every phrasing ``guide`` makes
    must parse back to its actions; the domain's tests hold it to that.
    """

    def guide(self, actions: list[Action], rng: random.Random, messages: list[Any]) -> str:
        raise NotImplementedError

    def parse(self, text: str) -> list[Action]:
        raise NotImplementedError

    def report(self, action: Action, result: str, rng: random.Random) -> str:
        raise NotImplementedError

    def decoy(self, action: Action) -> Action | None:
        """The plausible wrong step a careless agent guides instead of ``action`` (``wrong_device_step``)."""
        return None


class Intent:
    name: ClassVar[str]
    target_tool: ClassVar[str]
    # Intents of one exclusive group never share a task: the domain's data gives a customer at most one of them
    # (telecom: one thing wrong per customer), so a blueprint that drew two could be grounded in nobody.
    exclusive: ClassVar[str | None] = None

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

    def story(self, rng: random.Random) -> str:
        """A sentence of the customer's own story around the request ("it was a gift for my sister"), or "".

        Said by the scripted user, never stored in the task: its small facts (a
        date, a name) are colour, not details the assistant has to act on.
        """
        return ""

    def confirm(self, target: Action, rng: random.Random) -> str:
        """The question before a write: ``target`` is whichever write of the request is next (usually the target)."""
        return f"I am about to run {target.name}. Shall I proceed?"

    def forbidden(self, target: Action, env: Any) -> Action | None:
        """The write a careless agent makes here against the policy (a refund the fare rules exclude), if any.

        Derived from the target and the (fresh) environment alone: intents are
        shared by every task, so nothing may be remembered from grounding.

        The scripted assistant plants it for the ``break_rule`` mistake, so the
        domain's own policy check is exercised offline.
        """
        return None

    def report(self, target: Action, outputs: list[str], rng: random.Random) -> str:
        return "Done." + (" " + ", ".join(outputs) if outputs else "")
