"""What proposes tasks; importing this registers the built-in generators.

Public API for a generator step: subclass ``Generator``, give it a
``GeneratorParams`` subclass as ``Params``, return a ``Task`` from
``generate(rng)`` (or raise ``SynthesisError``), and register it with
``GENERATORS.register(name)`` or a ``trajforge.generators`` entry point.
"""

from generators import blueprints, kg_question, model_blueprints, tool_calls  # noqa: F401
from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisContext, SynthesisError

__all__ = ["GENERATORS", "Generator", "GeneratorParams", "SynthesisContext", "SynthesisError"]
