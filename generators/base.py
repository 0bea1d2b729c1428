"""What every task generator is, and where generators are found by name."""

from __future__ import annotations

import asyncio
import bisect
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Message, Task, Usage
from simulators.environment import Environment
from simulators.registry import Registry, Step


class SynthesisError(Exception):
    """A task could not be built; the shard records it as a rejected row with this reason.

    Its evidence goes on the row: ``messages`` (a model writer's conversation: prompt, replies, feedback),
    ``task`` (the last candidate, when one parsed) and ``fault`` (``synthesis``; ``judge`` when the reviewers
    gave no verdict at all).
    """

    def __init__(self, message: str, fault: str = "synthesis", messages: list[Message] | None = None,
                 task: Task | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        self.messages = messages or []
        self.task = task


class GeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExamplePool:
    """What a shard's generators have validated so far, seen deterministically.

    A generator that learns from earlier output (few-shot examples, recombination)
    sets ``pool_lag``; the item at index ``i`` then sees exactly the items of
    indices below ``i - pool_lag``, and the shard holds it back until those have
    finished. So the pool an item sees never depends on which request returned
    first, while ``pool_lag`` items still run at once.
    """

    def __init__(self, indices: range) -> None:
        self._done = {i: asyncio.Event() for i in indices}
        self._low = indices.start  # every index below this one has finished
        self._items: dict[str, list[tuple[int, Any]]] = {}

    def add(self, generator: str, index: int, item: Any) -> None:
        bisect.insort(self._items.setdefault(generator, []), (index, item), key=_index)

    def finish(self, index: int) -> None:
        if index in self._done:
            self._done[index].set()
        while self._low in self._done and self._done[self._low].is_set():
            self._low += 1

    async def settled(self, below: int) -> None:
        """Wait until every item of an index below ``below`` has finished."""
        for i in range(self._low, below):
            await self._done[i].wait()

    def before(self, generator: str, below: int) -> list[Any]:
        """This generator's items of indices below ``below``, in index order."""
        items = self._items.get(generator, [])
        return [item for _, item in items[:bisect.bisect_left(items, below, key=_index)]]


def _index(entry: tuple[int, Any]) -> int:
    return entry[0]


@dataclass
class SynthesisContext:
    """What one item's synthesis may use: the run's endpoints, meters and funnel counters, the shard's pool.

    ``usage`` is charged by step name (``config.model_users()``); ``funnel``
    counts what a generator's own stages did (generated, passed, dropped ...)
    and reaches the manifest and the end-of-run summary.
    """

    endpoints: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    funnel: dict[str, Counter[str]] = field(default_factory=dict)
    pool: ExamplePool = field(default_factory=lambda: ExamplePool(range(0)))
    index: int = 0

    def at(self, index: int) -> SynthesisContext:
        return replace(self, index=index)

    def count(self, generator: str, step: str, n: int = 1) -> None:
        self.funnel.setdefault(generator, Counter())[step] += n


class Generator(Step):
    """Proposes one Task per call; all randomness comes from the ``rng`` it is given.

    The shard calls ``agenerate``; a generator that waits on a model overrides
    it (and names its backend in a ``backend`` parameter); others write ``generate``.
    One that counts its own stages (``ctx.count``) describes them by overriding
    ``funnel_lines`` / ``funnel_steps``.
    """

    Params: ClassVar[type[GeneratorParams]] = GeneratorParams
    pool_lag: int | None = None  # set to learn from earlier items of the shard (see ``ExamplePool``)

    def __init__(self, env: Environment, params: GeneratorParams) -> None:
        self.env = env
        self.params = params

    def generate(self, rng: random.Random) -> Task:
        raise NotImplementedError

    async def agenerate(self, rng: random.Random, ctx: SynthesisContext) -> Task:
        if self.env.blocking_io:  # its blueprints run on servers: wait in a thread, not on the shard's loop
            return await asyncio.to_thread(self.generate, rng)
        return self.generate(rng)


GENERATORS: Registry[type[Generator]] = Registry("generator", "trajforge.generators", base=Generator,
                                                builtins="generators")
