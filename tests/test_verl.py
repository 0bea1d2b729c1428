"""verl reads ``trajforge env verl``'s output: its own RLHFDataset, tool registry, agent-loop dispatch and reward loader.

verl 0.9.1 pins transformers < 5.11, so it cannot join the main venv; its
code is pure Python, so it is installed without dependencies into a cached
folder (``.venv-verl``, with the few modules its dataset, tool and protocol
imports need and the main venv lacks) and run by the main venv's interpreter
(torch 2.13, transformers, datasets, ray come from there). The rows are the
legacy dataset main wrote (a store run and a KG run, whose KG file is bundled),
exported by this code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from tiny_model import build_tiny_model

from pipelines.cli import main
from pipelines.export import ExportOptions, export_version

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[1]
VERL_SITE = Path(os.environ.get("TRAJFORGE_VERL_SITE", ROOT / ".venv-verl"))
# verl without its dependencies, plus what its dataset/tool/protocol modules import and the main venv lacks
VERL = ["verl==0.9.1", "tensordict==0.10.0", "pyvers==0.2.3", "omegaconf==2.4.0", "antlr4-python3-runtime==4.9.3",
        "hydra-core==1.3.8", "codetiming==1.4.0", "pillow==13.0.0"]


# verl >= 0.8 removed its interactions package (the user turn); 0.7.1's, laid over 0.9.1, tests TrajforgeInteraction
# against verl's own BaseInteraction and interaction registry without a second verl (and its import time)
INTERACTIONS = "verl==0.7.1"


def _verl_site() -> Path:
    stamp = VERL_SITE / f".installed-{'-'.join([*VERL, INTERACTIONS])}"
    if not stamp.exists():
        shutil.rmtree(VERL_SITE, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "--quiet", "--no-deps", "--target", str(VERL_SITE), *VERL], check=True,
                       timeout=900)
        wheels = VERL_SITE / ".wheels"
        subprocess.run([*pip, "download", "--quiet", "--no-deps", "--dest", str(wheels), INTERACTIONS], check=True,
                       timeout=900)
        with zipfile.ZipFile(next(wheels.glob("verl-*.whl"))) as wheel:
            for name in wheel.namelist():
                if name.startswith("verl/interactions/") and name.endswith(".py"):
                    wheel.extract(name, VERL_SITE)
        shutil.rmtree(wheels)
        stamp.touch()
    return VERL_SITE


@pytest.fixture(scope="module")
def verl_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("verl")
    shutil.copytree(DATA / "legacy-dataset", root / "ds")
    export_version(root / "ds", root / "hf", ExportOptions(test_ratio=0.25))
    assert main(["env", "verl", str(root / "hf"), "--out", str(root / "verl")]) == 0
    shutil.rmtree(root / "hf" / "environment", ignore_errors=True)  # the verl folder alone rebuilds them
    sft = datasets.load_dataset(str(root / "hf"), "sft", cache_dir=str(root / "cache"))
    gold = {}
    for split in sft.values():
        for row in split:
            gold[row["id"]] = [{**m, "tool_calls": [
                {**c, "function": {**c["function"], "arguments": c["function"]["arguments"]
                                   if isinstance(c["function"]["arguments"], str)
                                   else json.dumps(c["function"]["arguments"])}} for c in m.get("tool_calls") or []]}
                for m in row["messages"]]
    (root / "gold.json").write_text(json.dumps(gold))
    return root


@pytest.fixture(scope="module")
def verl_report(verl_out, tmp_path_factory):
    site = _verl_site()
    tokenizer = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "VERL_USE_EXTERNAL_PLUGINS": "none",
           "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([sys.executable, str(Path(__file__).parent / "verl_check.py"), str(verl_out / "verl"),
                           str(verl_out / "gold.json"), str(tokenizer), str(verl_out / "verl-cache")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_verls_dataset_loader_reads_every_row_of_the_verl_export(verl_out, verl_report):
    assert verl_report["verl"] == "0.9.1"
    assert set(verl_report["domains"]) == {"store", "kg"}
    for domain, got in verl_report["domains"].items():
        assert got["loaded"] == got["written"] > 0, domain  # RLHFDataset's length filter dropped nothing
        assert [i["raw_prompt"] for i in got["items"]] == got["written_prompts"]
        for item in got["items"]:
            assert item["data_source"] == f"trajforge/{domain}"
            assert [m["role"] for m in item["raw_prompt"]] == ["system", "user"]
            assert item["ability"].startswith("tool_use/") and item["agent_name"] == "tool_agent"
            assert item["reward_model"]["style"] == "rule" and json.loads(item["reward_model"]["ground_truth"])
            episode = item["tools_kwargs"]["trajforge"]
            assert json.loads(episode["env_config"])["domain"] == domain and json.loads(episode["task"])["id"]
            assert episode["opening"] == item["raw_prompt"][1]["content"]
            assert item["interaction_kwargs"]["name"] == "trajforge"
            assert item["interaction_kwargs"]["task"] == episode["task"]
        splits = {f.stem for f in (verl_out / "verl" / domain).glob("*.parquet")}
        assert splits <= {"train", "test"} and "train" in splits


def test_verls_tool_registry_builds_our_base_tools_and_the_gold_rollout_scores_one(verl_report):
    for domain, got in verl_report["domains"].items():
        assert got["base_tool"], domain  # verl's BaseTool is the base class of what its registry built
        assert "send_message_to_user" in got["tools"] and len(got["tools"]) > 2
        assert got["rewards"] and all(r == {"score": 1.0, "reason": ""} for r in got["rewards"]), (domain, got["rewards"])
        assert got["empty"]["score"] == 0.0 and "no tool" in got["empty"]["reason"]
        assert got["wrong"]["score"] == 0.0 and got["wrong"]["reason"]
        assert got["hostile"][0].startswith("Invalid JSON in arguments")  # verl's own answer; nothing crashed
        assert got["hostile"][1].startswith("Unknown function 'no_such_tool'")


def test_verls_interaction_registry_builds_the_simulated_user_and_it_scores_the_gold_dialogue(verl_report):
    """verl 0.6/0.7's loop: tool calls through the tools, the policy's text through the interaction's user."""
    for domain, got in verl_report["domains"].items():
        interaction = got["interaction"]
        assert interaction["base_interaction"] and interaction["name"] == "trajforge", domain
        assert interaction["rollouts"] and all(r["terminated"] and r["score"] == 1.0 and r["compute_score"] == 1.0
                                               for r in interaction["rollouts"]), (domain, interaction)
        assert all(r["finalized"] for r in interaction["rollouts"])


def test_env_verl_columns_and_files(verl_out):
    """What verl's trainer config names: the parquet files, the tool config, the interaction config, reward.py."""
    import yaml

    out = verl_out / "verl"
    assert (out / "reward.py").is_file()
    for domain in ("store", "kg"):
        table = pq.read_table(out / domain / "train.parquet")
        assert table.column_names == ["data_source", "prompt", "ability", "reward_model", "agent_name",
                                      "extra_info"]
        tools = yaml.safe_load((out / domain / "tool_config.yaml").read_text())["tools"]
        assert {t["class_name"] for t in tools} == {"pipelines.rl.verl.TrajforgeTool"}
        assert all(t["config"]["type"] == "native" and t["config"]["root"] == str(out.resolve()) for t in tools)
        interaction = yaml.safe_load((out / domain / "interaction_config.yaml").read_text())["interaction"]
        assert interaction[0]["name"] == "trajforge"


def test_env_verl_refuses_a_folder_without_an_rl_config(tmp_path, capsys):
    assert main(["env", "verl", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "rl config" in err
    assert not (tmp_path / "verl").exists()
