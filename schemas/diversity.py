"""Diversity and difficulty of one version's accepted dialogues, as stored in its manifest.

Optional everywhere: manifests written before these figures load with
``diversity`` unset, and every consumer (card, report, ``versions --diff``)
says "not measured" for them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class TextFigures(BaseModel):
    """Lexical variety of one side's text (the user's turns, or the assistant's replies).

    Tokens are whitespace-separated words, lowercased (punctuation stays attached); n-grams never cross a turn.
    """

    turns: int = 0
    tokens: int = 0
    distinct_1: float = 0.0  # distinct unigrams / unigrams
    distinct_2: float = 0.0
    distinct_3: float = 0.0
    compression_similarity: float = Field(
        default=0.0, description="1 - mean normalized compression distance (zlib) between pairs of dialogues of a "
        "fixed sample: near 1 when dialogues are templates of each other, lower when they differ")
    distinct_turns: int = 0  # distinct turns after case and punctuation folding
    top_turns: list[tuple[str, int]] = Field(default_factory=list, description="(turn, dialogues containing it)")
    top_turn_share: float = Field(default=0.0, description="share of dialogues containing the most common turn")


class DifficultyFigures(BaseModel):
    """The per-dialogue difficulty score (writes+1 × withheld+1 × dependencies+1; ``pipelines.difficulty``)."""

    mean: float = 0.0
    p50: float = 0.0
    p90: float = 0.0
    histogram: dict[str, int] = Field(default_factory=dict, description="dialogues per power-of-two bucket")
    mean_writes: float = 0.0


class DiversityFigures(BaseModel):
    dialogues: int = 0
    exact: bool = Field(default=True, description="false when a count passed its cap and a sketch estimated it")
    user: TextFigures = Field(default_factory=TextFigures)
    assistant: TextFigures = Field(default_factory=TextFigures)
    tool_chains: int = Field(default=0, description="distinct sequences of tool calls (the user's own included)")
    top_tool_chains: list[tuple[str, int]] = Field(default_factory=list)
    top_tool_chain_share: float = 0.0
    domains: dict[str, int] = Field(default_factory=dict)
    personas: dict[str, int] = Field(default_factory=dict)
    intents: dict[str, int] = Field(default_factory=dict, description="requests per domain:intent")
    intent_coverage: float | None = Field(default=None, description="intents used / intents the domains offer")
    turns_per_dialogue: dict[int, int] = Field(default_factory=dict, description="user turns -> dialogues")
    tool_calls_per_dialogue: dict[int, int] = Field(default_factory=dict)
    writes_per_dialogue: dict[int, int] = Field(default_factory=dict)
    user_actions_per_dialogue: dict[int, int] = Field(default_factory=dict, description="dual control")
    difficulty: DifficultyFigures = Field(default_factory=DifficultyFigures)
    judge_scores: dict[str, int] = Field(default_factory=dict, description="rows per judge score, all rows it saw")
    difficulty_filter: dict[str, int] = Field(default_factory=dict, description="rows per difficulty-filter outcome")

