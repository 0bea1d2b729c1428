"""Pydantic models and wire formats; imports nothing of trajforge's own."""

from schemas.config import (
    ConfigError,
    DedupConfig,
    DomainConfig,
    GeneratorSpec,
    RunConfig,
    RunnerConfig,
    SimulationConfig,
    StepSpec,
    load_config,
    parse_config,
)
from schemas.hashing import canonical_json, content_hash
from schemas.manifest import DatasetManifest
from schemas.messages import Action, FunctionCall, FunctionSpec, Message, Tool, ToolCall
from schemas.task import Request, Task, UserScenario
from schemas.trajectory import Lineage, Trajectory, Usage, Verdict

__all__ = [
    "Action",
    "ConfigError",
    "DatasetManifest",
    "DedupConfig",
    "DomainConfig",
    "FunctionCall",
    "FunctionSpec",
    "GeneratorSpec",
    "Lineage",
    "Message",
    "Request",
    "RunConfig",
    "RunnerConfig",
    "SimulationConfig",
    "StepSpec",
    "Task",
    "Tool",
    "ToolCall",
    "Trajectory",
    "Usage",
    "UserScenario",
    "Verdict",
    "canonical_json",
    "content_hash",
    "load_config",
    "parse_config",
]
