"""Domains whose tools come from outside (a tool spec, MCP servers): what trajforge infers about them.

A coded domain declares what its tools mean: the entity type each parameter
carries (``Param.entity``), what each result produces, its users, its intents
and a policy a program can check. Foreign tools declare none of it, so this
module infers what synthesis and verification need, from the tools alone:

- **entity types** from parameter names (``file_path``, ``paths`` and
  ``source`` all carry a ``path``; ``entityNames`` a ``name`` when the data
  knows names), and what a tool **produces** from its output schema and, for a
  read, the types it consumes (a listing reveals more of what it was asked
  about). ``generators.tool_graph`` builds the tool-dependency graph from
  exactly these, as it does for a coded domain;
- one **intent per tool** (``CallTool``), grounded in the domain's data when it
  has some (``ForeignTools.value_pools``: the paths and names of an MCP
  server's seeded sandbox), and with a **lookup** found by running the tools:
  a read whose result shows a value the target call needs makes a two-call
  request in which the user does not know that value;
- **no authentication**: there are no accounts, so no identity step and no
  "you're verified";
- a **policy that is checked**: by default "confirm before any write tool",
  with writes as the spec says (OpenAPI methods, MCP ``readOnlyHint``) or,
  failing that, as a tool's name suggests, and overridable per tool.
"""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas import Action, Message, canonical_json
from simulators.environment import Environment, is_error
from simulators.intents import Grounding, Identity, Intent
from simulators.json_sampler import WORDS, sample

# Parameter names that carry a path whatever else they say.
PATH_WORDS = frozenset({"path", "file", "filename", "filepath", "dir", "directory", "folder", "source",
                        "destination", "src", "dst", "dest", "target_path"})
# Parameters that hold what the user wants written or looked for, never an entity to be looked up.
FREE_TEXT = frozenset({"content", "contents", "text", "body", "message", "query", "pattern", "description",
                       "note", "notes", "comment", "summary", "title", "prompt", "keywords"})


def words(name: str) -> list[str]:
    """``entityNames`` → ``[entity, names]``; ``file_path`` → ``[file, path]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def entity_of(name: str, known: frozenset[str] | set[str] = frozenset()) -> str:
    """The entity type a parameter or result field called ``name`` carries.

    Its own words, singular and joined (``entity_names`` → ``entity_name``),
    unless that type is unknown to the data while its last word is
    (``name``); any path word makes it a ``path``.
    """
    parts = [singular(w) for w in words(name)] or [name.lower()]
    full = "_".join(parts)
    if full in known:
        return full
    if parts[-1] in PATH_WORDS or full in PATH_WORDS:
        return "path"
    if parts[-1] in known:
        return parts[-1]
    return full


def _carries_values(schema: Any) -> bool:
    """A string, or a list of strings: a value that can be looked up, stated, or found in a result."""
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    return kind == "array" and _carries_values(schema.get("items"))


def infer_entities(parameters: dict[str, Any], known: frozenset[str] = frozenset()) -> dict[str, str]:
    """Parameter → entity type, for the top-level parameters that carry values (free text left out)."""
    out = {}
    for pname, schema in (parameters.get("properties") or {}).items():
        if _carries_values(schema) and singular(words(pname)[-1] if words(pname) else pname) not in FREE_TEXT:
            out[pname] = entity_of(pname, known)
    return out


def field_entities(schema: Any, known: frozenset[str] = frozenset(), depth: int = 0) -> set[str]:
    """Entity types of every value-carrying field of an output schema (nested objects and lists included)."""
    if not isinstance(schema, dict) or depth > 6:
        return set()
    found: set[str] = set()
    for pname, sub in (schema.get("properties") or {}).items():
        if _carries_values(sub):
            found.add(entity_of(pname, known))
        found |= field_entities(sub, known, depth + 1)
    if isinstance(schema.get("items"), dict):
        found |= field_entities(schema["items"], known, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key) or []:
            found |= field_entities(sub, known, depth + 1)
    return found


def infer_produces(consumes: set[str], output_schema: Any, writes: bool, known: frozenset[str] = frozenset()
                   ) -> frozenset[str]:
    """What a result carries: its output schema's fields, and for a read also what it was asked about."""
    return frozenset(field_entities(output_schema, known) | (set() if writes else consumes))


# -- the policy ---------------------------------------------------------------------------------------------------

# A confirmation is a reply that *starts* with consent, to a message that asked for it (as in the store's policy).
CONSENT = re.compile(r"^\W*(yes|yeah|yep|sure|go ahead|please do|confirm(ed)?|correct|ok(ay)?)\b", re.I)
ASKED = re.compile(r"\b(proceed|go ahead|shall i|should i|would you like me to|do you want me to)\b", re.I)


class ForeignPolicy(BaseModel):
    """The checkable rules of a domain made of foreign tools (``domain.params.policy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    confirm: Literal["writes", "none"] = Field(
        default="writes", description="'writes': every call to a write tool needs the user's explicit yes to a "
        "question asked since the previous write (checked by the policy filter); 'none': no rule")
    text: str | None = Field(default=None, description="the policy the assistant is given, replacing the default")


def policy_text(rules: ForeignPolicy, writes: list[str]) -> str:
    if rules.text is not None:
        return rules.text
    lines = ["You are a helpful assistant with access to the tools listed. Use them to do what the user asks."]
    if rules.confirm == "writes":
        lines.append("Before calling a tool that changes something, state what you will do and get the user's "
                     "explicit yes. One yes covers one change.")
        if writes:
            lines.append("Tools that change something: " + ", ".join(sorted(writes)) + ".")
    return "\n".join(lines)


def confirmation_violations(messages: list[Message], writes: set[str]) -> list[str]:
    """Calls to write tools without an explicit yes, one line each."""
    violations = []
    asked = confirmed = False
    for msg in messages:
        if msg.role == "user":
            confirmed = asked and bool(CONSENT.search(msg.content or ""))
            asked = False
        elif msg.role == "assistant":
            if msg.content:
                asked = bool(ASKED.search(msg.content))
            for call in msg.tool_calls or []:
                if call.function.name not in writes:
                    continue
                if not confirmed:
                    violations.append(f"{call.function.name} called without an explicit confirmation from the user")
                confirmed = False
    return violations


# -- intents ------------------------------------------------------------------------------------------------------


class CallTool(Intent):
    """The generic intent of a foreign tool: the user wants this one call made."""

    def __init__(self, name: str, description: str, writes: bool = True) -> None:
        self.name = f"call_{name}"
        self.target_tool = name
        self.description = description
        self.writes = writes

    def ground(self, env: Environment, rng: random.Random, customer: dict[str, Any]) -> Grounding | None:
        """Arguments drawn from the tool's schema and the domain's data; maybe a lookup that reveals one of them."""
        assert isinstance(env, ForeignTools)
        arguments = env.sample_arguments(self.target_tool, rng)
        target = Action(name=self.target_tool, arguments=arguments)
        lookup, hidden = env.lookup_for(target, rng)
        what = self.description.split(". ")[0].strip().rstrip(".") or self.target_tool
        shown = {k: v for k, v in sorted(arguments.items()) if k != hidden}
        details = "Please use " + (", ".join(f"{k} {_text(v)}" for k, v in shown.items()) or "no particular details")
        unknown: list[str] = []
        if lookup is not None and hidden is not None:
            args = ", ".join(f"{k} {_text(v)}" for k, v in sorted(lookup.arguments.items())) or "no arguments"
            details += f". I don't know the exact {hidden}; {lookup.name} with {args} should show it."
            unknown = [f"the exact {hidden} for {self.target_tool}"]
        return Grounding(target=target, bindings={}, goal=f"You want {self.target_tool} done with "
                         f"{canonical_json(arguments)}.", opening=f"I need help with this: {what[:1].lower()}{what[1:]}.",
                         details=details + ("" if details.endswith(".") else "."),
                         known_info={k: _text(v) for k, v in shown.items()}, unknown_info=unknown,
                         lookups=[lookup] if lookup is not None else [])

    def outputs(self, target: Action, result: Any) -> list[str]:
        """The first plain value of the result (an id, a status, a short line): what the user must be told."""
        value = first_scalar(result)
        return [value] if value else []

    @property
    def tells_user(self) -> bool:
        return True

    def ask(self, rng: random.Random) -> str:
        return rng.choice(["Sure. What are the details I should use?", "Of course. Which details should I use?"])

    def confirm(self, target: Action, rng: random.Random) -> str:
        args = ", ".join(f"{k} = {canonical_json(v)}" for k, v in sorted(target.arguments.items())) or "no arguments"
        return f"To confirm: I will run {target.name} with {args}. Shall I proceed?"

    def report(self, target: Action, outputs: list[str], rng: random.Random) -> str:
        if not self.writes:
            return f"Here is what {target.name} returned" + (f": {', '.join(outputs)}." if outputs else ".")
        return f"Done: {target.name} went through" + (f" and returned {', '.join(outputs)}." if outputs else ".")


def first_scalar(value: Any, depth: int = 0) -> str | None:
    """The first short plain value, depth first in key order; for long text, its first short line."""
    if isinstance(value, bool) or value is None or depth > 4:
        return None
    if isinstance(value, str):
        if 0 < len(value.strip()) <= 80:
            return value.strip()
        return next((line.strip() for line in value.splitlines() if 3 <= len(line.strip()) <= 80), None)
    if isinstance(value, int | float):
        return str(value)
    items = [value[k] for k in sorted(value)] if isinstance(value, dict) else value if isinstance(value, list) else []
    for item in items:
        found = first_scalar(item, depth + 1)
        if found:
            return found
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


# -- the domain base ----------------------------------------------------------------------------------------------


class ForeignTools(Environment):
    """Base of the domains whose tools come from outside; ``configure`` of a subclass fills the class fields.

    There is one anonymous user and nothing to authenticate. Subclasses that
    can run their tools on real data (MCP) give ``value_pools`` and set
    ``explores``, so intents are grounded in that data and lookups found.
    """

    authenticates = False
    explores: ClassVar[bool] = False
    rules: ClassVar[ForeignPolicy] = ForeignPolicy()
    fresh_rate: ClassVar[float] = 0.4  # a write's value: a new one shaped like a known one, this often
    lookup_rate: ClassVar[float] = 0.5  # a request whose target value the user does not know, this often
    grounded_search_rate: ClassVar[float] = 0.8  # a read's search text taken from the data (else made up), this often

    def users(self) -> list[str]:
        return ["user"]

    def user_record(self, user_id: str) -> dict[str, Any]:
        return {}

    def identify(self, rng: random.Random, user_id: str) -> Identity:
        return Identity(user_id=user_id, first_name="", action=None, says="", known_info={}, bindings={})

    def check_policy(self, messages: list[Message]) -> list[str]:
        if self.rules.confirm == "none":
            return []
        return confirmation_violations(messages, {n for n, s in self.specs().items() if s.writes})

    def value_pools(self, tool: str | None = None) -> dict[str, list[str]]:
        """Entity type → values that exist in the initial data ``tool`` works on; none for a domain of schemas."""
        return {}

    def sample_arguments(self, tool: str, rng: random.Random, prefer: str | None = None) -> dict[str, Any]:
        """Arguments for ``tool`` from its schema, strings taken from ``value_pools`` where a type matches.

        ``prefer`` (a value the arguments should lead to) makes values of which it is an extension come
        first ("docs" for "docs/plan.md"), and free text its words: a lookup's arguments for it.
        """
        spec = self.specs()[tool]
        pools = self.value_pools(tool)
        known = frozenset(pools)
        searchable = sorted({v for values in pools.values() for v in values if len(_stem(v)) >= 3})

        def pick(name: str, schema: dict[str, Any]) -> Any:
            if schema.get("enum") or schema.get("format") or schema.get("pattern"):
                return None
            entity = entity_of(name, known) if name else None
            values = pools.get(entity or "", [])
            free = entity in FREE_TEXT or singular(entity or "") in FREE_TEXT
            if prefer is not None:
                leading = [v for v in values if prefer.startswith(v) and v != prefer]
                if leading:
                    return max(leading, key=len)
                if free or not values:
                    return _search_term(name, prefer)  # a search for a part of it ("Maya" for "Maya Chen")
            if free and not spec.writes and searchable and rng.random() < self.grounded_search_rate:
                return _search_term(name, rng.choice(searchable))  # a search that can find something
            if not values:
                return None
            value = rng.choice(values)
            fresh = spec.writes and _names_a_thing(name, entity) and rng.random() < self.fresh_rate
            return _fresh_like(value, entity, rng) if fresh else value

        return sample(spec.schema.function.parameters, rng, optional_rate=0.0, pick=pick)

    def lookup_for(self, target: Action, rng: random.Random) -> tuple[Action | None, str | None]:
        """A read that shows one of ``target``'s values, run on a fresh copy: (the call, the parameter), or Nones.

        Candidates are the reads that produce the parameter's entity type (the
        tool graph's edges into the target); the first whose result contains the
        value is kept, so the lookup is known to work on the initial data.
        """
        if not self.explores or rng.random() >= self.lookup_rate:
            return None, None
        specs = self.specs()
        spec = specs[target.name]
        values = [(p, x) for p, v in sorted(target.arguments.items()) if p in spec.entities
                  for x in (v if isinstance(v, list) else [v]) if isinstance(x, str) and len(x) >= 3]
        if not values:
            return None, None
        param, value = rng.choice(values)
        entity = spec.entities[param]
        candidates = [n for n, s in sorted(specs.items()) if n != target.name and not s.writes and entity in s.produces]
        rng.shuffle(candidates)
        for name in candidates:
            arguments = self.sample_arguments(name, rng, prefer=value)
            if arguments == {param: value}:
                continue  # a read of the value itself reveals nothing
            if _stem(value) in canonical_json(arguments):
                continue  # a result that echoes its own arguments shows nothing new
            env = self.fresh()
            result = env.execute(name, arguments)
            env.close()
            if not is_error(result) and _stem(value) in result:
                return Action(name=name, arguments=arguments), param
        return None, None


def _search_term(name: str, value: str) -> str:
    """What a user searching for ``value`` types: its first word, as a glob for a ``pattern`` parameter."""
    word = re.split(r"[^A-Za-z0-9]+", _stem(value).strip())[0] or _stem(value)
    return f"**/*{word}*" if "pattern" in words(name) else word


def _names_a_thing(name: str, entity: str | None) -> bool:
    """A value that names what a write acts on (a path, a name, a title, an id), where a new one makes sense;
    not a kind or a relation type, where a new one would only be noise."""
    last = singular(words(name)[-1]) if words(name) else ""
    return entity == "path" or last in ("name", "title", "id", "key", "label")


def _stem(value: str) -> str:
    """What a listing shows of a value: a path's last name without its extension, else the value."""
    last = value.rstrip("/").rsplit("/", 1)[-1]
    return last.rsplit(".", 1)[0] if "." in last[1:] else last


def _fresh_like(value: str, entity: str | None, rng: random.Random) -> str:
    """A value that does not exist yet, shaped like one that does: a sibling file, a child folder, a new name."""
    word = rng.choice(WORDS)
    if entity == "path" or "/" in value:
        head, _, last = value.rstrip("/").rpartition("/")
        if "." in last[1:]:
            return f"{head + '/' if head else ''}{word}.{last.rsplit('.', 1)[1]}"
        return f"{value.rstrip('/')}/{word}"
    return f"{value} {word.title()}"
