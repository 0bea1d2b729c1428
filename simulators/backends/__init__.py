"""Inference backends behind one shared layer (limits, retries, timeouts, cache, accounting)."""

from simulators.backends.base import TRUNCATED, Backend, BackendError, ChatParams, ChatReply, TransientError, TruncatedReply
from simulators.backends.cache import RequestCache, request_key
from simulators.backends.endpoint import Endpoint, open_endpoints
from simulators.backends.managed_vllm import managed_vllm
from simulators.backends.openai_http import OpenAICompatible

__all__ = [
    "Backend",
    "BackendError",
    "ChatParams",
    "ChatReply",
    "Endpoint",
    "OpenAICompatible",
    "RequestCache",
    "TRUNCATED",
    "TransientError",
    "TruncatedReply",
    "managed_vllm",
    "open_endpoints",
    "request_key",
]
