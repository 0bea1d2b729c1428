"""Answer matching for KG questions: the reward an RL run can recompute from the stored row.

The assistant's last message must state the task's answer or one of its
aliases, compared after folding case, accents, punctuation and leading
articles. When the message says "the answer is X", X itself is compared (a
message listing several candidates does not pass by containing the right
one); otherwise the answer must appear as a whole phrase. ``grounded``
also asks that the answer appeared in some tool result, which catches an
assistant that answers without having looked.
"""

from __future__ import annotations

import re

from pydantic import Field

from filters.base import FILTERS, Context, Filter, FilterParams
from schemas import Task, Trajectory, Verdict
from simulators.domains.kg.graph import fold
from simulators.kinds import kind_of

_STATED = re.compile(r"answer is\s*:?\s*(.+)", re.I | re.S)
_ARTICLE = re.compile(r"^(the|a|an) ")


def normalize_answer(text: str) -> str:
    return _ARTICLE.sub("", fold(text))


def stated_answer(text: str) -> str | None:
    """What follows the last "answer is", up to the end of that line; None when not stated that way."""
    found = None
    for m in _STATED.finditer(text):
        found = m
    if found is None:
        return None
    return found.group(1).strip().splitlines()[0] if found.group(1).strip() else ""


def _contains(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


def matches(text: str, answer: str, aliases: list[str]) -> bool:
    """Whether ``text`` gives ``answer`` (or an alias): the one definition of a correct KG answer."""
    wanted = {normalize_answer(a) for a in [answer, *aliases]} - {""}
    stated = stated_answer(text)
    if stated is not None:
        return normalize_answer(stated) in wanted
    said = fold(text)
    return any(_contains(said, w) for w in wanted)


def final_answer_text(trajectory: Trajectory) -> str:
    return next((m.content or "" for m in reversed(trajectory.messages) if m.role == "assistant" and m.content), "")


def check_answer(trajectory: Trajectory, task: Task, grounded: bool) -> str | None:
    """The problem with the dialogue's answer as one line, or None when it is right (or the task has none)."""
    expected = kind_of(task).answer(task)
    if expected is None:
        return None
    answer, aliases = expected
    text = final_answer_text(trajectory)
    if not matches(text, answer, aliases):
        stated = stated_answer(text)
        return f"answer {stated!r} does not match {answer!r}" if stated is not None \
            else f"final message never gives the answer {answer!r}"
    if grounded:
        seen = fold(" ".join(m.content or "" for m in trajectory.messages if m.role == "tool"))
        if not any(_contains(seen, normalize_answer(a)) or _contains(seen, fold(a)) for a in [answer, *aliases]):
            return f"answer {answer!r} never appeared in a tool result (not grounded in the search)"
    return None


class AnswerMatchParams(FilterParams):
    grounded: bool = Field(default=True, description="the answer must also appear in some tool result")


@FILTERS.register("answer_match")
class AnswerMatchFilter(Filter):
    """The final assistant message gives the task's answer (normalized, aliases); tasks without one pass."""

    Params = AnswerMatchParams

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        problem = check_answer(trajectory, ctx.task, self.params.grounded)
        return self.failed(problem) if problem else self.passed()
