"""The built-in telecom domain: account support plus the customer's own phone (dual control)."""

from simulators.domains.telecom.env import TelecomEnv

__all__ = ["TelecomEnv"]
