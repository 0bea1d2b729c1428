"""Filters that ask a model: a rubric judge for any trajectory, and a difficulty check for KG questions.

Both run through the run's endpoints (limits, retries, cache, accounting
under the filter's own name) and never trust the reply: a judge answer that is
not the JSON asked for is a rejection with that reason, not a crash.
"""

from __future__ import annotations

import json

from pydantic import Field

from filters.answer_match import matches
from filters.base import FILTERS, Context, Filter, FilterParams
from schemas import Message, Trajectory, Verdict
from simulators.backends import ChatParams, TruncatedReply
from simulators.structured_output import JUDGE_ERROR, json_object, retry_budget

RUBRIC = """Score the assistant in this dialogue from 1 (unusable) to 5 (exemplary) for training data:
- correctness: tool calls are right for the user's requests and the results are reported truthfully;
- completeness: every request of the user is handled and the required facts are conveyed;
- policy: it identifies the user and asks for explicit confirmation before changes where required;
- realism: the user and assistant sound like real people; no repetition, no leaked instructions."""

VERDICT_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                                   "rationale": {"type": "string", "maxLength": 400}},
                  "required": ["score", "rationale"]}


def render(messages: list[Message], limit: int = 600) -> str:
    """The dialogue as plain text for a judge; long tool results are cut."""
    lines = []
    for m in messages:
        if m.role == "system":
            continue
        if m.content:
            text = m.content if m.role != "tool" else m.content[:limit]
            lines.append(f"{m.role.upper()}: {text}")
        for call in m.tool_calls or []:
            lines.append(f"ASSISTANT calls {call.function.name}({call.function.arguments})")
    return "\n".join(lines)


class ModelFilter(Filter):
    """A filter that waits on a model: the shard calls ``acheck``; there is no synchronous answer."""

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        raise TypeError(f"the {self.name} filter calls a model: use acheck")


class JudgeParams(FilterParams):
    backend: str = Field(description="a key of the run config's `backends`")
    rubric: str = RUBRIC
    threshold: float = Field(default=4, ge=1, le=5, description="lowest passing score")
    temperature: float | None = 0.0
    max_tokens: int | None = Field(default=512, ge=1)
    retry_max_tokens: int | None = Field(default=None, ge=1, description="a verdict cut off at max_tokens is asked "
                                         "once more with this budget (default: twice max_tokens)")
    retries: int = Field(default=2, ge=0, description="a reply that is no verdict is asked again (another seed) this "
                         "many times; after that the row is rejected as judge_error, never as a low score")


@FILTERS.register("judge")
class JudgeFilter(ModelFilter):
    """A model grades the dialogue against a rubric; score and rationale go on the verdict either way."""

    Params = JudgeParams

    async def acheck(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        p = self.params
        scenario = ctx.task.scenario
        prompt = [
            Message(role="system", content=f"You are a strict reviewer of synthetic training dialogues.\n{p.rubric}\n"
                    'Reply with JSON only: {"score": <1-5>, "rationale": "<one or two sentences>"}.'),
            Message(role="user", content=(
                f"The user's goal: {scenario.instruction}\n"
                f"Facts the assistant must convey: {', '.join(ctx.task.expected_outputs) or '(none)'}\n\n"
                f"Dialogue:\n{render(trajectory.messages)}")),
        ]
        problem = ""
        for attempt in range(p.retries + 1):
            # Another seed per retry: another request (a cached or greedy answer would only repeat itself).
            params = ChatParams(temperature=p.temperature, max_tokens=p.max_tokens, seed=attempt or None,
                                response_format={"type": "json_schema",
                                                 "json_schema": {"name": "judge_verdict", "schema": VERDICT_SCHEMA}})
            try:
                reply = await ctx.endpoints[p.backend].chat(prompt, None, params, ctx.usage[self.name],
                                                            retry_max_tokens=retry_budget(p))
            except TruncatedReply as err:
                problem = f"the reply was cut off at {err.limit}"
                continue
            text = reply.content or ""
            try:
                data = json.loads(json_object(text))
                score, rationale = int(data["score"]), str(data["rationale"]).strip()
            except (ValueError, KeyError, TypeError):
                problem = f"the reply is not the JSON asked for: {text[:120]!r}"
                continue
            if not 1 <= score <= 5:
                problem = f"score {score} is outside 1-5"
                continue
            if score < p.threshold:
                return self.failed(f"score {score}/5 below {p.threshold:g}: {rationale}")
            return Verdict(stage=self.name, passed=True, reason=f"score {score}/5: {rationale}")
        # No verdict is not a low score: its own stage and fault, so a flaky judge shows in the funnel and card.
        return Verdict(stage=JUDGE_ERROR, passed=False, fault="judge",
                       reason=f"{JUDGE_ERROR}: no verdict in {p.retries + 1} attempt(s); last: {problem}")


class DifficultyParams(FilterParams):
    backend: str = Field(description="a key of the run config's `backends`: the model that tries without tools")
    attempts: int = Field(default=3, ge=1, le=16)
    temperature: float = Field(default=1.0, ge=0)
    max_tokens: int = Field(default=64, ge=1)


@FILTERS.register("difficulty")
class DifficultyFilter(ModelFilter):
    """DeepDive's filter: a question (of a kind with an answer) that a model answers without tools in k tries
    teaches no searching."""

    Params = DifficultyParams
    fault = "synthesis"  # a question a model answers from memory was a poor task, not a poor dialogue

    async def acheck(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        p = self.params
        expected = ctx.kind.answer(ctx.task)
        if expected is None:  # nothing to answer from memory
            return self.passed()
        answer, aliases = expected
        question = next((m.content for m in trajectory.messages if m.role == "user" and m.content), "")
        for attempt in range(p.attempts):
            prompt = [Message(role="system", content="Answer from memory, with the answer only, no explanation."),
                      Message(role="user", content=question)]
            # A seed per attempt: k real tries, and k distinct entries in the request cache.
            params = ChatParams(temperature=p.temperature, max_tokens=p.max_tokens, seed=attempt)
            # A probe's answer is only scanned: one that ran long still says whether the model knew.
            reply = await ctx.endpoints[p.backend].chat(prompt, None, params, ctx.usage[self.name],
                                                        accept_truncated=True)
            if matches(reply.content or "", answer, aliases):
                return self.failed(f"answered without tools on attempt {attempt + 1} of {p.attempts}")
        return self.passed()
