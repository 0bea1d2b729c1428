"""What every task generator is, and where generators are found by name."""

from __future__ import annotations

import random
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Task
from simulators.environment import Environment
from simulators.registry import Registry


class SynthesisError(Exception):
    """A task could not be built; the shard records it as a rejected row with this reason."""


class GeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Generator:
    """Proposes one Task per call; all randomness comes from the ``rng`` it is given."""

    name: ClassVar[str]
    Params: ClassVar[type[GeneratorParams]] = GeneratorParams

    def __init__(self, env: Environment, params: GeneratorParams) -> None:
        self.env = env
        self.params = params

    def generate(self, rng: random.Random) -> Task:
        raise NotImplementedError


GENERATORS: Registry[type[Generator]] = Registry("generator", "trajforge.generators", base=Generator,
                                                builtins="generators")
