"""How hard a version's KG questions are, from its manifests: needed hops, clues, and the no-tool solve rate.

A KG question generator counts, per question it makes, ``needed_hops=<n>``
and ``clues=<n>`` in its synthesis funnel (``manifest.synthesis``), beside its
drops by reason (``shortcut``, ``leak``, ``ambiguous`` ...). Where the run had
the ``difficulty`` filter (a model answering without tools), the funnel says
how many questions reached it and how many it rejected: that share is the
questions a model solved from memory. The card and the report both read them
from here, so they cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from schemas import DatasetManifest


@dataclass
class Difficulty:
    questions: int
    needed_hops: dict[int, int]
    clues: dict[int, int]
    drops: dict[str, int]  # walks dropped by reason
    solved_without_tools: tuple[int, int] | None  # (rejected by `difficulty`, questions that reached it)


def _spread(counts: Counter[str], prefix: str) -> dict[int, int]:
    return dict(sorted((int(k[len(prefix):]), v) for k, v in counts.items()
                       if k.startswith(prefix) and k[len(prefix):].isdigit()))


def difficulty(manifests: Iterable[DatasetManifest]) -> Difficulty | None:
    """Summed over ``manifests``; None when none of them made KG questions."""
    counts: Counter[str] = Counter()
    solved = reached = 0
    ran = False
    for m in manifests:
        for generator_counts in m.synthesis.values():
            if any(k.startswith("needed_hops=") for k in generator_counts):
                counts.update(generator_counts)
        if "difficulty" in m.funnel:
            ran = True
            left = m.tasks
            for step, n in m.funnel.items():
                if step == "difficulty":
                    reached += left
                    solved += n
                    break
                left -= n
    if not counts.get("questions"):
        return None
    drops = {k: v for k, v in sorted(counts.items()) if "=" not in k and k not in ("questions", "walks")}
    return Difficulty(questions=counts["questions"], needed_hops=_spread(counts, "needed_hops="),
                      clues=_spread(counts, "clues="), drops=drops,
                      solved_without_tools=(solved, reached) if ran else None)


def markdown(d: Difficulty) -> str:
    """The card's section."""
    hops = ", ".join(f"{n} hops: {c}" for n, c in d.needed_hops.items())
    clues = ", ".join(f"{n}: {c}" for n, c in d.clues.items())
    drops = ", ".join(f"{k} {v}" for k, v in d.drops.items()) or "none"
    lines = [f"{d.questions} KG questions were built; each needs every hop of its chain (no shorter final part of it "
             "determines the answer) and shows neither its answer nor an entity of its path.", "",
             f"- hops needed: {hops}", f"- clues per question: {clues}", f"- walks dropped while building: {drops}"]
    if d.solved_without_tools is not None:
        solved, reached = d.solved_without_tools
        rate = f"{100 * solved / reached:.1f}%" if reached else "n/a"
        lines.append(f"- answered without tools by the `difficulty` filter's model: {solved} of {reached} ({rate}), "
                     "rejected")
    return "\n".join(lines)


def chart_items(d: Difficulty) -> list[tuple[str, int]]:
    """The report's bars: questions by hops needed, then by clue count."""
    return ([(f"{n} hops needed", c) for n, c in d.needed_hops.items()]
            + [(f"{n} clues", c) for n, c in d.clues.items()])
