"""Reading a model's structured output: the JSON object of a reply, checked against its pydantic model.

Servers with guided decoding return bare JSON; models without it often wrap
the object in a Markdown fence or a sentence. Only the outermost ``{...}`` is
taken, and nothing else about the text is trusted.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
JUDGE_ERROR = "judge_error"  # the reason (and judge filter stage) of a row no judge could give a verdict on
_FENCE = re.compile(r"```(?:json)?\s*(\{.*\})\s*```", re.S)


def json_object(text: str) -> str:
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


def parse_structured(model: type[M], text: str) -> M:
    """The reply as ``model``; raises ``ValueError`` with the first problem, naming the field."""
    try:
        return model.model_validate_json(json_object(text))
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"]) or "reply"
        raise ValueError(f"reply is not a valid {model.__name__}: {where}: {e['msg']}") from None


def retry_budget(spec: Any) -> int | None:
    """The larger ``max_tokens`` a cut-off structured reply is asked again with: the step's ``retry_max_tokens``,
    else twice its ``max_tokens`` (no retry when it set no limit: then the context itself ran out)."""
    if getattr(spec, "retry_max_tokens", None) is not None:
        return spec.retry_max_tokens
    return 2 * spec.max_tokens if getattr(spec, "max_tokens", None) else None
