"""Shared by the domain tests: make a blueprint, roll it out offline as the shard does, run the filter chain."""

from __future__ import annotations

import asyncio
import random

from filters import FILTERS, Context
from generators import GENERATORS
from schemas import Task, Trajectory, Verdict
from simulators.conversation import rollout
from simulators.environment import Environment
from simulators.scripted import ScriptedAssistant, ScriptedUser

STAGES = ["format", "execution", "policy", "outcome", "required_outputs", "repetition", "language", "secrets"]


def make_task(env: Environment, intents: list[str] | None, seed: int, max_requests: int = 1) -> Task:
    blueprint = GENERATORS.get("blueprint")
    gen = blueprint(env, blueprint.Params(intents=intents, max_requests=max_requests))
    return gen.generate(random.Random(seed))


def simulate(env: Environment, task: Task, perturbation: str | None = None, seed: int = 0) -> Trajectory:
    rng = random.Random(seed)
    fresh = env.fresh(task.env_seed)
    result = asyncio.run(rollout(task, fresh, ScriptedUser(task, rng, fresh),
                                 ScriptedAssistant(task, fresh, rng, perturbation)))
    return Trajectory(task_id=task.id, domain=task.domain, kind=task.kind, tools=fresh.tools(),
                      messages=result.messages, user_tools=fresh.user_tools(), user_actions=result.user_actions,
                      final_state_hash=result.final_state_hash)


def first_failure(env: Environment, trajectory: Trajectory, task: Task) -> Verdict | None:
    ctx = Context(task=task, env=env)
    for name in STAGES:
        verdict = FILTERS.get(name)().check(trajectory, ctx)
        if not verdict.passed:
            return verdict
    return None
