"""APIGen-MT blueprints written by a model: sample a context, write, check by rules, review, revise, recombine.

One task index runs this loop:

1. **context** (``context_for``): a tool chain from a random walk on the
   tool-dependency graph, grounded in one user's real data (the rule-built
   ``Draft`` of ``generators.blueprints``: goals with the calls that fulfil
   them, and the results of the read calls), a persona, the policy, and
   few-shot examples from the shard's pool of blueprints already validated;
2. **write**: the model returns a ``WrittenBlueprint`` as structured output
   (instruction, what the user knows and does not know, authentication calls,
   requests with their calls, expected outputs);
3. **stage 1**, rules as code (``generators.blueprint_rules``);
4. **stage 2**, the reviewer committee (``generators.committee``);
5. **stage 3**: a blueprint that fails stage 1 or 2 is written again with the
   rule's reason or the reviewers' feedback, up to ``feedback_rounds`` times,
   then dropped with its last reason.

With ``recombine_rate``, an index instead combines two validated blueprints of
one user into one longer task (actions concatenated and re-validated, the
combined instruction written by the model, reviewed like any other). Every
step is counted in the synthesis funnel (``SynthesisContext.count``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisContext, SynthesisError
from generators.blueprint_rules import STAGES, Execution, RuleViolation, check_rules, execute_gold
from generators.blueprints import BlueprintGenerator, BlueprintParams, Draft
from generators.committee import Committee, CommitteeParams, Verdict, review_prompt
from generators.personas import PERSONAS, Persona
from schemas import Action, Message, Request, Task, UserScenario, canonical_json
from simulators.backends import BackendError, ChatParams, TruncatedReply
from simulators.environment import Environment
from simulators.intents import Intent
from simulators.phrasing import expand
from simulators.structured_output import JUDGE_ERROR, M, parse_structured, retry_budget


async def _off_loop(env: Environment, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread where the domain's calls wait on servers (MCP), else right here."""
    return await asyncio.to_thread(fn, *args) if env.blocking_io else fn(*args)


class WrittenAction(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class WrittenRequest(BaseModel):
    opening: str = Field(description="how the user first brings the request up, vaguely, in their own voice")
    details: str = Field(description="what the user says when the assistant asks for specifics")
    actions: list[WrittenAction] = Field(min_length=1, description="the calls that serve it; the last is the goal's")


class WrittenBlueprint(BaseModel):
    """What the writer model returns (its JSON schema is the request's ``response_format``)."""

    instruction: str = Field(min_length=1, description="second person, for the simulated user: who, what, why")
    identity: str = Field(description="what the user says when asked to prove who they are")
    known_info: dict[str, Any] = Field(default_factory=dict, description="facts the user may reveal when asked")
    unknown_info: list[str] = Field(default_factory=list, description="what the user does not know")
    authentication: list[WrittenAction] = Field(description="the calls that identify the user, first")
    requests: list[WrittenRequest] = Field(min_length=1)
    outputs: list[str] = Field(default_factory=list, description="values the assistant must tell the user")


class CombinedInstruction(BaseModel):
    """What the writer returns when two blueprints of one user become one task."""

    instruction: str = Field(min_length=1)
    known_info: dict[str, Any] = Field(default_factory=dict)
    unknown_info: list[str] = Field(default_factory=list)


def _format(model: type[BaseModel], name: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": model.model_json_schema()}}


BLUEPRINT_FORMAT = _format(WrittenBlueprint, "blueprint")
COMBINED_FORMAT = _format(CombinedInstruction, "combined_instruction")


def blueprint_format(tools: list[str]) -> dict[str, Any]:
    """The writer's ``response_format`` with action names limited to the domain's tools: a server with guided
    decoding then cannot emit an unknown tool (small models otherwise put ids or prose there)."""
    fmt = json.loads(json.dumps(BLUEPRINT_FORMAT))
    fmt["json_schema"]["schema"]["$defs"]["WrittenAction"]["properties"]["name"]["enum"] = sorted(tools)
    return fmt


class ModelBlueprintParams(GeneratorParams):
    backend: str = Field(description="the run config backend that writes blueprints")
    temperature: float | None = Field(default=0.7, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    retry_max_tokens: int | None = Field(default=None, ge=1, description="a blueprint cut off at max_tokens is "
                                         "asked once more with this budget (default: twice max_tokens)")
    min_requests: int = Field(default=1, ge=1)
    max_requests: int = Field(default=2, ge=1)
    intents: list[str] | None = Field(default=None, description="limit contexts to these intents")
    committee: CommitteeParams
    feedback_rounds: int = Field(default=2, ge=0, description="K: rewrites after a failed stage 1 or 2")
    few_shot: int = Field(default=2, ge=0, description="validated blueprints shown as examples")
    pool_lag: int = Field(default=32, ge=1, description="index i learns from indices below i - pool_lag "
                          "(deterministic); also how many blueprints of a shard are written at once")
    recombine_rate: float = Field(default=0.0, ge=0, le=1, description="share of tasks that combine two "
                                  "validated blueprints of one user")


@dataclass
class PoolEntry:
    task: Task
    written: str  # the validated blueprint as the writer returned it: a few-shot example
    user_id: str
    combined: bool


FUNNEL_STEPS = ("blueprints", "generated", "regenerated", "passed_rules", "failed_committee", "passed_committee",
                "dropped", "recombined")


@GENERATORS.register("model_blueprint")
class ModelBlueprintGenerator(Generator):
    Params = ModelBlueprintParams

    @classmethod
    def funnel_lines(cls, c: Mapping[str, int]) -> list[str]:
        """Blueprints written, each rule's and the committee's rejections, drops and recombinations."""
        if "generated" not in c:  # nothing was written (every context failed): the counters as they are
            return super().funnel_lines(c)
        rules = ", ".join(f"{stage} -{c.get(f'failed_{stage}', 0)}" for stage in STAGES)
        cut = f", {c['failed_truncated']} cut off at max_tokens" if c.get("failed_truncated") else ""
        judge = f", {c['failed_judge']} without a verdict (judge_error)" if c.get("failed_judge") else ""
        lines = [f"{c.get('blueprints', 0)} blueprints, {c['generated']} written "
                 f"({c.get('regenerated', 0)} rewritten with feedback{cut})",
                 f"  stage 1 rules ({rules}) -> {c.get('passed_rules', 0)} reviewed",
                 f"  stage 2 committee -{c.get('failed_committee', 0)}{judge} -> {c.get('passed_committee', 0)} "
                 f"validated; {c.get('dropped', 0)} dropped after the last round, {c.get('failed_backend', 0)} lost "
                 f"to the backend, {c.get('contexts_failed', 0)} without a context"]
        if c.get("recombinations"):
            lines.append(f"  recombination: {c['recombinations']} tried -> {c.get('recombined', 0)} recombined "
                         f"({c.get('recombination_conflicts', 0)} conflicts)")
        return lines

    @classmethod
    def funnel_steps(cls, counts: Mapping[str, int]) -> list[tuple[str, int]]:
        """The stages in the order a blueprint meets them."""
        if "generated" not in counts:
            return super().funnel_steps(counts)
        return [(step.replace("_", " "), counts.get(step, 0)) for step in FUNNEL_STEPS]

    def __init__(self, env: Environment, params: ModelBlueprintParams) -> None:
        super().__init__(env, params)
        self.sampler = BlueprintGenerator(env, BlueprintParams(
            min_requests=params.min_requests, max_requests=params.max_requests, intents=params.intents))
        self.pool_lag = params.pool_lag
        self.blueprint_format = blueprint_format([t.name for t in env.tools()])
        self.intent_for: dict[str, Intent] = {}
        for name in sorted(env.intents):
            self.intent_for.setdefault(env.intents[name].target_tool, env.intents[name])
        self.tool_lines = "\n".join(
            f"- {t.function.name}({canonical_json(t.function.parameters.get('properties', {}))}): "
            f"{t.function.description.splitlines()[0] if t.function.description else ''}" for t in env.tools())

    # -- the entry point ---------------------------------------------------------------------------------
    async def agenerate(self, rng: random.Random, ctx: SynthesisContext) -> Task:
        pool: list[PoolEntry] = ctx.pool.before(self.name, ctx.index - self.pool_lag)
        task = None
        if pool and rng.random() < self.params.recombine_rate:
            task, user_id, written = await self._recombine(rng, ctx, pool)
        if task is None:
            task, user_id, written = await self._single(rng, ctx, pool)
        ctx.pool.add(self.name, ctx.index, PoolEntry(task, written, user_id, "components" in task.provenance))
        return task

    def _count(self, ctx: SynthesisContext, step: str) -> None:
        ctx.count(self.name, step)

    # -- one blueprint from a sampled context --------------------------------------------------------------
    async def _single(self, rng: random.Random, ctx: SynthesisContext, pool: list[PoolEntry],
                      draft: Draft | None = None) -> tuple[Task, str, str]:
        if draft is None:
            try:
                draft = await _off_loop(self.env, self.sampler.draft, rng)
            except SynthesisError:
                self._count(ctx, "contexts_failed")
                raise
        persona = rng.choice(PERSONAS)
        closing = expand(rng.choice(persona.closings), rng)
        shots = [e for e in pool if not e.combined]  # a recombination's record is not in the writer's format
        examples = [e.written for e in rng.sample(shots, min(self.params.few_shot, len(shots)))]
        prompt = self._write_prompt(draft, persona, examples)

        def parse(text: str) -> Task:
            return self._to_task(text, persona, closing)

        task, written = await self._validated(ctx, prompt, self.blueprint_format, parse)
        return task, draft.user_id, written

    def context_for(self, draft: Draft, persona: Persona) -> dict[str, Any]:
        """What the writer is shown of the world: one user's goals, with the calls that fulfil them, and data."""
        results = draft.execution.results
        return {
            "user_id": draft.user_id,
            "persona": persona.description,
            "tool_chain": draft.tools,
            "goals": [{"goal": g.goal, "call": g.target.model_dump()} for _, g, _ in draft.chosen],
            "data": [{"call": a.model_dump(), "result": _loads(r)} for a, r in zip(draft.gold, results, strict=True)
                     if not self.env.spec_of(a).writes],
        }

    def _write_prompt(self, draft: Draft, persona: Persona, examples: list[str]) -> list[Message]:
        shots = "".join(f"\n<example>{e}</example>" for e in examples) or " (none yet)"
        return [
            Message(role="system", content=(
                "You write task blueprints for training customer-support agents (APIGen-MT). A blueprint is an "
                "instruction for a simulated user, the exact tool calls an agent following the policy must make "
                "(authentication first, then each request's lookups and its goal call) and the values the agent "
                "must tell the user. Use only ids and values from the context data; every output must be a value "
                "some call returns (an amount, a status, a tracking number). Split what the user knows (what a real "
                "customer would have at hand) from what they do not (what the agent must look up), and keep the "
                "openings vague so the agent has to ask. Reply with JSON only.\n\n"
                f"# Tools\n{self.tool_lines}\n\n# Policy\n{self.env.policy}")),
            Message(role="user", content=(
                f"## Context\n<context>{canonical_json(self.context_for(draft, persona))}</context>\n\n"
                f"## Validated blueprints, as examples of the format{shots}\n\nWrite the blueprint.")),
        ]

    def _to_task(self, text: str, persona: Persona, closing: str) -> Task:
        written = _parse(WrittenBlueprint, text)
        gold = [Action(name=a.name, arguments=a.arguments) for a in written.authentication]
        requests = []
        for n, r in enumerate(written.requests):
            start = len(gold)
            gold += [Action(name=a.name, arguments=a.arguments) for a in r.actions]
            intent = self.intent_for.get(r.actions[-1].name)
            if intent is None:
                raise RuleViolation("format", f"request {n} ends with {r.actions[-1].name}, the goal of no intent of "
                                    f"domain {self.env.name!r} ({', '.join(sorted(self.intent_for))})")
            requests.append(Request(intent=intent.name, opening=r.opening, details=r.details,
                                    actions=list(range(start, len(gold)))))
        scenario = UserScenario(persona=persona.description, instruction=written.instruction,
                                known_info={k: str(v) for k, v in written.known_info.items()},
                                unknown_info=written.unknown_info, identity=written.identity, closing=closing,
                                requests=requests)
        return Task(domain=self.env.name, env_seed=self.env.seed, scenario=scenario, gold_actions=gold,
                    expected_outputs=written.outputs, generator=self.name)

    # -- stages 1-3 ---------------------------------------------------------------------------------------
    async def _validated(self, ctx: SynthesisContext, prompt: list[Message], fmt: dict[str, Any],
                         parse: Callable[[str], Task]) -> tuple[Task, str]:
        """Write, check by rules, review; on failure write again with the reason, up to K times.

        A failure raises ``SynthesisError`` with the writer's whole conversation and the last candidate
        task as evidence. Reviewers that give no verdict (``judge_error``) end the loop at once: the
        writer is not at fault, so there is nothing to rewrite.
        """
        p = self.params
        endpoint = ctx.endpoints[p.backend]
        params = ChatParams(temperature=p.temperature, max_tokens=p.max_tokens, response_format=fmt)
        committee = Committee(p.committee, ctx.endpoints, [
            ctx.usage[f"{self.name}.committee.reviewers.{k}"] for k in range(len(p.committee.reviewers))])
        self._count(ctx, "blueprints")
        messages, last, candidate = list(prompt), "", None
        for round_ in range(p.feedback_rounds + 1):
            self._count(ctx, "generated")
            if round_:
                self._count(ctx, "regenerated")
            text = ""
            try:
                reply = await endpoint.chat(messages, None, params, ctx.usage[self.name],
                                            retry_max_tokens=retry_budget(p))
                text = reply.content or ""
                candidate = task = parse(text)
                execution = await _off_loop(self.env, check_rules, self.env, task)
                verdict = await committee.review(review_prompt(self.env.policy, task, execution.results,
                                                               execution.diff))
            except TruncatedReply as err:  # cut off even with the larger budget: ask for a shorter one
                self._count(ctx, "failed_truncated")
                last = f"truncated: the writer's reply was cut off at {err.limit}"
                messages = [*prompt, Message(role="assistant", content=err.partial.content or ""),
                            Message(role="user", content=f"Your reply was cut off ({err}). Write the whole "
                                                         "blueprint again, shorter.")]
                continue
            except RuleViolation as v:
                self._count(ctx, f"failed_{v.stage}")
                last = str(v)
                messages = [*prompt, Message(role="assistant", content=text),
                            Message(role="user", content=f"The rule check rejected this ({v.stage}): {v.reason}\n"
                                                         "Fix it and write the whole blueprint again.")]
                continue
            except BackendError as err:
                self._count(ctx, "failed_backend")
                raise SynthesisError(f"model backend: {err}", fault="backend", messages=messages,
                                     task=candidate) from None
            self._count(ctx, "passed_rules")
            if verdict.errors:
                self._count(ctx, "failed_judge")
                raise SynthesisError(f"{JUDGE_ERROR}: {verdict.errors[0]}", fault="judge",
                                     messages=[*messages, Message(role="assistant", content=text)], task=task)
            if verdict.passed:
                self._count(ctx, "passed_committee")
                return self._stamped(task, execution, verdict, round_), text
            self._count(ctx, "failed_committee")
            last = f"committee: {verdict.summary}"
            messages = [*prompt, Message(role="assistant", content=text),
                        Message(role="user", content=f"The reviewers rejected this ({verdict.summary}):\n"
                                                     f"{verdict.feedback}\nRevise it and write the whole blueprint again.")]
        self._count(ctx, "dropped")
        raise SynthesisError(f"dropped after {p.feedback_rounds + 1} rounds; last: {last}", messages=messages,
                             task=candidate)

    @staticmethod
    def _stamped(task: Task, execution: Execution, verdict: Verdict, round_: int) -> Task:
        data = task.model_dump(exclude={"id"})
        data["expected_state_hash"] = execution.final_hash
        data["provenance"] = {**task.provenance, "rounds": round_ + 1, "committee_mean": verdict.mean,
                              "reviews": verdict.scores, "state_diff": execution.diff}
        return Task.model_validate(data)

    # -- recombination ---------------------------------------------------------------------------------------
    def _fits(self, combined: Task, second: Task) -> bool:
        """The combination passes the rules, and the second task's calls return what they did on their own
        (a refund quote read after an exchange of the same order would no longer match its outputs)."""
        try:
            together = check_rules(self.env, combined).results
            alone = execute_gold(self.env, second.gold_actions).results
        except RuleViolation:
            return False
        return _unchanged(together, alone, len(alone) - second.scenario.requests[0].actions[0])

    def _second_draft(self, rng: random.Random, first: Task, user_id: str, tries: int = 5) -> Draft | None:
        """A context for the same user whose calls still work after the first task's."""
        for _ in range(tries):
            try:
                draft = self.sampler.draft(rng, user_id)
                tail = draft.gold[draft.chosen[0][2][0]:]
                together = execute_gold(self.env, first.gold_actions + tail).results
            except SynthesisError:
                continue
            if _unchanged(together, draft.execution.results, len(tail)):
                return draft
        return None

    async def _recombine(self, rng: random.Random, ctx: SynthesisContext,
                         pool: list[PoolEntry]) -> tuple[Task | None, str, str]:
        """Two validated blueprints of one user as one task; a second one is written when none shares a user.

        Returns no task when the two cannot be combined (their actions conflict, say): the index then
        gets a single blueprint instead, so a conflict costs a rejected combination, never a task.
        """
        self._count(ctx, "recombinations")
        singles = [e for e in pool if not e.combined]
        by_user: dict[str, list[PoolEntry]] = {}
        for e in singles:
            by_user.setdefault(e.user_id, []).append(e)
        pairs = [(a, b) for _, entries in sorted(by_user.items()) for a in entries for b in entries if a is not b]
        rng.shuffle(pairs)
        # Pairs are tried before any model call: two tasks on one order often cannot both be done.
        found = next(((a, b, c) for a, b in pairs if self._fits(c := combine(a.task, b.task), b.task)), None)
        if found is None:
            if not singles:
                return None, "", ""
            first = rng.choice(singles)
            draft = self._second_draft(rng, first.task, first.user_id)
            if draft is None:
                self._count(ctx, "recombination_conflicts")
                return None, "", ""
            task, _, written = await self._single(rng, ctx, pool, draft)
            self._count(ctx, "second_components")
            second = PoolEntry(task, written, first.user_id, False)
            combined = combine(first.task, second.task)
            if not self._fits(combined, second.task):
                self._count(ctx, "recombination_conflicts")
                return None, "", ""
        else:
            first, second, combined = found
        prompt = [
            Message(role="system", content=(
                "Two tasks of the same customer become one conversation. Write one instruction for the simulated "
                "user that asks for both, in order, in one voice; merge what the user knows and does not know. "
                "Keep every id and value. Reply with JSON only.")),
            Message(role="user", content=f"<task>{first.written}</task>\n<task>{second.written}</task>"),
        ]

        def parse(text: str) -> Task:
            words = _parse(CombinedInstruction, text)
            data = combined.model_dump(exclude={"id"})
            data["scenario"].update(instruction=words.instruction, unknown_info=words.unknown_info,
                                    known_info={k: str(v) for k, v in words.known_info.items()})
            return Task.model_validate(data)

        task, text = await self._validated(ctx, prompt, COMBINED_FORMAT, parse)
        self._count(ctx, "recombined")
        written = json.dumps({"combined": [json.loads(first.written), json.loads(second.written)],
                              "instruction": json.loads(text)})
        return task, first.user_id, written


def combine(first: Task, second: Task) -> Task:
    """The second task's requests after the first's; its authentication calls dropped (the user already is)."""
    shift = len(first.gold_actions) - second.scenario.requests[0].actions[0]
    gold = first.gold_actions + second.gold_actions[second.scenario.requests[0].actions[0]:]
    requests = first.scenario.requests + [
        r.model_copy(update={"actions": [i + shift for i in r.actions]}) for r in second.scenario.requests]
    outputs = first.expected_outputs + [o for o in second.expected_outputs if o not in first.expected_outputs]
    s1, s2 = first.scenario, second.scenario
    scenario = s1.model_copy(update={
        "requests": requests, "instruction": f"{s1.instruction} Then: {s2.instruction}",
        "known_info": {**s2.known_info, **s1.known_info},
        "unknown_info": s1.unknown_info + [u for u in s2.unknown_info if u not in s1.unknown_info]})
    return Task(domain=first.domain, env_seed=first.env_seed, scenario=scenario, gold_actions=gold,
                expected_outputs=outputs, generator=first.generator,
                provenance={"components": [first.id, second.id]})


def _unchanged(together: list[str], alone: list[str], tail: int) -> bool:
    """The last ``tail`` calls returned the same after another task's calls as they did on their own."""
    return together[len(together) - tail:] == alone[len(alone) - tail:]


def _parse(model: type[M], text: str) -> M:
    try:
        return parse_structured(model, text)
    except ValueError as err:
        raise RuleViolation("format", str(err)) from None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text

