"""What every filter is, and where filters are found by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Task, Trajectory, Verdict
from simulators.environment import Environment
from simulators.registry import Registry


class FilterParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Context:
    """What a filter may consult besides the trajectory: the task and a clean environment."""

    task: Task
    env: Environment

    def fresh_env(self) -> Environment:
        return self.env.fresh(self.task.env_seed)


class Filter:
    """One check, one verdict; ``name`` is the stage written on a rejected row."""

    name: ClassVar[str]
    Params: ClassVar[type[FilterParams]] = FilterParams

    def __init__(self, params: FilterParams | None = None) -> None:
        self.params = params or self.Params()

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        raise NotImplementedError

    def passed(self) -> Verdict:
        return Verdict(stage=self.name, passed=True)

    def failed(self, reason: str) -> Verdict:
        return Verdict(stage=self.name, passed=False, reason=reason)


FILTERS: Registry[type[Filter]] = Registry("filter", "trajforge.filters", base=Filter, builtins="filters")
