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
from simulators.backends import ChatParams
from simulators.structured_output import json_object

RUBRIC = """Score the assistant in this dialogue from 1 (unusable) to 5 (exemplary) for training data:
- correctness: tool calls are right for the user's requests and the results are reported truthfully;
- completeness: every request of the user is handled and the required facts are conveyed;
- policy: it identifies the user and asks for explicit confirmation before changes where required;
- realism: the user and assistant sound like real people; no repetition, no leaked instructions."""

VERDICT_SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5},
                                                   "rationale": {"type": "string"}},
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
        params = ChatParams(temperature=p.temperature, max_tokens=p.max_tokens, response_format={
            "type": "json_schema", "json_schema": {"name": "judge_verdict", "schema": VERDICT_SCHEMA}})
        reply = await ctx.endpoints[p.backend].chat(prompt, None, params, ctx.usage[self.name])
        try:
            data = json.loads(json_object(reply.content or ""))
            score, rationale = int(data["score"]), str(data["rationale"]).strip()
        except (ValueError, KeyError, TypeError):
            return self.failed(f"judge reply is not the JSON asked for: {(reply.content or '')[:120]!r}")
        if not 1 <= score <= 5:
            return self.failed(f"judge score {score} is outside 1-5")
        if score < p.threshold:
            return self.failed(f"score {score}/5 below {p.threshold:g}: {rationale}")
        return Verdict(stage=self.name, passed=True, reason=f"score {score}/5: {rationale}")


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
            reply = await ctx.endpoints[p.backend].chat(prompt, None, params, ctx.usage[self.name])
            if matches(reply.content or "", answer, aliases):
                return self.failed(f"answered without tools on attempt {attempt + 1} of {p.attempts}")
        return self.passed()
