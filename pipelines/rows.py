"""The row format of the dataset table: one schema for accepted and rejected rows.

Messages are stored as nested structs (OpenAI chat format) so polars, DuckDB
and ``datasets`` read them natively; tools, task and verdicts are JSON strings
because tool parameter schemas are arbitrary JSON. The struct is the union of
every role's keys (a store that earlier versions appended to keeps its schema;
a new field such as ``reasoning_content`` is merged in); exports and
:func:`row_messages` give each role only its own keys. Tools are stored in the
order their schemas were declared: what a model is shown at inference.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from schemas import (
    ByIdentity,
    Lineage,
    Message,
    Task,
    Tool,
    Trajectory,
    Usage,
    UserAction,
    Verdict,
    canonical_json,
    content_hash,
    ordered_json,
    total_usage,
)

_FUNCTION = pa.struct([("name", pa.string()), ("arguments", pa.string())])
_TOOL_CALL = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", _FUNCTION)])
MESSAGE = pa.struct([
    ("role", pa.string()),
    ("content", pa.string()),
    ("tool_calls", pa.list_(_TOOL_CALL)),
    ("tool_call_id", pa.string()),
    ("name", pa.string()),
    ("reasoning_content", pa.string()),  # assistant turns of reasoning models; null elsewhere
])
USAGE = pa.struct([("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("requests", pa.int64()),
                   ("latency_s", pa.float64())])

ROW_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("task_id", pa.string()),
    ("status", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
    ("kind", pa.string()),
    ("domain", pa.string()),
    ("generator", pa.string()),
    ("messages", pa.list_(MESSAGE)),
    ("tools", pa.string()),
    ("task", pa.string()),
    ("verdicts", pa.string()),
    ("num_turns", pa.int32()),
    ("num_tool_calls", pa.int32()),
    ("final_state_hash", pa.string()),
    ("dedup_hash", pa.string()),
    ("usage", USAGE),
    ("run_id", pa.string()),
    ("config_hash", pa.string()),
    ("code_version", pa.string()),
    ("seed", pa.int64()),
    ("shard", pa.int32()),
    ("index", pa.int64()),
    ("cluster_id", pa.string()),  # set at commit: the id of the row's dedup cluster representative (own id if alone)
    ("fault", pa.string()),  # a rejected row: who failed (schemas.FAULTS); null when accepted and in older versions
    # Dual control: the user's own tools (JSON, like ``tools``) and what the user did with them (JSON list of
    # ``UserAction``: the call, its result, and ``at``, the index in ``messages`` of the user turn that followed).
    # Not messages: the assistant never sees them, so ``messages`` stay a chat every template renders.
    ("user_tools", pa.string()),
    ("user_actions", pa.string()),
    # Per-dialogue figures for the diversity/difficulty report (pipelines/difficulty.py); null on older rows.
    ("tool_chain", pa.string()),
    ("num_writes", pa.int32()),
    ("difficulty", pa.float64()),
])

ACCEPTED, REJECTED = "accepted", "rejected"


_tools_json: ByIdentity[str] = ByIdentity(lambda *tools: ordered_json([t.model_dump() for t in tools]), 256)


def tools_json(tools: list[Tool]) -> str:
    """The ``tools`` column: the tools' JSON in their declared order.

    A domain hands every dialogue the same tool objects, and dumping them was ~5% of a row's
    cost, so the JSON is kept per tuple of those objects (tools made per dialogue, a model's
    schema-only domain, come and go: 256 lists are kept).
    """
    return _tools_json(*tools)


def stored_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as stored, field for field, so that a stored row re-verifies to the same trajectory id.

    A tool message's ``name`` is filled at export from the call it answers (rows of every version alike).
    """
    return [{
        "role": m.role,
        "content": m.content,
        "tool_calls": [c.model_dump() for c in m.tool_calls] if m.tool_calls else None,
        "tool_call_id": m.tool_call_id,
        "name": m.name,
        "reasoning_content": m.reasoning_content,
    } for m in messages]


def trajectory_row(
    trajectory: Trajectory, task: Task, dedup_hash: str, lineage: Lineage, shard: int, index: int
) -> dict[str, Any]:
    failure = trajectory.first_failure()
    return {
        "id": trajectory.id,
        "task_id": task.id,
        "status": REJECTED if failure else ACCEPTED,
        "stage": failure.stage if failure else None,
        "reason": failure.reason if failure else None,
        "kind": task.kind,
        "domain": task.domain,
        "generator": task.generator,
        "messages": stored_messages(trajectory.messages),
        "tools": tools_json(trajectory.tools),
        "task": task.model_dump_json(),
        "verdicts": canonical_json([v.model_dump(exclude_none=True) for v in trajectory.verdicts]),
        "num_turns": sum(m.role == "user" for m in trajectory.messages),
        "num_tool_calls": sum(len(m.tool_calls or []) for m in trajectory.messages),
        "final_state_hash": trajectory.final_state_hash,
        "dedup_hash": dedup_hash,
        "usage": total_usage(trajectory.usage).model_dump(include={f.name for f in USAGE}),
        **_lineage(lineage, shard, index),
        "fault": (failure.fault or "assistant") if failure else None,
        **_user_side(trajectory.user_tools, trajectory.user_actions),
    }


def _user_side(tools: list[Tool], actions: list[UserAction]) -> dict[str, Any]:
    """Dual control: the user's own tools (declared order kept, like ``tools``) and what the user did with them."""
    return {"user_tools": tools_json(tools) if tools else None,
            "user_actions": canonical_json([a.model_dump() for a in actions]) if actions else None}


def rejected_row(
    stage: str, reason: str, lineage: Lineage, shard: int, index: int, task: Task | None = None, domain: str = "",
    fault: str = "synthesis", messages: list[Message] | None = None, tools: list[Tool] | None = None,
    usage: Usage | None = None, user_tools: list[Tool] | None = None, user_actions: list[UserAction] | None = None,
) -> dict[str, Any]:
    """A task that never became a whole trajectory, with its evidence: the messages produced up to the failure
    (a dialogue cut short, or a blueprint writer's conversation) and the task, so the row says why.

    Its id is stable for the same run config and index.
    """
    messages = messages or []
    return {
        "id": content_hash({"config": lineage.config_hash, "index": index, "stage": stage}),
        "task_id": task.id if task else None,
        "status": REJECTED,
        "stage": stage,
        "reason": reason,
        "kind": task.kind if task else None,
        "domain": task.domain if task else domain,
        "generator": task.generator if task else None,
        "messages": stored_messages(messages),
        "tools": tools_json(tools or []),
        "task": task.model_dump_json() if task else None,
        "verdicts": canonical_json([Verdict(stage=stage, passed=False, reason=reason, fault=fault).model_dump()]),
        "num_turns": sum(m.role == "user" for m in messages),
        "num_tool_calls": sum(len(m.tool_calls or []) for m in messages),
        "final_state_hash": None,
        "dedup_hash": None,
        "usage": usage.model_dump(include={f.name for f in USAGE}) if usage else None,
        **_lineage(lineage, shard, index),
        "fault": fault,
        **_user_side(user_tools or [], user_actions or []),
    }


def _lineage(lineage: Lineage, shard: int, index: int) -> dict[str, Any]:
    return {"run_id": lineage.run_id, "config_hash": lineage.config_hash, "code_version": lineage.code_version,
            "seed": lineage.seed, "shard": shard, "index": index}


def row_messages(row: dict[str, Any]) -> list[Message]:
    """Messages of a stored row back as models (for re-verification and exports)."""
    return [Message.model_validate({k: v for k, v in m.items() if v is not None}) for m in row["messages"]]


def row_user_actions(row: dict[str, Any]) -> list[UserAction]:
    """The user's own actions of a stored row (dual control); none for rows without them or from older code."""
    return [UserAction.model_validate(a) for a in json.loads(row.get("user_actions") or "[]")]


def row_user_tools(row: dict[str, Any]) -> list[Tool]:
    return [Tool.model_validate(t) for t in json.loads(row.get("user_tools") or "[]")]


def row_task(row: dict[str, Any]) -> Task | None:
    return Task.model_validate(json.loads(row["task"])) if row.get("task") else None
