"""A domain made from a tool spec alone: the researcher's tools, answered by a tool simulator.

``domain: {name: schema_only, params: {spec: tools.json}}`` reads the spec
(``simulators.tool_specs``: OpenAI tools, bare functions or BFCL function docs
as a JSON array or JSON Lines, or an OpenAPI 3 document), and every call is
validated against the tool's schema exactly as in a coded domain, then
answered by the configured tool simulator (``offline`` by default). There is
no database, so the state is what the world has been told to do: the ordered
log of successful calls to writing tools. That keeps the outcome check
meaningful (the dialogue must make the gold writes, with the gold arguments,
in the gold order) without pretending to know what a write does.

What the spec does not say is inferred (``simulators.foreign``): entity types
for the tool graph, one generic intent per tool (``call_<tool>``) so the
offline agents and the ``blueprint`` and ``tool_calls`` generators can build
and play tasks, no authentication, and the policy ``policy.confirm: writes``
(every write needs the user's yes), which the policy filter checks; which
tools write comes from the spec and ``writes:`` overrides it per tool.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from schemas import StepSpec, ToolCall, canonical_json, content_hash
from simulators.environment import (
    DOMAINS,
    DomainParams,
    Environment,
    ToolError,
    ToolSpec,
    compile_validator,
    validate_arguments,
)
from simulators.foreign import CallTool, ForeignPolicy, ForeignTools, infer_entities, infer_produces, policy_text
from simulators.tool_simulator import TOOL_SIMULATORS, SimulatedCall, ToolSimulator
from simulators.tool_specs import SchemaTool, SpecLimits, load_tool_spec


class SchemaOnlyParams(DomainParams):
    spec: str = Field(description="path to an OpenAI tools JSON file or an OpenAPI 3 document (JSON or YAML), "
                                  "relative to the working directory")
    simulator: StepSpec = Field(default_factory=lambda: StepSpec(name="offline"),
                                description="the tool simulator that answers calls, by name, with its params")
    policy: ForeignPolicy = Field(default_factory=ForeignPolicy, description="the rules the policy filter checks")
    writes: dict[str, bool] = Field(default_factory=dict, description="tool name → whether it writes, over what "
                                    "the spec says (OpenAPI: the method) or its name suggests (tool lists)")
    max_spec_bytes: int = Field(default=SpecLimits.max_bytes, ge=1, description="largest spec file read")
    max_tools: int = Field(default=SpecLimits.max_tools, ge=1, description="most tools a spec may define")
    max_line_chars: int = Field(default=SpecLimits.max_line_chars, ge=1, description="longest line of a spec file")


@DOMAINS.register("schema_only")
class SchemaOnlyEnv(ForeignTools):
    """Base of the per-spec classes ``configure`` builds; not usable without a spec."""

    policy = policy_text(ForeignPolicy(), [])
    Params = SchemaOnlyParams
    simulator: ToolSimulator
    schema_tools: dict[str, SchemaTool] = {}

    @classmethod
    def configure(cls, params: SchemaOnlyParams) -> type[Environment]:  # type: ignore[override]
        return _spec_domain(cls, params.model_dump_json(), _stamp(params.spec))

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        return {"calls": {}}

    def __init__(self, seed: int = 0) -> None:
        if not self.schema_tools:
            raise ValueError("schema_only needs domain.params.spec (a tool spec file)")
        super().__init__(seed)
        self._results: dict[str, str] = {}
        self._history: list[tuple[str, dict[str, Any], str]] = []
        self._writes = 0

    def _request(self, name: str, arguments: dict[str, Any]) -> SimulatedCall:
        schema_tool = self.schema_tools[name]
        key = f"{name}:{canonical_json(arguments)}"
        return SimulatedCall(tool=schema_tool.tool, arguments=arguments, response_schema=schema_tool.response_schema,
                             writes=schema_tool.writes, seed=f"{self.seed}:{key}", history=tuple(self._history))

    def simulation_request(self, call: ToolCall) -> SimulatedCall | None:
        name = call.function.name
        if name not in self.schema_tools:
            return None
        try:
            arguments = call.parsed_arguments()
        except ValueError:
            return None  # execute() reports it
        if validate_arguments(self._specs[name].validator, arguments) or \
                f"{name}:{canonical_json(arguments)}" in self._results:
            return None
        return self._request(name, arguments)

    def provide(self, request: SimulatedCall, result: str) -> None:
        self._results[f"{request.tool.name}:{canonical_json(request.arguments)}"] = result

    def answer(self, name: str, arguments: dict[str, Any]) -> Any:
        """One validated call: a cached (or provided) result, or the simulator's, recorded in the state when it writes."""
        key = f"{name}:{canonical_json(arguments)}"
        if key not in self._results:
            result = self.simulator.simulate(self._request(name, arguments))  # ToolError passes through as an error
            self._results[key] = result if isinstance(result, str) else canonical_json(result)
        result = self._results[key]
        self._history.append((name, arguments, result))
        if self.schema_tools[name].writes:
            self.db.put("calls", f"{self._writes:06d}", {"tool": name, "arguments": arguments})
            self._writes += 1
        return result


def _stamp(path: str) -> float:
    """Modification time, so an edited spec is read again within one process."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


def _method(name: str):
    def call(self: SchemaOnlyEnv, **arguments: Any) -> Any:
        return self.answer(name, arguments)

    call.__name__ = name
    return call


@lru_cache(maxsize=16)
def _spec_domain(cls: type[SchemaOnlyEnv], params_json: str, _mtime: float) -> type[SchemaOnlyEnv]:
    """A subclass of ``cls`` whose tools are the spec's: tools, validators and intents built once per spec."""
    params = SchemaOnlyParams.model_validate_json(params_json)
    tools = load_tool_spec(params.spec, SpecLimits(max_bytes=params.max_spec_bytes, max_tools=params.max_tools,
                                                   max_line_chars=params.max_line_chars))
    try:
        simulator_cls = TOOL_SIMULATORS.get(params.simulator.name)
    except KeyError as err:
        raise ValueError(f"simulator.name: {err}") from None
    try:
        simulator = simulator_cls(simulator_cls.Params.model_validate(params.simulator.params))
    except ValidationError as err:
        e = err.errors()[0]
        loc = "".join(f".{x}" for x in e["loc"])
        raise ValueError(f"simulator.params{loc}: {e['msg']}") from None
    unknown = sorted(set(params.writes) - {t.name for t in tools})
    if unknown:
        raise ValueError(f"writes: no tool {unknown[0]!r} in {params.spec}")
    tools = [replace(t, writes=params.writes.get(t.name, t.writes)) for t in tools]
    specs = {}
    for t in tools:
        entities = infer_entities(t.tool.function.parameters)
        specs[t.name] = ToolSpec(name=t.name, method=_method(t.name), schema=t.tool, writes=t.writes,
                                 entities=entities, validator=compile_validator(t.tool.function.parameters),
                                 produces=infer_produces(set(entities.values()), t.response_schema, t.writes))
    sub = type(f"SchemaOnly_{content_hash(params_json, 8)}", (cls,), {
        "__module__": cls.__module__, "params": params, "simulator": simulator,
        "schema_tools": {t.name: t for t in tools}, "rules": params.policy,
        "policy": policy_text(params.policy, [t.name for t in tools if t.writes]),
        "user_knows": frozenset(e for s in specs.values() for e in s.consumes),
        "intents": {f"call_{t.name}": CallTool(t.name, t.tool.function.description, t.writes) for t in tools},
    })
    sub._specs = specs
    return sub


__all__ = ["CallTool", "SchemaOnlyEnv", "SchemaOnlyParams", "ToolError"]
