"""What a kind of task is, declared in one place, and where kinds are found by name.

A kind (a blueprint, a KG question, a plug-in's own) says everything the
pipeline needs to carry its tasks end to end, so nothing outside its module
branches on its name:

- ``Fields``: its own task fields, a pydantic model. They ride on the task as
  extra top-level keys (``Task`` allows extras), so tasks written before kinds
  were open, with ``answer`` / ``answer_aliases`` / ``path`` at top level,
  still load as they are;
- ``User`` / ``Assistant``: the offline (scripted) agents that play it, called
  as ``User(task, rng)`` and ``Assistant(task, env, rng, perturbation)``
  (a kind whose user reads the environment, as a dual-control user acting on
  its own device does, overrides ``user(task, rng, env)``);
- ``reward`` and ``verifiers``: the reward type an RL view announces and the
  filters whose verdicts are its outcome (by name, resolved through
  ``filters.FILTERS``), plus ``answer(task)`` for a kind with a closed-form
  answer, which answer-checking filters use;
- ``columns``: what it adds to each export view (``ExportField``).

This module sits in ``simulators`` because the scripted agents do; the
verifiers are named, not imported, so a kind never imports upward.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, ValidationError

from schemas import Task
from simulators.agents import AssistantAgent, UserAgent
from simulators.environment import Environment
from simulators.registry import Registry, UnknownStepError


class KindFields(BaseModel):
    """A kind's own task fields; a kind with none keeps this empty model."""

    model_config = ConfigDict(extra="forbid")


class TaskKindError(ValueError):
    """A task that does not fit its kind (unknown kind, bad or missing fields); ``str`` is one line."""


@dataclass(frozen=True)
class ExportField:
    """One column a kind adds to an export view.

    ``name`` is a top-level column (``"answer"``) or a field of one of the view's
    struct columns (``"reward_spec.answer"``). Rows of other kinds get ``default``.
    Two kinds may declare the same field if they agree on its type.
    """

    view: str
    name: str
    type: pa.DataType
    value: Callable[[Task], Any]
    default: Any = None


class TaskKind:
    """The declaration of one kind; its registry sets ``name``."""

    name: ClassVar[str]
    Fields: ClassVar[type[KindFields]] = KindFields
    User: ClassVar[Callable[[Task, random.Random], UserAgent]]
    Assistant: ClassVar[Callable[[Task, Environment, random.Random, str | None], AssistantAgent]]
    reward: ClassVar[str] = "outcome"
    verifiers: ClassVar[tuple[str, ...]] = ("outcome", "required_outputs")
    columns: ClassVar[tuple[ExportField, ...]] = ()

    def fields(self, task: Task) -> KindFields:
        """The task's own fields of this kind, validated (raises ``TaskKindError``)."""
        extra = _declared(task.model_extra or {}, self.Fields)
        try:
            return self.Fields.model_validate(extra)
        except ValidationError as err:
            e = err.errors()[0]
            where = ".".join(str(x) for x in e["loc"])
            raise TaskKindError(f"kind {self.name!r}: {where + ': ' if where else ''}{e['msg']}") from None

    def validate(self, task: Task) -> Task:
        """``task`` if it fits this kind; keys of empty fields the kind does not declare are dropped."""
        missing = [a for a in ("User", "Assistant") if not hasattr(self, a)]
        if missing:
            raise TaskKindError(f"kind {self.name!r} declares no scripted {' or '.join(missing)}")
        self.fields(task)
        extra = task.model_extra or {}
        stale = set(extra) - set(_declared(extra, self.Fields))
        if not stale:
            return task
        data = task.model_dump(exclude=stale)
        return Task.model_validate(data)

    def user(self, task: Task, rng: random.Random, env: Environment) -> UserAgent:
        """The offline user of ``task``; ``env`` is there for kinds whose user acts on it (its own device)."""
        return self.User(task, rng)

    def scripted_user(self, task: Task, env: Environment) -> UserAgent:
        """The offline user of ``task`` on a random stream seeded by the task alone, for an RL environment rebuilt
        from a row (``pipelines.rl``): the same user in every episode. (Generation's user shares the run's stream
        with the scripted assistant, so its phrasing may differ; its requests and facts are the same.)"""
        return self.user(task, random.Random(f"{task.id}:user"), env)

    def answer(self, task: Task) -> tuple[str, list[str]] | None:
        """The task's closed-form answer and its aliases, for kinds that have one; None otherwise."""
        return None


def _declared(extra: dict[str, Any], fields: type[KindFields]) -> dict[str, Any]:
    """Extras without the empty leftovers of older rows: before kinds were open, every task carried every
    built-in kind's fields (``answer: null``, ``answer_aliases: []``, ``path: []``), so an undeclared key
    holding an empty value is not a field of this task."""
    return {k: v for k, v in extra.items() if k in fields.model_fields or v not in (None, [], {}, "")}


KINDS: Registry[type[TaskKind]] = Registry("task kind", "trajforge.kinds", base=TaskKind, builtins="simulators.kinds")


def kind_of(task: Task | str) -> TaskKind:
    """The kind of ``task`` (or the kind called so); ``TaskKindError`` names the known kinds when there is none."""
    name = task if isinstance(task, str) else task.kind
    try:
        return KINDS.get(name)()
    except UnknownStepError as err:
        raise TaskKindError(str(err)) from None
