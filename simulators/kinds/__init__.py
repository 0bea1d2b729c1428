"""Task kinds; importing this registers the built-in ones (``blueprint``, ``kg_question``).

Public API for a kind (what a plug-in imports): subclass ``TaskKind``, give it
a ``KindFields`` model, its scripted ``User`` and ``Assistant``, its ``reward``
and ``verifiers``, the ``ExportField``s it adds, and register it with
``KINDS.register(name)`` or a ``trajforge.kinds`` entry point.
"""

from simulators.kinds.base import KINDS, ExportField, KindFields, TaskKind, TaskKindError, kind_of
from simulators.kinds.blueprint import Blueprint
from simulators.kinds.kg_question import KGQuestion

BUILTIN_KINDS: tuple[type[TaskKind], ...] = (Blueprint, KGQuestion)
"""The kinds trajforge ships, in the order their export columns come."""

__all__ = ["BUILTIN_KINDS", "KINDS", "ExportField", "KindFields", "TaskKind", "TaskKindError", "kind_of"]
