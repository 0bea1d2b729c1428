"""Built-in domains; importing this registers them in ``DOMAINS``."""

from simulators.domains import store  # noqa: F401
