"""Inference backends behind one shared layer (limits, retries, timeouts, cache, accounting)."""

from simulators.backends.base import TRUNCATED, Backend, BackendError, ChatParams, ChatReply, TransientError, TruncatedReply
from simulators.backends.cache import RequestCache, request_key
from simulators.backends.endpoint import Endpoint, forget_endpoints, open_endpoints
from simulators.backends.health import BackendStoppedError, BackendUnhealthyError, HealthMonitor, raise_if_unhealthy
from simulators.backends.managed_vllm import managed_vllm
from simulators.backends.openai_http import OpenAICompatible

__all__ = [
    "Backend",
    "BackendError",
    "BackendStoppedError",
    "BackendUnhealthyError",
    "ChatParams",
    "ChatReply",
    "Endpoint",
    "HealthMonitor",
    "forget_endpoints",
    "OpenAICompatible",
    "RequestCache",
    "TRUNCATED",
    "TransientError",
    "TruncatedReply",
    "managed_vllm",
    "open_endpoints",
    "raise_if_unhealthy",
    "request_key",
]
