"""Values that conform to a JSON schema, drawn from a seeded RNG.

Used twice: the offline tool simulator fills a tool's response schema, and
the ``tool_calls`` generator fills a tool's parameters. Property names steer
the look of strings (``email`` gets an address, ``*_id`` an id) so the data
reads like data rather than noise; constraints always win over looks.

Covered: ``type`` (and unions), ``enum``, ``const``, ``properties`` /
``required``, ``items`` / ``minItems`` / ``maxItems`` / ``uniqueItems``,
string ``minLength`` / ``maxLength`` / ``format`` (date-time, date, time,
email, uuid, uri, hostname, ipv4), number ranges and ``multipleOf``,
``allOf`` / ``anyOf`` / ``oneOf`` (a branch is picked). A ``pattern`` is met
from the schema's ``examples`` / ``default`` when one matches, else from a
few simple candidates; a value that meets no candidate is left as the
schema's first example, so check with a validator where patterns matter.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST = ("Ava", "Liam", "Maya", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Iris", "Theo")
LAST = ("Kim", "Garcia", "Okafor", "Novak", "Silva", "Chen", "Haddad", "Larsen", "Moreau", "Patel")
WORDS = ("alpha", "amber", "cedar", "delta", "ember", "harbor", "juniper", "maple", "orbit", "summit", "willow")
CITIES = ("Austin", "Denver", "Portland", "Boston", "Chicago", "Seattle", "Atlanta", "Phoenix")
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


Pick = Callable[[str, dict[str, Any]], Any]


def sample(schema: Any, rng: random.Random, name: str = "", optional_rate: float = 1.0, depth: int = 0,
           pick: Pick | None = None) -> Any:
    """One value for ``schema``; ``optional_rate`` is the chance an optional property is included.

    ``pick(name, schema)`` is asked first for every string value (by its property name, a list's name made
    singular): a value it returns is used as is, None falls back to sampling. A generator grounds arguments
    in real data this way (paths that exist in a sandbox).
    """
    if not isinstance(schema, dict) or not schema:
        return _picked(pick, name, {}) or _string({}, rng, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema and schema["enum"]:
        return rng.choice(schema["enum"])
    if "allOf" in schema:
        return sample(_merge(schema), rng, name, optional_rate, depth, pick)
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            branch = rng.choice(schema[key])
            rest = {k: v for k, v in schema.items() if k != key}
            return sample(_merge({"allOf": [rest, branch]}) if rest else branch, rng, name, optional_rate, depth,
                          pick)
    kind = schema.get("type")
    if isinstance(kind, list):
        concrete = [t for t in kind if t != "null"]
        kind = rng.choice(concrete) if concrete else "null"
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        return _object(schema, rng, optional_rate, depth, pick)
    if kind == "array":
        return _array(schema, rng, name, optional_rate, depth, pick)
    if kind == "integer":
        return _integer(schema, rng, name)
    if kind == "number":
        return _number(schema, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _picked(pick, name, schema) or _string(schema, rng, name)


def _picked(pick: Pick | None, name: str, schema: dict[str, Any]) -> Any:
    return pick(name, schema) if pick is not None else None


def _merge(schema: dict[str, Any]) -> dict[str, Any]:
    """``allOf`` flattened into one schema: properties and required lists unioned, other keys last-wins."""
    out: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf", []):
        part = _merge(part) if isinstance(part, dict) and "allOf" in part else part
        if not isinstance(part, dict):
            continue
        for k, v in part.items():
            if k == "properties":
                out["properties"] = {**out.get("properties", {}), **v}
            elif k == "required":
                out["required"] = sorted(set(out.get("required", [])) | set(v))
            else:
                out[k] = v
    return out


def _object(schema: dict[str, Any], rng: random.Random, optional_rate: float, depth: int,
            pick: Pick | None = None) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out: dict[str, Any] = {}
    for pname, sub in properties.items():
        if pname in required or (depth < 4 and rng.random() < optional_rate):
            out[pname] = sample(sub, rng, pname, optional_rate, depth + 1, pick)
    if not properties and schema.get("additionalProperties") not in (False, None) and depth < 3:
        extra = schema["additionalProperties"]
        for _ in range(rng.randint(1, 2)):
            out[rng.choice(WORDS)] = sample(extra if isinstance(extra, dict) else {}, rng, "", optional_rate, depth + 1,
                                            pick)
    for pname in sorted(required - set(out)):  # required but not described
        out[pname] = _string({}, rng, pname)
    return out


def _array(schema: dict[str, Any], rng: random.Random, name: str, optional_rate: float, depth: int,
           pick: Pick | None = None) -> list[Any]:
    singular = name[:-1] if name.endswith("s") else name
    if isinstance(schema.get("items"), list):  # tuple validation: one schema per position
        return [sample(item, rng, singular, optional_rate, depth + 1, pick) for item in schema["items"]]
    lo = int(schema.get("minItems", 1 if depth < 3 else 0))
    hi = int(schema.get("maxItems", max(lo, 3 if depth < 3 else lo)))
    n = rng.randint(lo, max(lo, hi))
    items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
    out: list[Any] = []
    for _ in range(n * 4):
        if len(out) == n:
            break
        value = sample(items, rng, singular, optional_rate, depth + 1, pick)
        if not schema.get("uniqueItems") or value not in out:
            out.append(value)
    return out


def _bounds(schema: dict[str, Any], default_lo: float, default_hi: float) -> tuple[float, float, bool, bool]:
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    open_lo = open_hi = False
    if isinstance(xlo, bool):  # draft 4 / OpenAPI 3.0 spelling
        open_lo = xlo
    elif xlo is not None:
        lo, open_lo = xlo, True
    if isinstance(xhi, bool):
        open_hi = xhi
    elif xhi is not None:
        hi, open_hi = xhi, True
    if lo is None:
        lo = default_lo if hi is None or hi > default_lo else hi - (default_hi - default_lo)
    if hi is None:
        hi = max(lo, default_hi) if lo < default_hi else lo + (default_hi - default_lo)
    return lo, hi, open_lo, open_hi


def _integer(schema: dict[str, Any], rng: random.Random, name: str) -> int:
    default_hi = 5 if re.search(r"count|quantity|qty|limit|number_of|num_", name) else 1000
    lo, hi, open_lo, open_hi = _bounds(schema, 1, default_hi)
    lo_i = math.floor(lo) + 1 if open_lo else math.ceil(lo)
    hi_i = math.ceil(hi) - 1 if open_hi else math.floor(hi)
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        first = -(-lo_i // step) * step
        if first > hi_i:
            return first
        return first + step * rng.randint(0, (hi_i - first) // step)
    return rng.randint(lo_i, max(lo_i, hi_i))


def _number(schema: dict[str, Any], rng: random.Random) -> float:
    lo, hi, open_lo, open_hi = _bounds(schema, 0.0, 500.0)
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        first = -(-lo // step) * step
        if open_lo and first == lo:
            first += step
        k = max(0, int((hi - first) // step))
        return round(first + step * rng.randint(0, k), 10)
    value = round(rng.uniform(lo, hi), 2)
    if (open_lo and value <= lo) or (open_hi and value >= hi) or not lo <= value <= hi:
        value = (lo + hi) / 2
    return value


def _formatted(fmt: str, rng: random.Random) -> str | None:
    moment = EPOCH + timedelta(minutes=rng.randrange(0, 2 * 365 * 24 * 60))
    return {
        "date-time": moment.strftime("%Y-%m-%dT%H:%M:00Z"),
        "date": moment.strftime("%Y-%m-%d"),
        "time": moment.strftime("%H:%M:00"),
        "email": f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{rng.randrange(10, 99)}@example.com",
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "uri": f"https://example.com/{rng.choice(WORDS)}/{rng.randrange(1000, 9999)}",
        "url": f"https://example.com/{rng.choice(WORDS)}/{rng.randrange(1000, 9999)}",
        "hostname": f"{rng.choice(WORDS)}.example.com",
        "ipv4": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
    }.get(fmt)


def _by_name(name: str, rng: random.Random) -> str:
    n = name.lower()
    if n in ("id", "uuid") or n.endswith(("_id", "id")) and len(n) > 2:
        prefix = re.sub(r"_?id$", "", n) or "id"
        return f"{prefix[:12]}_{rng.getrandbits(32):08x}"
    if "email" in n:
        return _formatted("email", rng) or ""
    if n in ("first_name", "firstname", "given_name"):
        return rng.choice(FIRST)
    if n in ("last_name", "lastname", "surname", "family_name"):
        return rng.choice(LAST)
    if "name" in n:
        return f"{rng.choice(FIRST)} {rng.choice(LAST)}" if n in ("name", "full_name", "username") else \
            f"{rng.choice(WORDS).title()} {rng.choice(WORDS)}"
    if "city" in n:
        return rng.choice(CITIES)
    if "date" in n or n.endswith("_at"):
        return _formatted("date-time" if n.endswith("_at") else "date", rng) or ""
    if "phone" in n:
        return f"+1-555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
    if "url" in n or "link" in n:
        return _formatted("uri", rng) or ""
    if "status" in n:
        return rng.choice(["active", "pending", "completed"])
    return f"{rng.choice(WORDS)}-{rng.randrange(100, 999)}"


def _string(schema: dict[str, Any], rng: random.Random, name: str) -> str:
    fmt = schema.get("format")
    value = (_formatted(fmt, rng) if isinstance(fmt, str) else None) or _by_name(name, rng)
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        value = _meet_pattern(schema, pattern, value, rng)
    lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(value) < lo:
        value = value + "x" * (lo - len(value))
    if isinstance(hi, int) and len(value) > hi:
        value = value[:hi]
    return value


def _meet_pattern(schema: dict[str, Any], pattern: str, value: str, rng: random.Random) -> str:
    try:
        regex = re.compile(pattern)
    except re.error:
        return value
    examples = [*schema.get("examples", []), schema.get("default")]
    digits = "".join(str(rng.randrange(10)) for _ in range(int(schema.get("minLength", 6)) or 6))
    candidates = [value, *[e for e in examples if isinstance(e, str)], digits, value.upper(), value.replace("-", "")]
    for candidate in candidates:
        if regex.search(candidate):
            return candidate
    return next((e for e in examples if isinstance(e, str)), value)
