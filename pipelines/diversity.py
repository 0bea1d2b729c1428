"""Diversity and difficulty figures of a version, computed at commit from streamed rows in bounded memory.

The commit step feeds every row (one Parquet batch at a time) to a ``Diversity``
accumulator and stores ``finish()`` in the manifest. Memory does not grow
with the dataset:

- distinct n-grams, turns and tool chains are counted exactly up to a cap
  (hashes in a sorted numpy array, or a dict), then by a sketch (HyperLogLog
  for distinct counts, Space-Saving for the most frequent turns and chains),
  and ``exact`` says which;
- the compression similarity is measured on a fixed-size sample (the rows
  with the smallest id hashes, so the same rows are chosen however the data
  was sharded);
- everything else is a histogram over small integers or a bounded name set.

Tokens are whitespace-separated words, lowercased, with punctuation attached
(so "it's" and "it's." differ); n-grams never cross a turn. Turns are
compared after case and punctuation folding (``simulators.text.normalize``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import polars as pl

from pipelines.difficulty import CHAIN_SEPARATOR
from schemas import DiversityFigures
from schemas.diversity import DifficultyFigures, TextFigures
from simulators.text import normalize

EXACT_CAP = 2_000_000  # distinct hashes kept exactly per counter (16 MB as uint64); a sketch beyond
NAMES_CAP = 200_000  # distinct turns / tool chains counted exactly; Space-Saving beyond
SAMPLE = 256  # dialogues in the compression-similarity sample
TOP = 10
_P1, _P2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)
_SCORE = re.compile(r"score (\d+)/5")
_ATTEMPT = re.compile(r"attempt (\d+) of")

SCALARS: tuple[tuple[str, Callable[[DiversityFigures], float], str], ...] = (
    ("user distinct-3", lambda f: f.user.distinct_3, "{:.1%}"),
    ("user distinct-2", lambda f: f.user.distinct_2, "{:.1%}"),
    ("user top turn share", lambda f: f.user.top_turn_share, "{:.2%}"),
    ("user compression similarity", lambda f: f.user.compression_similarity, "{:.3f}"),
    ("assistant distinct-3", lambda f: f.assistant.distinct_3, "{:.1%}"),
    ("assistant compression similarity", lambda f: f.assistant.compression_similarity, "{:.3f}"),
    ("distinct tool chains", lambda f: f.tool_chains, "{:.0f}"),
    ("top tool chain share", lambda f: f.top_tool_chain_share, "{:.1%}"),
    ("personas", lambda f: len(f.personas), "{:.0f}"),
    ("intents", lambda f: len(f.intents), "{:.0f}"),
    ("mean difficulty", lambda f: f.difficulty.mean, "{:.1f}"),
    ("mean writes", lambda f: f.difficulty.mean_writes, "{:.2f}"),
)
"""The headline figures, in the order the card, the report and ``versions --diff`` show them."""


# -- counting distinct things in bounded memory ---------------------------------------------------------------------


class DistinctCounter:
    """Distinct uint64 hashes: exact (a sorted unique array) up to ``cap``, then a HyperLogLog (2^14 registers).

    Batches wait in a buffer and are merged into the sorted array only when the buffer is as large as the array
    (or ``MERGE_MIN``): a union per batch re-sorted the whole array for every 512 rows, so a 100k-row commit spent
    minutes here. Amortized, each hash is sorted O(log n) times.
    """

    P = 14
    MERGE_MIN = 1 << 16

    def __init__(self, cap: int = EXACT_CAP) -> None:
        self.cap = cap
        self.exact: np.ndarray | None = np.empty(0, dtype=np.uint64)
        self.pending: list[np.ndarray] = []
        self.pending_size = 0
        self.registers: np.ndarray | None = None

    def add(self, hashes: np.ndarray) -> None:
        if not hashes.size:
            return
        if self.exact is None:
            self._sketch(hashes)
            return
        self.pending.append(hashes)
        self.pending_size += hashes.size
        if self.pending_size >= max(self.exact.size, self.MERGE_MIN):
            self._merge()

    def _merge(self) -> None:
        if self.exact is None or not self.pending:
            return
        self.exact = np.unique(np.concatenate([self.exact, *self.pending]))
        self.pending, self.pending_size = [], 0
        if self.exact.size > self.cap:
            values, self.exact = self.exact, None
            self.registers = np.zeros(1 << self.P, dtype=np.uint8)
            self._sketch(values)

    def _sketch(self, hashes: np.ndarray) -> None:
        hashes = _mix(hashes)
        index = (hashes >> np.uint64(64 - self.P)).astype(np.int64)
        rest = (hashes << np.uint64(self.P)) | np.uint64(1 << (self.P - 1))  # a sentinel bit bounds the rank
        rank = (64 - np.floor(np.log2(rest.astype(np.float64))).astype(np.int64)).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    @property
    def is_exact(self) -> bool:
        self._merge()
        return self.exact is not None

    def count(self) -> int:
        self._merge()
        if self.exact is not None:
            return int(self.exact.size)
        m = float(1 << self.P)
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / float(np.sum(np.power(2.0, -self.registers.astype(np.float64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)
        return int(round(estimate))


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads any input over all 64 bits, which the sketch's register split relies on."""
    h = h.astype(np.uint64, copy=True)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


class FrequentNames:
    """How often each name (a turn, a tool chain) occurs: exact up to ``cap`` names. Beyond, the less frequent half
    is dropped whenever ``cap`` names are held, and a name that arrives after a drop starts at the largest count
    dropped so far (``floor``): counts then overestimate by at most ``floor`` (a lossy-counting bound), at O(log cap)
    amortized per name. Space-Saving's exact minimum, found by a scan per new name, was O(cap): a 100k-row commit
    spent minutes in it."""

    def __init__(self, cap: int = NAMES_CAP) -> None:
        self.cap = cap
        self.counts: Counter[str] = Counter()
        self.floor = 0
        self.exact = True

    def add(self, name: str) -> None:
        counts = self.counts
        if name in counts:
            counts[name] += 1
            return
        counts[name] = self.floor + 1
        if len(counts) > self.cap:
            self._drop_half()

    def _drop_half(self) -> None:
        ranked = self.counts.most_common()
        keep = max(self.cap // 2, 1)
        self.exact = False
        self.floor = max(self.floor, ranked[keep][1]) if len(ranked) > keep else self.floor
        self.counts = Counter(dict(ranked[:keep]))

    def distinct(self) -> int | None:
        return len(self.counts) if self.exact else None

    def top(self, k: int) -> list[tuple[str, int]]:
        return self.counts.most_common(k)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# -- one side's text ------------------------------------------------------------------------------------------------


class _Text:
    def __init__(self) -> None:
        self.grams = [DistinctCounter() for _ in range(3)]
        self.totals = [0, 0, 0]
        self.turns = 0
        self.tokens = 0
        self.turn_names = FrequentNames()
        self.distinct_turns = DistinctCounter()

    def add_batch(self, texts: list[str]) -> None:
        """Every turn of a batch at once: tokens are hashed in Rust (polars), n-grams mixed in numpy."""
        if not texts:
            return
        self.turns += len(texts)
        frame = pl.DataFrame({"t": texts}).with_row_index("turn").with_columns(
            pl.col("t").str.to_lowercase().str.extract_all(r"\S+").alias("w")).explode("w").drop_nulls("w")
        if frame.height == 0:
            return
        turn = frame["turn"].to_numpy()
        h = frame["w"].hash(seed=0x5EED).to_numpy().astype(np.uint64)
        self.tokens += h.size
        for n in range(3):
            if h.size <= n:
                break
            same = turn[n:] == turn[:h.size - n]
            mixed = h[:h.size - n].copy()
            if n >= 1:
                mixed = mixed * _P1 + h[1:h.size - n + 1]
            if n == 2:
                mixed = mixed * _P2 + h[2:]
            grams = mixed[same]
            self.totals[n] += int(grams.size)
            self.grams[n].add(grams)

    def add_dialogue_turns(self, texts: list[str]) -> None:
        """The distinct (folded) turns of one dialogue: for 'no turn in more than x% of dialogues'."""
        folded = {normalize(t) for t in texts if t}
        for t in folded:
            self.turn_names.add(t)
        self.distinct_turns.add(np.array([_hash64(t) for t in folded], dtype=np.uint64))

    def figures(self, dialogues: int, sample: list[str]) -> TextFigures:
        ratios = [self.grams[n].count() / self.totals[n] if self.totals[n] else 0.0 for n in range(3)]
        top = self.turn_names.top(TOP)
        return TextFigures(
            turns=self.turns, tokens=self.tokens, distinct_1=ratios[0], distinct_2=ratios[1], distinct_3=ratios[2],
            compression_similarity=compression_similarity(sample), distinct_turns=self.distinct_turns.count(),
            top_turns=[(t[:160], n) for t, n in top],
            top_turn_share=(top[0][1] / dialogues) if top and dialogues else 0.0)

    @property
    def exact(self) -> bool:
        return all(g.is_exact for g in self.grams) and self.turn_names.exact and self.distinct_turns.is_exact


def compression_similarity(texts: list[str]) -> float:
    """1 - mean normalized compression distance over a fixed set of pairs (each text with 3 others).

    NCD(x, y) = (C(xy) - min(C(x), C(y))) / max(C(x), C(y)) with zlib: near 0 when one text adds nothing
    to the other (templates), near 1 when they share nothing.
    """
    texts = [t for t in texts if t]
    if len(texts) < 2:
        return 0.0
    size = {i: len(zlib.compress(t.encode(), 9)) for i, t in enumerate(texts)}
    distances = []
    for i in range(len(texts)):
        for step in (1, 7, 31):
            j = (i + step) % len(texts)
            if j == i:
                continue
            both = len(zlib.compress((texts[i] + "\n" + texts[j]).encode(), 9))
            distances.append((both - min(size[i], size[j])) / max(size[i], size[j]))
    return round(1.0 - sum(distances) / len(distances), 4)


# -- the whole version ----------------------------------------------------------------------------------------------


class Diversity:
    """Feed it every row of a version (``add_batch``), then ``finish``; only accepted rows count for text,
    chains, coverage and difficulty, all rows for judge and difficulty-filter scores."""

    COLUMNS = ("id", "status", "domain", "messages", "task", "verdicts", "tool_chain", "num_writes", "difficulty",
               "user_actions")

    def __init__(self, known_intents: dict[str, list[str]] | None = None) -> None:
        self.known_intents = known_intents
        self.dialogues = 0
        self.user, self.assistant = _Text(), _Text()
        self.chains = FrequentNames()
        self.chain_count = DistinctCounter()
        self.domains: Counter[str] = Counter()
        self.personas: Counter[str] = Counter()
        self.intents: Counter[str] = Counter()
        self.turns: Counter[int] = Counter()
        self.calls: Counter[int] = Counter()
        self.writes: Counter[int] = Counter()
        self.user_actions: Counter[int] = Counter()
        self.difficulty: Counter[float] = Counter()
        self.judge: Counter[str] = Counter()
        self.difficulty_filter: Counter[str] = Counter()
        self.sample: list[tuple[int, str, str]] = []  # (id hash, user text, assistant text), the SAMPLE smallest

    def add_batch(self, rows: Iterable[dict[str, Any]]) -> None:
        user_texts: list[str] = []
        assistant_texts: list[str] = []
        for row in rows:
            self._scores(row.get("verdicts"))
            if row.get("status") != "accepted":
                continue
            messages = row.get("messages") or []
            users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
            replies = [m.get("content") or "" for m in messages if m.get("role") == "assistant" and m.get("content")]
            user_texts += users
            assistant_texts += replies
            self.user.add_dialogue_turns(users)
            self.assistant.add_dialogue_turns(replies)
            self._dialogue(row, messages)
            self._sample(str(row.get("id")), "\n".join(users), "\n".join(replies))
        self.user.add_batch(user_texts)
        self.assistant.add_batch(assistant_texts)

    def _dialogue(self, row: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self.dialogues += 1
        self.domains[row.get("domain") or "?"] += 1
        self.turns[sum(m.get("role") == "user" for m in messages)] += 1
        calls = sum(len(m.get("tool_calls") or []) for m in messages)
        actions = len(json.loads(row.get("user_actions") or "[]"))
        self.calls[calls] += 1
        self.user_actions[actions] += 1
        chain = row.get("tool_chain")
        if chain is None:  # a row from before tool_chain was stored: its assistant calls
            chain = CHAIN_SEPARATOR.join(c["function"]["name"] for m in messages for c in m.get("tool_calls") or [])
        self.chains.add(chain)
        self.chain_count.add(np.array([_hash64(chain)], dtype=np.uint64))
        if row.get("num_writes") is not None:
            self.writes[int(row["num_writes"])] += 1
        if row.get("difficulty") is not None:
            self.difficulty[float(row["difficulty"])] += 1
        task = json.loads(row["task"]) if row.get("task") else {}
        scenario = task.get("scenario") or {}
        if scenario.get("persona"):
            self.personas[scenario["persona"]] += 1
        for request in scenario.get("requests") or []:
            self.intents[f"{task.get('domain', row.get('domain'))}:{request.get('intent')}"] += 1

    def _scores(self, verdicts: str | None) -> None:
        for v in json.loads(verdicts or "[]"):
            if v.get("stage") == "judge":
                m = _SCORE.search(v.get("reason") or "")
                self.judge[m.group(1) if m else "unparsed"] += 1
            elif v.get("stage") == "difficulty":
                m = _ATTEMPT.search(v.get("reason") or "")
                self.difficulty_filter["kept (no tool-free answer)" if v.get("passed") else
                                       f"answered on attempt {m.group(1)}" if m else "dropped"] += 1

    def _sample(self, row_id: str, user: str, assistant: str) -> None:
        key = _hash64(row_id)
        if len(self.sample) < SAMPLE:
            self.sample.append((key, user, assistant))
            self.sample.sort(key=lambda s: s[0])
        elif key < self.sample[-1][0]:
            self.sample[-1] = (key, user, assistant)
            self.sample.sort(key=lambda s: s[0])

    def finish(self) -> DiversityFigures:
        n = self.dialogues
        top_chains = self.chains.top(TOP)
        coverage = None
        if self.known_intents:
            offered = {f"{d}:{i}" for d, names in self.known_intents.items() for i in names}
            coverage = len(set(self.intents) & offered) / len(offered) if offered else None
        return DiversityFigures(
            dialogues=n, exact=self.user.exact and self.assistant.exact and self.chains.exact,
            user=self.user.figures(n, [s[1] for s in self.sample]),
            assistant=self.assistant.figures(n, [s[2] for s in self.sample]),
            tool_chains=self.chains.distinct() or self.chain_count.count(),
            top_tool_chains=[(c[:300], k) for c, k in top_chains],
            top_tool_chain_share=top_chains[0][1] / n if top_chains and n else 0.0,
            domains=dict(self.domains.most_common()), personas=dict(self.personas.most_common()),
            intents=dict(sorted(self.intents.items())), intent_coverage=coverage,
            turns_per_dialogue=dict(sorted(self.turns.items())), tool_calls_per_dialogue=dict(sorted(self.calls.items())),
            writes_per_dialogue=dict(sorted(self.writes.items())),
            user_actions_per_dialogue=dict(sorted(self.user_actions.items())),
            difficulty=_difficulty(self.difficulty, self.writes), judge_scores=dict(sorted(self.judge.items())),
            difficulty_filter=dict(sorted(self.difficulty_filter.items())))


def _difficulty(scores: Counter[float], writes: Counter[int]) -> DifficultyFigures:
    total = sum(scores.values())
    if not total:
        return DifficultyFigures()

    def quantile(q: float) -> float:
        seen = 0
        for value, k in sorted(scores.items()):
            seen += k
            if seen >= q * total:
                return value
        return max(scores)

    buckets: Counter[str] = Counter()
    for value, k in scores.items():
        low = 2 ** int(math.floor(math.log2(max(value, 1))))
        buckets[f"{low}-{2 * low - 1}"] += k
    ordered = dict(sorted(buckets.items(), key=lambda kv: int(kv[0].split("-")[0])))
    n_writes = sum(writes.values())
    return DifficultyFigures(mean=round(sum(v * k for v, k in scores.items()) / total, 2), p50=quantile(0.5),
                             p90=quantile(0.9), histogram=ordered,
                             mean_writes=round(sum(w * k for w, k in writes.items()) / n_writes, 3) if n_writes else 0.0)


def format_change(name: str, change: dict[str, float | None]) -> str:
    """'12.3% -> 41.5% (+29.2 points)' for one headline figure of ``versions --diff``."""
    fmt = next(f for n, _get, f in SCALARS if n == name)
    old, new = change.get("from"), change.get("to")
    show = lambda v: "not measured" if v is None else fmt.format(v)  # noqa: E731
    if old is None or new is None:
        return f"{show(old)} -> {show(new)}"
    delta = new - old
    if "%" in fmt:
        return f"{show(old)} -> {show(new)} ({100 * delta:+.1f} points)"
    return f"{show(old)} -> {show(new)} ({delta:+.3g})"


def figure_lines(figures: DiversityFigures) -> list[str]:
    """The headline figures as 'name: value' lines (the end-of-run summary, the card)."""
    return [f"{name}: {fmt.format(get(figures))}" for name, get, fmt in SCALARS]
