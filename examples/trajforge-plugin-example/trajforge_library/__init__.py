"""An example trajforge plug-in: a lending library (domain ``library``) and a generator step
(``overdue_returns``), found by trajforge through the entry points in pyproject.toml."""
