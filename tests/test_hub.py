"""`trajforge push`: the calls made on huggingface_hub's API object, recorded; nothing leaves the machine."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from export_helpers import load_offline, two_versions
from huggingface_hub import HfApi

import pipelines.hub
from pipelines.cli import main
from pipelines.store import DatasetStore
from schemas import ConfigError

pytestmark = pytest.mark.usefixtures("prefect_server")
SECRET = "hf_trajforgeTESTtokenDoNotLeak0123456789"


class RecordingApi(HfApi):
    """HfApi with the three network calls replaced by recorders; the upload keeps a copy of the folder."""

    calls: list[tuple[str, dict]] = []
    uploads: Path

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        shutil.copytree(kwargs["folder_path"], self.uploads / f"upload-{len(self.calls)}")
        return SimpleNamespace(oid=f"{len(self.calls):040x}")

    def create_tag(self, repo_id, **kwargs):
        self.calls.append(("create_tag", {"repo_id": repo_id, **kwargs}))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, prefect_server):
    return two_versions(tmp_path_factory.mktemp("hub") / "ds")


@pytest.fixture
def recorder(monkeypatch, tmp_path):
    RecordingApi.calls = []
    RecordingApi.uploads = tmp_path / "uploads"
    RecordingApi.uploads.mkdir()
    monkeypatch.setattr(pipelines.hub, "HfApi", RecordingApi)
    monkeypatch.setattr(pipelines.hub.constants, "HF_HUB_OFFLINE", False)
    return RecordingApi


def test_push_creates_repo_uploads_folder_and_tags_version(dataset, recorder, monkeypatch, tmp_path, capfd, caplog):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    assert main(["push", str(dataset), "--version", "1", "--repo", "acme/store-trajectories", "--rejects"]) == 0
    out, err = capfd.readouterr()
    assert "pushed version 1 to acme/store-trajectories" in out and "tag v1" in out

    names = [name for name, _ in recorder.calls]
    assert names == ["create_repo", "upload_folder", "create_tag"]
    create, upload, tag = (kwargs for _, kwargs in recorder.calls)
    assert create["repo_id"] == "acme/store-trajectories" and create["repo_type"] == "dataset" and create["exist_ok"]
    assert upload["repo_id"] == "acme/store-trajectories" and upload["repo_type"] == "dataset"
    assert "version 1" in upload["commit_message"]
    assert upload["delete_patterns"] == ["data/**"]  # shards of an earlier version do not linger
    assert tag["tag"] == "v1" and tag["revision"] == f"{2:040x}" and tag["repo_type"] == "dataset"
    assert not Path(upload["folder_path"]).exists()  # the staging folder is temporary

    # the folder that would be uploaded loads, with its card pointing at the repo and tag
    folder = recorder.uploads / "upload-2"
    card = (folder / "README.md").read_text()
    assert 'load_dataset("acme/store-trajectories", "sft", revision="v1")' in card
    total = DatasetStore(dataset).versions()[1].total_accepted
    for config in ("sft", "rl", "rejects"):
        run = load_offline(folder, config, tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
    sft = datasets.load_dataset(str(folder), "sft", cache_dir=str(tmp_path / "cache"))
    assert sum(s.num_rows for s in sft.values()) == total

    # the token is nowhere: not in output, logs, the uploaded files or the dataset
    assert SECRET not in out + err + caplog.text
    for path in [*folder.rglob("*"), *Path(dataset).rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_push_refuses_without_token_or_with_bad_input(dataset, recorder, monkeypatch, tmp_path, capfd):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(pipelines.hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert main(["push", str(dataset), "--version", "0", "--repo", "acme/x"]) == 2
    assert "no Hugging Face token" in capfd.readouterr().err
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert main(["push", str(dataset), "--version", "9", "--repo", "acme/x"]) == 2
    err = capfd.readouterr().err
    assert "no version 9" in err and SECRET not in err
    assert main(["push", str(dataset), "--version", "0", "--repo", "not-a-repo"]) == 2
    assert "ORG/NAME" in capfd.readouterr().err
    monkeypatch.setattr(pipelines.hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["push", str(dataset), "--version", "0", "--repo", "acme/x"]) == 2
    assert "HF_HUB_OFFLINE" in capfd.readouterr().err
    assert recorder.calls == []


def test_a_run_whose_config_names_a_repo_pushes_its_new_version(recorder, monkeypatch, tmp_path, small_config):
    from pipelines.flow import run_generate

    monkeypatch.setenv("HF_TOKEN", SECRET)
    config = small_config(num_tasks=20, shard_size=10, publish={"repo": "acme/nightly", "private": True})
    first = run_generate(config, tmp_path / "ds", "night-1")
    second = run_generate(config.model_copy(update={"seed": 12}), tmp_path / "ds", "night-2")
    tags = [kw["tag"] for name, kw in recorder.calls if name == "create_tag"]
    assert tags == [f"v{first.version}", f"v{second.version}"]
    assert all(kw["private"] is True for name, kw in recorder.calls if name == "create_repo")
    card = (recorder.uploads / "upload-2" / "README.md").read_text()
    assert "publish:" not in card  # where it is pushed is not part of how the data was made ...
    assert config.config_hash() == small_config(num_tasks=20, shard_size=10).config_hash()  # ... nor of its hash
    with pytest.raises(ConfigError, match=r"publish.repo: String should match pattern"):
        small_config(publish={"repo": "no-slash"})
