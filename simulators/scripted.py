"""Offline agents: a dialogue skeleton built from the blueprint, no model needed.

The scripted user reveals the scenario piece by piece (opening, identity when
asked, specifics when asked, a yes to a confirmation, the next request when
offered help); the scripted assistant follows the policy: authenticate, look
up, confirm, write, report. Tool results are real: the loop executes every
call on the environment.

``perturb`` plants one of the mistakes models really make, so the offline run
exercises every verification path; it is seeded, so the same task and seed
always make the same mistake.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from schemas import Action, Message, Task, Tool, ToolCall, content_hash
from simulators.agents import STOP
from simulators.environment import Environment, is_error, result_value

PERTURBATIONS = ("malformed_arguments", "unknown_tool", "skip_confirmation", "claim_without_call", "omit_outputs")

_ASKS_IDENTITY = re.compile(r"verify your identity|confirm who you are|your email", re.I)
_ASKS_CONFIRM = re.compile(r"shall i proceed", re.I)
_OFFERS_MORE = re.compile(r"anything else", re.I)
AFFIRM = ("Yes, please go ahead.", "Yes.", "Yep, that's right, go ahead.", "Sure, please do.", "Yes, confirmed.")


class ScriptedUser:
    def __init__(self, task: Task, rng: random.Random) -> None:
        self.scenario = task.scenario
        self.rng = rng
        self.request = 0

    async def respond(self, messages: list[Message]) -> Message:
        last = next((m.content or "" for m in reversed(messages) if m.role == "assistant" and m.content), None)
        requests = self.scenario.requests
        if last is None:
            text = requests[0].opening
        elif _ASKS_IDENTITY.search(last):
            text = self.scenario.identity
        elif _ASKS_CONFIRM.search(last):
            text = self.rng.choice(AFFIRM)
        elif _OFFERS_MORE.search(last):
            self.request += 1
            if self.request >= len(requests):
                text = f"{self.scenario.closing} {STOP}"
            else:
                text = self.rng.choice(["Yes, one more thing.", "Actually, yes.", "There is, actually."]) + " " + \
                    requests[self.request].opening
        else:
            text = requests[self.request].details
        return Message(role="user", content=text)


@dataclass
class _Step:
    """One assistant move: a call, or text that waits for the user."""

    action: Action | None = None
    say: Callable[[list[Message]], str] | None = None


class ScriptedAssistant:
    def __init__(self, task: Task, env: Environment, rng: random.Random, perturbation: str | None = None) -> None:
        self.task = task
        self.env = env
        self.rng = rng
        self.perturbation = perturbation
        self.steps = self._script()
        self.calls = 0

    def _script(self) -> list[_Step]:
        task, rng, intents = self.task, self.rng, self.env.intents
        gold = task.gold_actions
        first = task.scenario.requests[0].actions[0]
        signs_in = self.env.authenticates  # where nobody signs in, there is no identity step and no "verified"
        steps = [_Step(say=lambda _m: rng.choice([
            "I'd be glad to help. First I need to verify your identity: could you give me your email, or your "
            "full name and zip code?",
            "Happy to help with that. To confirm who you are, please share your email, or your name and zip code.",
        ]))] if signs_in else []
        steps += [_Step(action=a) for a in gold[:first]]
        planted = False
        for r, request in enumerate(task.scenario.requests):
            intent = intents[request.intent]
            target = gold[request.actions[-1]]
            ask = intent.ask(rng)
            steps.append(_Step(say=(lambda _m, ask=ask: f"Thank you, you're verified. {ask}") if r == 0 and signs_in
                               else (lambda _m, ask=ask: ask)))
            steps += [_Step(action=gold[i]) for i in request.actions[:-1]]
            writes = self.env.specs()[target.name].writes
            applies = intent.tells_user if self.perturbation == "omit_outputs" else writes
            if self.perturbation == "malformed_arguments":
                applies = applies and bool(target.arguments)  # a call without arguments has none to leave out
            mistake = self.perturbation if not planted and applies else None
            planted = planted or mistake is not None
            if writes and mistake != "skip_confirmation":
                steps.append(_Step(say=lambda _m, i=intent, t=target: i.confirm(t, rng)))
            if mistake != "claim_without_call":
                steps.append(_Step(action=self._mistaken(target, mistake)))
            steps.append(_Step(say=lambda m, i=intent, t=target, k=mistake: self._report(m, i, t, k)))
        return steps

    def _mistaken(self, target: Action, mistake: str | None) -> Action:
        if mistake == "unknown_tool":
            return Action(name=f"{target.name}_now", arguments=target.arguments)
        if mistake == "malformed_arguments":
            args = dict(target.arguments)
            args.pop(sorted(args)[0])
            return Action(name=target.name, arguments=args)
        return target

    def _report(self, messages: list[Message], intent, target: Action, mistake: str | None) -> str:
        if mistake == "claim_without_call":
            outputs = [o for o in self.task.expected_outputs]  # asserts success it never checked
        elif mistake == "omit_outputs":
            outputs = []
        else:
            result = messages[-1].content or "" if messages and messages[-1].role == "tool" else ""
            if is_error(result) or not result:
                return "I'm sorry, that did not go through: " + (result or "no result") + \
                    " Is there anything else I can help with?"
            outputs = intent.outputs(target, result_value(result))
        closer = self.rng.choice(["Is there anything else I can help you with?", "Anything else I can do for you?"])
        return f"{intent.report(target, outputs, self.rng)} {closer}"

    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        if not self.steps:
            return Message(role="assistant", content="Is there anything else I can help you with?")
        step = self.steps.pop(0)
        if step.action is not None:
            self.calls += 1
            call_id = f"call_{content_hash([self.task.id, self.calls], 12)}"
            return Message(role="assistant", tool_calls=[ToolCall.make(call_id, step.action.name,
                                                                       step.action.arguments)])
        return Message(role="assistant", content=step.say(messages))
