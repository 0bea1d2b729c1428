"""How fast are unique KG questions built on a large graph, and at what memory?

Generates a seeded random KG with 1M edges (typed entities with pronounceable
names, numeric and categorical attributes, 8 relations), then builds
questions with the real ``QuestionBuilder`` (walk, clues, uniqueness check on
the whole graph) for ``--questions`` successes or ``--seconds``, whichever
comes first. Dropped (ambiguous) walks count against the rate.

    .venv/bin/python bench/kg_questions.py [--edges 1000000] [--questions 2000] [--seconds 90]

Last line: ``kg_questions: <q/s> q/s, peak_rss_mb=<m>``.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.base import SynthesisError  # noqa: E402
from generators.kg_question import KGQuestionParams, QuestionBuilder  # noqa: E402
from simulators.domains.kg.graph import KnowledgeGraph  # noqa: E402

TYPES = ("person", "city", "company", "film", "band")
RELATIONS = ("born in", "works for", "founded", "directed", "member of", "located in", "based in", "acted in")
SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tu", "vo", "zel", "dar", "fi", "gon", "hal", "is", "jor", "ne", "pra")


def generated_graph(edges: int, seed: int = 0) -> KnowledgeGraph:
    rng = random.Random(seed)
    nodes = edges // 5
    kg = KnowledgeGraph("generated")
    ids = [f"e{i}" for i in range(nodes)]
    for n in ids:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()
        kg.add_entity(n, name=f"{name} {n[1:]}", type=rng.choice(TYPES), size=rng.randint(1, 10**6),
                      year=rng.randint(1900, 2024), tag=rng.choice(SYLLABLES))
    made = 0
    while made < edges:
        # a power-law-ish tail: a few entities collect many links, as in real KGs
        head = ids[min(int(rng.paretovariate(1.2)) - 1, nodes - 1)] if rng.random() < 0.05 else rng.choice(ids)
        tail, relation = rng.choice(ids), rng.choice(RELATIONS)
        if head != tail and not kg.linked(head, relation, "out", tail):  # a repeated triple is not a new edge
            kg.add_edge(head, relation, tail)
            made += 1
    return kg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()

    started = time.perf_counter()
    kg = generated_graph(args.edges)
    built = time.perf_counter()
    print(f"graph: {len(kg):,} entities, {kg.num_edges:,} edges in {built - started:.1f}s", flush=True)
    builder = QuestionBuilder(kg, KGQuestionParams(min_hops=3, max_hops=6, degree_cap=100))
    builder.index.members(("type", TYPES[0]))  # the clue index is built once per graph; not part of the rate
    indexed = time.perf_counter()
    print(f"clue index built in {indexed - built:.1f}s", flush=True)
    made = dropped = 0
    hops = 0
    t0 = time.perf_counter()
    seed = 0
    while made < args.questions and time.perf_counter() - t0 < args.seconds:
        try:
            spec = builder.build(random.Random(seed))
            made += 1
            hops += len(spec.hops)
        except SynthesisError:
            dropped += 1
        seed += 1
    elapsed = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"questions: {made} unique, {dropped} dropped, mean {hops / max(made, 1):.1f} hops, {elapsed:.1f}s")
    print(f"kg_questions: {made / elapsed:.1f} q/s, peak_rss_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
