"""Built-in domains; importing this registers them in ``DOMAINS``."""

from simulators.domains import kg, mcp, schema_only, store  # noqa: F401
