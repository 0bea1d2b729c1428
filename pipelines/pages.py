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
import re
from importlib.resources import files
from typing import Any

from jinja2 import ChoiceLoader, Environment, PackageLoader


def pretty_arguments(arguments: str | None) -> str:
    """Tool-call arguments as compact JSON; text that is not JSON (a model's broken call) exactly as stored."""
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False)
    except ValueError:
        return arguments or ""


MESSAGE_REF = re.compile(r"^message (\d+)\b")  # how verdicts name the message they fail on (0-based)


def failure_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """What the chat marks on a rejected row: its stage and reason, and the message the reason names, if any."""
    if row.get("status", "rejected") == "accepted" or not row.get("stage"):
        return None
    ref = MESSAGE_REF.match(row.get("reason") or "")
    return {"stage": row["stage"], "reason": row.get("reason"), "at": int(ref.group(1)) if ref else None}


def stylesheet() -> str:
    return (files("pipelines") / "html" / "style.css").read_text(encoding="utf-8")


def environment(*packages: str) -> Environment:
    """Templates of ``packages`` (each a package with a ``templates`` folder), then the shared ones (``html/``;
    ``pipelines/templates`` holds the chat templates of models, for exports)."""
    loader = ChoiceLoader([PackageLoader(p, "templates") for p in packages] + [PackageLoader("pipelines", "html")])
    env = Environment(loader=loader, autoescape=True, keep_trailing_newline=True)
    env.globals.update(pretty=pretty_arguments, failure_of=failure_of)
    return env
