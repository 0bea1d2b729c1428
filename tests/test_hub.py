"""`trajforge push` with the real `huggingface_hub` client (and `datasets` to load), over HTTP, against the
Hub-compatible loopback server in tests/hub_server.py (HF_ENDPOINT). The nightly loop's push after a scheduled
run is in tests/test_schedule.py."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from export_helpers import two_versions
from hub_server import HubServer, load_from_hub

from pipelines.cli import main
from pipelines.store import DatasetStore
from schemas import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hf_trajforgeTESTtokenDoNotLeak0123456789"
REPO_ID = "acme/store-trajectories"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, prefect_server):
    return two_versions(tmp_path_factory.mktemp("hub") / "ds")


@pytest.fixture
def hub():
    with HubServer(SECRET) as server:
        yield server


def _push(tmp: Path, hub: HubServer, *args: str, token: str | None = SECRET, **env: str):
    """`trajforge push` as a user runs it: a fresh process, the token in HF_TOKEN, nothing cached."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    child.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp / "hf-home"), PYTHONPATH=str(ROOT), **env)
    if token:
        child["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "push", *args], cwd=tmp, env=child,
                          capture_output=True, text=True, timeout=300)


def test_push_tags_each_version_and_load_dataset_reads_it_back_by_tag(dataset, hub, tmp_path):
    versions = DatasetStore(dataset).versions()
    first = _push(tmp_path, hub, str(dataset), "--version", "0", "--repo", REPO_ID, "--shard-rows", "10",
                  "--json-as-text")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _push(tmp_path, hub, str(dataset), "--version", "1", "--repo", REPO_ID, "--rejects")
    assert second.returncode == 0, second.stdout + second.stderr
    repo = hub.repos[("dataset", REPO_ID)]
    assert f"pushed version 1 to {REPO_ID} (commit {repo.tags['v1']}, tag v1)" in second.stdout
    assert repo.tags["v0"] != repo.tags["v1"] and not repo.private

    # each tag is its version's export; shards of the earlier version do not linger on the later one
    v0, v1 = hub.files(REPO_ID, "v0"), hub.files(REPO_ID, "v1")
    assert len([p for p in v0 if p.startswith("data/sft/train-")]) > 1
    assert [p for p in v1 if p.startswith("data/sft/")] == ["data/sft/test-00000-of-00001.parquet",
                                                            "data/sft/train-00000-of-00001.parquet"]
    assert any(p.startswith("data/rejects/") for p in v1) and not any(p.startswith("data/rejects/") for p in v0)
    assert 'load_dataset("acme/store-trajectories", "sft", revision="v1")' in v1["README.md"].decode()
    # v0 went with --json-as-text (JSON columns as strings, any datasets >= 4.0), v1 role-exact Json (>= 4.7)
    assert "written with `--json-as-text`" in v0["README.md"].decode()
    assert "| `sft` | `messages[]`, `tools[]` | `datasets` >= 4.7 (the `Json` feature) |" in v1["README.md"].decode()
    assert hub.files(REPO_ID, "main") == v1

    # what a user of the dataset gets: each tag loads as that version
    with ThreadPoolExecutor(3) as pool:  # three fresh processes at once
        loads = [pool.submit(load_from_hub, hub.url, REPO_ID, config, tag, tmp_path / config / tag, SECRET)
                 for config, tag in (("sft", "v0"), ("sft", "v1"), ("rejects", "v1"))]
        sft0, sft1, rejects = (sum(f.result().values()) for f in loads)
    assert (sft0, sft1) == (versions[0].total_accepted, versions[1].total_accepted)
    assert rejects == versions[0].rejected + versions[1].rejected

    # the token: sent with every write, refused nowhere, kept nowhere
    writes = [(endpoint, ok) for (method, endpoint, ok) in hub.requests if method == "POST"]
    assert {"create_repo", "preupload", "commit", "tag"} <= {e for e, _ in writes} and all(ok for _, ok in writes)
    assert hub.unknown_requests() == []
    for run in (first, second):
        assert SECRET not in run.stdout + run.stderr
    for files in (v0, v1):
        assert not [p for p, blob in files.items() if SECRET.encode() in blob]
    for path in Path(dataset).rglob("*"):
        if path.is_file() and path.suffix != ".db":
            assert SECRET.encode() not in path.read_bytes(), path

    # the same version again: one line, exit 2, nothing uploaded, the tag unmoved
    commits = len(repo.commits)
    again = _push(tmp_path, hub, str(dataset), "--version", "1", "--repo", REPO_ID)
    assert again.returncode == 2
    assert again.stderr.strip() == (f"trajforge: error: {REPO_ID} already has tag v1 (commit {repo.tags['v1']}): "
                                    "version 1 was pushed before, and a version tag is never moved; nothing was "
                                    "uploaded")
    assert len(repo.commits) == commits and hub.tags(REPO_ID)["v1"] == repo.tags["v1"]


def test_push_refuses_without_token_offline_or_with_bad_input(dataset, hub, tmp_path, capsys):
    with ThreadPoolExecutor(2) as pool:
        runs = {"no token": pool.submit(_push, tmp_path, hub, str(dataset), "--version", "0", "--repo", "acme/x",
                                        token=None),
                "offline": pool.submit(_push, tmp_path, hub, str(dataset), "--version", "0", "--repo", "acme/x",
                                       HF_HUB_OFFLINE="1")}
        runs = {name: future.result() for name, future in runs.items()}
    assert runs["no token"].returncode == 2 and "no Hugging Face token: set HF_TOKEN" in runs["no token"].stderr
    assert runs["offline"].returncode == 2 and "HF_HUB_OFFLINE is set" in runs["offline"].stderr
    assert not hub.requests, "nothing reached the Hub"

    wrong = _push(tmp_path, hub, str(dataset), "--version", "0", "--repo", "acme/x", token="hf_not_the_token")
    assert wrong.returncode == 1
    (line,) = wrong.stderr.strip().splitlines()
    assert line.startswith("trajforge: error: push to acme/x failed: ") and "401" in line, line
    assert not hub.repos

    assert main(["push", str(dataset), "--version", "9", "--repo", "acme/x"]) == 2
    assert "no version 9" in capsys.readouterr().err
    assert main(["push", str(dataset), "--version", "0", "--repo", "not-a-repo"]) == 2
    assert "ORG/NAME" in capsys.readouterr().err


def test_the_publish_section_is_checked_and_is_not_part_of_the_config_hash(small_config):
    with_repo = small_config(num_tasks=20, shard_size=10, publish={"repo": "acme/nightly", "private": True})
    assert with_repo.config_hash() == small_config(num_tasks=20, shard_size=10).config_hash()
    with pytest.raises(ConfigError, match=r"publish.repo: String should match pattern"):
        small_config(publish={"repo": "no-slash"})
