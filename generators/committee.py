"""Validation stage 2: a committee of reviewer models scores a blueprint against what it did.

Each reviewer sees the policy, the blueprint and the recorded state diff of its
execution (stage 1), and returns a structured review: correctness,
completeness and realism on 1-5, a vote and feedback. Several reviewers with
their own seeds (or models) and a vote are what APIGen-MT uses to keep one
reviewer's blind spot out of the data. A review that is not valid JSON for the
schema is asked again (``retries``, with other seeds); a reviewer that still
gives none is a ``judge_error`` (the blueprint is rejected as the judge's
failure, not sent back for rewriting), so a broken reviewer can block a
blueprint but never pass one, and is never mistaken for a low score.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas import Message, Task, Usage, canonical_json
from simulators.backends import ChatParams, Endpoint, TruncatedReply
from simulators.structured_output import parse_structured, retry_budget

SCORES = ("correctness", "completeness", "realism")


class ReviewerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: str
    temperature: float | None = Field(default=0.0, ge=0)
    seed: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    retry_max_tokens: int | None = Field(default=None, ge=1, description="a review cut off at max_tokens is asked "
                                         "once more with this budget (default: twice max_tokens)")


class CommitteeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviewers: list[ReviewerSpec] = Field(min_length=1, description="N reviewers; a model may sit more than once")
    rule: Literal["majority", "mean"] = Field(
        default="majority", description="majority: more than half approve; mean: the mean score reaches threshold")
    threshold: float = Field(default=4.0, ge=1, le=5, description="rule 'mean': mean of all scores to pass")
    retries: int = Field(default=2, ge=0, description="a review that does not parse is asked again (another "
                         "seed) this many times; still none is a judge_error, never a vote")


class Review(BaseModel):
    """One reviewer's structured reply."""

    model_config = ConfigDict(extra="forbid")

    correctness: int = Field(ge=1, le=5, description="the gold actions do what the instruction asks, per the policy")
    completeness: int = Field(ge=1, le=5, description="the user has every fact the actions need; outputs are right")
    realism: int = Field(ge=1, le=5, description="a real customer could write this")
    approve: bool
    feedback: str = Field(description="what to change, concretely; empty when nothing")

    @property
    def score(self) -> float:
        return sum(getattr(self, s) for s in SCORES) / len(SCORES)


REVIEW_FORMAT = {"type": "json_schema", "json_schema": {"name": "review", "schema": Review.model_json_schema()}}


@dataclass
class Verdict:
    passed: bool
    reviews: list[Review | None]  # None: the reviewer's reply was not a valid review
    feedback: str
    mean: float | None
    summary: str = ""
    scores: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # reviewers that gave no valid review after their retries



def review_prompt(policy: str, task: Task, results: list[str], diff: dict[str, Any]) -> list[Message]:
    s = task.scenario
    calls = "\n".join(f"{n}. {a.name}({canonical_json(a.arguments)}) -> {r[:400]}"
                      for n, (a, r) in enumerate(zip(task.gold_actions, results, strict=True)))
    body = (
        f"## Instruction given to the simulated user\n{s.instruction}\n\n"
        f"What the user knows: {canonical_json(s.known_info)}\nWhat the user does not know: {json.dumps(s.unknown_info)}\n"
        f"How the user proves identity: {s.identity}\n\n"
        f"## Gold actions, executed, with results\n{calls}\n\n"
        f"## State diff after the gold actions (records changed or added)\n{canonical_json(diff)}\n\n"
        f"## Outputs the assistant must tell the user\n{json.dumps(task.expected_outputs)}"
    )
    return [
        Message(role="system", content=(
            "You review task blueprints for training customer-support agents. A blueprint is an instruction for "
            "a simulated user plus the gold tool calls an agent following the policy must make, and the outputs "
            "it must report. Score correctness (the calls and the diff are exactly what the instruction asks, and "
            "the policy allows them), completeness (the user is given every fact the calls need; the outputs are "
            "right and sufficient) and realism (a real customer could write this), each 1-5. Approve only if "
            "all are at least 4. Feedback must say concretely what to change.\n\n# Policy\n" + policy)),
        Message(role="user", content=body),
    ]


def parse_review(text: str) -> Review | None:
    try:
        return parse_structured(Review, text)
    except ValueError:
        return None


class Committee:
    def __init__(self, params: CommitteeParams, endpoints: dict[str, Endpoint], meters: list[Usage]) -> None:
        self.params = params
        self.endpoints = endpoints
        self.meters = meters

    async def _one(self, k: int, prompt: list[Message]) -> Review | str:
        """Reviewer ``k``'s review, or why it gave none: a reply that does not parse (or is cut off even with
        the larger budget) is asked again with another seed, up to ``retries`` times."""
        spec = self.params.reviewers[k]
        problem = ""
        for attempt in range(self.params.retries + 1):
            seed = spec.seed if attempt == 0 else (spec.seed or 0) + attempt  # another seed: another request
            params = ChatParams(temperature=spec.temperature, seed=seed, max_tokens=spec.max_tokens,
                                response_format=REVIEW_FORMAT)
            try:
                reply = await self.endpoints[spec.backend].chat(prompt, None, params, self.meters[k],
                                                                retry_max_tokens=retry_budget(spec))
            except TruncatedReply as err:
                problem = f"cut off at {err.limit}"
                continue
            try:
                return parse_structured(Review, reply.content or "")
            except ValueError as err:
                problem = f"{err}: {(reply.content or '')[:80]!r}"
        return f"reviewer {k + 1} gave no valid review in {self.params.retries + 1} attempt(s); last: {problem}"

    async def review(self, prompt: list[Message]) -> Verdict:
        results = list(await asyncio.gather(*(self._one(k, prompt) for k in range(len(self.params.reviewers)))))
        errors = [r for r in results if isinstance(r, str)]
        verdict = decide(self.params, [r if isinstance(r, Review) else None for r in results])
        verdict.errors = errors
        return verdict


def decide(params: CommitteeParams, reviews: list[Review | None]) -> Verdict:
    """Aggregate votes or scores; the feedback is every rejecting reviewer's, numbered, for the writer."""
    valid = [r for r in reviews if r is not None]
    approvals = sum(r.approve for r in valid)
    mean = sum(r.score for r in valid) / len(valid) if valid else None
    if params.rule == "majority":
        passed = approvals * 2 > len(reviews)
        summary = f"{approvals} of {len(reviews)} reviewers approved"
    else:
        passed = mean is not None and len(valid) == len(reviews) and mean >= params.threshold
        summary = f"mean score {mean:.2f} vs threshold {params.threshold:g}" if mean is not None else "no valid review"
    notes = []
    for k, r in enumerate(reviews, 1):
        if r is None:
            notes.append(f"reviewer {k}: (reply was not a valid review)")
        elif not r.approve or r.score < params.threshold:
            notes.append(f"reviewer {k} ({', '.join(f'{s} {getattr(r, s)}' for s in SCORES)}): "
                         f"{r.feedback.strip() or '(no feedback)'}")
    scores = [r.model_dump() if r is not None else {} for r in reviews]
    return Verdict(passed=passed, reviews=reviews, feedback="\n".join(notes), mean=mean, summary=summary, scores=scores)
