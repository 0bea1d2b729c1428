"""Who the simulated users are and how they sound (defined in ``simulators.personas``, where the scripted user
reads a persona's style)."""

from simulators.personas import INSTRUCTION_TEMPLATES, PERSONAS, Persona, persona_of

__all__ = ["INSTRUCTION_TEMPLATES", "PERSONAS", "Persona", "persona_of"]
