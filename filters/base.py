"""What every filter is, and where filters are found by name."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Task, Trajectory, Usage, Verdict
from simulators.environment import Environment
from simulators.kinds import TaskKind, kind_of
from simulators.registry import Registry, Step


class FilterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Context:
    """What a filter may consult besides the trajectory: the task, a clean environment, and for
    model-backed filters the run's endpoints and the usage meters their calls are charged to."""

    task: Task
    env: Environment
    endpoints: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)

    def fresh_env(self) -> Environment:
        return self.env.fresh(self.task.env_seed)

    @property
    def kind(self) -> TaskKind:
        """The task's kind: what a filter asks instead of branching on a kind's name (e.g. its ``answer``)."""
        return kind_of(self.task)


class Filter(Step):
    """One check, one verdict; ``name`` is the stage written on a rejected row."""

    Params: ClassVar[type[FilterParams]] = FilterParams
    # Who a rejection is attributed to (schemas.FAULTS); most checks judge what the assistant did.
    fault: ClassVar[str] = "assistant"

    def __init__(self, params: FilterParams | None = None) -> None:
        self.params = params or self.Params()

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        raise NotImplementedError

    async def acheck(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        """The shard calls this; a filter that waits on a model overrides it instead of ``check``.

        On a domain whose tools wait on servers (``blocking_io``), ``check`` runs in a worker thread, so a
        replay on a fresh copy never stalls the shard's other dialogues.
        """
        if ctx.env.blocking_io:
            return await asyncio.to_thread(self.check, trajectory, ctx)
        return self.check(trajectory, ctx)

    def backend(self) -> str | None:
        """The run-config backend this filter calls, if any (its ``backend`` parameter)."""
        return getattr(self.params, "backend", None)

    def passed(self) -> Verdict:
        return Verdict(stage=self.name, passed=True)

    def failed(self, reason: str, fault: str | None = None) -> Verdict:
        return Verdict(stage=self.name, passed=False, reason=reason, fault=fault or self.fault)


FILTERS: Registry[type[Filter]] = Registry("filter", "trajforge.filters", base=Filter, builtins="filters")
