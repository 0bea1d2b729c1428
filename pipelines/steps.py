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
from schemas import ConfigError, PluginError, RunConfig, StepSpec, one_line
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


def _construct(kind: str, name: str, cls: type, where: str, build: Any) -> Any:
    """``build()``, with what a constructor raises as one line: a ``ValueError`` is the step's own word on its
    params (or a file they name, reported under the config field that names it); anything else means the step
    itself broke, and names it."""
    try:
        return build()
    except ValueError as err:  # also a tool spec's or KG file's own error, one line naming the file
        raise ConfigError(f"{where}: {err}") from None
    except Exception as err:
        raise PluginError(f"{where}: {kind} {name!r} ({cls.__module__}.{cls.__qualname__}) failed to start: "
                          f"{one_line(err)}") from None


def build_environment(config: RunConfig, source: str = "config") -> Environment:
    """The configured domain: its class by name, its params validated by its own model, then bound."""
    try:
        domain = DOMAINS.get(config.domain.name)
    except UnknownStepError as err:
        raise ConfigError(f"{source}: domain.name: {err}") from None
    params = _params(domain.Params, config.domain.params, f"{source}: domain")
    return _construct("domain", config.domain.name, domain, f"{source}: domain.params",
                      lambda: domain.configure(params)(config.domain.db_seed))


def build_steps(config: RunConfig, source: str = "config") -> Steps:
    env = build_environment(config, source)
    gens = []
    for i, spec in enumerate(config.generators):
        cls, params = _resolve(GENERATORS, spec, f"{source}: generators[{i}]")
        gens.append(_construct("generator", spec.name, cls, f"{source}: generators[{i}].params",
                               lambda cls=cls, params=params: cls(env, params)))
    if config.dedup.semantic.enabled:
        from dedup import semantic

        missing = semantic.available()
        if missing:
            raise ConfigError(f"{source}: dedup.semantic.enabled: {missing}")
    checks = []
    for i, spec in enumerate(config.filters):
        cls, params = _resolve(FILTERS, spec, f"{source}: filters[{i}]")
        checks.append(_construct("filter", spec.name, cls, f"{source}: filters[{i}].params",
                                 lambda cls=cls, params=params: cls(params)))
    return Steps(env=env, generators=gens, weights=[g.weight for g in config.generators], filters=checks)
