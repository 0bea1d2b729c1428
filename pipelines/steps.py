"""Resolve the run config's step names into configured objects, failing early.

Called before a run writes anything, so an unknown step or a bad parameter is
a one-line error that names the config field. The registries load their
built-in steps themselves on first lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from filters import FILTERS, Filter
from generators import GENERATORS, Generator
from schemas import ConfigError, RunConfig, StepSpec
from simulators.environment import DOMAINS, Environment
from simulators.registry import Registry, UnknownStepError


@dataclass
class Steps:
    env: Environment
    generators: list[Generator]
    weights: list[float]
    filters: list[Filter]


def _params(model: type, params: dict, where: str):
    try:
        return model.model_validate(params)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        raise ConfigError(f"{where}.params{'.' + loc if loc else ''}: {e['msg'].removeprefix('Value error, ')}") from None


def _resolve(registry: Registry, spec: StepSpec, where: str) -> tuple[type, Any]:
    try:
        cls = registry.get(spec.name)
    except UnknownStepError as err:
        raise ConfigError(f"{where}.name: {err}") from None
    return cls, _params(cls.Params, spec.params, where)


def build_environment(config: RunConfig, source: str = "config") -> Environment:
    """The configured domain: its class by name, its params validated by its own model, then bound."""
    try:
        domain = DOMAINS.get(config.domain.name)
    except UnknownStepError as err:
        raise ConfigError(f"{source}: domain.name: {err}") from None
    params = _params(domain.Params, config.domain.params, f"{source}: domain")
    try:
        return domain.configure(params)(config.domain.db_seed)
    except ValueError as err:  # e.g. a malformed tool spec, already one line naming the file
        raise ConfigError(f"{source}: domain.params: {err}") from None


def build_steps(config: RunConfig, source: str = "config") -> Steps:
    env = build_environment(config, source)
    gens = []
    for i, spec in enumerate(config.generators):
        cls, params = _resolve(GENERATORS, spec, f"{source}: generators[{i}]")
        try:
            gens.append(cls(env, params))
        except ValueError as err:
            raise ConfigError(f"{source}: generators[{i}].params: {err}") from None
    if config.dedup.semantic.enabled:
        from dedup import semantic

        missing = semantic.available()
        if missing:
            raise ConfigError(f"{source}: dedup.semantic.enabled: {missing}")
    checks = []
    for i, spec in enumerate(config.filters):
        cls, params = _resolve(FILTERS, spec, f"{source}: filters[{i}]")
        checks.append(cls(params))
    return Steps(env=env, generators=gens, weights=[g.weight for g in config.generators], filters=checks)
