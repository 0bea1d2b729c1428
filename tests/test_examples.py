"""The shipped example configs, as shipped: each is valid, `make demo`'s own commands run on the demo config,
and the model examples run against a loopback server (only num_tasks, and a model server's address, changed)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import datasets
import pytest
from blueprint_brain import BlueprintBrain, Router
from loopback import LoopbackServer, RefineBrain, TranscriptBrain, synthesized_tasks

from pipelines.cli import main
from pipelines.steps import build_steps
from pipelines.store import DatasetStore
from schemas import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def shipped(name: str, to: Path, num_tasks: int, url: str | None = None) -> Path:
    """A copy of ``examples/NAME`` with only ``num_tasks`` changed (and each model server's base_url, for ``url``)."""
    text = (ROOT / "examples" / name).read_text()
    text, n = re.subn(r"(?m)^num_tasks: \d+$", f"num_tasks: {num_tasks}", text)
    assert n == 1, f"{name}: no top-level num_tasks line"
    if url is not None:
        text, n = re.subn(r"base_url: http://127\.0\.0\.1:\d+/v1", f"base_url: {url}", text)
        assert n >= 1, f"{name}: no base_url to point at the loopback server"
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_text(text)
    return to


def serving(server: LoopbackServer, config: Path) -> Path:
    """The loopback server lists the example's own model names, as the real server would."""
    server.models = sorted({b.model for b in load_config(config).backends.values()})
    return config


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_shipped_example_is_a_valid_config(path):
    config = load_config(path)
    steps = build_steps(config, str(path))
    assert config.num_tasks > 0 and steps.generators and steps.filters


def test_every_example_is_run_by_a_test():
    """A new example needs a run somewhere (kg*.yaml run in test_kg_flow, the plug-in's in test_plugin_example)."""
    sources = {p.name: p.read_text() for p in (ROOT / "tests").glob("test_*.py")}
    for example in EXAMPLES:
        runs = [name for name, text in sources.items() if re.search(rf"[\"/]{re.escape(example.name)}\"", text)]
        assert runs, f"examples/{example.name} is run by no test"


@pytest.mark.usefixtures("prefect_server")
def test_make_demo_commands_run_on_the_demo_config(tmp_path, monkeypatch, capsys):
    """The commands `make demo` runs (read from `make -n demo`), verbatim, in a fresh folder holding the demo
    config at 40 tasks: generate, versions, export with every built-in chat template, report."""
    recipe = subprocess.run(["make", "-n", "-s", "demo"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert recipe.returncode == 0, recipe.stderr
    commands = [shlex.split(line) for line in recipe.stdout.replace("\\\n", " ").splitlines()
                if line.startswith(".venv/bin/trajforge ")]
    assert [c[1] for c in commands] == ["generate", "versions", "export", "report"], recipe.stdout
    shipped("demo.yaml", tmp_path / "examples" / "demo.yaml", num_tasks=40)
    monkeypatch.chdir(tmp_path)  # the demo config writes to out/demo, relative to where make runs
    for command in commands:
        assert main(command[1:]) == 0, command
    out = capsys.readouterr().out
    manifest = DatasetStore(tmp_path / "out" / "demo").versions()[-1]
    assert manifest.tasks == 40 and manifest.accepted > 0 and manifest.rejected > 0  # perturb_rate plants mistakes
    assert f"{manifest.accepted:>8}" in out  # `versions` listed it
    for template in ("qwen2.5", "qwen3", "llama3.1", "llama3.3", "hermes", "mistral", "granite"):
        assert re.search(rf"^\s+{re.escape(template)}\s+\d+", out, re.M), template  # checked by every template
    sft = datasets.load_dataset(str(tmp_path / "out" / "demo-hf"), "sft")
    assert sum(s.num_rows for s in sft.values()) == manifest.accepted
    assert {d for s in sft.values() for d in s["domain"]} == {"store", "airline", "telecom"}  # the demo mixes them
    assert "<svg" in (tmp_path / "out" / "demo-report.html").read_text()


def _generate(config: Path, out: Path) -> DatasetStore:
    assert main(["generate", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    return DatasetStore(out)


@pytest.mark.usefixtures("prefect_server")
def test_model_example_against_a_loopback_server(tmp_path):
    with LoopbackServer() as server:
        config = serving(server, shipped("model.yaml", tmp_path / "model.yaml", num_tasks=8, url=server.url))
        server.brain = TranscriptBrain(load_config(config))  # plays the user simulator and the assistant
        store = _generate(config, tmp_path / "out")
    manifest = store.versions()[-1]
    assert manifest.tasks == 8 and manifest.accepted == 8  # the replayed dialogues pass every filter
    assert set(manifest.usage) == {"user", "assistant"} and server.requests == sum(
        u.requests for u in manifest.usage.values())
    assert manifest.models == {"user": "Qwen/Qwen3-8B", "assistant": "Qwen/Qwen3-8B"}
    assert (tmp_path / "out" / "_cache" / "requests.sqlite").exists()  # cache: {enabled: true}


@pytest.mark.usefixtures("prefect_server")
def test_refine_example_against_a_loopback_server(tmp_path):
    with LoopbackServer() as server:
        config = serving(server, shipped("refine.yaml", tmp_path / "refine.yaml", num_tasks=8, url=server.url))
        server.brain = RefineBrain(load_config(config))
        store = _generate(config, tmp_path / "out")
    manifest = store.versions()[-1]
    assert manifest.tasks == 8 and manifest.accepted > 0
    assert manifest.usage["refine"].requests == server.requests == 8  # one structured-output request a dialogue


@pytest.mark.usefixtures("prefect_server")
def test_model_blueprints_example_against_a_loopback_server(tmp_path):
    """Both of its backends (writer and reviewer) point at one loopback server: blueprints written and reviewed
    by the scripted committee, then simulated by replaying the written tasks' transcripts."""
    with LoopbackServer() as server:
        config = serving(server, shipped("model_blueprints.yaml", tmp_path / "mb.yaml", num_tasks=6, url=server.url))
        parsed = load_config(config)
        writer = BlueprintBrain(parsed)
        server.brain = writer
        tasks = synthesized_tasks(parsed)  # what the run will write: the pool makes it deterministic
        server.brain = Router(writer, TranscriptBrain(parsed, tasks=tasks))
        store = _generate(config, tmp_path / "out")
    manifest = store.versions()[-1]
    assert manifest.tasks == 6 and manifest.accepted == len(tasks) > 0
    rows = store.read().to_dicts()
    assert {r["task_id"] for r in rows if r["status"] == "accepted"} == {t.id for t in tasks.values()}
    assert any(k.startswith("model_blueprint") for k in manifest.usage) and manifest.usage["assistant"].requests > 0
    provenance = json.loads(next(r["task"] for r in rows if r["status"] == "accepted"))["provenance"]
    assert len(provenance["reviews"]) == 3 and provenance["committee_mean"] >= 1  # its three reviewers
