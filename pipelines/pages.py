"""HTML pages about datasets: one Jinja2 environment for ``trajforge report`` and ``trajforge view``.

Both render dataset text (dialogues written by models, tool results, reasons)
into HTML, so both go through this one environment: autoescape on, the
stylesheet and the chat renderer (``chat.html``: user and assistant bubbles,
tool calls with their arguments, tool results, the system prompt and any
reasoning folded) written once, in ``pipelines/html``. A page that needs its
own templates passes its package; its templates are found first, then these.
"""

from __future__ import annotations

import json
from importlib.resources import files

from jinja2 import ChoiceLoader, Environment, PackageLoader


def pretty_arguments(arguments: str | None) -> str:
    """Tool-call arguments as compact JSON; text that is not JSON (a model's broken call) exactly as stored."""
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False)
    except ValueError:
        return arguments or ""


def stylesheet() -> str:
    return (files("pipelines") / "html" / "style.css").read_text(encoding="utf-8")


def environment(*packages: str) -> Environment:
    """Templates of ``packages`` (each a package with a ``templates`` folder), then the shared ones (``html/``;
    ``pipelines/templates`` holds the chat templates of models, for exports)."""
    loader = ChoiceLoader([PackageLoader(p, "templates") for p in packages] + [PackageLoader("pipelines", "html")])
    env = Environment(loader=loader, autoescape=True, keep_trailing_newline=True)
    env.globals["pretty"] = pretty_arguments
    return env
