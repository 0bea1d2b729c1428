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
from typing import Any

import pyarrow as pa

from pipelines.rows import row_task
from schemas import canonical_json

# What each view's records look like before the JSON columns are cast (pa.json_ cannot be built from Python).
_FUNCTION = pa.struct([("name", pa.string()), ("arguments", pa.string())])
_TOOL_CALL = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", _FUNCTION)])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(_TOOL_CALL)),
                      ("tool_call_id", pa.string())])
_ACTION = pa.struct([("name", pa.string()), ("arguments", pa.string()), ("actor", pa.string())])
_REWARD = pa.struct([
    ("type", pa.string()),
    ("gold_actions", pa.list_(_ACTION)),
    ("expected_state_hash", pa.string()),
    ("expected_outputs", pa.list_(pa.string())),
    ("answer", pa.string()),
    ("answer_aliases", pa.list_(pa.string())),
])
_TURN = pa.struct([("from", pa.string()), ("value", pa.string())])

_COMMON = [("id", pa.string()), ("task_id", pa.string()), ("domain", pa.string()), ("kind", pa.string())]

RAW_SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema([*_COMMON, ("num_turns", pa.int32()), ("messages", pa.list_(_MESSAGE)),
                      ("tools", pa.list_(pa.string()))]),
    "rl": pa.schema([*_COMMON, ("env_seed", pa.int64()), ("prompt", pa.list_(_MESSAGE)),
                     ("tools", pa.list_(pa.string())), ("scenario", pa.string()), ("reward_spec", _REWARD),
                     ("user_tools", pa.list_(pa.string()))]),
    "rejects": pa.schema([*_COMMON, ("stage", pa.string()), ("reason", pa.string()), ("messages", pa.list_(_MESSAGE)),
                          ("tools", pa.list_(pa.string())), ("task", pa.string()), ("verdicts", pa.string()),
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
    "sft": {".messages[].tool_calls[].function.arguments", ".tools[]"},
    "rl": {".prompt[].tool_calls[].function.arguments", ".tools[]", ".scenario", ".reward_spec.gold_actions[].arguments",
           ".user_tools[]"},
    "rejects": {".messages[].tool_calls[].function.arguments", ".tools[]", ".task", ".verdicts", ".user_actions"},
    "sharegpt": set(),
}

SCHEMAS: dict[str, pa.Schema] = {
    name: pa.schema([pa.field(f.name, _jsonify(f.type, f".{f.name}", _JSON_PATHS[name])) for f in schema])
    for name, schema in RAW_SCHEMAS.items()
}


def to_table(view: str, records: list[dict[str, Any]]) -> pa.Table:
    """Records of a view as an Arrow table with its JSON columns typed as JSON."""
    return pa.Table.from_pylist(records, schema=RAW_SCHEMAS[view]).cast(SCHEMAS[view])


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


def _tools(row: dict[str, Any], column: str = "tools") -> list[str]:
    return [canonical_json(t) for t in json.loads(row.get(column) or "[]")]


def _common(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "task_id": row["task_id"], "domain": row["domain"], "kind": row["kind"]}


def sft_record(row: dict[str, Any]) -> dict[str, Any]:
    """The whole dialogue with the tools offered: TRL's ``messages`` + ``tools`` conversational format."""
    return {**_common(row), "num_turns": row["num_turns"], "messages": _messages(row["messages"]), "tools": _tools(row)}


def reward_spec(row: dict[str, Any]) -> dict[str, Any]:
    """What a reward function checks: the gold final state and outputs, or for KG questions the answer."""
    task = row_task(row)
    if task is None:
        raise ValueError(f"row {row['id']}: no task stored, cannot build a reward spec")
    return {
        "type": "answer" if task.kind == "kg_question" else "outcome",
        "gold_actions": [{"name": a.name, "arguments": canonical_json(a.arguments), "actor": a.actor}
                         for a in task.gold_actions],
        "expected_state_hash": task.expected_state_hash,
        "expected_outputs": list(task.expected_outputs),
        "answer": task.answer,
        "answer_aliases": list(task.answer_aliases),
    }


def rl_record(row: dict[str, Any]) -> dict[str, Any]:
    """The prompt up to the first assistant turn, plus what an environment needs to roll out and score.

    ``scenario`` is the user simulator's brief: a multi-turn rollout needs the
    simulated user as much as the tools; in a dual-control domain ``user_tools``
    are the simulated user's own (their phone), and gold actions with
    ``actor: user`` are theirs to make.
    """
    messages = _messages(row["messages"])
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    task = row_task(row)
    return {**_common(row), "env_seed": task.env_seed if task else None, "prompt": messages[:first],
            "tools": _tools(row), "scenario": task.scenario.model_dump_json() if task else None,
            "reward_spec": reward_spec(row), "user_tools": _tools(row, "user_tools")}


def reject_record(row: dict[str, Any]) -> dict[str, Any]:
    """A rejected row with the stage and reason that rejected it (negatives, or material for debugging filters)."""
    return {**_common(row), "stage": row["stage"], "reason": row["reason"], "messages": _messages(row["messages"]),
            "tools": _tools(row), "task": row["task"], "verdicts": row["verdicts"],
            "user_actions": row.get("user_actions") or "[]"}


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
