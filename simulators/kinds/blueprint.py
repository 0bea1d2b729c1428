"""Kind ``blueprint`` (APIGen-MT): a user scenario, gold tool calls, the expected final state and outputs.

The default kind: any task whose ``scenario.requests`` name intents of its
domain is played by the request-following scripted pair, and is judged by the
final state its calls leave and what the assistant told the user.
"""

from __future__ import annotations

import random

from schemas import Task
from simulators.agents import UserAgent
from simulators.environment import Environment
from simulators.kinds.base import KINDS, TaskKind
from simulators.scripted import ScriptedAssistant, ScriptedUser


@KINDS.register("blueprint")
class Blueprint(TaskKind):
    User = ScriptedUser
    Assistant = ScriptedAssistant

    def user(self, task: Task, rng: random.Random, env: Environment) -> UserAgent:
        """The scripted user hears device instructions and knows the domain's intents (dual control)."""
        return ScriptedUser(task, rng, env)
