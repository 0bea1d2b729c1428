"""A run that mixes domains (``domains`` with weights): each task draws its domain, every row is simulated and
verified on its own domain's environment, and ids, dedup, splits and exports hold across domains."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import polars as pl
import pyarrow.parquet as pq
import pytest
from export_helpers import draft_manifest

from pipelines.export import ExportOptions, export_version
from pipelines.flow import known_intents, run_generate
from pipelines.reward import verify_row
from pipelines.rl import TaskEnvironment
from pipelines.shard import rollout_shard, synthesize_shard
from pipelines.steps import build_environment, build_steps
from pipelines.store import DatasetStore
from pipelines.viewer.state_diff import state_diff
from schemas import ConfigError, Lineage, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]
MIXED = ROOT / "examples" / "mixed.yaml"
DOMAINS = {"store", "airline", "telecom"}


@pytest.mark.usefixtures("prefect_server")
def test_a_mixed_run_verifies_every_domain_dedups_across_them_and_exports(tmp_path):
    config = load_config(MIXED, num_tasks=48, shard_size=24)
    root = tmp_path / "mixed"
    manifest = run_generate(config, root, "mixed-1")

    rows = DatasetStore(root).read().to_dicts()
    accepted = [r for r in rows if r["status"] == "accepted"]
    assert {r["domain"] for r in accepted} == DOMAINS
    drawn = Counter(r["domain"] for r in rows)
    assert drawn["store"] > max(drawn["airline"], drawn["telecom"])  # weights 2 : 1 : 1
    assert len({r["id"] for r in accepted}) == len(accepted)
    # each row carries its own domain's tools and policy, and re-verifies on that domain alone
    envs = {d: build_environment(config, domain=d) for d in DOMAINS}
    for row in accepted:
        env = envs[row["domain"]]
        assert {t["function"]["name"] for t in json.loads(row["tools"])} == set(env.specs())
        assert row["messages"][0]["content"] == env.policy
        assert all(v.passed for v in verify_row(row, env)), row["id"]
    telecom = [r for r in accepted if r["domain"] == "telecom"]
    assert any(json.loads(r["user_actions"] or "[]") for r in telecom)  # dual control inside a mixed run
    assert not any(json.loads(r["user_actions"] or "[]") for r in accepted if r["domain"] != "telecom")
    # the stored config is the mixed one and parses again; the viewer's state diff rebuilds each row's own domain
    # and replays both sides (the user's phone too) to the row's final state
    stored = parse_config(manifest.config)
    assert stored.config_hash() == config.config_hash() and stored.domains == config.domains
    for domain in DOMAINS:
        row = next(r for r in accepted if r["domain"] == domain and json.loads(r["task"])["gold_actions"]
                   and (domain != "telecom" or json.loads(r["user_actions"] or "[]")))
        diff = state_diff(manifest.config, json.loads(row["task"]), row["messages"], row["final_state_hash"],
                          json.loads(row["user_actions"] or "[]"))
        assert diff.expected_ok and diff.dialogue_ok and all(c.agrees for c in diff.changes), (domain, diff)
        assert (domain == "telecom") == any(c.table == "devices" for c in diff.changes)
    assert set(manifest.diversity.domains) == DOMAINS
    assert manifest.diversity.intent_coverage is not None and manifest.diversity.intent_coverage > 0

    # the same config again is the same dataset: every accepted dialogue, of every domain, is an exact repeat
    again = run_generate(config, root, "mixed-2")
    assert again.accepted == 0 and again.funnel["dedup.exact"] == manifest.accepted

    # export: every domain in the SFT view and the card; a row's split follows its group, whatever its domain
    summary = export_version(root, tmp_path / "hf", ExportOptions(version=manifest.version, test_ratio=0.3))
    sft = {f.name.split("-")[0]: pq.read_table(f).to_pylist() for f in (tmp_path / "hf" / "data" / "sft").glob("*")}
    exported = [r for split in sft.values() for r in split]
    assert sorted(r["id"] for r in exported) == sorted(r["id"] for r in accepted)
    assert {r["domain"] for r in exported} == DOMAINS
    assert not {r["id"] for r in sft.get("train", [])} & {r["id"] for r in sft.get("test", [])}
    assert set(summary.by_domain) == DOMAINS
    card = (tmp_path / "hf" / "README.md").read_text()
    assert all(f"`{d}`" in card or f" {d}" in card for d in DOMAINS)
    # the rl view: each row rebuilds its own domain (a mixed run's env_config is per domain)
    views = datasets.load_dataset(str(tmp_path / "hf"), "rl", cache_dir=str(tmp_path / "cache"))
    rl = [r for split in views.values() for r in split]  # read as a trainer reads them (JSON columns decoded)
    assert {r["env_config"]["domain"] for r in rl} == DOMAINS
    for row in rl:
        assert row["env_config"]["domain"] == row["domain"]
        assert TaskEnvironment.from_row(row).reset()[0] == row["prompt"][0], row["id"]  # its own domain's policy


def test_mixed_domain_configs_fail_on_one_line_naming_the_field():
    base = {"num_tasks": 4, "domains": [{"name": "store"}, {"name": "airline", "weight": 2}]}
    assert [d.name for d in parse_config(base).mixed_domains()] == ["store", "airline"]
    with pytest.raises(ConfigError, match=r"domain: give either `domain` or `domains`, not both"):
        parse_config({**base, "domain": {"name": "store"}})
    with pytest.raises(ConfigError, match=r"domains\[1\]\.name: 'store' is listed twice"):
        parse_config({"num_tasks": 4, "domains": [{"name": "store"}, {"name": "store", "db_seed": 1}]})
    with pytest.raises(ConfigError, match=r"domains\.1\.weight: Input should be greater than 0"):
        parse_config({"num_tasks": 4, "domains": [{"name": "store"}, {"name": "airline", "weight": 0}]})
    with pytest.raises(ConfigError, match=r"^config: domains\[1\]\.name: unknown domain 'airlines'"):
        build_steps(parse_config({"num_tasks": 4, "domains": [{"name": "store"}, {"name": "airlines"}]}))


def test_a_single_domain_config_hashes_and_draws_as_before_mixing():
    """Configs and tasks written before ``domains`` existed hash and dump as before, and their tasks keep their
    generators. (Their stored hash itself moved with a field added since, ``dedup.near.bucket_cap`` of issue 17;
    mixing adds nothing to what is hashed.)"""
    for manifest in DatasetStore(ROOT / "tests" / "data" / "legacy-dataset").versions():
        config = parse_config(manifest.config)
        dumped = config.model_dump(mode="json")
        assert "domains" not in dumped and _kept(manifest.config, dumped)
        assert config.config_hash() == parse_config({**manifest.config, "domains": None}).config_hash()
    single = build_steps(load_config(ROOT / "examples" / "airline.yaml"))
    assert not single.mixed and single.domain_of(7, 3) is single.env
    frame = pl.DataFrame({"domain": [build_steps(load_config(MIXED)).domain_of(7, i).name for i in range(200)]})
    assert set(frame["domain"]) == DOMAINS


def _kept(stored, dumped) -> bool:
    """Every value ``stored`` has is in ``dumped`` unchanged (fields added since may sit beside them)."""
    if isinstance(stored, dict):
        return isinstance(dumped, dict) and all(k in dumped and _kept(v, dumped[k]) for k, v in stored.items())
    return stored == dumped


@pytest.mark.parametrize("example", ["airline.yaml", "telecom.yaml"])
def test_each_new_domain_example_runs_offline_as_shipped(example, tmp_path):
    """``examples/airline.yaml`` and ``examples/telecom.yaml`` (only num_tasks changed), shard by shard and committed:
    most tasks end as accepted, verified dialogues of that domain, the rest as rejected rows with a reason."""
    config = load_config(ROOT / "examples" / example, num_tasks=40, shard_size=40)
    lineage = Lineage(run_id="ex", config_hash=config.config_hash(), code_version="test", seed=config.seed)
    tasks = synthesize_shard(config, 0, tmp_path / "tasks.parquet")
    rollout_shard(config, 0, tasks, tmp_path / "rows.parquet", lineage)
    store = DatasetStore(tmp_path / "ds")
    manifest = store.commit([tmp_path / "rows.parquet"], draft_manifest("ex"), lambda: store.deduplicator(config.dedup),
                            known_intents=known_intents(config))
    rows = store.read().to_dicts()
    assert {r["domain"] for r in rows} == {config.domain.name} and len(rows) == 40
    assert manifest.accepted >= 32, manifest.funnel
    assert all(r["reason"] for r in rows if r["status"] == "rejected")
    env = build_environment(config)
    for row in (r for r in rows if r["status"] == "accepted"):
        assert all(v.passed for v in verify_row(row, env)), row["id"]
