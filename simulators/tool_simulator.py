"""Tool simulators: what answers a tool that has a schema but no implementation.

A schema-only domain (``simulators.domains.schema_only``) validates each call
against the tool's schema, then asks its tool simulator for the result. The
interface is one synchronous method so that any answering strategy fits:

    class MySimulator(ToolSimulator):
        def simulate(self, call: SimulatedCall) -> Any: ...

``simulate`` returns a JSON-able value (stored as canonical JSON) or a string
(stored as given), or raises ``ToolError`` for a refusal the assistant should
see as an ``Error: ...`` result. The domain caches results per (tool,
canonical arguments) for the life of one environment, so within a dialogue
the same call always gets the same answer whatever the simulator does; the
simulator need not remember anything itself, though ``call.history`` shows it
the dialogue's earlier calls should it want to stay consistent with them.

Simulators are steps like any other: registered by name in
``TOOL_SIMULATORS`` (or the ``trajforge.tool_simulators`` entry-point group),
with a pydantic ``Params`` model, chosen by the schema-only domain's
``simulator: {name, params}``. ``offline`` (below) needs no model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Tool
from simulators.json_sampler import sample
from simulators.registry import Registry


class ToolSimulatorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class SimulatedCall:
    """Everything a simulator may use to answer one validated call.

    ``seed`` is stable for (domain seed, tool, canonical arguments): a
    deterministic simulator seeds from it and is reproducible across runs.
    ``history`` holds this environment's earlier (tool, arguments, result).
    """

    tool: Tool
    arguments: dict[str, Any]
    response_schema: dict[str, Any] | None
    writes: bool
    seed: str
    history: tuple[tuple[str, dict[str, Any], str], ...] = ()


class ToolSimulator:
    """Answers calls of schema-only tools; one instance serves every environment of a run."""

    name: ClassVar[str]
    Params: ClassVar[type[ToolSimulatorParams]] = ToolSimulatorParams

    def __init__(self, params: ToolSimulatorParams | None = None) -> None:
        self.params = params or self.Params()

    def simulate(self, call: SimulatedCall) -> Any:
        raise NotImplementedError


TOOL_SIMULATORS: Registry[type[ToolSimulator]] = Registry(
    "tool simulator", "trajforge.tool_simulators", base=ToolSimulator, builtins="simulators.tool_simulator")


class OfflineParams(ToolSimulatorParams):
    pass


@TOOL_SIMULATORS.register("offline")
class OfflineToolSimulator(ToolSimulator):
    """Deterministic, schema-conformant results without a model.

    With a response schema the result is drawn from it; without one it is a
    generic acknowledgement that names the tool and carries an id, so the
    assistant has something concrete to report. Everything is seeded by
    ``call.seed``: the same call gives the same result in every run.
    """

    Params = OfflineParams

    def simulate(self, call: SimulatedCall) -> Any:
        rng = random.Random(call.seed)
        if call.response_schema is not None:
            return sample(call.response_schema, rng, name="result")
        return {"status": "ok", "tool": call.tool.name, "id": f"{call.tool.name[:12]}_{rng.getrandbits(32):08x}"}
