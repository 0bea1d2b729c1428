"""What one committed dataset version says about itself."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.trajectory import Usage


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
    synthesis: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per generator, what its own stages did: a model blueprint's contexts, "
        "rounds written and regenerated, failures per rule, committee passes and failures, drops, recombinations")
    similarity_histogram: dict[str, int] = Field(
        default_factory=dict, description="semantic layer: this run's rows by cosine similarity to their nearest "
        "earlier row, for choosing dedup.semantic.threshold")
    total_accepted: int = 0
