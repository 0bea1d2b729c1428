"""Built-in domains; importing this registers them in ``DOMAINS``."""

from simulators.domains import kg, store  # noqa: F401
