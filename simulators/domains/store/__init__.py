"""The built-in online-store domain: data model, tools, policy, task intents."""

from simulators.domains.store.env import StoreEnv

__all__ = ["StoreEnv"]
