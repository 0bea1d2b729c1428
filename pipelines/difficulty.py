"""Per-dialogue figures, computed where the environment is known (the shard) and stored as light row columns.

- ``tool_chain``: the dialogue's calls in order, the user's own prefixed ``user:``
  (``find_customer_by_phone > get_line_details > user:toggle_airplane_mode``);
- ``num_writes``: calls that changed state, on both sides;
- ``difficulty``: writes × information the user withholds × dependencies
  between calls, each plus one, in the spirit of tau-bench's finding that
  tasks get hard with the number of writes and the facts an agent must
  gather and chain (write/read-intensive task scaling):

  * withheld: facts the user holds (``known_info``) that were not in their
    first message, plus what they do not know at all (``unknown_info``): what
    the assistant had to ask for or look up;
  * dependencies: calls with an argument value that first appeared in an
    earlier tool result and that the user never said: one call feeding another.

The commit step aggregates these (``pipelines.diversity``) without opening the
environment again.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from schemas import Task, Trajectory
from simulators.environment import Environment
from simulators.text import normalize

CHAIN_SEPARATOR = " > "


def _leaves(value: Any) -> list[str]:
    """Scalar values of a JSON value as normalized strings (ids, amounts, names)."""
    if isinstance(value, dict):
        return [v for x in value.values() for v in _leaves(x)]
    if isinstance(value, list):
        return [v for x in value for v in _leaves(x)]
    if isinstance(value, bool) or value is None:
        return []
    text = _scalar(str(value))
    return [text] if len(text) >= 3 else []


@lru_cache(maxsize=8192)
def _scalar(text: str) -> str:
    """``normalize`` of one scalar: the same ids, names and amounts come back in every dialogue of a domain."""
    return normalize(text)


def dialogue_figures(trajectory: Trajectory, task: Task, env: Environment) -> dict[str, Any]:
    specs, user_specs = env.specs(), env.user_specs()
    by_position: dict[int, list] = {}
    for a in trajectory.user_actions:
        by_position.setdefault(a.at, []).append(a)
    chain: list[str] = []
    writes = dependencies = 0
    seen_in_results: set[str] = set()
    said = ""
    first_user = next((m.content or "" for m in trajectory.messages if m.role == "user"), "")
    for i, m in enumerate([*trajectory.messages, None]):
        for a in by_position.get(i, []):
            chain.append(f"user:{a.call.function.name}")
            spec = user_specs.get(a.call.function.name)
            writes += bool(spec is not None and spec.writes and not a.result.startswith("Error"))
        if m is None:
            break
        if m.role == "user":
            said += " " + normalize(m.content or "")
        elif m.role == "tool":
            seen_in_results.update(_leaves(_json(m.content or "")))
        for call in m.tool_calls or []:
            chain.append(call.function.name)
            spec = specs.get(call.function.name)
            writes += bool(spec is not None and spec.writes)
            try:
                values = _leaves(call.parsed_arguments())
            except ValueError:
                continue
            dependencies += any(v in seen_in_results and v not in said for v in values)
    opening = normalize(first_user)
    withheld = sum(1 for v in task.scenario.known_info.values() if normalize(v) not in opening) \
        + len(task.scenario.unknown_info)
    return {"tool_chain": CHAIN_SEPARATOR.join(chain), "num_writes": writes,
            "difficulty": float((1 + writes) * (1 + withheld) * (1 + dependencies))}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
