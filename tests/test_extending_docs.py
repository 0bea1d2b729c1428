"""docs/extending.md works exactly as written: the example of each extension point (a domain, a step, a kind)
is run as a user would run it, as its own script, and what it wrote is checked."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"
SECTIONS = {"domain": "## A domain", "step": "## A step", "kind": "## A kind"}


def example(text: str, heading: str) -> str:
    """The first Python block under ``heading``."""
    section = text.split(f"\n{heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every example started at once (each starts its own Prefect server), then waited for."""
    text = DOC.read_text()
    procs = {}
    for name, heading in SECTIONS.items():
        cwd = tmp_path_factory.mktemp(name)
        (cwd / f"my_{name}.py").write_text(example(text, heading))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(cwd / "prefect-home"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # 2 shared cores: the default 20 s is tight
        env.pop("PREFECT_API_URL", None)
        procs[name] = (cwd, subprocess.Popen([sys.executable, f"my_{name}.py"], cwd=cwd, env=env, text=True,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    out = {}
    for name, (cwd, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        out[name] = (cwd, proc.returncode, stdout, stderr)
    return out


def finished(runs, name: str) -> tuple[Path, list[str]]:
    cwd, rc, stdout, stderr = runs[name]
    assert rc == 0, stderr[-3000:]
    lines = stdout.strip().splitlines()
    assert re.match(r"20 tasks: \d+ accepted, \d+ rejected ", lines[-1]), lines
    return cwd, lines


def test_every_example_is_small():
    text = DOC.read_text()
    for name, heading in SECTIONS.items():
        assert 25 <= len(example(text, heading).strip().splitlines()) <= 75, name


def test_the_domain_example_makes_verified_tasks_on_its_tools(runs):
    cwd, _ = finished(runs, "domain")
    df = pl.read_delta(str(cwd / "out" / "domain-demo"))
    assert df.height == 20 and set(df["domain"]) == {"notes"}
    accepted = df.filter(pl.col("status") == "accepted")
    assert accepted.height >= 15
    for row in accepted.to_dicts():  # found the user, listed the notes, archived one: the blueprint's chain
        calls = [c["function"]["name"] for m in row["messages"] for c in (m["tool_calls"] or [])]
        assert calls == ["find_user", "list_notes", "archive_note"], calls


def test_the_step_example_runs_its_own_generator_and_filter(runs):
    cwd, _ = finished(runs, "step")
    df = pl.read_delta(str(cwd / "out" / "extending-demo"))
    assert df.height == 20 and set(df["generator"]) == {"hurried_blueprint"}
    assert all('"persona":"a night-shift nurse"' in t for t in df["task"])
    # the custom filter really judged: its stage is on the verdicts, and long dialogues were cut
    assert all('"stage":"max_turns"' in v for v in df.filter(pl.col("stage").is_null())["verdicts"])
    assert "max_turns" in set(df["stage"].drop_nulls())


def test_the_kind_example_carries_its_kind_from_generation_to_export(runs):
    cwd, lines = finished(runs, "kind")
    df = pl.read_delta(str(cwd / "out" / "kind-demo"))
    assert df.height == 20 and set(df["kind"]) == {"order_status"}
    tasks = [json.loads(t) for t in df["task"]]
    assert all(t["order_id"].startswith("#W") and t["status"] for t in tasks)  # its own fields, on the task
    rejected = df.filter(pl.col("status") == "rejected")
    assert rejected.height and set(rejected["stage"]) <= {"answer_match", "dedup"}  # its planted wrong answers
    assert "answer_match" in set(rejected["stage"])
    spec = ast.literal_eval(lines[-2])  # the printed reward_spec of the first rl row
    assert spec["type"] == "answer" and spec["order_id"].startswith("#W")
    assert spec["answer"] is None and spec["answer_aliases"] == []  # the built-in kinds' fields, at their defaults
