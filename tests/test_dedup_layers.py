"""Dedup layers: MinHash near-duplicates, deterministic survivors, persisted per-version indexes,
the funnel in the manifest and the summary, cluster ids, and the semantic layer."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dedup import INDEX_DIR, DedupIndex, Deduplicator, load_index, part_name, save_part, semantic
from dedup.minhash import MinHasher, band_keys, candidate_pairs, jaccard
from dedup.near import bandings
from pipelines.cli import main
from pipelines.flow import run_generate
from pipelines.store import DatasetStore
from schemas import ConfigError, DatasetManifest, DedupConfig, parse_config

WORDS = ("order package refund address card blue red jacket shoes return cancel exchange tracking late wrong size "
         "color store help please thanks email number street city week today yesterday broken gift speaker").split()


def dialogues(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["\n".join(" ".join(rng.choices(WORDS, k=12)) + f" #{rng.randrange(10**6)}" for _ in range(4))
            for _ in range(n)]


def edit(text: str, seed: int) -> str:
    words = text.split(" ")
    words[random.Random(seed).randrange(len(words))] = "zebra"
    return " ".join(words)


def run(dedup: Deduplicator, texts: list[str], hashes: list[str] | None = None):
    ids = [f"r{i}" for i in range(len(texts))]
    return dedup.run(ids, [True] * len(texts), hashes or ids, lambda pos: [texts[p] for p in pos])


def test_minhash_estimates_jaccard_and_is_deterministic():
    texts = dialogues(50)
    a, b = MinHasher(seed=1).signatures(texts), MinHasher(seed=1).signatures(texts)
    assert a.dtype == np.uint32 and a.shape == (50, 128) and (a == b).all()
    assert not (MinHasher(seed=2).signatures(texts) == a).all()
    near = MinHasher().signatures([texts[0], edit(texts[0], 1)])
    assert jaccard(near[0], near[1]) > 0.8
    assert jaccard(a[0], a[1]) < 0.3
    # same tokens in another order are different shingles; short and empty texts still get a signature
    short = MinHasher().signatures(["a b", "b a", "", ""])
    assert jaccard(short[0], short[1]) < 0.2 and (short[2] == short[3]).all()


def test_lsh_candidate_pairs_find_planted_pairs():
    texts = dialogues(300)
    texts += [edit(texts[i], i) for i in range(0, 300, 30)]
    sig = MinHasher().signatures(texts)
    pairs = {tuple(p) for p in candidate_pairs(band_keys(sig, 14, 9)).tolist()}
    planted = {(i, 300 + k) for k, i in enumerate(range(0, 300, 30))}
    assert planted <= pairs
    assert len(pairs) < 30  # unrelated dialogues rarely share a bucket


def test_near_duplicates_are_rejected_with_their_representative_deterministically():
    base = dialogues(40)
    texts = base + [edit(base[3], 1), edit(base[7], 2), base[3].upper()]  # case does not matter
    first = run(Deduplicator(DedupConfig()), texts)
    assert set(first.rejected) == {40, 41, 42}
    layer, reason = first.rejected[40]
    assert layer == "near" and reason.startswith("near duplicate of r3 (jaccard 0.")
    assert first.cluster_ids[40] == first.cluster_ids[42] == "r3" and first.cluster_ids[41] == "r7"
    assert first.counts == {"exact": 0, "near": 3}  # semantic is off: not a layer of this run
    assert first.stats["near"] == {"offered": 43, "duplicates": 3, "kept": 40}
    assert first.index.ids == [f"r{i}" for i in range(40)] and len(first.index.signatures) == 40
    again = run(Deduplicator(DedupConfig()), texts)
    assert again.rejected == first.rejected and again.cluster_ids == first.cluster_ids
    # the earlier row is the one kept: swap the order and the other one survives
    swapped = run(Deduplicator(DedupConfig()), [texts[40]] + base)
    assert swapped.rejected[4][1].startswith("near duplicate of r0")
    off = run(Deduplicator(DedupConfig.model_validate({"near": {"enabled": False}})), texts)
    assert not off.rejected


def test_exact_layer_keeps_order_ids_apart_and_runs_first():
    texts = ["cancel order #W1234 please", "cancel order #W9876 please", "cancel order #W1234 please"]
    out = run(Deduplicator(DedupConfig.model_validate({"near": {"threshold": 0.99}})), texts, ["h1", "h2", "h1"])
    assert out.rejected == {2: ("exact", "exact duplicate of r0")}
    assert out.cluster_ids == ["r0", "r1", "r0"]


def test_against_a_prior_index_and_config_validation():
    base = dialogues(20)
    first = run(Deduplicator(DedupConfig()), base)
    later = Deduplicator(DedupConfig(), prior=first.index)
    out = later.run(["n0", "n1", "n2"], [True, True, False], ["x0", "r5", "x2"],
                    lambda pos: [[edit(base[9], 4), "brand new words here", ""][p] for p in pos])
    assert out.rejected[0] == ("near", out.rejected[0][1]) and "an earlier version: r9" in out.rejected[0][1]
    assert out.rejected[1] == ("exact", "exact duplicate of an earlier version")
    assert 2 not in out.rejected and out.index.ids == []  # rejected before dedup: untouched, not indexed
    with pytest.raises(ConfigError, match=r"dedup\.near: .*bands \* rows = 200 exceeds num_perm = 128"):
        parse_config({"num_tasks": 1, "dedup": {"near": {"bands": 20, "rows": 10}}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"dedup\.near: .*set both bands and rows"):
        parse_config({"num_tasks": 1, "dedup": {"near": {"bands": 20}}}, "c.yaml")


def test_parts_keep_band_keys_and_a_part_without_them_dedups_the_same(tmp_path):
    """Later versions stream the earlier rows' band keys from the parts; a part written before parts kept them
    has its keys made again from its signatures, with the same outcome."""
    config = DedupConfig()
    base = dialogues(60)
    save_part(tmp_path, 0, "run-0", run(Deduplicator(config), base).index, config)
    part = tmp_path / INDEX_DIR / part_name(0, "run-0")
    assert sorted(k.name for k in part.glob("keys-*.npy")) == sorted(f"keys-{b}x{r}.npy" for b, r in
                                                                   bandings(config.near))
    signatures = np.load(part / "minhash.npy")
    for b, r in bandings(config.near):
        assert (np.load(part / f"keys-{b}x{r}.npy") == band_keys(signatures, b, r)).all()
    version0 = DatasetManifest(version=0, parent_version=None, run_id="run-0", config_hash="c", code_version="c", seed=0,
                               created_at="2026-01-01T00:00:00Z", tasks=60, accepted=60, rejected=0)
    texts = [edit(base[k], k) for k in range(0, 60, 3)] + dialogues(20, seed=5)

    def against_part() -> tuple:
        prior = load_index(tmp_path, [version0], config, lambda m: pytest.fail("the part should be read"))
        out = run(Deduplicator(config, prior), texts, [f"n{i}" for i in range(len(texts))])
        return set(prior.band_keys), out.rejected, out.cluster_ids

    streamed, rejected, clusters = against_part()
    assert streamed == set(bandings(config.near))
    assert sum("an earlier version" in why for _, why in rejected.values()) >= 15
    for k in part.glob("keys-*.npy"):
        k.unlink()
    assert against_part() == (set(), rejected, clusters)


def test_a_parts_rows_are_memory_mapped_and_a_part_written_by_older_code_is_read_as_it_is(tmp_path):
    """A part keeps its rows' ids, clusters and hashes as an Arrow file the next version maps; a part from before
    that has them as Parquet, and is read, not rebuilt, with the same outcome: exact repeats of it rejected."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = DedupConfig()
    base = dialogues(40)
    first = run(Deduplicator(config), base)
    save_part(tmp_path, 0, "run-0", first.index, config)
    part = tmp_path / INDEX_DIR / part_name(0, "run-0")
    version0 = DatasetManifest(version=0, parent_version=None, run_id="run-0", config_hash="c", code_version="c", seed=0,
                               created_at="2026-01-01T00:00:00Z", tasks=40, accepted=40, rejected=0)

    def loaded_and_again() -> tuple:
        prior = load_index(tmp_path, [version0], config, lambda m: pytest.fail("the part should be read"))
        assert prior.ids == first.index.ids and prior.hashes == first.index.hashes
        assert prior.cluster_ids == first.index.cluster_ids
        assert prior.ids[7] == "r7" and prior.ids[5:9] == ["r5", "r6", "r7", "r8"] and len(prior.ids[38:99]) == 2
        again = run(Deduplicator(config, prior), base[:10] + dialogues(5, seed=9),
                    [f"r{i}" for i in range(10)] + [f"new{i}" for i in range(5)])
        return again.rejected, again.cluster_ids

    rejected, clusters = loaded_and_again()
    assert sorted(rejected) == list(range(10))
    assert all(why == "exact duplicate of an earlier version" for _, why in rejected.values())
    assert clusters[:10] == [f"r{i}" for i in range(10)]
    rows = pa.ipc.open_file(pa.memory_map(str(part / "rows.arrow"))).read_all()
    pq.write_table(rows, part / "rows.parquet")  # as older code wrote it
    (part / "rows.arrow").unlink()
    assert loaded_and_again() == (rejected, clusters)


@pytest.mark.usefixtures("prefect_server")
def test_cross_version_dedup_from_persisted_parts(tmp_path, small_config):
    root = tmp_path / "ds"
    config = small_config(num_tasks=30, shard_size=15)
    first = run_generate(config, root, "run-1")
    parts = sorted(p.name for p in (root / INDEX_DIR).iterdir())
    assert parts == [part_name(0, "run-1")]

    df = pl.read_delta(str(root))
    accepted = df.filter(pl.col("status") == "accepted")
    assert df["cluster_id"].null_count() == 0
    assert set(accepted["cluster_id"]) <= set(accepted["id"])  # representatives are kept rows
    assert (df.filter(pl.col("status") == "rejected", pl.col("stage") != "dedup")["cluster_id"]
            == df.filter(pl.col("status") == "rejected", pl.col("stage") != "dedup")["id"]).all()

    # a part written for a commit that never happened is ignored
    ghost = DedupIndex(ids=["ghost"], cluster_ids=["ghost"], hashes=["ghost-hash"],
                       signatures=np.zeros((1, 128), np.uint32))
    save_part(root, 1, "run-never-committed", ghost, config.dedup)

    # the second run reads the parts, not the rows of earlier versions: a rebuilt part would be rewritten
    meta = root / INDEX_DIR / part_name(0, "run-1") / "meta.json"
    written = meta.stat().st_mtime_ns, meta.stat().st_ino
    second = run_generate(config, root, "run-2")  # same seed: every dialogue repeats
    assert second.accepted == 0 and second.funnel["dedup.exact"] == first.accepted
    assert (meta.stat().st_mtime_ns, meta.stat().st_ino) == written
    store = DatasetStore(root)
    index = store.dedup_index(config.dedup)
    assert "ghost" not in index.ids and len(index) == first.accepted

    # a lost part is rebuilt from that version's own rows, identically
    kept = index  # version 1 kept nothing: this is version 0's part
    shutil.rmtree(root / INDEX_DIR / part_name(0, "run-1"))
    rebuilt = store.dedup_index(config.dedup)
    assert rebuilt.ids == kept.ids and rebuilt.hashes == kept.hashes
    assert (np.asarray(rebuilt.signatures) == np.asarray(kept.signatures)).all()
    assert (root / INDEX_DIR / part_name(0, "run-1") / "meta.json").exists()


@pytest.mark.usefixtures("prefect_server")
def test_funnel_in_manifest_and_summary(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "num_tasks: 40\nshard_size: 20\nseed: 3\nsimulation: {perturb_rate: 0.3}\n"
        "filters: [{name: format}, {name: execution}, {name: policy}, {name: outcome}, {name: required_outputs},\n"
        "          {name: turn_count, params: {max_user_turns: 4}}, {name: repetition}, {name: secrets}]\n"
        "generators: [{name: blueprint, params: {min_requests: 1, max_requests: 3}}]\n")
    assert main(["generate", "--config", str(config), "--out", str(tmp_path / "ds"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    manifest = DatasetStore(tmp_path / "ds").versions()[-1]
    assert list(manifest.funnel) == ["synthesis", "simulation", "format", "execution", "policy", "outcome",
                                     "required_outputs", "turn_count", "repetition", "secrets", "dedup.exact",
                                     "dedup.near"]  # semantic dedup is off: left out, not "-0"
    assert sum(manifest.funnel.values()) == manifest.rejected
    assert manifest.funnel["turn_count"] > 0  # three requests take more than four user turns
    assert f"funnel ({manifest.tasks} tasks)" in out and f"{manifest.accepted:>7} left" in out
    assert "dedup.near" in out and "dedup.semantic" not in out
    rows = pl.read_delta(str(tmp_path / "ds")).filter(pl.col("stage") == "turn_count")
    assert rows["reason"].str.contains("more than 4").all()


needs_semantic = pytest.mark.skipif(semantic.available() is not None, reason=str(semantic.available()))


@needs_semantic
def test_semantic_layer_catches_paraphrases_and_reports_a_histogram():
    texts = ["I want to cancel my order because it is late.",
             "The weather in the mountains was lovely last weekend.",
             "I'd like to cancel my order since it is running late.",
             "Can you tell me where my package is?"]
    config = DedupConfig.model_validate({"near": {"enabled": False}, "semantic": {"enabled": True, "threshold": 0.8}})
    out = run(Deduplicator(config), texts)
    assert list(out.rejected) == [2]
    assert out.rejected[2][0] == "semantic" and out.rejected[2][1].startswith("semantic duplicate of r0 (cosine 0.")
    assert sum(out.similarity_histogram.values()) == len(texts) - 1  # every row after the first has a neighbour
    assert out.index.embeddings.shape == (3, 384)
    prior = Deduplicator(config, prior=out.index)
    again = prior.run(["n0"], [True], ["h"], lambda pos: ["Please cancel my order, it is late."])
    assert "an earlier version: r0" in again.rejected[0][1]


@needs_semantic
@pytest.mark.usefixtures("prefect_server")
def test_semantic_layer_in_a_run_and_the_histogram_command(tmp_path, small_config, capsys):
    config = small_config(num_tasks=20, shard_size=10, dedup={"semantic": {"enabled": True, "threshold": 0.99}})
    manifest = run_generate(config, tmp_path / "ds", "run-s")
    assert "dedup.semantic" in manifest.funnel and sum(manifest.similarity_histogram.values()) > 0
    assert (tmp_path / "ds" / INDEX_DIR / part_name(0, "run-s") / "embeddings.npy").exists()
    assert main(["dedup-histogram", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert f"{manifest.accepted} kept rows in 1 version(s)" in out and "0.95-1.00" in out


def test_semantic_without_the_extra_is_a_config_error(tmp_path):
    """Where sentence-transformers cannot be imported (here: shadowed by a package that fails to import, first on
    the path of a real `trajforge generate`), semantic dedup is one line naming the field, exit 2, nothing written."""
    shadow = tmp_path / "no-extra" / "sentence_transformers"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'sentence_transformers'\")\n")
    config = tmp_path / "x.yaml"
    config.write_text("num_tasks: 4\ndedup: {semantic: {enabled: true}}\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(root)])}
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "generate", "--config", str(config), "--out",
                           str(tmp_path / "ds")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(rf"trajforge: error: {re.escape(str(config))}: dedup\.semantic\.enabled: "
                                        r".*optional extra", lines[0]), lines
    assert not (tmp_path / "ds").exists()


def _part(root: Path, version: int) -> dict:
    """One version's persisted dedup part, read from its files (the on-disk format datasets carry across versions)."""
    import pyarrow as pa

    (path,) = (root / "_dedup").glob(f"v{version:08d}-*")
    meta = path / "meta.json"
    rows = pa.ipc.open_file(pa.memory_map(str(path / "rows.arrow"))).read_all().to_pydict()
    emb = path / "embeddings.npy"
    return {"meta": json.loads(meta.read_text()), "stamp": (meta.stat().st_ino, meta.stat().st_mtime_ns),
            "ids": rows["id"], "clusters": rows["cluster_id"], "hashes": rows["dedup_hash"],
            "minhash": np.load(path / "minhash.npy"), "embeddings": np.load(emb) if emb.exists() else None}


@needs_semantic
@pytest.mark.usefixtures("prefect_server")
def test_a_part_made_with_other_parameters_is_rebuilt_once_and_right(tmp_path, small_config):
    """Version 0 is deduplicated with the default near layer and no semantic one; the next run asks for other
    MinHash parameters and the semantic layer. Version 0's part is rebuilt, once, from its own rows: exactly the
    part a run made with the new parameters in the first place writes; a third run rebuilds nothing."""
    root = tmp_path / "ds"
    new = {"near": {"num_perm": 64, "ngram": 4}, "semantic": {"enabled": True, "threshold": 0.999}}
    run_generate(small_config(num_tasks=20, shard_size=10, seed=11), root, "run-0")
    made = _part(root, 0)
    assert made["minhash"].shape[1] == 128 and made["embeddings"] is None

    run_generate(small_config(num_tasks=20, shard_size=10, seed=12, dedup=new), root, "run-1")
    rebuilt, first = _part(root, 0), _part(root, 1)
    assert rebuilt["stamp"] != made["stamp"]
    assert rebuilt["meta"]["near"]["num_perm"] == 64 and rebuilt["meta"]["near"]["ngram"] == 4
    assert rebuilt["meta"]["semantic"] is not None and first["meta"]["near"] == rebuilt["meta"]["near"]
    assert rebuilt["ids"] == made["ids"] and rebuilt["clusters"] == made["clusters"]  # the same kept rows

    # what a run with the new parameters from the start writes for the same rows
    native_root = tmp_path / "native"
    run_generate(small_config(num_tasks=20, shard_size=10, seed=11, dedup=new), native_root, "run-0")
    native = _part(native_root, 0)
    assert native["ids"] == made["ids"], "precondition: the new parameters keep the same rows of version 0"
    assert rebuilt["hashes"] == native["hashes"] and (rebuilt["minhash"] == native["minhash"]).all()
    assert np.allclose(rebuilt["embeddings"], native["embeddings"], atol=2e-3)

    run_generate(small_config(num_tasks=20, shard_size=10, seed=13, dedup=new), root, "run-2")
    assert _part(root, 0)["stamp"] == rebuilt["stamp"] and _part(root, 1)["stamp"] == first["stamp"]
    assert [m.run_id for m in DatasetStore(root).versions()] == ["run-0", "run-1", "run-2"]
