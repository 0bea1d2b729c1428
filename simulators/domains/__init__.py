"""Built-in domains; importing this registers them in ``DOMAINS``."""

from simulators.domains import schema_only, store  # noqa: F401
