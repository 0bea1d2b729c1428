"""Resolve the run config's step names into configured objects, failing early.

Called before a run writes anything, so an unknown step or a bad parameter is
a one-line error that names the config field. The registries load their
built-in steps themselves on first lookup.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from filters import FILTERS, Filter
from generators import GENERATORS, Generator
from schemas import ConfigError, DomainConfig, PluginError, RunConfig, StepSpec, one_line
from simulators.environment import DOMAINS, Environment
from simulators.registry import Registry, UnknownStepError


@dataclass
class DomainSteps:
    """One domain of a mixed run: its environment, its own generators (built on it) and its share of the tasks."""

    env: Environment
    generators: list[Generator]
    share: float


@dataclass
class Steps:
    env: Environment  # the run's domain (a mixed run's first)
    generators: list[Generator]
    weights: list[float]
    filters: list[Filter]
    mixed: list[DomainSteps] = field(default_factory=list)  # every domain of a mixed run; empty otherwise

    def env_for(self, domain: str) -> Environment:
        """The environment a task of ``domain`` runs on (``task.domain``)."""
        for part in self.mixed:
            if part.env.name == domain:
                return part.env
        return self.env

    def domain_of(self, seed: int, index: int) -> Environment:
        """The environment task ``index`` is made on. A mixed run draws it from a stream of its own, so a
        single-domain run's tasks draw exactly what they drew before mixing existed."""
        if not self.mixed:
            return self.env
        return random.Random(f"{seed}:domain:{index}").choices(self.mixed, [p.share for p in self.mixed])[0].env

    def generator_for(self, seed: int, index: int, rng: random.Random) -> Generator:
        """The generator of task ``index``: one of its domain's (each has the config's generators, in order)."""
        env = self.domain_of(seed, index)
        generators = next((p.generators for p in self.mixed if p.env is env), self.generators)
        return rng.choices(generators, weights=self.weights)[0]


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


def _domain_env(spec: DomainConfig, where: str) -> Environment:
    """One domain: its class by name, its params validated by its own model, then bound."""
    try:
        domain = DOMAINS.get(spec.name)
    except UnknownStepError as err:
        raise ConfigError(f"{where}.name: {err}") from None
    params = _params(domain.Params, spec.params, where)
    return _construct("domain", spec.name, domain, f"{where}.params", lambda: domain.configure(params)(spec.db_seed))


def _where(config: RunConfig, source: str, i: int) -> str:
    return f"{source}: domains[{i}]" if config.domains is not None else f"{source}: domain"


def build_environment(config: RunConfig, source: str = "config", domain: str | None = None) -> Environment:
    """The configured domain named ``domain`` (default: the run's first)."""
    mixed = config.mixed_domains()
    i = next((n for n, d in enumerate(mixed) if d.name == domain), 0)
    return _domain_env(mixed[i], _where(config, source, i))


def build_steps(config: RunConfig, source: str = "config") -> Steps:
    parts = []
    mixed = config.domains is not None
    for n, domain in enumerate(config.mixed_domains()):
        env = _domain_env(domain, _where(config, source, n))
        gens = []
        for i, spec in enumerate(config.generators):
            cls, params = _resolve(GENERATORS, spec, f"{source}: generators[{i}]")
            where = f"{source}: generators[{i}].params" + (f" (domain {domain.name!r})" if mixed else "")
            gens.append(_construct("generator", spec.name, cls, where,
                                   lambda cls=cls, params=params, env=env: cls(env, params)))
        parts.append(DomainSteps(env, gens, domain.weight))
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
    first = parts[0]
    return Steps(env=first.env, generators=first.generators, weights=[g.weight for g in config.generators],
                 filters=checks, mixed=parts if mixed else [])
