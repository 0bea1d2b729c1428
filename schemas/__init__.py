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
    RoleConfig,
    RunConfig,
    RunnerConfig,
    SimulationConfig,
    StepSpec,
    UserRoleConfig,
    load_config,
    parse_config,
)
from schemas.hashing import canonical_json, content_hash, ordered_json
from schemas.manifest import DatasetManifest, RunOrigin
from schemas.messages import Action, FunctionCall, FunctionSpec, Message, Tool, ToolCall
from schemas.task import Request, Task, UserScenario
from schemas.trajectory import FAULTS, Lineage, Trajectory, Usage, Verdict, total_usage

__all__ = [
    "Action",
    "AssistantRoleConfig",
    "BackendConfig",
    "CacheConfig",
    "ConfigError",
    "DatasetManifest",
    "DedupConfig",
    "DomainConfig",
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
