"""Built-in domains; importing this registers them in ``DOMAINS``."""

from simulators.domains import airline, kg, mcp, schema_only, store, telecom  # noqa: F401
