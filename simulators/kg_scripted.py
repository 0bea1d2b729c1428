"""Offline agents for KG questions: the user asks and says "continue"; the assistant follows the path.

The assistant replays the task's gold calls turn by turn (one request of the
scenario per turn), reports which variables it has resolved from the real
tool results, and ends with "The answer is: ...". ``perturb`` plants a
mistake a model makes on such tasks, so the verification funnel is exercised
offline: a bad call, a made-up tool, an answer given without looking it up,
or a wrong answer.
"""

from __future__ import annotations

import random
import re

from schemas import Action, Message, Task, Tool, ToolCall, content_hash
from simulators.agents import STOP
from simulators.environment import Environment, is_error

_ANSWERED = re.compile(r"the answer is", re.I)
CONTINUE = ("Yes, please continue.", "Go on, please.", "Sounds good, keep going.")


class KGScriptedUser:
    def __init__(self, task: Task, rng: random.Random) -> None:
        self.scenario = task.scenario
        self.rng = rng
        self.turn = 0

    async def respond(self, messages: list[Message]) -> Message:
        last = next((m.content or "" for m in reversed(messages) if m.role == "assistant" and m.content), None)
        if last is None:
            text = self.scenario.requests[0].opening
        elif _ANSWERED.search(last) or self.turn + 1 >= len(self.scenario.requests):
            text = f"{self.scenario.closing} {STOP}"
        else:
            self.turn += 1
            text = self.rng.choice(CONTINUE)
        return Message(role="user", content=text)


class KGScriptedAssistant:
    def __init__(self, task: Task, env: Environment, rng: random.Random, perturbation: str | None = None) -> None:
        self.task = task
        self.env = env
        self.rng = rng
        self.mistake = {"skip_confirmation": "wrong_answer", "omit_outputs": "wrong_answer"}.get(
            perturbation or "", perturbation)
        self.queue: list[Action | str] = []
        self.turn = 0
        self.calls = 0
        self.resolved = 0
        self.done: list[Action] = []

    def _plan_turn(self) -> None:
        requests = self.task.scenario.requests
        gold = self.task.gold_actions
        indices = requests[self.turn].actions
        final = self.turn == len(requests) - 1
        actions = [gold[i] for i in indices]
        if final and self.mistake == "claim_without_call":
            actions = actions[:1]
        if self.mistake in ("malformed_arguments", "unknown_tool") and final:
            target = actions[-1]
            if self.mistake == "unknown_tool":
                actions[-1] = Action(name=f"{target.name}_by_id", arguments=target.arguments)
            else:
                actions[-1] = Action(name=target.name, arguments={"id": target.arguments.get("entity_id", "")})
        self.queue = [*actions, "final" if final else "progress"]
        self.turn += 1

    def _progress(self) -> str:
        path = self.task.path
        upto = self._resolved_upto()
        found = [f"{p['var']} is {p['name']}" for p in path[self.resolved:upto]]
        self.resolved = upto
        return (f"So far: {'; '.join(found)}. " if found else "") + self.rng.choice(
            ["Shall I continue with the next steps?", "Do you want me to continue?"])

    def _resolved_upto(self) -> int:
        """How many path variables the calls made so far have reached: 1 + the last hop followed."""
        upto = 1
        for i, p in enumerate(self.task.path[1:], 2):
            hop = (p["source"], p["relation"])  # any direction: a relation that reads both ways is listed "both"
            if any(a.name == "get_neighbors" and (a.arguments.get("entity_id"), a.arguments.get("relation")) == hop
                   for a in self.done):
                upto = i
        return upto

    def _final(self, messages: list[Message]) -> str:
        path = self.task.path
        found = [f"{p['var']} is {p['name']}" for p in path[self.resolved:]]
        answer = self.task.answer or ""
        if self.mistake == "wrong_answer":
            answer = self._distractor(messages) or f"not {answer}"
        lead = f"Following the relations: {'; '.join(found)}. " if found else ""
        return f"{lead}The answer is: {answer}"

    def _distractor(self, messages: list[Message]) -> str | None:
        """A plausible wrong answer: another entity named in the tool results."""
        right = (self.task.answer or "").casefold()
        for m in reversed(messages):
            if m.role != "tool" or is_error(m.content or ""):
                continue
            for name in re.findall(r'"name":"([^"]+)"', m.content or ""):
                if name.casefold() != right:
                    return name
        return None

    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        if not self.queue:
            if self.turn >= len(self.task.scenario.requests):
                return Message(role="assistant", content="Glad I could help.")
            self._plan_turn()
        step = self.queue.pop(0)
        if isinstance(step, Action):
            self.calls += 1
            self.done.append(step)
            call_id = f"call_{content_hash([self.task.id, self.calls], 12)}"
            return Message(role="assistant", tool_calls=[ToolCall.make(call_id, step.name, step.arguments)])
        text = self._final(messages) if step == "final" else self._progress()
        return Message(role="assistant", content=text)

