"""What acts: environments, scripted (offline) agents and the conversation loop.

Public API for a domain step (what a plug-in imports from here): subclass
``Environment``, set ``name`` and ``policy``, build the seeded data in
``build_data``, mark tool methods with ``@tool`` and annotate their parameters
with ``Param``, raise ``ToolError`` for refusals, optionally give a
``DomainParams`` subclass as ``Params`` and ``Intent``s for task synthesis,
then register it with ``DOMAINS.register(name)`` or a ``trajforge.domains``
entry point. Schema-only tools are answered by a ``ToolSimulator``
(``TOOL_SIMULATORS``, entry-point group ``trajforge.tool_simulators``).

Public API for a task kind: subclass ``TaskKind`` (its ``KindFields``, scripted
agents that end a dialogue with ``STOP``, reward, verifiers and
``ExportField``s) and register it with ``KINDS.register(name)`` or a
``trajforge.kinds`` entry point; ``kind_of(task)`` finds a task's kind.
"""

from simulators.agents import STOP
from simulators.environment import DOMAINS, DomainParams, Environment, Param, ToolError, is_error, tool
from simulators.intents import Grounding, Identity, Intent
from simulators.kinds import KINDS, ExportField, KindFields, TaskKind, TaskKindError, kind_of
from simulators.registry import Registry, UnknownStepError
from simulators.tool_simulator import TOOL_SIMULATORS, SimulatedCall, ToolSimulator, ToolSimulatorParams

__all__ = [
    "DOMAINS",
    "KINDS",
    "STOP",
    "TOOL_SIMULATORS",
    "DomainParams",
    "Environment",
    "ExportField",
    "Grounding",
    "Identity",
    "Intent",
    "KindFields",
    "Param",
    "Registry",
    "SimulatedCall",
    "TaskKind",
    "TaskKindError",
    "ToolError",
    "ToolSimulator",
    "ToolSimulatorParams",
    "UnknownStepError",
    "is_error",
    "kind_of",
    "tool",
]
