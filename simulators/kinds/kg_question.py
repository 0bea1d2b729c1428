"""Kind ``kg_question`` (DeepDive): a multi-hop question over a knowledge graph with one provable answer.

Its fields are the answer, the names that also count as it, and the path that
justifies it; its reward is the answer (``answer_match``), and the RL view
carries the answer and aliases in ``reward_spec``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import Field

from schemas import Task
from simulators.kg_scripted import KGScriptedAssistant, KGScriptedUser
from simulators.kinds.base import KINDS, ExportField, KindFields, TaskKind


class KGQuestionFields(KindFields):
    answer: str = Field(min_length=1, description="the last entity's name or one of its attributes")
    answer_aliases: list[str] = Field(default_factory=list, description="other names that count as the answer")
    path: list[dict[str, Any]] = Field(default_factory=list, description="the walk: one record per variable")


@KINDS.register("kg_question")
class KGQuestion(TaskKind):
    Fields = KGQuestionFields
    User = KGScriptedUser
    Assistant = KGScriptedAssistant
    reward = "answer"
    verifiers = ("answer_match",)
    columns = (
        ExportField("rl", "reward_spec.answer", pa.string(), lambda task: task.answer),
        ExportField("rl", "reward_spec.answer_aliases", pa.list_(pa.string()),
                    lambda task: list(task.answer_aliases), default=[]),
    )

    def answer(self, task: Task) -> tuple[str, list[str]] | None:
        answer = getattr(task, "answer", None)
        return (answer, list(getattr(task, "answer_aliases", None) or [])) if answer else None
