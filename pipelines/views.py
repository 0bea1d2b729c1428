"""Stored rows as what trainers read: SFT, RL, rejects and ShareGPT records.

The store keeps tool-call ``arguments`` and tool schemas as JSON strings (the
OpenAI wire format). Chat templates and TRL want them as objects, but their
keys differ per tool, so a Parquet struct would be the union of every tool's
keys padded with nulls. Arrow's JSON extension type (``pa.json_()``) is the
way out: Parquet keeps it as a JSON logical type and ``datasets`` decodes it
with its ``Json`` feature into exactly the object that was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from pipelines.rows import row_task
from schemas import Task, canonical_json
from simulators.kinds import BUILTIN_KINDS, ExportField, TaskKind, kind_of

# What each view's records look like before the JSON columns are cast (pa.json_ cannot be built from Python).
_FUNCTION = pa.struct([("name", pa.string()), ("arguments", pa.string())])
_TOOL_CALL = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", _FUNCTION)])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(_TOOL_CALL)),
                      ("tool_call_id", pa.string())])
_ACTION = pa.struct([("name", pa.string()), ("arguments", pa.string())])
_REWARD = pa.struct([  # what every kind's reward has; kinds add their own fields (simulators.kinds.ExportField)
    ("type", pa.string()),
    ("gold_actions", pa.list_(_ACTION)),
    ("expected_state_hash", pa.string()),
    ("expected_outputs", pa.list_(pa.string())),
])
_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])

_COMMON = [("id", pa.string()), ("task_id", pa.string()), ("domain", pa.string()), ("kind", pa.string())]

BASE_SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([*_COMMON, ("num_turns", pa.int32()), ("messages", pa.list_(_MESSAGE)),
                      ("tools", pa.list_(pa.string()))]),
    "rl": pa.schema([*_COMMON, ("env_seed", pa.int64()), ("prompt", pa.list_(_MESSAGE)),
                     ("tools", pa.list_(pa.string())), ("scenario", pa.string()), ("reward_spec", _REWARD)]),
    "rejects": pa.schema([*_COMMON, ("stage", pa.string()), ("reason", pa.string()), ("messages", pa.list_(_MESSAGE)),
                          ("tools", pa.list_(pa.string())), ("task", pa.string()), ("verdicts", pa.string())]),
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
    "sft": {".messages[].tool_calls[].function.arguments", ".tools[]"},
    "rl": {".prompt[].tool_calls[].function.arguments", ".tools[]", ".scenario", ".reward_spec.gold_actions[].arguments"},
    "rejects": {".messages[].tool_calls[].function.arguments", ".tools[]", ".task", ".verdicts"},
    "sharegpt": set(),
}



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

    def __init__(self, kinds: Iterable[str] = ()) -> None:
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
        self.schemas: dict[str, pa.Schema] = {}
        for view, schema in BASE_SCHEMAS.items():
            paths = set(_JSON_PATHS[view])
            for f in self.fields[view].values():
                is_json = isinstance(f.type, pa.JsonType)
                schema = _with_field(schema, f.name, pa.string() if is_json else f.type)
                if is_json:
                    paths.add(f".{f.name}")
            self.raw[view] = schema
            self.schemas[view] = pa.schema([pa.field(c.name, _jsonify(c.type, f".{c.name}", paths)) for c in schema])

    def record(self, view: str, row: dict[str, Any]) -> dict[str, Any]:
        record = RECORDS[view](row)
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
        """Records of a view as an Arrow table with its JSON columns typed as JSON."""
        return pa.Table.from_pylist(records, schema=self.raw[view]).cast(self.schemas[view])


def _valid_json(text: str | None) -> str:
    """A tool call's arguments as JSON text; a malformed string (only in rejects) is kept as a JSON string."""
    try:
        json.loads(text or "{}")
        return text or "{}"
    except json.JSONDecodeError:
        return json.dumps(text)


def _messages(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in stored:
        calls = m.get("tool_calls")
        out.append({
            "role": m["role"],
            "content": m.get("content"),
            "tool_calls": [{**c, "function": {**c["function"], "arguments": _valid_json(c["function"]["arguments"])}}
                           for c in calls] if calls else None,
            "tool_call_id": m.get("tool_call_id"),
        })
    return out


def _tools(row: dict[str, Any]) -> list[str]:
    return [canonical_json(t) for t in json.loads(row["tools"] or "[]")]


def _common(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "task_id": row["task_id"], "domain": row["domain"], "kind": row["kind"]}


def sft_record(row: dict[str, Any]) -> dict[str, Any]:
    """The whole dialogue with the tools offered: TRL's ``messages`` + ``tools`` conversational format."""
    return {**_common(row), "num_turns": row["num_turns"], "messages": _messages(row["messages"]), "tools": _tools(row)}


def _reward_spec(row: dict[str, Any], task: Task | None) -> dict[str, Any]:
    """The part of a reward spec every kind has: its ``type`` (the kind's reward), gold calls, final state, outputs."""
    if task is None:
        raise ValueError(f"row {row['id']}: no task stored, cannot build a reward spec")
    return {
        "type": kind_of(task).reward,
        "gold_actions": [{"name": a.name, "arguments": canonical_json(a.arguments)} for a in task.gold_actions],
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


def rl_record(row: dict[str, Any]) -> dict[str, Any]:
    """The prompt up to the first assistant turn, plus what an environment needs to roll out and score.

    ``scenario`` is the user simulator's brief: a multi-turn rollout needs the
    simulated user as much as the tools.
    """
    messages = _messages(row["messages"])
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    task = row_task(row)
    return {**_common(row), "env_seed": task.env_seed if task else None, "prompt": messages[:first],
            "tools": _tools(row), "scenario": task.scenario.model_dump_json() if task else None,
            "reward_spec": _reward_spec(row, task)}


def reject_record(row: dict[str, Any]) -> dict[str, Any]:
    """A rejected row with the stage and reason that rejected it (negatives, or material for debugging filters)."""
    return {**_common(row), "stage": row["stage"], "reason": row["reason"], "messages": _messages(row["messages"]),
            "tools": _tools(row), "task": row["task"], "verdicts": row["verdicts"]}


def sharegpt_record(row: dict[str, Any]) -> dict[str, Any]:
    """ShareGPT as LLaMA-Factory reads it: human / gpt / function_call / observation turns, tools as a JSON string.

    Turns must alternate (human or observation, then gpt or function_call), so
    an assistant message that both speaks and calls becomes its calls, and the
    results of several parallel calls become one observation (a JSON list).
    """
    system, turns = None, []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            turns.append({"from": "observation", "value": pending[0] if len(pending) == 1 else json.dumps(pending)})
            pending.clear()

    for m in row["messages"]:
        if m["role"] == "tool":
            pending.append(m.get("content") or "")
            continue
        flush()
        if m["role"] == "system":
            system = m.get("content")
        elif m["role"] == "user":
            turns.append({"from": "human", "value": m.get("content") or ""})
        elif m.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": json.loads(_valid_json(c["function"]["arguments"]))}
                     for c in m["tool_calls"]]
            turns.append({"from": "function_call", "value": canonical_json(calls[0] if len(calls) == 1 else calls)})
        else:
            turns.append({"from": "gpt", "value": m.get("content") or ""})
    flush()
    return {**_common(row), "system": system, "conversations": turns, "tools": canonical_json(json.loads(row["tools"]))}


RECORDS = {"sft": sft_record, "rl": rl_record, "rejects": reject_record, "sharegpt": sharegpt_record}
