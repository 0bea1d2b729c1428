"""What one committed dataset version says about itself."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.diversity import DiversityFigures
from schemas.trajectory import Usage


class RunOrigin(BaseModel):
    """What started the run of a version, when a Prefect deployment did (``trajforge serve``).

    Absent (``None``) for a run started by hand (``trajforge generate``), and in
    every version written before this field existed.
    """

    deployment: str = Field(description="FLOW/DEPLOYMENT, e.g. scheduled-generate/nightly")
    schedule: str | None = Field(
        default=None, description="the cron expression whose schedule started the run; None when the deployment "
        "was run by hand (e.g. `prefect deployment run`)")
    scheduled_for: str | None = Field(default=None, description="when the flow run was due (ISO 8601, UTC)")
    flow_run_id: str | None = Field(default=None, description="the Prefect flow run that committed the version")

    def describe(self) -> str:
        how = f"cron {self.schedule!r}" if self.schedule else "run by hand"
        return f"{self.deployment} ({how})"


class RunCost(BaseModel):
    """What the run's model calls cost, from the price table of each backend (``backends.NAME.price``).

    Absent (``None``) in versions written before cost accounting and in runs without any priced backend.
    """

    currency: str = "USD"
    total: float = 0.0
    by_role: dict[str, float] = Field(default_factory=dict, description="per model user (role, or step.path)")
    by_stage: dict[str, float] = Field(default_factory=dict, description="synthesis, simulation, verification")
    by_backend: dict[str, float] = Field(default_factory=dict)
    per_accepted: float | None = Field(default=None, description="total / accepted rows of this version")
    saved: float = Field(default=0.0, description="what the replies served by the request cache would have cost")
    saved_by_role: dict[str, float] = Field(default_factory=dict)
    gpu_hours: dict[str, float] = Field(default_factory=dict, description="GPU-hours charged per self-served backend")


class RunStop(BaseModel):
    """Why the run stopped where it did, and what it spent. Absent in versions written before target runs."""

    reason: str = Field(description="num_tasks (all tasks run), target_accepted, or the budget that ran out: "
                        "max_tasks, max_requests, max_tokens, max_cost")
    detail: str = ""
    target_accepted: int | None = None
    shards: int = Field(default=0, description="shards committed")
    discarded_shards: int = Field(default=0, description="shards started beyond the target, not committed")
    surplus: int = Field(default=0, description="accepted rows of the last shard beyond the target, committed as "
                         "rejected at stage 'target'")
    unstarted: int = Field(default=0, description="tasks of committed shards never started: a budget ran out")
    requests: int = 0
    tokens: int = 0
    cost: float | None = None


class DatasetManifest(BaseModel):
    """Stored as the Delta commit's metadata; ``version`` is the commit's own number."""

    version: int | None = None
    parent_version: int | None
    run_id: str
    config_hash: str
    code_version: str
    seed: int
    created_at: str
    tasks: int
    accepted: int
    rejected: int
    stages: dict[str, int] = Field(default_factory=dict, description="rows rejected per stage")
    reasons: dict[str, int] = Field(default_factory=dict, description="rows rejected per reason")
    config: dict = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict, description="model per role; empty offline")
    usage: dict[str, Usage] = Field(default_factory=dict, description="model calls per role, this run")
    funnel: dict[str, int] = Field(
        default_factory=dict,
        description="rows rejected per step in pipeline order (synthesis, simulation, each filter as configured, "
        "then each dedup layer that is on: dedup.exact, dedup.near, dedup.semantic), zeros included")
    faults: dict[str, int] = Field(
        default_factory=dict, description="rows rejected per fault: who failed (assistant, user, tool, judge, "
        "backend, synthesis, plugin)")
    synthesis: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per generator, what its own stages did: a model blueprint's contexts, "
        "rounds written and regenerated, failures per rule, committee passes and failures, drops, recombinations")
    similarity_histogram: dict[str, int] = Field(
        default_factory=dict, description="semantic layer: this run's rows by cosine similarity to their nearest "
        "earlier row, for choosing dedup.semantic.threshold")
    diversity: DiversityFigures | None = Field(
        default=None, description="variety and difficulty of this version's accepted dialogues (None: written "
        "before they were measured)")
    total_accepted: int = 0
    origin: RunOrigin | None = Field(default=None, description="the deployment and schedule that started the run; "
                                     "None for a run started by hand")
    cost: RunCost | None = Field(default=None, description="what the run cost, per role, stage and accepted row")
    stop: RunStop | None = Field(default=None, description="why the run stopped: all tasks, the target, a budget")
