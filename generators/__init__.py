"""What proposes tasks; importing this registers the built-in generators."""

from generators import blueprints, kg_question  # noqa: F401
from generators.base import GENERATORS, Generator, GeneratorParams, SynthesisError

__all__ = ["GENERATORS", "Generator", "GeneratorParams", "SynthesisError"]
