"""KG questions (DeepDive's recipe, checkable by construction): walk, describe, prove, plan the search.

1. a seeded random walk (``generators.kg_walk``) gives the path;
2. the answer is the last entity's name or one of its attributes;
3. the anchor (the first entity) is described by what a user could know and
   search for: relations to named off-path entities, attribute values, its
   type; never only by a letter of its name. Its clues alone must single it out;
4. each next entity is described by its relation to the previous one and,
   where several entities fit, by clues that are sharp among those but common
   in the whole graph (so they do not make the earlier hops unnecessary);
5. the question is kept only when, evaluated on the graph, it has one answer,
   every hop is needed (the chain without its first hop leaves several
   answers: ``shortcut`` otherwise) and no text it shows contains the answer
   or names an entity of the path, another sense of the word included (``leak``);
6. the gold tool calls are planned from what the question says (search the
   named entities, list their neighbours, read candidates) and executed on the
   environment, so the scripted assistant never uses an id it was not shown.

Each dropped walk is counted in the generator's funnel by reason, and each
question's needed hops and clue count, so a version reports its difficulty.
The wording comes from a ``QuestionWriter``: ``template`` offline; a model
writer can register itself in ``WRITERS`` and be chosen with ``writer``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisContext, SynthesisError
from generators.kg_clues import (
    Clue,
    ClueIndex,
    QuestionSpec,
    answer_keys,
    answer_value,
    answerable,
    flip,
    needed_hops,
)
from generators.kg_walk import WalkParams, random_walk
from schemas import Action, Message, Request, Task, UserScenario
from simulators.backends import ChatParams
from simulators.domains.kg.graph import KnowledgeGraph, article, fold
from simulators.environment import Environment, is_error

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HOPS_PER_TURN = 2  # the assistant reports back every two hops: a multi-turn search dialogue
MAX_HOMONYMS = 6  # entities sharing a shown name that a searcher checks one by one
MAX_LOOKUPS = 6  # candidates a searcher reads one by one to check their attributes
MAX_ANCHOR_CLUES = 3
MAX_CALLS_PER_TURN = 10  # the conversation loop allows 12 tool steps in one assistant turn
SEARCHABLE = ("rel", "attr")  # clue kinds a user can state and a searcher can look up


def _label(name: str) -> str:
    return name.replace("_km2", " (km²)").replace("_", " ")


class QuestionWriter(Protocol):
    """Turns a question's constraints into words; must not name any entity on the path."""

    def write(self, spec: QuestionSpec, kg: KnowledgeGraph, rng: random.Random) -> str: ...


class TemplateWriter:
    """Offline wording: one sentence per variable, lettered, relations read through the graph's phrases."""

    INTROS = ("Here is a puzzle I am trying to solve.", "Can you help me work this out?",
              "I need help with a multi-step question.", "Please solve this chain of clues for me.")

    def clue_text(self, clue: Clue, kg: KnowledgeGraph, var: str = "it") -> str:
        kind = clue[0]
        if kind == "initial":
            return f"{var}'s name starts with '{clue[1]}'"
        if kind == "attr":
            return f"{var}'s {_label(clue[1])} is {clue[2]}"
        if kind == "range":
            return f"{var}'s {_label(clue[1])} is between {clue[2]:,} and {clue[3]:,}"
        _, relation, direction, other = clue
        phrase, name = kg.phrase(relation), kg.name_of(other)
        if direction == "out":
            return phrase.sentence(relation, var, name, "head", kg.functional(relation, "out"))
        return phrase.sentence(relation, name, var, "tail", kg.functional(relation, "out"))

    def statements(self, spec: QuestionSpec, kg: KnowledgeGraph, i: int) -> list[str]:
        node, y = spec.nodes[i], LETTERS[i]
        out = []
        if i:
            hop, x = spec.hops[i - 1], LETTERS[i - 1]
            the = kg.functional(hop.relation, "out")
            phrase = kg.phrase(hop.relation)
            out.append(phrase.sentence(hop.relation, x, y, "tail", the) if hop.direction == "out"
                       else phrase.sentence(hop.relation, y, x, "head", the))
        if kg.typed:
            out.insert(0, f"{y} is {article(kg.type_of(node))} {kg.type_of(node)}")
        return out + [self.clue_text(c, kg, y) for c in spec.clues[i]]

    def write(self, spec: QuestionSpec, kg: KnowledgeGraph, rng: random.Random) -> str:
        sentences = []
        for i in range(len(spec.nodes)):
            body = "; ".join(self.statements(spec, kg, i))
            sentences.append(body[0].upper() + body[1:] + ".")
        last = LETTERS[len(spec.nodes) - 1]
        if spec.attribute is not None:
            ask = f"What is the {_label(spec.attribute)} of {last}?"
        elif kg.typed:
            ask = f"Which {kg.type_of(spec.nodes[-1])} is {last}?"
        else:
            ask = f"What is {last}?"
        return " ".join([rng.choice(self.INTROS), *sentences, ask])


WRITERS: dict[str, type] = {"template": TemplateWriter}


def _contains(text: str, phrase: str, prefix: bool) -> bool:
    """Whether folded ``text`` holds folded ``phrase`` as whole words (``prefix``: or as the start of a word)."""
    if not phrase:
        return False
    tail = "" if prefix else r"(?![^\W_])"
    return re.search(rf"(?<![^\W_]){re.escape(phrase)}{tail}", text) is not None


def leak(question: str, kg: KnowledgeGraph, spec: QuestionSpec) -> str | None:
    """What the question gives away, or None: the answer (or an alias) inside any word it shows, or a path name.

    "boast" leaks in "boasting" and in a clue entity named "boast" (another
    sense of the word); answers under four letters must match whole words.
    """
    text = fold(question)
    for answer in [spec.answer, *spec.aliases]:
        folded = fold(answer)
        if _contains(text, folded, prefix=len(folded) >= 4):
            return f"leak: the question shows the answer {answer!r}"
    for node in spec.nodes[:-1] if spec.attribute is None else spec.nodes:
        name = kg.name_of(node)
        if _contains(text, fold(name), prefix=False):
            return f"leak: the question shows {name!r}, an entity of the path"
    return None


class KGQuestionParams(GeneratorParams):
    min_hops: int = Field(default=2, ge=1)
    max_hops: int = Field(default=4, ge=1)
    degree_cap: int = Field(default=50, ge=1, description="entities with more links are never on a path")
    max_jumps: int = Field(default=20, ge=0, description="fresh starts when a walk gets stuck short")
    attribute_answer_rate: float = Field(default=0.3, ge=0, le=1, description="share of answers that are attributes")
    min_anchor_clues: int = Field(default=1, ge=0)
    extra_clue_rate: float = Field(default=0.25, ge=0, le=1, description="chance of one more clue per entity")
    max_clues: int = Field(default=8, ge=1, description="clues per question before it is dropped as ambiguous")
    max_attempts: int = Field(default=10, ge=1, description="walks tried before the task is rejected")
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
    """Walk → constraints → one answer that needs every hop, on one graph; no environment needed."""

    def __init__(self, kg: KnowledgeGraph, params: KGQuestionParams) -> None:
        self.kg = kg
        self.params = params
        self.walk_params = WalkParams(params.min_hops, params.max_hops, params.degree_cap, params.max_jumps)
        self.index = ClueIndex(kg, params.degree_cap)

    def build(self, rng: random.Random) -> QuestionSpec:
        hops = random_walk(self.kg, rng, self.walk_params)
        if hops is None:
            raise SynthesisError(f"no walk of {self.params.min_hops}+ hops found in {self.params.max_jumps + 1} starts")
        for start in range(len(hops) - self.params.min_hops + 1):  # an anchor nobody can single out: start later
            try:
                return self.constrain(hops[start:], rng)
            except SynthesisError as err:
                if not str(err).startswith("anchor:") or start == len(hops) - self.params.min_hops:
                    raise
        raise AssertionError("unreachable")

    def _options(self, spec: QuestionSpec, rng: random.Random) -> list[list[Clue]]:
        kg, nodes = self.kg, spec.nodes
        exclude = set(nodes)
        shown = {fold(kg.name_of(n)) for n in nodes}
        last_folded = fold(kg.name_of(nodes[-1]))
        options = []
        for i, node in enumerate(nodes):
            opts = []
            for c in self.index.options(node, exclude, shown):
                if i == 0 and c[0] not in (*SEARCHABLE, "range"):
                    continue  # an anchor is never described by a letter of its name
                if i == len(nodes) - 1 and spec.attribute is not None and c[0] in ("range", "attr") \
                        and c[1] == spec.attribute:
                    continue
                if c[0] == "rel" and spec.attribute is None and _contains(fold(kg.name_of(c[3])), last_folded,
                                                                           len(last_folded) >= 4):
                    continue  # "tree house" would give away "tree"
                opts.append(c)
            rng.shuffle(opts)
            options.append(opts)
        return options

    def constrain(self, hops, rng: random.Random, attribute: str | None | Literal["auto"] = "auto") -> QuestionSpec:
        kg, p, index = self.kg, self.params, self.index
        spec = QuestionSpec(hops=list(hops), clues=[[] for _ in range(len(hops) + 1)])
        nodes = spec.nodes
        last = nodes[-1]
        if attribute == "auto":
            attrs = sorted(a for a, v in kg.attributes(last).items() if answerable(v))
            attribute = rng.choice(attrs) if attrs and rng.random() < p.attribute_answer_rate else None
        spec.attribute = attribute
        options = self._options(spec, rng)
        self._anchor(spec, options[0])
        for i in range(1, len(nodes)):
            self._settle(spec, options, i)
        for i in range(len(nodes)):  # an optional extra clue, kept only if every hop stays needed
            if rng.random() < p.extra_clue_rate and sum(map(len, spec.clues)) < p.max_clues:
                extra = [c for c in options[i] if c not in spec.clues[i]]
                if extra:
                    spec.clues[i].append(extra[0])
                    if i and needed_hops(kg, index, spec) < len(spec.hops):
                        spec.clues[i].pop()
        spec.needed_hops = needed_hops(kg, index, spec)
        if spec.needed_hops < len(spec.hops):
            raise SynthesisError(f"shortcut: the last {spec.needed_hops} of {len(spec.hops)} hops already "
                                 "determine the answer")
        if attribute is None:
            spec.answer = kg.name_of(last)
            aliases = list(kg.aliases(last))
        else:
            spec.answer, aliases = answer_value(kg.attributes(last)[attribute])
        spec.aliases = [a for a in dict.fromkeys(aliases) if fold(a) and fold(a) != fold(spec.answer)]
        return spec

    def _anchor(self, spec: QuestionSpec, options: list[Clue]) -> None:
        """Clues on the anchor until they alone single it out: the strongest first, searchable ones preferred."""
        kg, index = self.kg, self.index
        anchor, type = spec.nodes[0], kg.type_of(spec.nodes[0])
        clues = spec.clues[0]
        current = index.start(type, [])
        while len(current) > 1 or len(clues) < self.params.min_anchor_clues or not any(
                c[0] in SEARCHABLE for c in clues):
            if len(clues) >= MAX_ANCHOR_CLUES:
                raise SynthesisError(f"anchor: {len(current)} entities fit its {len(clues)} clues")
            best, best_size = None, None
            for c in options:
                if c in clues or (not any(x[0] in SEARCHABLE for x in clues) and c[0] not in SEARCHABLE):
                    continue
                size = len(index.start(type, [*clues, c]))
                if best_size is None or size < best_size:
                    best, best_size = c, size
            if best is None or (best_size == len(current) and len(current) > 1):
                raise SynthesisError(f"anchor: nothing a user could say singles it out ({len(current)} fit)")
            clues.append(best)
            current = index.start(type, clues)
        if current.tolist() != [kg.pos(anchor)]:
            raise SynthesisError("anchor: its clues fit another entity")

    def _settle(self, spec: QuestionSpec, options: list[list[Clue]], i: int) -> None:
        """Clues on variable ``i`` until the previous one and they determine it (the last: its answer).

        Among the clues that settle it, the one that holds for the most
        entities of the whole graph (sharp here, weak alone, so the hops
        before stay needed); when none settles it alone, the sharpest here.
        """
        kg, index, p = self.kg, self.index, self.params
        last = i == len(spec.nodes) - 1
        hop = spec.hops[i - 1]
        reached = kg.step_read(np.array([kg.pos(spec.nodes[i - 1])], np.int32), hop.relation, hop.direction)

        def done(nodes: np.ndarray) -> bool:
            return len(answer_keys(kg, spec, nodes)) == 1 if last else len(nodes) == 1

        current = index.narrow(reached, kg.type_of(spec.nodes[i]), spec.clues[i])
        while not done(current):
            if sum(map(len, spec.clues)) >= p.max_clues:
                break
            best, best_key = None, None
            for c in options[i]:
                if c in spec.clues[i]:
                    continue
                left = index.narrow(current, kg.type_of(spec.nodes[i]), [c])
                if len(left) == len(current):
                    continue
                key = (not done(left), len(left), -len(index.members(c)))
                if best_key is None or key < best_key:
                    best, best_key = c, key
            if best is None:
                break
            spec.clues[i].append(best)
            current = index.narrow(current, kg.type_of(spec.nodes[i]), [best])
        if not done(current):
            if last:
                shown = "; ".join(sorted(fold(kg._names[v]) for v in current.tolist()[:3]))
                raise SynthesisError(f"ambiguous: {len(answer_keys(kg, spec, current, 10**9))} answers satisfy "
                                     f"the question ({shown})")
            raise SynthesisError(f"ambiguous: {len(current)} entities fit {LETTERS[i]}")


# -- planning the search -----------------------------------------------------------------------------------------
class _Planner:
    """The calls a searcher makes to resolve each variable from what the question says, each one executed."""

    def __init__(self, env: Environment, kg: KnowledgeGraph, index: ClueIndex, spec: QuestionSpec) -> None:
        self.env, self.kg, self.index, self.spec = env, kg, index, spec
        self.actions: list[Action] = []
        self.read: set[int] = set()  # entities whose get_entity has been called

    def call(self, name: str, **arguments: Any) -> Any:
        action = Action(name=name, arguments=arguments)
        result = self.env.execute(name, arguments)
        if is_error(result):
            raise SynthesisError(f"gold call {name} failed: {result}")
        self.actions.append(action)
        return json.loads(result)

    def by_relation(self, clue: Clue) -> set[int]:
        """Entities the clue fits, seen as a searcher sees them: search the name, list each homonym's neighbours."""
        kg = self.kg
        _, relation, direction, other = clue
        name = kg.name_of(other)
        homonyms = kg.homonyms(name)
        if len(homonyms) > MAX_HOMONYMS:
            raise SynthesisError(f"search: {len(homonyms)} entities are called {name!r}")
        hits = {h["id"] for h in self.call("search_entities", query=name)}
        if not {kg.id_at(h) for h in homonyms} <= hits:
            raise SynthesisError(f"search: searching {name!r} does not show every entity of that name")
        found: set[int] = set()
        way = "both" if kg.reads_both_ways(relation) else flip(direction)
        for h in homonyms:
            listed = self.call("get_neighbors", entity_id=kg.id_at(h), relation=relation, direction=way)
            if listed["total"] > len(listed["neighbors"]):
                raise SynthesisError(f"search: {name!r} has more {relation} neighbours than one call lists")
            found |= {kg.pos(n["id"]) for n in listed["neighbors"]}
        return found

    def check(self, candidates: set[int], var: int, clues: list[Clue]) -> set[int]:
        """Candidates narrowed by type and clues, reading what the tools show."""
        kg, index = self.kg, self.index
        node = self.spec.nodes[var]
        if kg.typed:
            candidates = {c for c in candidates if kg._types[c] == kg.type_of(node)}
        for c in clues:
            if len(candidates) <= 1:
                break
            if c[0] == "initial":  # names are in every listing
                candidates = {v for v in candidates if index.mask(c)[v]}
            elif c[0] == "rel":
                candidates &= self.by_relation(c)
        own = [c for c in clues if c[0] in ("attr", "range")]
        if own and len(candidates) > 1:
            if len(candidates) > MAX_LOOKUPS:
                raise SynthesisError(f"search: {len(candidates)} candidates for {LETTERS[var]} to read one by one")
            for v in sorted(candidates, key=kg.id_at):
                self.read_entity(v)
            candidates = {v for v in candidates if all(index.mask(c)[v] for c in own)}
        return candidates

    def read_entity(self, v: int) -> None:
        if v not in self.read:
            self.read.add(v)
            self.call("get_entity", entity_id=self.kg.id_at(v))

    def anchor(self) -> None:
        kg, spec = self.kg, self.spec
        clues = sorted(spec.clues[0], key=lambda c: (c[0] != "rel", len(self.index.members(c))))
        if clues[0][0] == "rel":
            candidates = self.by_relation(clues[0])
        else:
            attr = next((c for c in clues if c[0] == "attr"), None)
            if attr is None:
                raise SynthesisError("search: nothing in the anchor's clues can be searched for")
            hits = self.call("search_entities", query=str(attr[2]),
                             **({"type": kg.type_of(spec.nodes[0])} if kg.typed else {}))
            if len(hits) >= 20:  # the search lists at most 20: more may fit
                raise SynthesisError(f"search: {attr[2]!r} matches too many entities to list")
            candidates = {kg.pos(h["id"]) for h in hits}
        candidates = self.check(candidates, 0, clues[1:] if clues[0][0] == "rel" else clues)
        if candidates != {kg.pos(spec.nodes[0])}:
            raise SynthesisError(f"search: the anchor's clues leave {len(candidates)} candidates to a searcher")

    def hop(self, i: int) -> None:
        kg, spec = self.kg, self.spec
        hop = spec.hops[i - 1]
        way = "both" if kg.reads_both_ways(hop.relation) else hop.direction
        listed = self.call("get_neighbors", entity_id=hop.source, relation=hop.relation, direction=way)
        if listed["total"] > len(listed["neighbors"]):
            raise SynthesisError(f"search: {hop.source} has more neighbours than one call lists")
        candidates = self.check({kg.pos(n["id"]) for n in listed["neighbors"]}, i, spec.clues[i])
        last = i == len(spec.nodes) - 1
        if (len(answer_keys(kg, spec, np.array(sorted(candidates), np.int32))) != 1 if last
                else candidates != {kg.pos(hop.target)}):
            raise SynthesisError(f"search: {len(candidates)} candidates for {LETTERS[i]} left to a searcher")
        if spec.clues[i] or last:
            self.read_entity(kg.pos(hop.target))


def plan_calls(env: Environment, kg: KnowledgeGraph, spec: QuestionSpec,
               index: ClueIndex | None = None) -> tuple[list[Action], list[list[int]]]:
    """The tool calls that resolve each variable from the question's words, grouped per assistant turn.

    The anchor is found through what the question says about it: the named
    off-path entities of its clues (searched by name, every homonym's
    neighbours listed), then a searchable attribute value; candidates left
    are read one by one. Each hop lists the neighbours and checks the clues
    the same way. Every call is executed, so each id it uses was shown before.
    """
    planner = _Planner(env, kg, index or ClueIndex(kg, 10**9), spec)
    planner.anchor()
    planner.read_entity(kg.pos(spec.nodes[0]))
    segments = [len(planner.actions)]  # calls that resolve each variable
    for i in range(1, len(spec.nodes)):
        planner.hop(i)
        segments.append(len(planner.actions) - sum(segments))
    if max(segments) > MAX_CALLS_PER_TURN:
        raise SynthesisError(f"search: {max(segments)} calls to resolve one entity (at most {MAX_CALLS_PER_TURN} a turn)")
    groups: list[list[int]] = []
    turn: list[int] = []
    hops = 0
    start = 0
    for i, size in enumerate(segments):  # report every two hops, or sooner when a turn would run too long
        if turn and (len(turn) + size > MAX_CALLS_PER_TURN or hops == HOPS_PER_TURN):
            groups.append(turn)
            turn, hops = [], 0
        turn += list(range(start, start + size))
        start += size
        hops += i > 0
    groups.append(turn)
    return planner.actions, groups


def clue_record(kg: KnowledgeGraph, clue: Clue) -> dict[str, Any]:
    """A clue as data, with the name the question shows: what an independent checker re-solves."""
    kind = clue[0]
    if kind == "rel":
        return {"kind": "rel", "relation": clue[1], "direction": clue[2], "entity": clue[3],
                "name": kg.name_of(clue[3])}
    if kind == "range":
        return {"kind": "range", "attribute": clue[1], "low": clue[2], "high": clue[3]}
    if kind == "attr":
        return {"kind": "attr", "attribute": clue[1], "value": clue[2]}
    return {"kind": "initial", "letter": clue[1]}


def path_records(kg: KnowledgeGraph, spec: QuestionSpec, writer: TemplateWriter) -> list[dict[str, Any]]:
    """The path as stored for RL rewards: each variable's entity, how it was reached and how it was described."""
    records = []
    for i, node in enumerate(spec.nodes):
        record: dict[str, Any] = {"var": LETTERS[i], "entity": node, "name": kg.name_of(node), "type": kg.type_of(node),
                                  "clues": [writer.clue_text(c, kg, LETTERS[i]) for c in spec.clues[i]],
                                  "constraints": [clue_record(kg, c) for c in spec.clues[i]]}
        if i:
            hop = spec.hops[i - 1]
            record.update(relation=hop.relation, direction=hop.direction, source=hop.source)
        records.append(record)
    records[-1]["answer_attribute"] = spec.attribute
    return records


def difficulty(spec: QuestionSpec) -> dict[str, int]:
    """What makes the question hard, stored with the task and counted per version."""
    return {"hops": len(spec.hops), "needed_hops": spec.needed_hops, "clues": sum(map(len, spec.clues))}


Counter = Callable[[str], None]


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

        The rewrite is held to the template's rule: it may not show the answer
        or name an entity of the path (``leak``). Whether it kept every
        constraint is for the judge and difficulty filters to check.
        """
        def count(step: str) -> None:
            ctx.count(self.name, step)

        task, spec = self._generate(rng, count)
        if self.params.writer != "model":
            return task
        template = task.scenario.requests[0].opening
        prompt = [Message(role="system", content=(
            "Rewrite the puzzle below as one natural, fluent question a curious person might ask. Keep every "
            "constraint exactly, including how each relation is worded; do not add facts; never name the lettered "
            "entities; reply with the question only.")),
            Message(role="user", content=template)]
        params = ChatParams(temperature=self.params.temperature, max_tokens=400)
        reply = await ctx.endpoints[self.params.backend].chat(prompt, None, params, ctx.usage[self.name])
        question = (reply.content or "").strip()
        if not question:
            raise SynthesisError("model writer returned no question")
        problem = leak(question, self.kg, spec)
        if problem:
            count("leak_model_writer")
            raise SynthesisError(f"model writer: {problem}")
        data = task.model_dump(exclude={"id"})
        data["scenario"]["requests"][0].update(opening=question, details=question)
        data["scenario"]["instruction"] = data["scenario"]["instruction"].replace(template, question)
        return Task.model_validate(data)

    def generate(self, rng: random.Random) -> Task:
        return self._generate(rng, lambda step: None)[0]

    def _generate(self, rng: random.Random, count: Counter) -> tuple[Task, QuestionSpec]:
        problem = "no attempt made"
        for _ in range(self.params.max_attempts):
            count("walks")
            try:
                spec = self.builder.build(rng)
                question = self.writer.write(spec, self.kg, rng)
                found = leak(question, self.kg, spec)
                if found:
                    raise SynthesisError(found)
                actions, groups = plan_calls(self.env, self.kg, spec, self.builder.index)
            except SynthesisError as err:
                problem = str(err)
                count(problem.split(":", 1)[0] if ":" in problem else "no_walk")
                continue
            count("questions")
            for key, value in difficulty(spec).items():
                count(f"{key}={value}")
            return self._task(rng, spec, question, actions, groups), spec
        raise SynthesisError(problem if self.params.max_attempts == 1
                             else f"no question in {self.params.max_attempts} walks; last: {problem}")

    def _task(self, rng: random.Random, spec: QuestionSpec, question: str, actions: list[Action],
              groups: list[list[int]]) -> Task:
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
                    path=json.loads(json.dumps(path_records(self.kg, spec, self.writer))), generator=self.name,
                    provenance={"difficulty": difficulty(spec)})
