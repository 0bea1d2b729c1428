"""Pydantic models and wire formats; imports nothing of trajforge's own."""

from schemas.config import (
    AssistantRoleConfig,
    BackendConfig,
    CacheConfig,
    ConfigError,
    DedupConfig,
    DomainConfig,
    GeneratorSpec,
    ManagedVLLMConfig,
    MixedDomainConfig,
    RoleConfig,
    RunConfig,
    RunnerConfig,
    SimulationConfig,
    StepSpec,
    UserRoleConfig,
    load_config,
    parse_config,
)
from schemas.diversity import DiversityFigures
from schemas.hashing import canonical_json, content_hash, ordered_json
from schemas.manifest import DatasetManifest, RunOrigin
from schemas.messages import Action, FunctionCall, FunctionSpec, Message, Tool, ToolCall
from schemas.task import Request, Task, UserScenario
from schemas.trajectory import FAULTS, Lineage, Trajectory, Usage, UserAction, Verdict, total_usage

__all__ = [
    "Action",
    "AssistantRoleConfig",
    "BackendConfig",
    "CacheConfig",
    "ConfigError",
    "DatasetManifest",
    "DedupConfig",
    "DiversityFigures",
    "DomainConfig",
    "MixedDomainConfig",
    "FAULTS",
    "FunctionCall",
    "FunctionSpec",
    "GeneratorSpec",
    "Lineage",
    "ManagedVLLMConfig",
    "Message",
    "Request",
    "RoleConfig",
    "RunConfig",
    "RunOrigin",
    "RunnerConfig",
    "SimulationConfig",
    "StepSpec",
    "Task",
    "Tool",
    "ToolCall",
    "Trajectory",
    "Usage",
    "UserAction",
    "UserRoleConfig",
    "UserScenario",
    "Verdict",
    "canonical_json",
    "ordered_json",
    "content_hash",
    "load_config",
    "parse_config",
    "total_usage",
]
