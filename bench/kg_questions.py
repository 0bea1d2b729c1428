"""How fast are KG questions built on large graphs, typed and single-type, and at what memory?

Two seeded generated graphs, each built and measured in its own process so
peak memory is per case:

- ``typed_1m``: 1M edges, 200k typed entities (5 types) with pronounceable
  names, numeric and categorical attributes, 8 relations;
- ``single_type_400k``: 400k edges shaped like WordNet (WN18RR at about 5x):
  one entity type, no attributes, names shared by several entities
  (homonyms), 11 relations with WN18RR's mix (a hypernym tree with hubs,
  symmetric derivational links, topic and region hubs). Here a type says
  nothing, so every candidate set starts as the whole graph: the case the
  set-operation index is for.

Questions are built with the real ``QuestionBuilder`` (walk, clues, unique
answer under the shown names, every hop needed) for ``--questions`` successes
or ``--seconds``, whichever comes first. Dropped walks count against the rate.

    .venv/bin/python bench/kg_questions.py [--questions 2000] [--seconds 60] [--case typed_1m|single_type_400k]

Rates are per CPU second of the one process (the machine is shared: wall rates, also printed, depend on
what else runs). Last line:
``kg_questions: typed_1m=<q/s> single_type_400k=<q/s> q/s (per CPU second), peak_rss_mb=<m>/<m>``.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generators.base import SynthesisError  # noqa: E402
from generators.kg_question import KGQuestionParams, QuestionBuilder  # noqa: E402
from simulators.domains.kg.graph import KnowledgeGraph  # noqa: E402

TYPES = ("person", "city", "company", "film", "band")
RELATIONS = ("born in", "works for", "founded", "directed", "member of", "located in", "based in", "acted in")
SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tu", "vo", "zel", "dar", "fi", "gon", "hal", "is", "jor", "ne", "pra")
# WN18RR's relation mix (share of triples) and whether a relation points into a small set of hubs
WORDNET = (("_hypernym", 0.40, "tree"), ("_derivationally_related_form", 0.34, "pair"),
           ("_member_meronym", 0.085, "tree"), ("_has_part", 0.055, "tree"), ("_synset_domain_topic_of", 0.036, 400),
           ("_instance_hypernym", 0.034, "tree"), ("_also_see", 0.015, "pair"), ("_verb_group", 0.013, "pair"),
           ("_member_of_domain_region", 0.011, 120), ("_member_of_domain_usage", 0.007, 60),
           ("_similar_to", 0.004, "pair"))


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def typed_graph(edges: int, seed: int = 0) -> KnowledgeGraph:
    rng = random.Random(seed)
    nodes = edges // 5
    kg = KnowledgeGraph("generated")
    ids = [f"e{i}" for i in range(nodes)]
    for n in ids:
        kg.add_entity(n, name=f"{_name(rng).capitalize()} {n[1:]}", type=rng.choice(TYPES), size=rng.randint(1, 10**6),
                      year=rng.randint(1900, 2024), tag=rng.choice(SYLLABLES))
    for _ in range(edges):
        # a power-law-ish tail: a few entities collect many links, as in real KGs
        head = ids[min(int(rng.paretovariate(1.2)) - 1, nodes - 1)] if rng.random() < 0.05 else rng.choice(ids)
        tail = rng.choice(ids)
        if head != tail:
            kg.add_edge(head, rng.choice(RELATIONS), tail)  # a repeated triple is kept once by the index
    return kg


def single_type_graph(edges: int, seed: int = 0) -> KnowledgeGraph:
    """WordNet-shaped: untyped synsets named by shared words (homonyms), a hypernym tree with hubs."""
    rng = random.Random(seed)
    nodes = int(edges / 2.1)  # WN18RR: 40,943 synsets, 86,835 triples
    kg = KnowledgeGraph("single-type")
    names = []
    while len(names) < nodes:  # a word has 1 sense, or (one in ten) a few to 60, as WordNet's lemmas do
        word = f"{_name(rng)} {_name(rng)}" if rng.random() < 0.4 else _name(rng)
        names += [word] * (min(60, 2 + int(rng.expovariate(1 / 5))) if rng.random() < 0.1 else 1)
    rng.shuffle(names)
    ids = []
    senses: Counter[str] = Counter()
    for word in names[:nodes]:
        senses[word] += 1
        ids.append(f"{word.replace(' ', '_')}.{senses[word]:02d}")
        kg.add_entity(ids[-1], name=word)
    for relation, share, shape in WORDNET:
        hubs = ids[:shape] if isinstance(shape, int) else None
        for _ in range(int(edges * share) // (2 if shape == "pair" else 1)):
            i = rng.randrange(1, nodes)
            if shape == "tree":  # towards the root: low indices collect many children
                j = int(i * rng.random() ** 3)
            elif hubs is not None:
                j = rng.randrange(len(hubs))
            else:
                j = rng.randrange(nodes)
            if i == j:
                continue
            kg.add_edge(ids[i], relation, ids[j])
            if shape == "pair":
                kg.add_edge(ids[j], relation, ids[i])
    return kg


CASES = {"typed_1m": (typed_graph, 1_000_000, KGQuestionParams(min_hops=3, max_hops=6, degree_cap=100)),
         "single_type_400k": (single_type_graph, 400_000, KGQuestionParams(min_hops=2, max_hops=5, degree_cap=50))}


def run_case(name: str, questions: int, seconds: float) -> dict:
    make, edges, params = CASES[name]
    started = time.perf_counter()
    kg = make(edges)
    built = time.perf_counter()
    builder = QuestionBuilder(kg, params)
    builder.index.members(("initial", "K"))  # the graph's, clue and name indexes: once per graph, not in the rate
    kg.homonyms("")
    indexed = time.perf_counter()
    made = dropped = hops = 0
    reasons: Counter[str] = Counter()
    t0, c0 = time.perf_counter(), time.process_time()
    seed = 0
    while made < questions and time.perf_counter() - t0 < seconds:
        try:
            spec = builder.build(random.Random(seed))
            made += 1
            hops += len(spec.hops)
        except SynthesisError as err:
            dropped += 1
            reasons[str(err).split(":")[0]] += 1
        seed += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"case": name, "entities": len(kg), "edges": kg.num_edges, "build_s": built - started,
            "cpu_seconds": cpu, "cpu_qps": made / cpu, "index_s": indexed - built, "made": made, "dropped": dropped,
            "reasons": dict(reasons),
            "mean_hops": hops / max(made, 1), "seconds": elapsed, "qps": made / elapsed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--case", choices=sorted(CASES), help="run one case here (the parent runs each in a child)")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.questions, args.seconds)))
        return
    results = {}
    for name in CASES:  # each in a fresh process: its own peak memory
        out = subprocess.run([sys.executable, __file__, "--case", name, "--questions", str(args.questions),
                              "--seconds", str(args.seconds)], capture_output=True, text=True, check=True)
        r = results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name}: {r['entities']:,} entities, {r['edges']:,} edges (built {r['build_s']:.1f}s, indexed "
              f"{r['index_s']:.1f}s); {r['made']} questions, {r['dropped']} dropped {r['reasons']}, mean "
              f"{r['mean_hops']:.1f} hops, {r['seconds']:.1f}s wall, {r['cpu_seconds']:.1f}s CPU: {r['qps']:.1f} q/s "
              f"wall, {r['cpu_qps']:.1f} q/s per CPU second, peak_rss_mb={r['peak_rss_mb']:.0f}", flush=True)
    # Per CPU second: one process on one core, whatever else the machine runs; wall rates are printed above.
    rates = " ".join(f"{name}={r['cpu_qps']:.1f}" for name, r in results.items())
    memory = "/".join(f"{r['peak_rss_mb']:.0f}" for r in results.values())
    print(f"kg_questions: {rates} q/s (per CPU second), peak_rss_mb={memory}")


if __name__ == "__main__":
    main()
