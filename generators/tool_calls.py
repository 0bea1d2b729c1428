"""Offline tasks for schema-only domains: one to a few tool calls with arguments drawn from the schemas.

There is no data to ground arguments in, so they are sampled from each
tool's parameter schema (required ones always, optional ones at
``optional_rate``); the gold calls are executed on a fresh environment like
any blueprint, so a task whose calls the domain refuses never leaves here,
and the expected outputs and final state come from that execution.
"""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import Field

from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisError
from generators.personas import PERSONAS
from schemas import Action, Request, Task, UserScenario, canonical_json
from simulators.environment import Environment, ToolFault, is_error
from simulators.json_sampler import FIRST, LAST, sample
from simulators.phrasing import expand


class ToolCallsParams(GeneratorParams):
    min_calls: int = Field(default=1, ge=1)
    max_calls: int = Field(default=2, ge=1)
    tools: list[str] | None = Field(default=None, description="limit to these tools; all by default")
    optional_rate: float = Field(default=0.3, ge=0.0, le=1.0, description="chance an optional argument is given")


@GENERATORS.register("tool_calls")
class ToolCallsGenerator(Generator):
    Params = ToolCallsParams

    def __init__(self, env: Environment, params: ToolCallsParams) -> None:
        super().__init__(env, params)
        if params.max_calls < params.min_calls:
            raise ValueError("max_calls must be >= min_calls")
        names = params.tools or sorted(env.specs())
        unknown = [n for n in names if n not in env.specs()]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; known: {', '.join(sorted(env.specs()))}")
        missing = [n for n in names if f"call_{n}" not in env.intents]
        if missing:
            raise ValueError(f"domain {env.name!r} has no call_<tool> intent for {missing}; "
                             f"tool_calls works on schema-only domains")
        self.tools = names

    def generate(self, rng: random.Random) -> Task:
        wanted = rng.randint(self.params.min_calls, self.params.max_calls)
        chosen = rng.sample(self.tools, min(wanted, len(self.tools)))
        specs = self.env.specs()
        gold = [Action(name=n, arguments=sample(specs[n].schema.function.parameters, rng,
                                                optional_rate=self.params.optional_rate)) for n in chosen]
        env = self.env.fresh()
        outputs: list[str] = []
        for action in gold:
            try:
                result = env.execute(action.name, action.arguments)
            except ToolFault as err:
                raise SynthesisError(f"gold call {action.name}: {err}", fault="tool") from None
            if is_error(result):
                raise SynthesisError(f"gold call {action.name} failed: {result}")
            outputs += [o for o in self.env.intents[f"call_{action.name}"].outputs(action, _json(result))
                        if o not in outputs]
        persona = rng.choice(PERSONAS)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        requests = []
        for i, action in enumerate(gold):
            what = specs[action.name].schema.function.description.split(". ")[0].rstrip(".") or action.name
            opening = f"I need help with this: {what[0].lower()}{what[1:]}."
            details = "Please use " + (", ".join(f"{k} {_text(v)}" for k, v in sorted(action.arguments.items()))
                                       or "no particular details") + "."
            requests.append(Request(intent=f"call_{action.name}", actions=[i], details=details, opening=opening))
        goals = " Then ".join(f"You want {a.name} done with {canonical_json(a.arguments)}." for a in gold)
        scenario = UserScenario(
            persona=persona.description, instruction=f"You are {first} {last}, {persona.description}. {goals}",
            known_info={k: _text(v) for a in gold for k, v in a.arguments.items()},
            identity=f"I'm {first} {last}." if self.env.authenticates else "", requests=requests,
            closing=expand(rng.choice(persona.closings), rng))
        return Task(domain=self.env.name, env_seed=self.env.seed, scenario=scenario, gold_actions=gold,
                    expected_outputs=outputs, expected_state_hash=_final_hash(env), generator=self.name)


def _final_hash(env: Environment) -> str:
    digest = env.state_hash()
    env.close()
    return digest


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
