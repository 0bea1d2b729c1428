"""Heuristic filters: checks on the text of a dialogue that need no environment.

Each is a registered step with its own parameters, listed in the run config like
the verification filters, e.g. ``{name: repetition, params: {max_repeats: 2}}``.
"""

from __future__ import annotations

import json
import re
from collections import Counter

from pydantic import Field, model_validator

from filters.base import FILTERS, Context, Filter, FilterParams
from schemas import Trajectory, Verdict
from simulators.text import normalize


class TurnCountParams(FilterParams):
    min_user_turns: int = Field(default=1, ge=0)
    max_user_turns: int = Field(default=30, ge=1)
    max_messages: int = Field(default=200, ge=1, description="all messages, tool results included")

    @model_validator(mode="after")
    def _order(self) -> TurnCountParams:
        if self.min_user_turns > self.max_user_turns:
            raise ValueError("min_user_turns is greater than max_user_turns")
        return self


@FILTERS.register("turn_count")
class TurnCountFilter(Filter):
    """The dialogue has a usable length: too short teaches nothing, too long is usually a loop."""

    Params = TurnCountParams

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        p = self.params
        users = sum(m.role == "user" for m in trajectory.messages)
        if users < p.min_user_turns:
            return self.failed(f"{users} user turn(s), fewer than {p.min_user_turns}")
        if users > p.max_user_turns:
            return self.failed(f"{users} user turns, more than {p.max_user_turns}")
        if len(trajectory.messages) > p.max_messages:
            return self.failed(f"{len(trajectory.messages)} messages, more than {p.max_messages}")
        return self.passed()


class RepetitionParams(FilterParams):
    max_repeats: int = Field(default=2, ge=1, description="times one assistant text or one tool call may occur")
    min_chars: int = Field(default=20, ge=0, description="shorter assistant texts ('Done.') may repeat freely")


@FILTERS.register("repetition")
class RepetitionFilter(Filter):
    """No assistant text and no identical tool call (same name and arguments) more than ``max_repeats`` times."""

    Params = RepetitionParams

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        texts: Counter[str] = Counter()
        calls: Counter[str] = Counter()
        for m in trajectory.messages:
            if m.role != "assistant":
                continue
            text = normalize(m.content or "")
            if len(text) >= self.params.min_chars:
                texts[text] += 1
            for call in m.tool_calls or []:
                try:
                    args = json.dumps(json.loads(call.function.arguments), sort_keys=True)
                except json.JSONDecodeError:
                    args = call.function.arguments
                calls[f"{call.function.name}({args})"] += 1
        for what, counter in (("assistant message", texts), ("tool call", calls)):
            if counter:
                item, n = counter.most_common(1)[0]
                if n > self.params.max_repeats:
                    return self.failed(f"{what} repeated {n} times: {item[:80]!r}")
        return self.passed()


DEFAULT_CONTROL_TOKENS = [
    r"<\|[a-z_]+\|>",                     # ChatML / Llama 3 / GPT style: <|im_start|>, <|eot_id|>, <|endoftext|>
    r"\[/?INST\]", r"<</?SYS>>",          # Llama 2
    r"</?s>",                             # sentencepiece BOS/EOS
    r"<start_of_turn>|<end_of_turn>",     # Gemma
    r"</?tool_call>",                     # Hermes / Qwen tool-call tags leaking into text
]


class ControlTokenParams(FilterParams):
    patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_CONTROL_TOKENS),
                                description="regular expressions of chat-template tokens")

    @model_validator(mode="after")
    def _compile(self) -> ControlTokenParams:
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as err:
                raise ValueError(f"pattern {p!r}: {err}") from None
        return self


@FILTERS.register("control_tokens")
class ControlTokenFilter(Filter):
    """No chat-template control token in any stored text (content or tool-call arguments)."""

    Params = ControlTokenParams

    def __init__(self, params: FilterParams | None = None) -> None:
        super().__init__(params)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in self.params.patterns))

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        for n, m in enumerate(trajectory.messages):
            texts = [m.content or ""] + [c.function.arguments for c in m.tool_calls or []]
            for text in texts:
                hit = self._pattern.search(text)
                if hit:
                    return self.failed(f"message {n} ({m.role}): control token {hit.group(0)!r}")
        return self.passed()


# The most frequent English function words: in running English text they are a third or more of the words.
_ENGLISH = frozenset("""a about after all also am an and any are as at be been but by can could did do does for from
get go had has have he her here him his how i if in into is it its just know let like me more my no not now of on one
or our out please so some that the their them then there these they this to up us want was we were what when where
which who will with would yes you your""".split())
_WORD = re.compile(r"[^\W\d_]+")


class LanguageParams(FilterParams):
    language: str = Field(default="en", pattern="^en$", description="only English is recognized so far")
    min_latin_share: float = Field(default=0.9, ge=0, le=1, description="share of letters in the Latin script")
    min_function_word_share: float = Field(default=0.15, ge=0, le=1, description="share of common English words")
    min_words: int = Field(default=12, ge=1, description="texts shorter than this are not judged on function words")


@FILTERS.register("language")
class LanguageFilter(Filter):
    """The user and assistant texts are in the configured language.

    Two cheap signals, no model: the share of letters in the Latin script, and the
    share of words that are common English function words (high for any English
    prose, near zero for other Latin-script languages). Tool results are data, not
    language, and are not judged.
    """

    Params = LanguageParams

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        p = self.params
        text = " ".join(m.content or "" for m in trajectory.messages if m.role in ("user", "assistant"))
        letters = [ch for ch in text if ch.isalpha()]
        if letters:
            latin = sum(ch.isascii() or "\u00c0" <= ch <= "\u024f" for ch in letters) / len(letters)
            if latin < p.min_latin_share:
                return self.failed(f"only {latin:.0%} of letters are Latin script (need {p.min_latin_share:.0%})")
        words = [w.lower() for w in _WORD.findall(text)]
        if len(words) >= p.min_words:
            share = sum(w in _ENGLISH for w in words) / len(words)
            if share < p.min_function_word_share:
                return self.failed(f"only {share:.0%} common English words (need {p.min_function_word_share:.0%}); "
                                   "not English?")
        return self.passed()


_SECRET_PATTERNS = {
    "api key": r"\b(?:sk-[A-Za-z0-9_-]{20,}|sk-ant-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{36,}"
               r"|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|xox[baprs]-[A-Za-z0-9-]{10,})\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "bearer token": r"\bBearer\s+[A-Za-z0-9._~+/-]{20,}=*",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    "card number": r"\b(?:\d[ -]?){12,18}\d\b",
}


def _luhn(number: str) -> bool:
    digits = [int(d) for d in number if d.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class SecretsParams(FilterParams):
    kinds: list[str] = Field(default_factory=lambda: list(_SECRET_PATTERNS),
                             description=f"which patterns to look for: {', '.join(_SECRET_PATTERNS)}")
    allowed_email_domains: list[str] = Field(default_factory=lambda: ["example.com", "example.org", "example.net"],
                                             description="reserved documentation domains are never real people")

    @model_validator(mode="after")
    def _known(self) -> SecretsParams:
        unknown = sorted(set(self.kinds) - set(_SECRET_PATTERNS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {', '.join(_SECRET_PATTERNS)}")
        return self


@FILTERS.register("secrets")
class SecretsFilter(Filter):
    """No API keys, private keys, tokens, emails or card numbers in stored text — unless they are domain data.

    Domain data is what the environment itself returned (tool results) or what the task
    gave the simulated user: a customer email from the store's database may appear in the
    dialogue; an address or key that came from nowhere is a leak. Card numbers must pass
    the Luhn check, so order ids and tracking numbers do not trip it.
    """

    Params = SecretsParams

    def __init__(self, params: FilterParams | None = None) -> None:
        super().__init__(params)
        self._patterns = {k: re.compile(_SECRET_PATTERNS[k]) for k in self.params.kinds}

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        domain_data = " ".join([m.content or "" for m in trajectory.messages if m.role == "tool"]
                               + [ctx.task.model_dump_json()])
        allowed = tuple("@" + d.lower() for d in self.params.allowed_email_domains)
        for n, m in enumerate(trajectory.messages):
            if m.role in ("tool", "system"):
                continue
            texts = [m.content or ""] + [c.function.arguments for c in m.tool_calls or []]
            for text in texts:
                for kind, pattern in self._patterns.items():
                    for hit in pattern.finditer(text):
                        value = hit.group(0)
                        if kind == "card number" and not _luhn(value):
                            continue
                        if kind == "email" and value.lower().endswith(allowed):
                            continue
                        if value in domain_data:
                            continue
                        # the value itself is never repeated: a reason is stored and counted in the manifest
                        return self.failed(f"message {n} ({m.role}): {kind} that is not domain data "
                                           f"(characters {hit.start()}-{hit.end()})")
        return self.passed()
