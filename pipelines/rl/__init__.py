"""A dataset version's tasks served to RL trainers: ``TaskEnvironment`` (one way in), its adapters, its server."""

from pipelines.rl.environment import Observation, Reward, TaskEnvironment, scripted_user

__all__ = ["Observation", "Reward", "TaskEnvironment", "scripted_user"]
