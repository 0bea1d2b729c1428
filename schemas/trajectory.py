"""Trajectories and the verdicts passed on them."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from schemas.hashing import content_hash
from schemas.messages import Message, Tool, ToolCall

FAULTS = ("assistant", "user", "tool", "judge", "backend", "synthesis", "plugin")
"""Who a rejected row's failure is attributed to (the row column ``fault``): the assistant under simulation, the
user simulator, the tool simulator, a judge (a reply that was no verdict), the inference backend, task synthesis,
or a plug-in step that broke."""


class Verdict(BaseModel):
    """One step's judgement; ``stage`` names the step so a reject says who said no."""

    stage: str
    passed: bool
    reason: str = ""
    fault: str | None = Field(default=None, description="on a failure: who failed (schemas.FAULTS)")


class Usage(BaseModel):
    """What model calls cost; ``requests`` counts only calls that reached a server (cache hits are ``cached``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    latency_s: float = 0.0
    cached: int = 0
    retries: int = 0
    errors: int = 0
    truncated: int = 0  # replies cut off at max_tokens that were not used (after any retry)
    truncated_retries: int = 0  # cut-off replies asked again with a larger max_tokens
    # Of ``prompt_tokens``: those the server served from its prompt (prefix) cache, as it reported them
    # (``usage.prompt_tokens_details.cached_tokens``; vLLM with ``--enable-prompt-tokens-details``).
    cached_prompt_tokens: int = 0
    # Tokens of the replies trajforge's request cache served (``cached``): what they would have cost.
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0

    def add(self, other: Usage) -> Usage:
        for field in type(self).model_fields:
            setattr(self, field, getattr(self, field) + getattr(other, field))
        return self


def total_usage(by_role: dict[str, Usage]) -> Usage:
    total = Usage()
    for usage in by_role.values():
        total.add(usage)
    return total


class UserAction(BaseModel):
    """A call the simulated user made on their own side (dual control: a setting on their phone), and its result.

    Not a message: the assistant never sees the user's tool calls, only what the
    user then says about them, so ``messages`` stay a plain OpenAI chat that any
    chat template renders. ``at`` is the index in ``messages`` of the user message
    that followed the action (the one that reports it), which places it in time
    for replay and verification.
    """

    at: int = Field(ge=0)
    call: ToolCall
    result: str


class Lineage(BaseModel):
    run_id: str
    config_hash: str
    code_version: str
    seed: int
    models: dict[str, str] = Field(default_factory=dict)


class Trajectory(BaseModel):
    id: str = ""
    task_id: str
    domain: str
    kind: str = "blueprint"
    tools: list[Tool]
    messages: list[Message]
    user_tools: list[Tool] = Field(default_factory=list, description="the user's own tools (dual control)")
    user_actions: list[UserAction] = Field(default_factory=list, description="what the user did with them")
    final_state_hash: str | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    usage: dict[str, Usage] = Field(default_factory=dict, description="per role: user, assistant, tool")
    lineage: Lineage | None = None

    @model_validator(mode="after")
    def _fill_id(self) -> Trajectory:
        if not self.id:
            # Content only: lineage (run id, timestamps) must not change identity.
            content = {"task_id": self.task_id, "messages": [m.to_openai() for m in self.messages]}
            if self.user_actions:  # left out while empty, so dialogues without them keep their ids
                content["user_actions"] = [a.model_dump() for a in self.user_actions]
            self.id = content_hash(content)
        return self

    def first_failure(self) -> Verdict | None:
        return next((v for v in self.verdicts if not v.passed), None)
