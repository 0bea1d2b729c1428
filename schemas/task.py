"""Tasks: what a dialogue must achieve, before any dialogue exists."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.hashing import content_hash
from schemas.messages import Action


class Request(BaseModel):
    """One thing the user wants, in the order the user brings it up.

    ``actions`` index into ``Task.gold_actions``: the calls that serve this
    request, which lets a scripted or model assistant be checked per request.
    """

    intent: str
    opening: str = Field(description="how the user first states the request, vaguely")
    details: str = Field(description="what the user says when asked for specifics")
    actions: list[int] = Field(default_factory=list)


class UserScenario(BaseModel):
    persona: str
    instruction: str
    known_info: dict[str, str] = Field(default_factory=dict)
    unknown_info: list[str] = Field(default_factory=list)
    identity: str = Field(description="what the user says to authenticate")
    closing: str = "That's all, thanks!"
    requests: list[Request] = Field(default_factory=list)


class Task(BaseModel):
    """What every kind of task has: a scenario for the user, gold calls, the expected final state and outputs.

    ``kind`` names a task kind (``simulators.kinds``: blueprint, kg_question, a
    plug-in's own); what only that kind has (a KG question's ``answer``,
    ``answer_aliases`` and ``path``) rides as extra top-level keys, validated by
    the kind's own model where the kind registry is reachable. The id is a hash
    of everything but itself, so two generators proposing the same task produce
    the same id.
    """

    model_config = ConfigDict(extra="allow")

    id: str = ""
    kind: str = Field(default="blueprint", pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
    domain: str
    env_seed: int
    scenario: UserScenario
    gold_actions: list[Action] = Field(default_factory=list)
    expected_outputs: list[str] = Field(default_factory=list)
    expected_state_hash: str | None = None
    generator: str = "blueprint"
    user: str | None = Field(default=None, description="the simulated user's id in the domain; a dual-control "
                             "domain runs the user's own tools (their device) for this user")
    provenance: dict[str, Any] = Field(
        default_factory=dict,
        description="how the task was made, for whoever filters the data later: a model blueprint's rounds, "
        "committee scores and recorded state diff; the task ids a recombined task was built from")

    @model_validator(mode="after")
    def _fill_id(self) -> Task:
        if not self.id:
            # Left out while empty, so tasks made without them keep the ids they always had.
            exclude = {"id"} | ({"provenance"} if not self.provenance else set()) | ({"user"} if self.user is None
                                                                                      else set())
            self.id = content_hash(self.model_dump(exclude=exclude, mode="json"))
        return self
