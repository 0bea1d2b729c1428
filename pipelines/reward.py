"""A stored row's reward: its task kind's verifiers, re-run on the stored dialogue.

The verifiers are the filters a kind names as its outcome (``TaskKind.verifiers``:
``outcome`` and ``required_outputs`` for a blueprint, ``answer_match`` for a KG
question), found by name in the same registry the run used, so a reward computed
from the dataset never disagrees with the check that accepted the row.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from filters import FILTERS, Context
from pipelines.rows import row_messages, row_task, row_user_actions, row_user_tools
from schemas import Task, Tool, Trajectory, Verdict
from simulators.environment import Environment
from simulators.kinds import kind_of


def verify_row(row: dict[str, Any], env: Environment) -> list[Verdict]:
    """One verdict per verifier of the row's kind, in the kind's order; ``env`` is the run's domain (any seed)."""
    task = row_task(row)
    if task is None:
        raise ValueError(f"row {row['id']}: no task stored, nothing to verify")
    trajectory = Trajectory(task_id=task.id, domain=task.domain, kind=task.kind, messages=row_messages(row),
                            tools=[Tool.model_validate(t) for t in json.loads(row["tools"] or "[]")],
                            user_tools=row_user_tools(row), user_actions=row_user_actions(row))  # dual control
    return verify_trajectory(task, trajectory, env)


def verify_trajectory(task: Task, trajectory: Trajectory, env: Environment) -> list[Verdict]:
    """The kind's verifiers on any dialogue of ``task``: a stored one, or a policy's rollout in an RL environment.

    In a dual-control domain the trajectory carries the user's own actions (``user_actions``), which the
    outcome check replays with the assistant's calls, in dialogue order.
    """
    return asyncio.run(averify_trajectory(task, trajectory, env))


async def averify_trajectory(task: Task, trajectory: Trajectory, env: Environment,
                             also: tuple[str, ...] = ()) -> list[Verdict]:
    """``also``: more filters by name, run before the kind's verifiers as the default filter order runs them
    (an RL reward adds ``policy``), so the first failure is the one a rejected row would name."""
    ctx = Context(task=task, env=env)
    return [await FILTERS.get(name)().acheck(trajectory, ctx) for name in (*also, *kind_of(task).verifiers)]
