"""Walk constraints, uniqueness by construction on tiny hand-made graphs, answer matching, reproducibility."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from filters.answer_match import AnswerMatchFilter, AnswerMatchParams, matches
from filters.base import Context
from generators import GENERATORS, SynthesisError
from generators.kg_clues import ClueIndex, bucket, evaluate
from generators.kg_question import KGQuestionParams, QuestionBuilder, TemplateWriter
from generators.kg_walk import Hop, WalkParams, random_walk
from schemas import Message, Trajectory
from simulators.domains.kg.env import KGEnv, KGParams
from simulators.domains.kg.graph import KnowledgeGraph

ROOT = Path(__file__).resolve().parents[1]


def crown_graph(second_capital: str = "Pier City", second_population: int | None = None) -> KnowledgeGraph:
    """Two countries share the Crown; they differ only where the test says."""
    kg = KnowledgeGraph("crown")
    kg.add_entity("crown", name="Crown", type="currency")
    kg.add_entity("x1", name="Aland", type="country", population=1500)
    kg.add_entity("x2", name="Avalon", type="country", population=second_population or 1500)
    kg.add_entity("p1", name="Port Town", type="city")
    kg.add_entity("p2", name=second_capital, type="city")
    for country, city in (("x1", "p1"), ("x2", "p2")):
        kg.add_edge(country, "currency", "crown")
        kg.add_edge(country, "capital", city)
    return kg


CROWN_PATH = [Hop("crown", "currency", "in", "x1"), Hop("x1", "capital", "out", "p1")]


def builder(kg: KnowledgeGraph, **params) -> QuestionBuilder:
    return QuestionBuilder(kg, KGQuestionParams(**{"extra_clue_rate": 0.0, **params}))


def test_two_valid_answers_are_dropped_with_that_reason():
    kg = crown_graph()  # nothing tells Aland from Avalon, nor Port Town from Pier City (both start with P)
    with pytest.raises(SynthesisError, match=r"^ambiguous: 2 answers satisfy the question \(pier city; port town\)$"):
        builder(kg).constrain(CROWN_PATH, random.Random(0), attribute=None)


def test_a_distinguishing_clue_is_added_until_one_answer_remains():
    kg = crown_graph(second_population=7000)  # the populations fall in different 1-2-5 ranges
    spec = builder(kg).constrain(CROWN_PATH, random.Random(0), attribute=None)
    sets, answers = evaluate(kg, ClueIndex(kg, 50), spec)
    assert answers == {"port town"} and spec.answer == "Port Town"
    assert sets[1] == {"x1"} and ("range", "population", 1000, 2000) in spec.clues[1]
    without = type(spec)(hops=spec.hops, clues=[[], [], []])
    assert evaluate(kg, ClueIndex(kg, 50), without)[1] == {"port town", "pier city"}
    text = TemplateWriter().write(spec, kg, random.Random(0))
    for name in ("Crown", "Aland", "Port Town"):  # every entity on the path is described, not named
        assert name not in text
    assert "between 1,000 and 2,000" in text and text.endswith("Which city is C?")


def test_a_clue_on_the_last_entity_also_settles_it():
    kg = crown_graph(second_capital="Quay")
    spec = builder(kg).constrain(CROWN_PATH, random.Random(0), attribute=None)
    assert spec.answer == "Port Town" and ("initial", "P") in spec.clues[2]


def test_two_entities_with_the_same_attribute_value_are_one_answer():
    kg = crown_graph()
    for city in ("p1", "p2"):
        kg.add_entity(city, elevation=12)
    spec = builder(kg).constrain(CROWN_PATH, random.Random(0), attribute="elevation")
    assert spec.answer == "12" and spec.attribute == "elevation"


def test_max_clues_bounds_the_search_for_uniqueness():
    kg = crown_graph(second_population=7000)
    with pytest.raises(SynthesisError, match="ambiguous"):
        builder(kg, max_clues=1, min_anchor_clues=1).constrain(CROWN_PATH, random.Random(0), attribute=None)


def star_and_chain() -> KnowledgeGraph:
    """A hub with 30 spokes, a chain c0..c9 touching the hub once, and a lone pair."""
    kg = KnowledgeGraph("walks")
    for i in range(30):
        kg.add_edge("hub", "spoke", f"s{i}")
    for i in range(9):
        kg.add_edge(f"c{i}", "next", f"c{i + 1}")
    kg.add_edge("c5", "touches", "hub")
    kg.add_edge("lone1", "pair", "lone2")
    return kg


def test_walks_respect_hops_revisits_hubs_and_seed():
    kg = star_and_chain()
    params = WalkParams(min_hops=3, max_hops=5, degree_cap=10, max_jumps=50)
    for seed in range(200):
        hops = random_walk(kg, random.Random(seed), params)
        assert hops is not None
        nodes = [hops[0].source] + [h.target for h in hops]
        assert 3 <= len(hops) <= 5
        assert len(set(nodes)) == len(nodes)  # no revisits
        assert "hub" not in nodes  # degree 31 > cap 10: never stepped on
        assert all(n.startswith("c") for n in nodes)  # spokes and the lone pair are dead ends: jumped away
        for hop in hops:
            assert kg.linked(hop.source, hop.relation, hop.direction, hop.target)
        assert random_walk(kg, random.Random(seed), params) == hops


def test_walks_use_both_directions_and_give_up_when_impossible():
    kg = star_and_chain()
    directions = {h.direction for s in range(50) for h in random_walk(kg, random.Random(s), WalkParams(3, 5, 10))}
    assert directions == {"out", "in"}
    assert random_walk(kg, random.Random(0), WalkParams(min_hops=10, max_hops=12, degree_cap=10, max_jumps=5)) is None
    with pytest.raises(SynthesisError, match="no walk of 10\\+ hops"):
        QuestionBuilder(kg, KGQuestionParams(min_hops=10, max_hops=12, degree_cap=10, max_jumps=5)).build(
            random.Random(0))
    with pytest.raises(ValueError, match="max_hops"):
        KGQuestionParams(min_hops=4, max_hops=2)


def test_bucket_is_a_1_2_5_range():
    assert bucket(66_078_000) == (50_000_000, 100_000_000)
    assert bucket(1000) == (1000, 2000) and bucket(1999) == (1000, 2000) and bucket(7) == (5, 10)


def test_shipped_questions_are_unique_obfuscated_and_reproducible():
    env = KGEnv.configure(KGParams())(0)
    gen = GENERATORS.get("kg_question")(env, KGQuestionParams(min_hops=2, max_hops=5))
    index = ClueIndex(env.kg, 50)
    made = 0
    for seed in range(60):
        try:
            task = gen.generate(random.Random(seed))
        except SynthesisError as err:
            assert "ambiguous" in str(err) or "walk" in str(err)
            continue
        made += 1
        assert task.kind == "kg_question" and task.answer and 3 <= len(task.path) <= 6
        question = task.scenario.requests[0].opening
        for clue in (c for step in task.path for c in step["clues"]):  # clues may name off-path entities only
            question = question.replace(clue, "")
        for step in task.path:  # every entity on the path is described, never named
            assert f" {step['name']} " not in f" {question} ".replace(".", " ").replace(";", " ").replace("?", " ")
        assert gen.generate(random.Random(seed)) == task
        try:
            spec = gen.builder.build(random.Random(seed))
        except SynthesisError:
            continue  # generate() went on to a later walk
        assert len(evaluate(env.kg, index, spec)[1]) == 1
    assert made >= 50


def test_synthesis_does_not_depend_on_the_hash_seed(tmp_path):
    """Sets of entity ids are iterated during construction; the output must not depend on their order."""
    script = (
        f"import random, sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from simulators.domains.kg.env import KGEnv, KGParams\n"
        "from generators import GENERATORS, SynthesisError\n"
        "from generators.kg_question import KGQuestionParams\n"
        "g = GENERATORS.get('kg_question')(KGEnv.configure(KGParams())(0), KGQuestionParams(max_hops=6))\n"
        "for s in range(40):\n"
        "    try: print(g.generate(random.Random(s)).id)\n"
        "    except SynthesisError as e: print(e)\n")
    outs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout for seed in ("1", "2")]
    assert outs[0] == outs[1] and outs[0].count("\n") == 40


@pytest.mark.parametrize(("said", "ok"), [
    ("The answer is: Côte d'Ivoire", True),
    ("the answer is  cote d ivoire.", True),
    ("The answer is: Ivory Coast", True),
    ("The answer is: The Ivory Coast", True),
    ("It is Côte d'Ivoire, I think.", True),
    ("The answer is: Ghana (or maybe Côte d'Ivoire)", False),
    ("The answer is: Ghana", False),
    ("I could not find it.", False),
])
def test_answer_matching_is_normalized_and_knows_aliases(said, ok):
    assert matches(said, "Côte d'Ivoire", ["Ivory Coast"]) is ok


def test_numbers_match_with_or_without_separators():
    assert matches("The answer is: 66,078,000", "66078000", ["66,078,000"])
    assert matches("The answer is: 66078000", "66078000", ["66,078,000"])
    assert not matches("The answer is: 66078", "66078000", ["66,078,000"])


def test_answer_match_filter_wants_a_grounded_answer():
    env = KGEnv.configure(KGParams())(0)
    gen = GENERATORS.get("kg_question")(env, KGQuestionParams())
    task = gen.generate(random.Random(3))
    final = Message(role="assistant", content=f"The answer is: {task.answer}")
    looked = [Message(role="tool", tool_call_id="c1", content=f'{{"name": "{task.answer}"}}')]
    traj = lambda msgs: Trajectory(task_id=task.id, domain="kg", tools=[], messages=msgs)  # noqa: E731
    ctx = Context(task=task, env=env)
    assert AnswerMatchFilter().check(traj([*looked, final]), ctx).passed
    unlooked = AnswerMatchFilter().check(traj([final]), ctx)
    assert not unlooked.passed and "not grounded" in unlooked.reason
    assert AnswerMatchFilter(AnswerMatchParams(grounded=False)).check(traj([final]), ctx).passed
    wrong = AnswerMatchFilter().check(traj([*looked, Message(role="assistant", content="The answer is: nowhere")]), ctx)
    assert not wrong.passed and wrong.reason == f"answer 'nowhere' does not match {task.answer!r}"
