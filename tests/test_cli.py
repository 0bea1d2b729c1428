"""The command line as a user runs it: a real subprocess, a real temporary Prefect server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
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


# -- at a terminal, with the default progress bar and --seed; export --force on what it made --------------------------


def _at_a_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin/stdout/stderr, as a user at a shell does; all it wrote."""
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory, prefect_api_url):
    """`trajforge generate --seed 4` at a terminal, without --no-progress (what a user types)."""
    tmp = tmp_path_factory.mktemp("terminal")
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "PREFECT_HOME": str(tmp / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING", "COLUMNS": "120",
           "TERM": "xterm-256color"}
    out = tmp / "ds"
    rc, screen = _at_a_terminal(["generate", "--config", str(write(tmp, GOOD)), "--out", str(out), "--seed", "4",
                                 "--run-id", "seeded"], env)
    return rc, screen, out


def test_default_progress_bar_at_a_terminal(seeded_run):
    from pipelines.store import DatasetStore

    rc, screen, out = seeded_run
    assert rc == 0, screen
    manifest = DatasetStore(out).versions()[-1]
    assert "\x1b[" in screen  # drawn live with terminal control sequences, not printed once
    bar = [line for line in screen.replace("\r", "\n").splitlines() if "generate" in line and "/40" in line]
    assert bar, screen
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bar[-1])
    assert re.search(rf"generate .*\b40/40\b.* {manifest.accepted} passed verification", final), final
    assert "version 0 committed" in screen


def test_seed_option_overrides_the_configs_seed(seeded_run):
    from loopback import synthesized_tasks

    from pipelines.store import DatasetStore
    from schemas import load_config

    rc, screen, out = seeded_run
    assert rc == 0, screen
    store = DatasetStore(out)
    assert store.versions()[-1].seed == 4 and set(store.read()["seed"]) == {4}
    config = load_config(out.parent / "config.yaml")
    assert config.seed == 3  # the file says 3; --seed 4 made the data
    made = set(store.read()["task_id"].drop_nulls())
    assert made == {t.id for t in synthesized_tasks(load_config(out.parent / "config.yaml", seed=4)).values()}
    assert made.isdisjoint(t.id for t in synthesized_tasks(config).values())


def test_export_refuses_a_non_empty_folder_and_force_replaces_it(seeded_run, tmp_path):
    from pipelines.cli import main

    _, _, out = seeded_run
    folder = tmp_path / "hf"
    assert main(["export", str(out), "--to", str(folder), "--rejects", "--sharegpt"]) == 0
    first = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert any(p.parts[:2] == ("data", "rejects") for p in first)

    assert main(["export", str(out), "--to", str(folder)]) == 2  # not empty: refused, nothing touched
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == first

    (folder / "notes.txt").write_text("left over")
    assert main(["export", str(out), "--to", str(folder), "--force"]) == 0  # replaced: no file of the old one left
    now = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}
    assert Path("notes.txt") not in now and not any(p.parts[:2] in {("data", "rejects"), ("data", "sharegpt")} for p in now)
    assert {p.parts[1] for p in now if p.parts[0] == "data"} == {"sft", "rl"}
    assert "rejects" not in (folder / "README.md").read_text().split("---")[1]  # the card lists only what is there
    assert not list(tmp_path.glob(".hf.*"))  # no partial or old copy left beside it

    target = tmp_path / "a-file"
    target.write_text("not a folder")
    for force in ([], ["--force"]):  # --force replaces a folder, never a file that is in the way
        assert main(["export", str(out), "--to", str(target), *force]) == 2
        assert target.read_text() == "not a folder" and not list(tmp_path.glob(".a-file*"))
