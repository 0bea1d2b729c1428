"""Funnels: steps describe their own counters, and dedup layers that are off are not steps of the run."""

from __future__ import annotations

from pathlib import Path

from pipelines.funnel import funnel, synthesis_lines, synthesis_steps

ROOT = Path(__file__).resolve().parents[1]
MODEL_BLUEPRINT = {"blueprints": 3, "generated": 5, "regenerated": 2, "failed_execution": 1, "passed_rules": 4,
                   "failed_committee": 1, "passed_committee": 3, "dropped": 1}


def test_a_generator_describes_its_own_counters():
    lines = synthesis_lines("model_blueprint", MODEL_BLUEPRINT)
    assert lines[0] == "model_blueprint: 3 blueprints, 5 written (2 rewritten with feedback)"
    assert "execution -1" in lines[1] and "-> 4 reviewed" in lines[1]
    assert synthesis_steps("model_blueprint", MODEL_BLUEPRINT)[:3] == [("blueprints", 3), ("generated", 5),
                                                                      ("regenerated", 2)]
    # a generator that is not installed here (a plug-in's, from another machine): its counters as they are
    assert synthesis_lines("someone_elses", {"b": 2, "a": 1}) == ["someone_elses: a 1, b 2"]
    assert synthesis_steps("someone_elses", {"b": 2, "a": 1}) == [("a", 1), ("b", 2)]


def test_the_pipeline_knows_no_generators_counter_names():
    for module in ("funnel", "report", "card"):
        source = (ROOT / "pipelines" / f"{module}.py").read_text()
        assert "blueprint_rules" not in source and "failed_committee" not in source, module


def test_dedup_layers_that_are_off_are_left_out():
    config = {"filters": [{"name": "format"}]}
    assert funnel({"format": 2, "dedup": 3}, {"exact": 1, "near": 2}, config) == {
        "synthesis": 0, "simulation": 0, "format": 2, "dedup.exact": 1, "dedup.near": 2}
    assert "dedup.semantic" not in funnel({}, {"exact": 0, "near": 0}, config)
