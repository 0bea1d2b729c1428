"""Stored rows as what trainers read: SFT, RL, rejects and ShareGPT records.

Messages are exported **role-exact**: each message carries only the keys its
role uses (system/user: ``role``, ``content``; assistant: ``content`` as a
string, ``tool_calls`` when it called, ``reasoning_content`` when the model
produced one; tool: ``tool_call_id``, ``name``, ``content``). A Parquet struct
cannot do that (it is the union of every role's keys, padded with nulls, and
chat templates test ``'tool_calls' in message``), so every message and every
tool schema is one value of Arrow's JSON extension type (``pa.json_()``, the
Parquet JSON logical type). ``datasets`` >= 4.7 decodes it with its ``Json``
feature into exactly the object that was written; pyarrow, polars and pandas
read the JSON text. ``sharegpt`` has no JSON column and loads in any
``datasets`` (LLaMA-Factory pins ``datasets<=4.0``).

No one encoding is role-exact in ``datasets`` and loads in 4.0: 4.0 has no
JSON feature (it refuses ``extension<arrow.json>`` and a ``Json`` feature named
in the card or the Parquet metadata), and a struct pads every role. So
``Views(json_as_text=True)`` (``trajforge export --json-as-text``) writes the
same values as plain strings, one JSON text per message or tool, which every
``datasets`` >= 4.0 loads; one ``json.loads`` per value gives back the exact
object.

Every dialogue view ends on an assistant turn: the turns after the last
assistant message (the simulated user's closing line, or in a reject the turn
its failure happened at) are trimmed, not answered: an answer would be text no
model wrote. ``rejects`` keeps them in ``trailing``; the store keeps everything.
``rl`` prompts end on the user turn the policy answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from pipelines.rows import row_task
from schemas import Task, canonical_json, ordered_json
from simulators.kinds import BUILTIN_KINDS, ExportField, TaskKind, kind_of

_ACTION = pa.struct([("name", pa.string()), ("arguments", pa.string()), ("actor", pa.string())])
_REWARD = pa.struct([  # what every kind's reward has; kinds add their own fields (simulators.kinds.ExportField)
    ("type", pa.string()),
    ("gold_actions", pa.list_(_ACTION)),
    ("expected_state_hash", pa.string()),
    ("expected_outputs", pa.list_(pa.string())),
])
_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])
_TEXTS = pa.list_(pa.string())  # one JSON text per message or tool, cast to pa.json_()

_COMMON = [("id", pa.string()), ("task_id", pa.string()), ("domain", pa.string()), ("kind", pa.string())]

# What each view's records look like before the JSON columns are cast (pa.json_ cannot be built from Python),
# before the task kinds add their columns (``Views``).
BASE_SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([*_COMMON, ("num_turns", pa.int32()), ("messages", _TEXTS), ("tools", _TEXTS)]),
    "rl": pa.schema([*_COMMON, ("env_seed", pa.int64()), ("prompt", _TEXTS), ("tools", _TEXTS),
                     ("scenario", pa.string()), ("reward_spec", _REWARD), ("user_tools", _TEXTS),
                     ("env_config", pa.string()), ("task", pa.string())]),
    "rejects": pa.schema([*_COMMON, ("stage", pa.string()), ("reason", pa.string()), ("messages", _TEXTS),
                          ("trailing", _TEXTS), ("tools", _TEXTS), ("task", pa.string()), ("verdicts", pa.string()),
                          ("user_actions", pa.string())]),
    "sharegpt": pa.schema([*_COMMON, ("system", pa.string()), ("conversations", pa.list_(_TURN)),
                           ("tools", pa.string())]),
}


def _jsonify(t: pa.DataType, path: str, json_paths: set[str]) -> pa.DataType:
    """``t`` with the string fields named in ``json_paths`` turned into JSON (recursing through lists/structs)."""
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _jsonify(f.type, f"{path}.{f.name}", json_paths)) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_jsonify(t.value_type, f"{path}[]", json_paths))
    return pa.json_() if path in json_paths else t


_JSON_PATHS = {
    "sft": {".messages[]", ".tools[]"},
    "rl": {".prompt[]", ".tools[]", ".scenario", ".reward_spec.gold_actions[].arguments", ".user_tools[]",
           ".env_config", ".task"},
    "rejects": {".messages[]", ".trailing[]", ".tools[]", ".task", ".verdicts", ".user_actions"},
    "sharegpt": set(),
}

# The columns holding messages, as a chat template receives them.
MESSAGE_COLUMNS = {"sft": "messages", "rl": "prompt", "rejects": "messages"}


def _with_field(schema: pa.Schema, name: str, type_: pa.DataType) -> pa.Schema:
    """``schema`` plus a top-level column ``name``, or plus a field of its struct column for ``struct.name``."""
    column, _, inner = name.partition(".")
    if not inner:
        return schema.append(pa.field(name, type_))
    at = schema.get_field_index(column)
    struct = schema.field(at).type
    return schema.set(at, pa.field(column, pa.struct([*struct, pa.field(inner, type_)])))


class Views:
    """The views' schemas and record builders for the kinds an export holds.

    Every view has its base columns; each kind adds its ``ExportField``s. The
    built-in kinds' fields are always there, so a dataset of the default
    generators has the same columns whichever kinds a night produced; another
    kind's fields appear once its rows do (and, the table being append-only,
    stay in every later version's export). Rows of other kinds get each field's
    default.
    """

    def __init__(self, kinds: Iterable[str] = (), json_as_text: bool = False) -> None:
        self.json_as_text = json_as_text
        builtin = [k.name for k in BUILTIN_KINDS]
        self.kinds: dict[str, TaskKind] = {n: kind_of(n) for n in [*builtin, *sorted(set(kinds) - set(builtin))]}
        self.fields: dict[str, dict[str, ExportField]] = {view: {} for view in BASE_SCHEMAS}
        for kind in self.kinds.values():
            for f in kind.columns:
                known = self.fields[f.view].get(f.name)
                if known is not None and known.type != f.type:
                    raise ValueError(f"kinds disagree on the type of {f.view} column {f.name}: {known.type} and "
                                     f"{f.type} (kind {kind.name!r})")
                self.fields[f.view].setdefault(f.name, f)
        self.raw: dict[str, pa.Schema] = {}
        self.json_paths: dict[str, set[str]] = {}  # where each view's JSON values are (``.col``, ``.col[]``, ``.a.b``)
        self.schemas: dict[str, pa.Schema] = {}
        for view, schema in BASE_SCHEMAS.items():
            paths = set(_JSON_PATHS[view])
            for f in self.fields[view].values():
                is_json = isinstance(f.type, pa.JsonType)
                schema = _with_field(schema, f.name, pa.string() if is_json else f.type)
                if is_json:
                    paths.add(f".{f.name}")
            self.raw[view] = schema
            self.json_paths[view] = paths
            typed = pa.schema([pa.field(c.name, _jsonify(c.type, f".{c.name}", paths)) for c in schema])
            self.schemas[view] = schema if json_as_text else typed

    def json_fields(self, view: str) -> list[str]:
        """Where ``view`` holds JSON values, in schema order: ``tools[]`` (each item), ``task``, ``a.b[].c``."""
        order = {name: i for i, name in enumerate(self.raw[view].names)}
        return sorted((path[1:] for path in self.json_paths[view]),
                      key=lambda path: (order.get(path.split(".")[0].split("[")[0], len(order)), path))

    def record(self, view: str, row: dict[str, Any], reasoning: bool = True) -> dict[str, Any]:
        record = RECORDS[view](row, reasoning=reasoning)
        if self.fields[view]:
            self.add_kind_fields(view, record, row_task(row))
        return record

    def add_kind_fields(self, view: str, record: dict[str, Any], task: Task | None) -> None:
        """Each kind field of ``view`` into ``record``: the task's own kind's value, or the field's default."""
        own = {f.name: f for f in kind_of(task).columns if f.view == view} if task is not None else {}
        for name, f in self.fields[view].items():
            mine = own.get(name)
            value = mine.value(task) if mine is not None else f.default
            if isinstance(f.type, pa.JsonType) and value is not None:
                value = canonical_json(value)
            column, _, inner = name.partition(".")
            if inner:
                record[column][inner] = value
            else:
                record[name] = value

    def table(self, view: str, records: list[dict[str, Any]]) -> pa.Table:
        """Records of a view as an Arrow table with its JSON columns typed as JSON (or left as text)."""
        return pa.Table.from_pylist(records, schema=self.raw[view]).cast(self.schemas[view])


def _arguments(text: str | None) -> Any:
    """A tool call's arguments as the object they encode; a malformed string (only in rejects) stays a string."""
    try:
        return json.loads(text or "{}")
    except json.JSONDecodeError:
        return text


def export_messages(stored: list[dict[str, Any]], reasoning: bool = True) -> list[dict[str, Any]]:
    """Stored messages (struct rows, any version) as role-exact OpenAI/TRL messages.

    Works on rows written before ``name`` was filled and before
    ``reasoning_content`` existed: a tool message's name comes from the call it
    answers, and a tool-call turn without text gets ``content: ""``.
    """
    called = {c["id"]: c["function"]["name"] for m in stored for c in m.get("tool_calls") or []}
    out: list[dict[str, Any]] = []
    for m in stored:
        role = m["role"]
        if role == "tool":
            out.append({"role": role, "tool_call_id": m.get("tool_call_id"),
                        "name": m.get("name") or called.get(m.get("tool_call_id"), ""), "content": m.get("content") or ""})
            continue
        message: dict[str, Any] = {"role": role, "content": m.get("content") or ""}
        if role == "assistant":
            if m.get("tool_calls"):
                message["tool_calls"] = [
                    {"id": c["id"], "type": c.get("type") or "function",
                     "function": {"name": c["function"]["name"], "arguments": _arguments(c["function"]["arguments"])}}
                    for c in m["tool_calls"]]
            if reasoning and m.get("reasoning_content"):
                message["reasoning_content"] = m["reasoning_content"]
        out.append(message)
    return out


def until_last_assistant(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``messages`` cut after the last assistant turn, and the turns cut off."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    return messages[: last + 1], messages[last + 1:]


def _texts(values: list[Any]) -> list[str]:
    return [ordered_json(v) for v in values]


def stored_tools(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools offered, in the order (and key order) they are stored: as declared, for rows written since 0.2."""
    return json.loads(row["tools"] or "[]")


def _common(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "task_id": row["task_id"], "domain": row["domain"], "kind": row["kind"]}


def sft_record(row: dict[str, Any], reasoning: bool = True) -> dict[str, Any]:
    """The dialogue up to its last assistant turn, with the tools offered: TRL's ``messages`` + ``tools`` format."""
    messages, _ = until_last_assistant(export_messages(row["messages"], reasoning))
    return {**_common(row), "num_turns": row["num_turns"], "messages": _texts(messages),
            "tools": _texts(stored_tools(row))}


def _reward_spec(row: dict[str, Any], task: Task | None) -> dict[str, Any]:
    """The part of a reward spec every kind has: its ``type`` (the kind's reward), gold calls, final state, outputs."""
    if task is None:
        raise ValueError(f"row {row['id']}: no task stored, cannot build a reward spec")
    return {
        "type": kind_of(task).reward,
        "gold_actions": [{"name": a.name, "arguments": canonical_json(a.arguments), "actor": a.actor}
                         for a in task.gold_actions],
        "expected_state_hash": task.expected_state_hash,
        "expected_outputs": list(task.expected_outputs),
    }


def reward_spec(row: dict[str, Any]) -> dict[str, Any]:
    """What a reward function checks, as the rl view writes it: the common part and the task kind's fields
    (a KG question's answer and aliases)."""
    task = row_task(row)
    record = {"reward_spec": _reward_spec(row, task)}
    Views([task.kind]).add_kind_fields("rl", record, task)
    return record["reward_spec"]


def rl_record(row: dict[str, Any], reasoning: bool = True) -> dict[str, Any]:
    """The prompt up to the first assistant turn, plus what an environment needs to roll out and score.

    ``scenario`` is the user simulator's brief: a multi-turn rollout needs the
    simulated user as much as the tools; in a dual-control domain ``user_tools``
    are the simulated user's own (their phone), and gold actions with
    ``actor: user`` are theirs to make. ``env_config`` (the domain and its
    parameters, as the run configured them; the export puts it on the row) and
    ``task`` (the whole task, kind fields included) are what
    ``pipelines.rl.TaskEnvironment.from_row`` rebuilds the initial state from.
    """
    messages = export_messages(row["messages"], reasoning)
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    task = row_task(row)
    return {**_common(row), "env_seed": task.env_seed if task else None, "prompt": _texts(messages[:first]),
            "tools": _texts(stored_tools(row)), "scenario": task.scenario.model_dump_json() if task else None,
            "reward_spec": _reward_spec(row, task), "user_tools": _texts(json.loads(row.get("user_tools") or "[]")),
            "env_config": canonical_json(row["env_config"]) if row.get("env_config") else None,
            "task": task.model_dump_json() if task else None}


def reject_record(row: dict[str, Any], reasoning: bool = True) -> dict[str, Any]:
    """A rejected row with the stage and reason that rejected it (negatives, or material for debugging filters).

    ``messages`` ends on the last assistant turn like ``sft``; ``trailing`` holds the turns after it.
    """
    messages, trailing = until_last_assistant(export_messages(row["messages"] or [], reasoning))
    return {**_common(row), "stage": row["stage"], "reason": row["reason"], "messages": _texts(messages),
            "trailing": _texts(trailing), "tools": _texts(stored_tools(row)), "task": row["task"],
            "verdicts": row["verdicts"], "user_actions": row.get("user_actions") or "[]"}


def sharegpt_record(row: dict[str, Any], reasoning: bool = True) -> dict[str, Any]:
    """ShareGPT as LLaMA-Factory reads it: human / gpt / function_call / observation turns, tools as a JSON string.

    Turns must alternate (human or observation, then gpt or function_call) and
    be even in number, so an assistant message that both speaks and calls
    becomes its calls, the calls of one message become one function_call (a
    JSON list when there are several, LLaMA-Factory's parallel form) and their
    results one observation (a JSON list of the results). Reasoning, where kept,
    leads a ``gpt`` turn as ``<think>...</think>``, as LLaMA-Factory's reasoning
    templates read it; a ``function_call`` value stays pure JSON (its default
    function parser would reject anything else), so reasoning before a call is left out.
    """
    messages, _ = until_last_assistant(export_messages(row["messages"], reasoning))
    system, turns = None, []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            turns.append({"from": "observation", "value": pending[0] if len(pending) == 1 else json.dumps(pending)})
            pending.clear()

    for m in messages:
        if m["role"] == "tool":
            pending.append(m["content"])
            continue
        flush()
        if m["role"] == "system":
            system = m["content"]
        elif m["role"] == "user":
            turns.append({"from": "human", "value": m["content"]})
        else:
            if m.get("tool_calls"):
                calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
                turns.append({"from": "function_call", "value": ordered_json(calls[0] if len(calls) == 1 else calls)})
            else:
                think = f"<think>\n{m['reasoning_content']}\n</think>\n\n" if m.get("reasoning_content") else ""
                turns.append({"from": "gpt", "value": think + m["content"]})
    flush()
    return {**_common(row), "system": system, "conversations": turns, "tools": ordered_json(stored_tools(row))}


RECORDS = {"sft": sft_record, "rl": rl_record, "rejects": reject_record, "sharegpt": sharegpt_record}


def decoded(record: dict[str, Any], view: str) -> dict[str, Any]:
    """A record as ``datasets`` (``Json`` feature) returns it: the view's base JSON columns parsed."""
    out = dict(record)
    for path in _JSON_PATHS[view]:
        name = path.split(".")[1].rstrip("[]")
        if path == f".{name}[]" and out.get(name) is not None:
            out[name] = [json.loads(v) for v in out[name]]
        elif path == f".{name}" and out.get(name) is not None:
            out[name] = json.loads(out[name])
    return out
