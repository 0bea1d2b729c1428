"""What simulated agents were told, or could not have known, must not show in a dialogue.

``simulator_leak``: a user turn that echoes the user simulator's instructions (its prompt, the reminder, the
persona, the scenario text, the stop token) or the refiner's slot instructions is the simulator speaking, not
a customer. ``reasoning``: an assistant turn's reasoning trace (``reasoning_content``) that contains a tool
result returned only later in the dialogue was not produced by that turn (a mixed-up or replayed trace).
Both are cheap text checks on the stored dialogue, so they also verify rows made by older code.
"""

from __future__ import annotations

import re

from filters.base import FILTERS, Context, Filter
from schemas import Message, Trajectory, Verdict
from simulators.agents import STOP
from simulators.model_agents import simulator_instructions
from simulators.skeleton_refine import INSTRUCTIONS, SLOTS_HEADER, SYSTEM, facts, folded

_WORD = re.compile(r"[a-z0-9#@$.'-]+")
# Pieces of the stop token and of bracketed notes that no customer writes.
_MARKERS = ("###", STOP.strip("#"), "[reminder", "not part of the chat", SLOTS_HEADER.lower(), "<<slot")


_GOAL = "the scenario's instruction"
_SECOND_PERSON = {"you", "your", "you're", "yourself"}


def _words(text: str) -> list[str]:
    return [w.strip(".'-") for w in _WORD.findall(text.lower()) if w.strip(".'-")]


def _grams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _refiner_instructions() -> list[tuple[str, str, int]]:
    return [("the refiner's instructions", text, 6) for text in (SYSTEM, *INSTRUCTIONS.values())]


@FILTERS.register("simulator_leak")
class SimulatorLeakFilter(Filter):
    """No user turn repeats what the user simulator (or the refiner) was instructed: its prompt, reminder,
    persona or scenario text, or a piece of the stop token."""

    fault = "user"

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        sources = [(what, _grams(_words(text), n), n) for what, text, n in
                   [*simulator_instructions(ctx.task), *_refiner_instructions()] if text]
        for number, m in enumerate(trajectory.messages):
            if m.role != "user" or not m.content:
                continue
            lowered = m.content.lower()
            marker = next((k for k in _MARKERS if k in lowered), None)
            if marker is not None:
                return self.failed(f"message {number}: the user turn contains {marker!r}, a simulator instruction")
            words = _words(m.content)
            for what, grams, n in sources:
                shared = _grams(words, n) & grams
                if what == _GOAL:  # its data (item names, ids) is the customer's to say; its second person is not
                    shared = {g for g in shared if _SECOND_PERSON & set(g)}
                if shared:
                    echo = " ".join(min(shared))
                    return self.failed(f"message {number}: the user turn echoes {what} ({echo!r})")
        return self.passed()


@FILTERS.register("reasoning")
class ReasoningFilter(Filter):
    """An assistant turn's reasoning mentions no tool result it had not seen yet: a fact (id, number, email)
    or a long span that first appears in a later tool result."""

    MIN_SPAN = 40

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        messages = trajectory.messages
        for i, m in enumerate(messages):
            if m.role != "assistant" or not m.reasoning_content:
                continue
            seen = folded(set().union(*(_facts(x) for x in messages[:i]), _facts(m, reasoning=False)))
            thought = m.reasoning_content
            found = folded(facts(thought))
            for j in range(i + 1, len(messages)):
                later = messages[j]
                if later.role != "tool" or not later.content:
                    continue
                unseen = sorted(f for f in facts(later.content) if f.casefold() in found - seen)
                if unseen:
                    return self.failed(f"message {i}: its reasoning mentions {unseen[0]!r}, first returned by the "
                                       f"tool result at message {j}")
                if len(later.content) >= self.MIN_SPAN and later.content in thought:
                    return self.failed(f"message {i}: its reasoning contains the tool result of message {j}")
        return self.passed()


def _facts(m: Message, reasoning: bool = True) -> set[str]:
    out = facts(m.content or "")
    for call in m.tool_calls or []:
        out |= facts(call.function.arguments)
    if reasoning and m.reasoning_content:
        out |= facts(m.reasoning_content)
    return out
