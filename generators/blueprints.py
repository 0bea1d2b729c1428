"""Blueprint synthesis without a model (APIGen-MT's shape, rules instead of an LLM).

A blueprint is an instruction, gold tool calls and expected outputs. Here the
gold chain comes from a random walk on the tool-dependency graph, is grounded
in a real user's entities, and is *executed* on a fresh environment: a
blueprint whose calls error, or whose writes change nothing, never leaves this
module.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import Field

from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisError
from generators.blueprint_rules import Execution, execute_gold, skeleton_violations
from generators.personas import INSTRUCTION_TEMPLATES, PERSONAS
from generators.tool_graph import ToolGraph
from schemas import Action, Request, Task, UserScenario
from simulators.environment import Environment, result_value
from simulators.intents import Grounding, Identity, Intent
from simulators.phrasing import expand


@dataclass
class Draft:
    """A rule-built blueprint: executed, so every call is known to work, but not yet put into words."""

    identity: Identity
    gold: list[Action]
    chosen: list[tuple[Intent, Grounding, list[int]]]  # each request: intent, its grounding, its gold indices
    outputs: list[str]
    execution: Execution
    tools: list[str]  # the tool-graph walks, in order

    @property
    def user_id(self) -> str:
        return self.identity.user_id


class BlueprintParams(GeneratorParams):
    min_requests: int = Field(default=1, ge=1, description="each task has at least this many requests, each of "
                              "another intent (more than the domain can give is a config error)")
    max_requests: int = Field(default=2, ge=1, description="at most this many (capped at what the domain can give)")
    intents: list[str] | None = Field(default=None, description="limit to these intents; all by default")
    max_attempts: int = Field(default=40, ge=1)


@lru_cache(maxsize=8)
def tool_graph(env_cls: type[Environment]) -> ToolGraph:
    """Both sides' tools: in a dual-control domain a request can end on an action the user takes on their device."""
    return ToolGraph({**env_cls.specs(), **env_cls.user_specs()})


@GENERATORS.register("blueprint")
class BlueprintGenerator(Generator):
    Params = BlueprintParams

    def __init__(self, env: Environment, params: BlueprintParams) -> None:
        super().__init__(env, params)
        names = params.intents or sorted(env.intents)
        unknown = [n for n in names if n not in env.intents]
        if unknown:
            raise ValueError(f"unknown intents {unknown}; known: {', '.join(sorted(env.intents))}")
        if params.max_requests < params.min_requests:
            raise ValueError("max_requests must be >= min_requests")
        self.intents: list[Intent] = [env.intents[n] for n in names]
        self.by_target: dict[str, list[Intent]] = {}
        for intent in self.intents:
            self.by_target.setdefault(intent.target_tool, []).append(intent)
        self.graph = tool_graph(type(env))
        # Where nobody signs in, a request is its target call (with the lookups its grounding found), so every
        # intent is an entry; otherwise walks start at what a user can state (the identity lookup, say).
        self.direct = not env.authenticates
        entries = sorted(self.by_target) if self.direct else self.graph.entries(set(env.user_knows))
        if not entries:
            raise ValueError(f"domain {env.name!r}: no tool can be called with what a user knows ({sorted(env.user_knows)})")
        # A request's intent never repeats in a task, so a starting lookup supplies at most as many requests
        # as it has intents within reach on the graph. A minimum no entry reaches is a config error; a maximum
        # is only a bound, so one above what the domain can give is capped.
        self.capacity = {e: len(self.intents) if self.direct else
                         sum(i.target_tool in self.graph.reachable(e) for i in self.intents) for e in entries}
        most = max(self.capacity.values())
        if params.min_requests > most:
            raise ValueError(f"min_requests: {params.min_requests} distinct requests cannot fit in one task of domain "
                             f"{env.name!r}: at most {most} of its intents ({', '.join(i.name for i in self.intents)}) "
                             "are reachable from one starting lookup, and a task never repeats an intent")
        self.max_requests = min(params.max_requests, most)
        self.entries = entries
        self.users = env.users()
        if not self.users:
            raise ValueError(f"domain {env.name!r} has no users to ground tasks in")

    def generate(self, rng: random.Random) -> Task:
        draft = self.draft(rng)
        return self._task(rng, draft)

    def draft(self, rng: random.Random, user_id: str | None = None) -> Draft:
        """A validated blueprint before it has words: intents, a user whose data fits, gold actions, outputs.

        ``user_id`` pins the user (recombination wants a second task for the same one).
        """
        wanted = rng.randint(self.params.min_requests, self.max_requests)
        last_problem = "no attempt made"
        for _ in range(self.params.max_attempts):
            try:
                return self._attempt(rng, wanted, user_id)
            except SynthesisError as err:
                last_problem = str(err)
        raise SynthesisError(f"no valid blueprint in {self.params.max_attempts} attempts; last: {last_problem}")

    # -- one attempt ---------------------------------------------------------
    def _attempt(self, rng: random.Random, wanted: int, user_id: str | None = None) -> Draft:
        """Walk the graph to pick intents, then find a user whose data fits them all.

        Intents first, user second: picking the user first would favour
        intents every user can ground (an address change) over ones that need
        a particular order state.
        """
        env = self.env
        entry = rng.choice([e for e in self.entries if self.capacity[e] >= wanted])
        walks = self._walks(rng, entry, wanted)
        for _ in range(1 if user_id else self.params.max_attempts):
            user = user_id or rng.choice(self.users)
            record = env.user_record(user)
            groundings = [intent.ground(env, rng, record) for intent, _ in walks]
            if all(g is not None for g in groundings):
                break
        else:
            raise SynthesisError(f"no user has data for {', '.join(i.name for i, _ in walks)}")

        identity = env.identify(rng, user)
        known_types = set(env.user_knows)
        gold: list[Action] = [identity.action] if identity.action is not None else []
        chosen: list[tuple[Intent, Grounding, list[int]]] = []
        for (intent, path), grounding in zip(walks, groundings, strict=True):
            bindings = {**identity.bindings, **grounding.bindings}
            have = known_types | {e for t in path[:-1] for e in self.graph.specs[t].produces}
            target_tool = path[-1]
            lookups = path[1:-1] + [t for t in self.graph.plan(target_tool, have) if t not in path]
            start = len(gold)
            for name in lookups:
                for action in self._bind(name, bindings):
                    if action not in gold:
                        gold.append(action)
            gold += [a for a in grounding.lookups if a not in gold]
            # A read the lookups already made is not made twice; the user's checks may repeat (before and after a fix).
            gold += [a for a in grounding.before if a.actor == "user" or a not in gold]
            target_spec = self.graph.specs[grounding.target.name]
            if not target_spec.writes and target_spec.actor == "assistant" and gold.count(grounding.target) >= 2:
                raise SynthesisError(f"intent {intent.name}: its lookup would be the third identical call")
            gold += [grounding.target, *grounding.after]
            chosen.append((intent, grounding, list(range(start, len(gold)))))
        execution = execute_gold(env, gold, user=user)
        said = " ".join(f"{g.opening} {g.details}" for _, g, _ in chosen)
        violations = skeleton_violations(env, gold, execution.results, user, said=said)
        if violations:  # requests that work alone may not together (a rebooking, then compensation for the old flight)
            raise SynthesisError(f"policy: {violations[0]}")
        outputs: list[str] = []
        for intent, grounding, indices in chosen:
            result = result_value(execution.results[indices[-1 - len(grounding.after)]])
            outputs += [o for o in intent.outputs(grounding.target, result) if o not in outputs]
        return Draft(identity=identity, gold=gold, chosen=chosen, outputs=outputs, execution=execution,
                     tools=[t for _, path in walks for t in path])

    def _walks(self, rng: random.Random, entry: str, wanted: int) -> list[tuple[Intent, list[str]]]:
        """``wanted`` walks from ``entry``, each ending on an intent no earlier walk chose.

        The intent first, uniformly among those left within reach, then a walk to its target: walking to any
        target instead favours the targets that lie on every path (a lookup that is also a read intent's goal).
        A repeat is never drawn (and never silently dropped: that made a minimum of 3 requests give 1 or 2), nor
        a second intent of an exclusive group (``Intent.exclusive``), which no customer could ground.
        """
        if self.direct:  # each request is its own call: any intents go together
            return [(intent, [intent.target_tool]) for intent in rng.sample(self.intents, wanted)]
        reachable = self.graph.reachable(entry)
        walks: list[tuple[Intent, list[str]]] = []
        while len(walks) < wanted:
            left = [i for i in self.intents if i.target_tool in reachable and all(
                i is not w and (i.exclusive is None or i.exclusive != w.exclusive) for w, _ in walks)]
            path = self.graph.walk(rng, entry, {(intent := rng.choice(left)).target_tool}) if left else None
            if path is None:
                raise SynthesisError(f"only {len(walks)} distinct intents reachable from {entry}, {wanted} wanted")
            walks.append((intent, path))
        return walks

    def _bind(self, tool_name: str, bindings: dict[str, list[str]]) -> list[Action]:
        """One call per bound value; none when a required parameter has no binding (or the tool is the user's)."""
        spec = self.graph.specs[tool_name]
        if spec.actor != "assistant":
            return []
        required = spec.schema.function.parameters.get("required", [])
        if any(spec.entities.get(p) not in bindings for p in required):
            return []
        actions: list[dict[str, Any]] = [{}]
        for p in required:
            actions = [{**a, p: v} for a in actions for v in bindings[spec.entities[p]]]
        return [Action(name=tool_name, arguments=a) for a in actions]

    def _task(self, rng: random.Random, draft: Draft) -> Task:
        identity, chosen = draft.identity, draft.chosen
        persona = rng.choice(PERSONAS)
        known = dict(identity.known_info)
        unknown: list[str] = []
        requests = []
        for i, (intent, grounding, indices) in enumerate(chosen):
            known.update({f"{k}" if k not in known else f"{k}_{i + 1}": v for k, v in grounding.known_info.items()})
            unknown += [u for u in grounding.unknown_info if u not in unknown]
            requests.append(Request(intent=intent.name, opening=grounding.opening, details=grounding.details,
                                    actions=indices))
        goals = " ".join(
            (g.goal if i == 0 else f"Once that is done, {g.goal[0].lower()}{g.goal[1:]}")
            for i, (_, g, _) in enumerate(chosen))
        identity_text = "To prove who you are you can give " + " and ".join(
            f"your {k} ({v})" for k, v in identity.known_info.items()) + "." if identity.known_info else ""
        unknown_text = (f"You do not know: {'; '.join(unknown)}. Say so if asked." if unknown else "")
        instruction = rng.choice(INSTRUCTION_TEMPLATES).format(
            name=f"{identity.first_name or 'a user'}", persona=persona.description, goals=goals, identity=identity_text,
            unknown=unknown_text).strip()
        scenario = UserScenario(persona=persona.description, instruction=instruction, known_info=known,
                                unknown_info=unknown, identity=identity.says, requests=requests,
                                closing=expand(rng.choice(persona.closings), rng))
        return Task(domain=self.env.name, env_seed=self.env.seed, scenario=scenario, gold_actions=draft.gold,
                    expected_outputs=draft.outputs, expected_state_hash=draft.execution.final_hash,
                    generator=self.name, user=draft.user_id if self.env.user_specs() else None)

