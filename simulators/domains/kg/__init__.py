"""The knowledge-graph domain: graphs from the shipped data, a store database or triple files."""

from simulators.domains.kg.env import KGEnv
from simulators.domains.kg.graph import KGError, KnowledgeGraph

__all__ = ["KGEnv", "KGError", "KnowledgeGraph"]
