"""KG questions (DeepDive's recipe, checkable by construction): walk, obfuscate, prove unique, plan the search.

1. a seeded random walk (``generators.kg_walk``) gives the path;
2. the answer is the last entity's name or one of its attributes;
3. every entity on the path is described, never named: by a relation to the
   previous one and, where needed, by clues (attribute ranges, first letter,
   a relation to an off-path entity);
4. clues are added greedily where the candidate set is largest until the
   question, evaluated on the graph, has exactly one answer; if no clue can
   get there, the question is dropped with the reason ``ambiguous: N answers``;
5. the gold tool calls a searcher would make are planned and executed on the
   environment, so the scripted assistant has a real path to follow.

The wording comes from a ``QuestionWriter``: ``template`` offline; a model
writer can register itself in ``WRITERS`` and be chosen with ``writer``.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisContext, SynthesisError
from generators.kg_clues import Clue, ClueIndex, QuestionSpec, answer_value, evaluate, flip
from generators.kg_walk import WalkParams, random_walk
from schemas import Action, Message, Request, Task, UserScenario
from simulators.backends import ChatParams
from simulators.domains.kg.graph import KnowledgeGraph, fold
from simulators.environment import Environment, is_error

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HOPS_PER_TURN = 2  # the assistant reports back every two hops: a multi-turn search dialogue


def _label(name: str) -> str:
    return name.replace("_km2", " (km²)").replace("_", " ")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class QuestionWriter(Protocol):
    """Turns a question's constraints into words; must not name any entity on the path."""

    def write(self, spec: QuestionSpec, kg: KnowledgeGraph, rng: random.Random) -> str: ...


class TemplateWriter:
    """Offline wording: one sentence per variable, lettered, so the chain is explicit."""

    INTROS = ("Here is a puzzle I am trying to solve.", "Can you help me work this out?",
              "I need help with a multi-step question.", "Please solve this chain of clues for me.")

    def clue_text(self, clue: Clue, kg: KnowledgeGraph) -> str:
        kind = clue[0]
        if kind == "initial":
            return f"its name starts with '{clue[1]}'"
        if kind == "attr":
            return f"its {_label(clue[1])} is {clue[2]}"
        if kind == "range":
            return f"its {_label(clue[1])} is between {clue[2]:,} and {clue[3]:,}"
        _, relation, direction, other = clue
        if direction == "out":
            return f"it has {kg.name_of(other)} as {relation}"
        the = "the" if kg.functional(relation, "out") else _article(relation)
        return f"it is {the} {relation} of {kg.name_of(other)}"

    def write(self, spec: QuestionSpec, kg: KnowledgeGraph, rng: random.Random) -> str:
        nodes = spec.nodes
        sentences = []
        for i, node in enumerate(nodes):
            kind = kg.type_of(node)
            if i == 0:
                head = f"{LETTERS[0]} is {_article(kind)} {kind}"
            else:
                hop = spec.hops[i - 1]
                x, y = LETTERS[i - 1], LETTERS[i]
                if hop.direction == "out":
                    the = "the" if kg.functional(hop.relation, "out") else _article(hop.relation)
                    head = f"{y} is {the} {hop.relation} of {x}"
                else:
                    head = f"{y} is {_article(kind)} {kind} that has {x} as {hop.relation}"
            clues = [self.clue_text(c, kg) for c in spec.clues[i]]
            body = head + ("; " + ", and ".join(clues) if clues else "")
            sentences.append(body[0].upper() + body[1:] + ".")
        last = LETTERS[len(nodes) - 1]
        if spec.attribute is None:
            ask = f"Which {kg.type_of(nodes[-1])} is {last}?"
        else:
            ask = f"What is the {_label(spec.attribute)} of {last}?"
        return " ".join([rng.choice(self.INTROS), *sentences, ask])


WRITERS: dict[str, type] = {"template": TemplateWriter}


class KGQuestionParams(GeneratorParams):
    min_hops: int = Field(default=2, ge=1)
    max_hops: int = Field(default=4, ge=1)
    degree_cap: int = Field(default=50, ge=1, description="entities with more links are never on a path")
    max_jumps: int = Field(default=20, ge=0, description="fresh starts when a walk gets stuck short")
    attribute_answer_rate: float = Field(default=0.3, ge=0, le=1, description="share of answers that are attributes")
    min_anchor_clues: int = Field(default=1, ge=0)
    extra_clue_rate: float = Field(default=0.25, ge=0, le=1, description="chance of one more clue per entity")
    max_clues: int = Field(default=8, ge=1, description="clues per question before it is dropped as ambiguous")
    max_attempts: int = Field(default=5, ge=1, description="walks tried before the task is rejected")
    writer: str = Field(default="template", description="template, or model (rewrites the template with `backend`)")
    backend: str | None = Field(default=None, description="the run config backend the model writer calls")
    temperature: float = Field(default=0.7, ge=0)

    @model_validator(mode="after")
    def _check(self) -> KGQuestionParams:
        if self.max_hops < self.min_hops:
            raise ValueError("max_hops must be >= min_hops")
        if self.writer == "model" and not self.backend:
            raise ValueError("writer 'model' needs a backend")
        if self.writer not in WRITERS and self.writer != "model":
            raise ValueError(f"unknown writer {self.writer!r}; known: {', '.join(sorted([*WRITERS, 'model']))}")
        return self


class QuestionBuilder:
    """Walk → constraints → unique answer, on one graph; no environment needed (the benchmark uses it bare)."""

    def __init__(self, kg: KnowledgeGraph, params: KGQuestionParams) -> None:
        self.kg = kg
        self.params = params
        self.walk_params = WalkParams(params.min_hops, params.max_hops, params.degree_cap, params.max_jumps)
        self.index = ClueIndex(kg, params.degree_cap)

    def build(self, rng: random.Random) -> QuestionSpec:
        hops = random_walk(self.kg, rng, self.walk_params)
        if hops is None:
            raise SynthesisError(f"no walk of {self.params.min_hops}+ hops found in {self.params.max_jumps + 1} starts")
        return self.constrain(hops, rng)

    def constrain(self, hops, rng: random.Random, attribute: str | None | Literal["auto"] = "auto") -> QuestionSpec:
        kg, p = self.kg, self.params
        spec = QuestionSpec(hops=list(hops), clues=[[] for _ in range(len(hops) + 1)])
        nodes = spec.nodes
        last = nodes[-1]
        if attribute == "auto":
            attrs = sorted(a for a, v in kg.attributes(last).items() if isinstance(v, str | int | float))
            attribute = rng.choice(attrs) if attrs and rng.random() < p.attribute_answer_rate else None
        spec.attribute = attribute
        exclude = set(nodes)
        options = []
        for i, node in enumerate(nodes):
            opts = [c for c in self.index.options(node, exclude)
                    if not (i == len(nodes) - 1 and attribute is not None and c[:2] == ("range", attribute))
                    and not (i == len(nodes) - 1 and attribute is not None and c[:2] == ("attr", attribute))]
            rng.shuffle(opts)
            if i == 0:  # a named neighbour is how a searcher finds the anchor: prefer it
                opts.sort(key=lambda c: c[0] != "rel")
            options.append(opts)
        for i in range(len(nodes)):
            wanted = p.min_anchor_clues if i == 0 else int(rng.random() < p.extra_clue_rate)
            for c in options[i][:wanted]:
                spec.clues[i].append(c)
        while True:
            sets, answers = evaluate(kg, self.index, spec)
            if len(answers) == 1:
                break
            if not answers:  # cannot happen on a real walk; guards a broken graph
                raise SynthesisError("no answer satisfies the question")
            choice = self._narrowing(spec, sets, options) if sum(map(len, spec.clues)) < p.max_clues else None
            if choice is None:
                shown = "; ".join(sorted(answers)[:3])
                raise SynthesisError(f"ambiguous: {len(answers)} answers satisfy the question ({shown})")
            spec.clues[choice[0]].append(choice[1])
        if attribute is None:
            spec.answer = kg.name_of(last)
            aliases = list(kg.aliases(last))
        else:
            spec.answer, aliases = answer_value(kg.attributes(last)[attribute])
        spec.aliases = [a for a in dict.fromkeys(aliases) if fold(a) and fold(a) != fold(spec.answer)]
        return spec

    def _narrowing(self, spec: QuestionSpec, sets: list[set[str]], options: list[list[Clue]]):
        """The clue that shrinks the largest candidate set most, or None when none shrinks any."""
        order = sorted(range(len(sets)), key=lambda i: (-len(sets[i]), i))
        for i in order:
            if len(sets[i]) <= 1:
                return None
            best, best_size = None, len(sets[i])
            for c in options[i]:
                if c in spec.clues[i]:
                    continue
                size = len(sets[i] & self.index.members(c))
                if size < best_size:
                    best, best_size = c, size
            if best is not None:
                return i, best
        return None


def plan_calls(env: Environment, kg: KnowledgeGraph, spec: QuestionSpec) -> tuple[list[Action], list[list[int]]]:
    """The tool calls that follow the path, grouped per assistant turn; each is executed to prove it works.

    The anchor is found the way a searcher would: through a named off-path
    entity in its clues, then a searchable attribute value, then by listing its
    type, and only as a last resort by its own name.
    """
    nodes = spec.nodes
    anchor = nodes[0]
    tries: list[list[Action]] = []
    for c in spec.clues[0]:
        if c[0] == "rel":
            tries.append([Action(name="search_entities", arguments={"query": kg.name_of(c[3])}),
                          Action(name="get_neighbors", arguments={"entity_id": c[3], "relation": c[1],
                                                                  "direction": flip(c[2])})])
    for c in spec.clues[0]:
        if c[0] == "attr":
            tries.append([Action(name="search_entities", arguments={"query": c[2], "type": kg.type_of(anchor)})])
    tries.append([Action(name="search_entities", arguments={"query": "", "type": kg.type_of(anchor)})])
    tries.append([Action(name="search_entities", arguments={"query": kg.name_of(anchor), "type": kg.type_of(anchor)})])
    find: list[Action] | None = None
    for attempt in tries:
        result = env.execute(attempt[-1].name, attempt[-1].arguments)
        if not is_error(result) and f'"{anchor}"' in result:
            find = attempt
            break
    if find is None:
        raise SynthesisError(f"search cannot find the anchor {anchor}")
    actions = [*find, Action(name="get_entity", arguments={"entity_id": anchor})]
    groups: list[list[int]] = []
    current = list(range(len(actions)))
    for i, hop in enumerate(spec.hops, 1):
        current.append(len(actions))
        actions.append(Action(name="get_neighbors", arguments={"entity_id": hop.source, "relation": hop.relation,
                                                               "direction": hop.direction}))
        if spec.clues[i] or i == len(nodes) - 1:
            current.append(len(actions))
            actions.append(Action(name="get_entity", arguments={"entity_id": hop.target}))
        if i % HOPS_PER_TURN == 0 or i == len(nodes) - 1:
            groups.append(current)
            current = []
    for action in actions:
        result = env.execute(action.name, action.arguments)
        if is_error(result):
            raise SynthesisError(f"gold call {action.name} failed: {result}")
    return actions, groups


def path_records(kg: KnowledgeGraph, spec: QuestionSpec, writer: TemplateWriter) -> list[dict[str, Any]]:
    """The path as stored for RL rewards: each variable's entity, how it was reached and how it was described."""
    records = []
    for i, node in enumerate(spec.nodes):
        record: dict[str, Any] = {"var": LETTERS[i], "entity": node, "name": kg.name_of(node), "type": kg.type_of(node),
                                  "clues": [writer.clue_text(c, kg) for c in spec.clues[i]]}
        if i:
            hop = spec.hops[i - 1]
            record.update(relation=hop.relation, direction=hop.direction, source=hop.source)
        records.append(record)
    records[-1]["answer_attribute"] = spec.attribute
    return records


@GENERATORS.register("kg_question")
class KGQuestionGenerator(Generator):
    Params = KGQuestionParams

    def __init__(self, env: Environment, params: KGQuestionParams) -> None:
        super().__init__(env, params)
        kg = getattr(env, "kg", None)
        if not isinstance(kg, KnowledgeGraph):
            raise ValueError(f"kg_question needs a knowledge-graph domain (domain.name: kg), not {env.name!r}")
        self.kg = kg
        self.builder = QuestionBuilder(kg, params)
        self.writer = WRITERS.get(params.writer, TemplateWriter)()

    async def agenerate(self, rng: random.Random, ctx: SynthesisContext) -> Task:
        """With the model writer, the template's exact constraints are rewritten as one natural question.

        The rewrite may not name an entity of the path (that would give the
        search away); one that does is dropped with that reason. Whether it
        kept every constraint is for the judge and difficulty filters to check.
        """
        task = self.generate(rng)
        if self.params.writer != "model":
            return task
        template = task.scenario.requests[0].opening
        prompt = [Message(role="system", content=(
            "Rewrite the puzzle below as one natural, fluent question a curious person might ask. Keep every "
            "constraint exactly; do not add facts; never name the lettered entities; reply with the question only.")),
            Message(role="user", content=template)]
        params = ChatParams(temperature=self.params.temperature, max_tokens=400)
        reply = await ctx.endpoints[self.params.backend].chat(prompt, None, params, ctx.usage[self.name])
        question = (reply.content or "").strip()
        if not question:
            raise SynthesisError("model writer returned no question")
        lowered = question.lower()
        named = [step["name"] for step in task.path
                 if step.get("name") and re.search(rf"\b{re.escape(step['name'].lower())}\b", lowered)]
        if named:
            raise SynthesisError(f"model writer named an entity of the path: {named[0]!r}")
        data = task.model_dump(exclude={"id"})
        data["scenario"]["requests"][0].update(opening=question, details=question)
        data["scenario"]["instruction"] = data["scenario"]["instruction"].replace(template, question)
        return Task.model_validate(data)

    def generate(self, rng: random.Random) -> Task:
        problem = "no attempt made"
        for _ in range(self.params.max_attempts):
            try:
                spec = self.builder.build(rng)
                actions, groups = plan_calls(self.env, self.kg, spec)
            except SynthesisError as err:
                problem = str(err)
                continue
            return self._task(rng, spec, actions, groups)
        raise SynthesisError(problem if self.params.max_attempts == 1
                             else f"no question in {self.params.max_attempts} walks; last: {problem}")

    def _task(self, rng: random.Random, spec: QuestionSpec, actions: list[Action], groups: list[list[int]]) -> Task:
        question = self.writer.write(spec, self.kg, rng)
        requests = [Request(intent="kg_question", opening=question, details=question, actions=groups[0])]
        requests += [Request(intent="kg_question", opening="Yes, please continue.", details="Please go on.", actions=g)
                     for g in groups[1:]]
        scenario = UserScenario(
            persona="someone solving a multi-step trivia question",
            instruction=f"Ask the assistant this question and let it search: {question} "
                        "You do not know the answer; when it reports progress, tell it to continue.",
            unknown_info=["the answer"], identity="", requests=requests,
            closing=rng.choice(["Thanks, that's what I needed.", "Great, thank you!", "Perfect, thanks."]))
        return Task(kind="kg_question", domain=self.env.name, env_seed=self.env.seed, scenario=scenario,
                    gold_actions=actions, expected_outputs=[], expected_state_hash=self.env.state_hash(),
                    answer=spec.answer, answer_aliases=spec.aliases,
                    path=json.loads(json.dumps(path_records(self.kg, spec, self.writer))), generator=self.name)
