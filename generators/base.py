"""What every task generator is, and where generators are found by name."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Task, Usage
from simulators.environment import Environment
from simulators.registry import Registry


class SynthesisError(Exception):
    """A task could not be built; the shard records it as a rejected row with this reason."""


class GeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class SynthesisContext:
    """What a model-backed generator may use: the run's endpoints, and meters charged by generator name."""

    endpoints: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)


class Generator:
    """Proposes one Task per call; all randomness comes from the ``rng`` it is given.

    The shard calls ``agenerate``; a generator that waits on a model overrides
    it (and names its backend in a ``backend`` parameter); others write ``generate``.
    """

    name: ClassVar[str]
    Params: ClassVar[type[GeneratorParams]] = GeneratorParams

    def __init__(self, env: Environment, params: GeneratorParams) -> None:
        self.env = env
        self.params = params

    def generate(self, rng: random.Random) -> Task:
        raise NotImplementedError

    async def agenerate(self, rng: random.Random, ctx: SynthesisContext) -> Task:
        return self.generate(rng)


GENERATORS: Registry[type[Generator]] = Registry("generator", "trajforge.generators", base=Generator,
                                                builtins="generators")
