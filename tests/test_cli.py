"""The command line as a user runs it: a real subprocess, a real temporary Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def trajforge(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def write(tmp: Path, text: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(text)
    return path


GOOD = """
name: cli
seed: 3
num_tasks: 40
shard_size: 20
simulation: {perturb_rate: 0.2}
"""


def test_generate_then_versions_json(tmp_path):
    out = tmp_path / "ds"
    run = trajforge("generate", "--config", str(write(tmp_path, GOOD)), "--out", str(out), "--no-progress",
                    "--run-id", "nightly-1", tmp=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "version 0 committed" in run.stdout
    assert "40 tasks" in run.stdout

    listed = trajforge("versions", str(out), "--json", tmp=tmp_path)
    assert listed.returncode == 0, listed.stderr
    versions = json.loads(listed.stdout)
    assert len(versions) == 1
    v = versions[0]
    assert {"version", "accepted", "rejected", "run_id", "config_hash", "created_at"} <= set(v)
    assert v["version"] == 0 and v["run_id"] == "nightly-1"
    assert v["accepted"] + v["rejected"] == 40

    table = trajforge("versions", str(out), tmp=tmp_path)
    assert table.returncode == 0 and "nightly-1" in table.stdout


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (GOOD.replace("perturb_rate: 0.2", "perturb_rate: 3"), "simulation.perturb_rate"),
        (GOOD + "num_taks: 5\n", "num_taks"),
        (GOOD + "filters: [{name: formatt}]\n", "filters[0].name"),
        (GOOD + "generators: [{name: blueprint, params: {max_requests: 0}}]\n", "generators[0].params.max_requests"),
        (GOOD + "domain: {name: bank}\n", "domain.name"),
        ("num_tasks: [1\n", "invalid YAML"),
    ],
)
def test_bad_config_is_one_line_naming_the_field_and_writes_nothing(tmp_path, text, named):
    out = tmp_path / "ds"
    config = write(tmp_path, text)
    run = trajforge("generate", "--config", str(config), "--out", str(out), tmp=tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert str(config) in lines[0] and named in lines[0]
    assert not out.exists()


def test_missing_config_and_missing_dataset(tmp_path):
    run = trajforge("generate", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "ds"), tmp=tmp_path)
    assert run.returncode == 2 and "nope.yaml" in run.stderr
    listed = trajforge("versions", str(tmp_path / "empty"), tmp=tmp_path)
    assert listed.returncode == 2 and "no trajforge dataset" in listed.stderr
