"""Tool-list dialects as they are shipped: the Gorilla/BFCL function-doc types, read into JSON schema.

The Berkeley Function-Calling Leaderboard (and the Gorilla work before it)
ships its tool sets as function docs whose parameter schemas use Python and
Java type names: ``"dict"`` for an object, ``"float"`` for a number,
``"tuple"`` for an array, ``"any"`` for anything. xLAM-2, ToolACE and TOUCAN
report on these sets, so a researcher's tools often come in this dialect.
They are JSON schema in every other respect, so converting means renaming
types, nothing else: descriptions, ``required``, ``default``, ``enum`` and the
``response`` schema (what a call returns, which the offline tool simulator
fills in) are kept as written.

The type table is BFCL's own ``GORILLA_TO_OPENAPI`` mapping, except ``any``:
BFCL sends it to models as a string; here it stays what it says, a schema
without a ``type`` (any JSON value validates).
"""

from __future__ import annotations

from typing import Any

JSON_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
GORILLA_TYPES: dict[str, str | None] = {
    "dict": "object", "float": "number", "tuple": "array", "list": "array", "bool": "boolean", "any": None,
    "byte": "integer", "short": "integer", "long": "integer", "double": "number", "char": "string",
    "ArrayList": "array", "Array": "array", "HashMap": "object", "Hashtable": "object", "Queue": "array",
    "Stack": "array", "Any": None, "String": "string", "Bigint": "integer",
}
# Keywords whose value is a schema, a list of schemas, or a map of names to schemas.
_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


class DialectError(ValueError):
    """A type name neither JSON schema nor the Gorilla dialect knows; ``pointer`` says where."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(message)
        self.pointer = pointer


def uses_gorilla_types(schema: Any) -> bool:
    """Whether any ``type`` in ``schema`` is a Gorilla name (``dict``, ``float``...), not a JSON-schema one."""
    return any(t not in JSON_TYPES for t in _types(schema))


def _types(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    kind = schema.get("type")
    for t in kind if isinstance(kind, list) else [kind]:
        if isinstance(t, str):
            found.append(t)
    for key in _ONE + _MANY:
        subs = schema.get(key)  # "items" may be a list too (tuple validation, as BFCL writes it)
        for sub in subs if isinstance(subs, list) else [subs]:
            found += _types(sub)
    for key in _MAP:
        if isinstance(schema.get(key), dict):
            for sub in schema[key].values():
                found += _types(sub)
    return found


def to_json_schema(schema: Any, where: str = "") -> Any:
    """``schema`` with every Gorilla type name turned into its JSON-schema type (a copy; the input is untouched)."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        at = f"{where}/{key}"
        if key == "type":
            converted = _convert_type(value, at)
            if converted is not None:
                out["type"] = converted
        elif key in _ONE + _MANY and isinstance(value, list):
            out[key] = [to_json_schema(v, f"{at}/{i}") for i, v in enumerate(value)]
        elif key in _ONE:
            out[key] = to_json_schema(value, at)
        elif key in _MAP and isinstance(value, dict):
            out[key] = {k: to_json_schema(v, f"{at}/{_escape(k)}") for k, v in value.items()}
        else:
            out[key] = value
    return out


def _convert_type(value: Any, at: str) -> Any:
    kinds = value if isinstance(value, list) else [value]
    converted: list[str] = []
    for kind in kinds:
        if not isinstance(kind, str):
            raise DialectError(at, f"a type must be a string, got {type(kind).__name__}")
        if kind in JSON_TYPES:
            mapped: str | None = kind
        elif kind in GORILLA_TYPES:
            mapped = GORILLA_TYPES[kind]
        else:
            raise DialectError(at, f"unknown type {kind!r}; JSON schema types are {', '.join(sorted(JSON_TYPES))} "
                                   f"and the Gorilla/BFCL dialect adds {', '.join(sorted(GORILLA_TYPES))}")
        if mapped is None:
            return None  # "any": no constraint at all, whatever else the union said
        if mapped not in converted:
            converted.append(mapped)
    return converted if isinstance(value, list) else converted[0]


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")
