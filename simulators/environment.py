"""Stateful tool environments: the base every domain builds on.

A domain is a data model (tables of JSON-like records built from a seed), tools
(plain methods with typed, described parameters) and a written policy. The base
class turns the tools into OpenAI schemas, validates arguments against exactly
those schemas before running anything, turns every failure into an error
string, and hashes state canonically.

State is copy-on-write over a base built once per seed: ``fresh()`` costs an
empty dict rather than a deep copy of hundreds of records, which is what makes
three independent environments per trajectory (synthesis, rollout, replay)
affordable at 100k trajectories.

Dual control (as in tau2-bench's telecom domain): a domain may also give the
*user* tools (``@user_tool``), acting on state the user owns (a phone's
settings, in ``user_tables``). The assistant never sees or calls them; it has
to ask the user to use them. Both sides write into the same tables, so one
``state_hash`` covers the account and the device, and ``replay`` runs both
sides' calls in the order the dialogue made them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import marshal
import random
import re
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, ClassVar, get_args, get_origin, get_type_hints

import fastjsonschema
from pydantic import BaseModel, ConfigDict, TypeAdapter

from schemas import Action, ByIdentity, Message, Tool, ToolCall, UserAction, canonical_json
from simulators.intents import DeviceVoice, Identity, Intent
from simulators.registry import Registry
from simulators.tool_simulator import SimulatedCall

ERROR_PREFIX = "Error: "


class ToolError(Exception):
    """Raised by a tool for a request the domain refuses; becomes an error string."""


class ToolFault(Exception):
    """A tool that could not answer at all: its server crashed, hung past its timeout, or answered nonsense.

    Not an error the assistant made or could see and recover from, so it is
    never a result string: the dialogue (or the blueprint, or the check) it
    happened in is rejected with fault ``tool`` and this one-line reason.
    """


@dataclass(frozen=True)
class Param:
    """Parameter annotation: its description and the entity type it carries.

    ``entity`` feeds the tool-dependency graph: a tool that produces an entity
    type can feed a tool whose parameter consumes it.
    """

    description: str
    entity: str | None = None


ASSISTANT, USER = "assistant", "user"


@dataclass
class ToolSpec:
    name: str
    method: Callable[..., Any]
    schema: Tool
    writes: bool
    entities: dict[str, str]
    produces: frozenset[str]
    validator: Any = field(repr=False)
    actor: str = ASSISTANT
    needs: frozenset[str] = frozenset()

    @property
    def consumes(self) -> frozenset[str]:
        """Entity types this tool's inputs come from; for a user tool, also what the assistant must know first."""
        return frozenset(self.entities.values()) | self.needs


def tool(*, writes: bool = False, produces: tuple[str, ...] = ()) -> Callable:
    """Mark an environment method as a tool of the assistant."""

    def mark(fn: Callable) -> Callable:
        fn.__tool__ = {"writes": writes, "produces": frozenset(produces), "actor": ASSISTANT, "needs": frozenset()}
        return fn

    return mark


def user_tool(*, writes: bool = False, needs: tuple[str, ...] = ()) -> Callable:
    """Mark an environment method as a tool of the *user* (dual control): an action on their own device.

    ``needs`` names entity types the assistant should have looked up before
    guiding the user to it (a line's status before touching the phone); it
    places the tool on the tool-dependency graph, so blueprints reach it.
    The method reads the user it acts for from ``self.holder``.
    """

    def mark(fn: Callable) -> Callable:
        fn.__tool__ = {"writes": writes, "produces": frozenset(), "actor": USER, "needs": frozenset(needs)}
        return fn

    return mark


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter schema with its ``$defs`` inlined: a nested type (a list of objects) stays self-contained
    inside ``properties``, where a ``#/$defs/...`` reference would point nowhere."""
    defs = schema.pop("$defs", {})

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.split("/")[-1]]))
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(schema)


def _build_spec(name: str, fn: Callable) -> ToolSpec:
    hints = get_type_hints(fn, include_extras=True)
    properties: dict[str, Any] = {}
    required: list[str] = []
    entities: dict[str, str] = {}
    for pname, p in inspect.signature(fn).parameters.items():
        if pname == "self":
            continue
        hint = hints[pname]
        meta = next((m for m in get_args(hint)[1:] if isinstance(m, Param)), None) if get_origin(hint) is Annotated else None
        if meta is None:
            raise TypeError(f"tool {name}: parameter {pname!r} needs Annotated[..., Param(...)]")
        base = get_args(hint)[0]
        prop = _inline_refs(_strip_titles(TypeAdapter(base).json_schema()))
        prop["description"] = meta.description
        properties[pname] = prop
        if p.default is inspect.Parameter.empty:
            required.append(pname)
        if meta.entity:
            entities[pname] = meta.entity
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    doc = _document_arguments(fn, properties)
    schema = Tool.model_validate({"function": {"name": name, "description": doc, "parameters": parameters}})
    return ToolSpec(
        name=name,
        method=fn,
        schema=schema,
        writes=fn.__tool__["writes"],
        entities=entities,
        produces=fn.__tool__["produces"],
        validator=compile_validator(parameters),
        actor=fn.__tool__.get("actor", ASSISTANT),
        needs=fn.__tool__.get("needs", frozenset()),
    )


def _document_arguments(fn: Callable, properties: dict[str, Any]) -> str:
    """The tool's description; its docstring gains a Google ``Args:`` section written from the ``Param``s.

    Trainers that take tools as Python callables (TRL's ``tools`` and
    ``environment_factory``) build their schemas with
    ``transformers.utils.get_json_schema``, which reads each argument's
    description from the docstring; writing it from the same ``Param`` keeps
    one source for both schemas. Idempotent: the method is shared by every
    subclass (bound params) that builds its spec again.
    """
    doc = inspect.cleandoc(fn.__doc__ or "").split("\n\nArgs:\n", 1)[0]
    if properties:
        lines = [f"    {name}: {' '.join(prop['description'].split())}" for name, prop in properties.items()]
        fn.__doc__ = doc + "\n\nArgs:\n" + "\n".join(lines)
    return doc


Validator = Callable[[Any], Any]


def compile_validator(schema: dict[str, Any]) -> Validator:
    """A JSON-schema validator compiled to Python: ~50x faster than interpreting the schema per call."""
    return fastjsonschema.compile(schema)


def validate_arguments(validator: Validator, arguments: dict[str, Any]) -> str | None:
    """The first schema violation as one line (``arguments.x must be string``), or None."""
    try:
        validator(arguments)
    except fastjsonschema.JsonSchemaValueException as err:
        return re.sub(r"^data\b", "arguments", err.message)
    return None


def _copy(record: Any) -> Any:
    """Deep copy of JSON-like data; marshal does it in C, several times faster than copy.deepcopy."""
    return marshal.loads(marshal.dumps(record))


def name_dob(person: dict[str, Any]) -> tuple[str, str, str]:
    """(first name, last name) case-folded and date of birth: how airline and telecom look a person up (``Tables.find``)."""
    return person["name"]["first_name"].lower(), person["name"]["last_name"].lower(), person["date_of_birth"]


def _make_index(records: dict[str, Any], key_of: Callable[[Any], Hashable]
                ) -> tuple[dict[str, int], dict[Hashable, list[str]]]:
    index: dict[Hashable, list[str]] = {}
    for key, record in records.items():
        index.setdefault(key_of(record), []).append(key)
    return {key: i for i, key in enumerate(records)}, index


# (position of each key, keys by ``key_of`` in order) of a base table, while the table lives; bases come and go
# with their seeds (``_base_state``'s cache): a few are kept.
_index: ByIdentity[tuple[dict[str, int], dict[Hashable, list[str]]]] = ByIdentity(_make_index, 64)
# A base table's records' canonical JSON, made once per process as they are asked for: every write is compared
# with its base record.
_base_jsons: ByIdentity[dict[str, str]] = ByIdentity(lambda records: {}, 64)


def _base_json(records: dict[str, Any], key: str) -> str:
    texts = _base_jsons(records)
    if key not in texts:
        texts[key] = canonical_json(records[key])
    return texts[key]


class Tables:
    """Copy-on-write tables of JSON-like records.

    ``get`` returns a private copy, so a tool that changes a record can never mutate the shared base by
    accident; writes go to an overlay through ``put``, which keeps each changed record's canonical JSON (what
    ``state_hash`` and ``view_json`` are made of). ``view``, ``scan`` and ``find`` do not copy: they are for
    readers that only look, and a record they return must not be mutated.
    """

    def __init__(self, base: dict[str, dict[str, Any]]) -> None:
        self._base = base
        self._overlay: dict[str, dict[str, Any]] = {}
        # canonical JSON of each overlay record that differs from its base record, made when it is put: the
        # state is hashed after every call, and re-serializing both sides of every change each time cost more
        self._differs: dict[str, dict[str, str]] = {}

    def get(self, table: str, key: str) -> Any | None:
        return _copy(self.view(table, key))

    def view(self, table: str, key: str) -> Any | None:
        """``get`` without the copy, for a reader that only looks (a read tool's reply, a filter): it must not mutate it."""
        changed = self._overlay.get(table, {})
        return changed[key] if key in changed else self._base.get(table, {}).get(key)

    def view_json(self, table: str, key: str) -> str | None:
        """``canonical_json(view(...))`` from the JSON already made (at ``put``, or once per base record): what a
        read tool answers with, when its answer is the record as stored."""
        differs = self._differs.get(table, {})
        if key in differs:
            return differs[key]
        base = self._base.get(table, {})
        return _base_json(base, key) if key in base else None  # a record only the overlay has always differs

    def put(self, table: str, key: str, record: Any) -> None:
        record = self._overlay.setdefault(table, {})[key] = _copy(record)
        text, base = canonical_json(record), self._base.get(table, {})
        differs = self._differs.setdefault(table, {})
        if key in base and _base_json(base, key) == text:
            differs.pop(key, None)
        else:
            differs[key] = text

    def scan(self, table: str) -> Iterator[tuple[str, Any]]:
        """Every (key, record) without copying: for searches, which must not mutate."""
        changed = self._overlay.get(table, {})
        base = self._base.get(table, {})
        for key, record in base.items():
            yield key, changed.get(key, record)
        yield from ((k, r) for k, r in changed.items() if k not in base)

    def find(self, table: str, key_of: Callable[[Any], Hashable], wanted: Hashable) -> str | None:
        """The first key, in ``scan`` order, whose record has ``key_of(record) == wanted``; None if none.

        A lookup tool (a customer by name and zip) scanned every record per call; the base is
        immutable and shared by every copy of an environment, so its index is built once per
        base table and ``key_of`` (a module-level function), and only the overlay is checked per call.
        """
        base, changed = self._base.get(table, {}), self._overlay.get(table, {})
        position, index = _index(base, key_of)
        hits = [key for key in index.get(wanted, ()) if key not in changed][:1]
        hits += [key for key, record in changed.items() if key in base and key_of(record) == wanted]
        if hits:
            return min(hits, key=position.__getitem__)
        return next((key for key, record in changed.items() if key not in base and key_of(record) == wanted), None)

    def diff(self) -> dict[str, dict[str, Any]]:
        """Records that differ from the base: the whole state given the base."""
        out: dict[str, dict[str, Any]] = {}
        for table, records in self._overlay.items():
            differs = self._differs.get(table, {})
            for key, record in records.items():
                if key in differs:
                    out.setdefault(table, {})[key] = record
        return out

    def diff_json(self) -> str:
        """``canonical_json(self.diff())``, spelled from the records' JSON made at ``put``."""
        tables = {table: differs for table, differs in self._differs.items() if differs}
        if not all(isinstance(key, str) for differs in tables.values() for key in differs):
            return canonical_json(self.diff())  # json's own key coercion and ordering for anything else
        return "{" + ",".join(
            f"{canonical_json(table)}:{{" + ",".join(f"{canonical_json(key)}:{tables[table][key]}"
                                                     for key in sorted(tables[table])) + "}"
            for table in sorted(tables)) + "}"


class DomainParams(BaseModel):
    """A domain's own parameters (``domain.params`` in the run config); none by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Environment:
    """Base class for a domain: subclass, set ``name``/``policy``, build data, add tools."""

    name: ClassVar[str]
    policy: ClassVar[str] = ""
    Params: ClassVar[type[DomainParams]] = DomainParams
    params: ClassVar[DomainParams | None] = None
    user_tables: ClassVar[frozenset[str]] = frozenset()  # tables the user's own tools act on (a device)
    _specs: ClassVar[dict[str, ToolSpec]]
    _user_specs: ClassVar[dict[str, ToolSpec]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        specs = [_build_spec(attr, fn) for attr, fn in inspect.getmembers(cls, inspect.isfunction)
                 if hasattr(fn, "__tool__")]
        cls._specs = {s.name: s for s in specs if s.actor == ASSISTANT}
        cls._user_specs = {s.name: s for s in specs if s.actor == USER}
        # A name means one tool: the tool graph and the stored rows tell the sides apart by it.
        assert not set(cls._specs) & set(cls._user_specs), "a user tool and an assistant tool share a name"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        base, self._base_hash = _base_state(type(self), seed)
        self.db = Tables(base)
        self.holder: str | None = None  # the user a user-side tool is running for (set by ``execute_user``)

    # -- to override -------------------------------------------------------
    @classmethod
    def configure(cls, params: DomainParams) -> type[Environment]:
        """The class to instantiate for ``params`` (already validated by ``cls.Params``).

        A class, not an instance, because tools, the tool graph and the base
        data are per class: a domain whose tools depend on its parameters
        (a schema-only domain reads them from a spec file) returns a subclass
        built for them. The default binds ``params`` to a cached subclass, or
        returns ``cls`` itself when there are none to bind.
        """
        if not type(params).model_fields:
            return cls
        return _bound(cls, params.model_dump_json())

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        raise NotImplementedError

    def check_policy(self, messages: list[Message]) -> list[str]:
        """Policy violations in a dialogue, one line each; none by default.

        A dual-control domain overrides it with a keyword ``user_actions``
        (``list[UserAction]``) and ``user`` (the task's user id) too: the
        policy filter passes them only to domains that have user tools.
        """
        return []

    # Task synthesis hooks: a domain without them can still be simulated, but
    # the offline blueprint generator has nothing to ground tasks in.
    intents: ClassVar[dict[str, Intent]] = {}
    user_knows: ClassVar[frozenset[str]] = frozenset()  # entity types a user can state unprompted
    device_voice: ClassVar[DeviceVoice | None] = None  # dual control: how user-side actions are asked for and told
    authenticates: ClassVar[bool] = True  # False: no accounts, so no identity step in tasks or dialogues
    # True where execute() waits on another process (an MCP server): callers on an event loop run it in a thread.
    blocking_io: ClassVar[bool] = False

    def ask_identity(self, rng: random.Random) -> str:
        """The scripted assistant's first question; it must say "verify your identity" or "find your account"."""
        return "I'd be glad to help. First I need to verify your identity: what details can you give me?"

    def users(self) -> list[str]:
        """Ids of the users a task can be about."""
        return []

    def user_record(self, user_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def identify(self, rng: random.Random, user_id: str) -> Identity:
        raise NotImplementedError

    # -- the contract --------------------------------------------------------
    def fresh(self, seed: int | None = None) -> Environment:
        return type(self)(self.seed if seed is None else seed)

    @classmethod
    def specs(cls) -> dict[str, ToolSpec]:
        return cls._specs

    @classmethod
    def tools(cls) -> list[Tool]:
        return [s.schema for s in cls._specs.values()]

    @classmethod
    def user_specs(cls) -> dict[str, ToolSpec]:
        """The user's own tools (dual control); empty for a domain where only the assistant acts."""
        return cls._user_specs

    @classmethod
    def user_tools(cls) -> list[Tool]:
        return [s.schema for s in cls._user_specs.values()]

    @classmethod
    def spec_of(cls, action: Action) -> ToolSpec | None:
        """The spec a gold action runs: the assistant's tool, or the user's for ``actor='user'``."""
        return (cls._user_specs if action.actor == USER else cls._specs).get(action.name)

    def execute(self, name: str, arguments: dict[str, Any] | str) -> str:
        """Run one call; any failure comes back as an ``Error: ...`` string (a ``ToolFault`` is raised)."""
        return self._run(self._specs, name, arguments)

    def execute_user(self, user: str | None, name: str, arguments: dict[str, Any] | str) -> str:
        """Run one of the user's own tools, for ``user`` (whose device it is); errors as for ``execute``."""
        if not self._user_specs:
            return f"{ERROR_PREFIX}this domain has no user-side tools"
        if user is None:
            return f"{ERROR_PREFIX}a user-side tool needs the task's user"
        self.holder = user
        try:
            return self._run(self._user_specs, name, arguments)
        finally:
            self.holder = None

    def execute_user_call(self, user: str | None, call: ToolCall) -> str:
        return self.execute_user(user, call.function.name, call.function.arguments)

    def _run(self, specs: dict[str, ToolSpec], name: str, arguments: dict[str, Any] | str) -> str:
        checked = self._checked(specs, name, arguments)
        if isinstance(checked, str):
            return checked
        spec, arguments = checked
        try:
            result = spec.method(self, **arguments)
        except ToolError as err:
            return f"{ERROR_PREFIX}{err}"
        except ToolFault:
            raise
        except Exception as err:  # a bug in a tool must not kill a run
            return f"{ERROR_PREFIX}internal error in {name}: {type(err).__name__}: {err}"
        return result if isinstance(result, str) else canonical_json(result)

    def stored(self, table: str, key: str, shown: str | None = None) -> str:
        """A read tool's answer when it is the record as stored: its JSON is made once (per base record, or at
        ``put``), not copied and re-serialized per call; a missing one is ``<table, singular> <shown> not found``."""
        text = self.db.view_json(table, key)
        if text is None:
            raise ToolError(f"{table.removesuffix('s')} {key if shown is None else shown} not found")
        return text

    def check_call(self, name: str, arguments: dict[str, Any] | str) -> tuple[ToolSpec, dict[str, Any]] | str:
        """The tool and its parsed arguments, or the ``Error: ...`` a call that names no tool or breaks its schema gets."""
        return self._checked(self._specs, name, arguments)

    def _checked(self, specs: dict[str, ToolSpec], name: str, arguments: dict[str, Any] | str
                 ) -> tuple[ToolSpec, dict[str, Any]] | str:
        spec = specs.get(name)
        if spec is None:
            return f"{ERROR_PREFIX}unknown tool {name!r}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as err:
                return f"{ERROR_PREFIX}arguments are not valid JSON ({err.msg})"
        if not isinstance(arguments, dict):
            return f"{ERROR_PREFIX}arguments must be a JSON object"
        problem = validate_arguments(spec.validator, arguments)
        if problem:
            return f"{ERROR_PREFIX}invalid arguments for {name}: {problem}"
        return spec, arguments

    def execute_call(self, call: ToolCall) -> str:
        return self.execute(call.function.name, call.function.arguments)

    async def aexecute_call(self, call: ToolCall) -> str:
        """``execute_call`` for a caller on an event loop; a domain whose tools do I/O overrides it to await."""
        return self.execute_call(call)

    def close(self) -> None:
        """Let go of what this copy holds (a server process it had to itself); it is not used afterwards."""

    def unverified(self, tools: set[str]) -> str | None:
        """One line saying which of ``tools`` change state that ``state_hash`` cannot see, or None (all of it)."""
        return None

    # A domain whose tools exist only as a schema lets an asynchronous (model)
    # tool simulator answer a call before ``execute`` runs it; validation, the
    # per-dialogue result cache and the state stay with the environment.
    def simulation_request(self, call: ToolCall) -> SimulatedCall | None:
        """The call a tool simulator should answer before it is executed; None when there is nothing to ask."""
        return None

    def provide(self, request: SimulatedCall, result: str) -> None:
        """Take a tool simulator's answer to ``simulation_request``; the next ``execute`` of that call uses it."""
        raise NotImplementedError

    def run_actions(self, actions: list[Action], user: str | None = None) -> list[str]:
        """Gold actions in order, each by its actor (``user`` is whose device the user-side ones act on)."""
        return [self.execute_user(user, a.name, a.arguments) if a.actor == USER else self.execute(a.name, a.arguments)
                for a in actions]

    def replay(self, messages: list[Message], user_actions: list[UserAction] = (), user: str | None = None
               ) -> tuple[dict[str, str], list[str]]:
        """Every call of a dialogue, both sides, in the order they were made: (results by assistant call id,
        results of the user's actions).

        A user action ``at`` message *i* happened after messages ``0..i-1``, so it runs
        before the calls of message *i*; the order matters where one side's change
        takes effect through the other's (a line resumed, then the phone restarted).
        """
        pending = sorted(range(len(user_actions)), key=lambda k: user_actions[k].at)
        results: dict[str, str] = {}
        user_results: list[str] = [""] * len(user_actions)
        position = 0
        for i, message in enumerate([*messages, None]):
            while position < len(pending) and user_actions[pending[position]].at <= i:
                k = pending[position]
                user_results[k] = self.execute_user_call(user, user_actions[k].call)
                position += 1
            for call in (message.tool_calls or []) if message is not None else []:
                results[call.id] = self.execute_call(call)
        for k in pending[position:]:  # positions past the end (a malformed record) still run, last
            user_results[k] = self.execute_user_call(user, user_actions[k].call)
        return results, user_results

    def state_hash(self) -> str:
        digest = hashlib.sha256(self._base_hash.encode())
        digest.update(self.db.diff_json().encode())
        return digest.hexdigest()[:32]

    def state_sides(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The state's changes split by owner: ``account`` (the domain's records) and ``device`` (the user's)."""
        diff = self.db.diff()
        return {"account": {t: r for t, r in diff.items() if t not in self.user_tables},
                "device": {t: r for t, r in diff.items() if t in self.user_tables}}


@lru_cache(maxsize=32)
def _bound(cls: type[Environment], params_json: str) -> type[Environment]:
    """One subclass per (domain, params), so equal configs share tools, graph and base data."""
    params = cls.Params.model_validate_json(params_json)
    return type(cls.__name__, (cls,), {"params": params, "__module__": cls.__module__, "__qualname__": cls.__qualname__})


@lru_cache(maxsize=32)
def _base_state(cls: type[Environment], seed: int) -> tuple[dict[str, dict[str, Any]], str]:
    data = cls.build_data(seed)
    return data, hashlib.sha256(canonical_json(data).encode()).hexdigest()


_releasers: list[Callable[[], None]] = []


def on_release(release: Callable[[], None]) -> None:
    """Register what ``release_all`` calls: a domain that starts processes (MCP servers) stops them there."""
    _releasers.append(release)


def release_all() -> None:
    """Stop what domains started for this process (the end of a run); a later use starts them again."""
    for release in list(_releasers):
        release()


def is_error(result: str) -> bool:
    return result.startswith(ERROR_PREFIX)


def result_value(result: str) -> Any:
    """A tool result as data: JSON where it is JSON, else the text itself (an MCP tool's text content)."""
    try:
        return json.loads(result)
    except json.JSONDecodeError:
        return result


DOMAINS: Registry[type[Environment]] = Registry("domain", "trajforge.domains", base=Environment,
                                               builtins="simulators.domains")
