"""`trajforge export`: the HF datasets folder, its views, its splits and its card, checked the way consumers read it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import polars as pl
import pyarrow as pa
import pytest
import yaml
from export_helpers import load_offline, two_versions

import simulators.domains  # noqa: F401  (registers the store domain)
from pipelines.cli import main
from pipelines.export import ExportError, ExportOptions, export_version
from pipelines.splits import assign_splits, group_keys
from pipelines.store import MANIFEST_KEY, DatasetStore
from pipelines.views import reward_spec
from schemas import Action, Task, UserScenario
from simulators.environment import DOMAINS
from simulators.text import normalize

pytestmark = pytest.mark.usefixtures("prefect_server")
SHARD = re.compile(r"^(train|test)-(\d{5})-of-(\d{5})\.parquet$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, prefect_server):
    return two_versions(tmp_path_factory.mktemp("export") / "ds")


@pytest.fixture(scope="module")
def exported(dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "folder"
    summary = export_version(dataset, folder, ExportOptions(test_ratio=0.3, rejects=True, sharegpt=True, shard_rows=15,
                                                            license="cc-by-4.0"))
    return folder, summary


def load(folder: Path, name: str, tmp: Path) -> datasets.DatasetDict:
    return datasets.load_dataset(str(folder), name, cache_dir=str(tmp / "cache"))


def test_layout_shards_and_offline_load_of_every_config(dataset, exported, tmp_path):
    folder, summary = exported
    store = DatasetStore(dataset)
    latest = store.versions()[-1]
    table = store.read()
    for view in ("sft", "rl", "rejects", "sharegpt"):
        files = sorted(p.name for p in (folder / "data" / view).iterdir())
        by_split: dict[str, list[re.Match]] = {}
        for name in files:
            match = SHARD.match(name)
            assert match, name
            by_split.setdefault(match[1], []).append(match)
        assert set(by_split) == {"train", "test"}
        for split, matches in by_split.items():  # xxxxx runs 0..n-1 and every file says "of n"
            assert [int(m[2]) for m in matches] == list(range(len(matches)))
            assert {int(m[3]) for m in matches} == {len(matches)}
            assert -(-summary.rows[view][split] // 15) == len(matches)
        run = load_offline(folder, view, tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
        counts = json.loads(run.stdout.strip().splitlines()[-1])
        status = "rejected" if view == "rejects" else "accepted"
        assert sum(counts.values()) == table.filter(pl.col("status") == status).height
        assert counts == summary.rows[view]
    assert summary.rows["sft"]["train"] + summary.rows["sft"]["test"] == latest.total_accepted


def test_splits_never_share_a_task_and_agree_across_configs(exported, tmp_path):
    folder, _ = exported
    sft, rl, rejects = (load(folder, n, tmp_path) for n in ("sft", "rl", "rejects"))
    for d in (sft, rl):
        assert not set(d["train"]["task_id"]) & set(d["test"]["task_id"])
    assert dict(zip(sft["test"]["id"], sft["test"]["task_id"], strict=True)) == \
        dict(zip(rl["test"]["id"], rl["test"]["task_id"], strict=True))
    # a rejected attempt at a test task is in the rejects' test split too
    test_tasks = set(sft["test"]["task_id"])
    assert not test_tasks & set(t for t in rejects["train"]["task_id"] if t)


def test_split_groups_follow_near_duplicate_clusters():
    # t1~t2 share cluster a, t2~t3 share cluster b: one group of three; t4 alone.
    rows = pl.DataFrame({"id": ["r1", "r2", "r3", "r4", "r5"], "task_id": ["t1", "t2", "t3", "t4", None],
                         "cluster_id": ["a", "a", "b", "c", None]})
    rows = rows.vstack(pl.DataFrame({"id": ["r6"], "task_id": ["t2"], "cluster_id": ["b"]}))
    keys = group_keys(rows)
    assert keys[0] == keys[1] == keys[2] == keys[5] != keys[3]
    assert keys[4] == "r5"  # no task: its own group
    assert group_keys(rows.drop("cluster_id"))[0] == "t1"  # without clusters a group is the task id


def test_export_keeps_clusters_whole(dataset, tmp_path):
    """A dataset whose rows carry cluster_id (as near-dup dedup adds them): no cluster straddles train and test."""
    store = DatasetStore(dataset)
    table = store.read()
    tasks = sorted(set(table["task_id"].drop_nulls()))
    cluster = {t: f"c{i // 4}" for i, t in enumerate(tasks)}  # four distinct tasks per cluster
    clustered = table.with_columns(pl.col("task_id").replace_strict(cluster, default=None).alias("cluster_id"))
    without = assign_splits(table, 0.5)
    straddling = clustered.with_columns(without).group_by("cluster_id").agg(pl.col("split").n_unique())
    assert straddling.filter(pl.col("split") > 1).height > 0  # task-only splits would leak across these clusters

    ds2 = tmp_path / "clustered"
    manifest = store.versions()[-1].model_dump_json(exclude={"version"})
    from deltalake import CommitProperties, write_deltalake
    write_deltalake(str(ds2), clustered.to_arrow(), mode="append",
                    commit_properties=CommitProperties(custom_metadata={MANIFEST_KEY: manifest}))
    folder = tmp_path / "hf"
    export_version(ds2, folder, ExportOptions(test_ratio=0.5))
    sft = load(folder, "sft", tmp_path)
    train = {cluster[t] for t in sft["train"]["task_id"]}
    test = {cluster[t] for t in sft["test"]["task_id"]}
    assert train and test and not train & test


ROLE_KEYS = {"system": {"role", "content"}, "user": {"role", "content"},
             "tool": {"role", "tool_call_id", "name", "content"}}


def test_sft_rows_are_role_exact_end_on_the_assistant_and_keep_tool_order(dataset, exported, tmp_path):
    folder, _ = exported
    stored = {r["id"]: r for r in DatasetStore(dataset).read().to_dicts()}
    declared = [t.model_dump() for t in DOMAINS.get("store")(0).tools()]
    sft = load(folder, "sft", tmp_path)
    checked = 0
    for split in sft.values():
        for row in split:
            messages = row["messages"]
            assert messages[-1]["role"] == "assistant" and messages[0]["role"] == "system"
            for m in messages:
                keys = ROLE_KEYS.get(m["role"]) or ({"role", "content", "tool_calls"} if "tool_calls" in m
                                                    else {"role", "content"})
                assert set(m) == keys, m  # no null padding: only the keys the role uses
                assert isinstance(m["content"], str)
            names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls", [])}
            assert all(m["name"] == names[m["tool_call_id"]] for m in messages if m["role"] == "tool")
            calls = [c for m in messages for c in m.get("tool_calls", [])]
            original = [c for m in stored[row["id"]]["messages"] for c in (m["tool_calls"] or [])]
            assert len(calls) == len(original) > 0
            for call, before in zip(calls, original, strict=True):
                assert call["function"]["arguments"] == json.loads(before["function"]["arguments"])
            # what was trimmed is the user's closing line, nothing else
            whole = stored[row["id"]]["messages"]
            assert [m["role"] for m in whole[len(messages):]] in ([], ["user"])
            # tool schemas in declared order, keys and properties as written
            assert [json.dumps(t) for t in row["tools"]] == [json.dumps(t) for t in declared]
            checked += 1
    assert checked == sum(s.num_rows for s in sft.values()) > 0
    rejects = load(folder, "rejects", tmp_path)
    for row in rejects["train"]:
        if row["messages"]:
            assert row["messages"][-1]["role"] == "assistant"
        whole = stored[row["id"]]["messages"]
        assert len(row["messages"]) + len(row["trailing"]) == len(whole)


def _stored_row(messages: list[dict], tools: list[dict]) -> dict:
    """A row as the store holds it (struct messages with every role's keys), for views built from fixtures."""
    keys = ("role", "content", "tool_calls", "tool_call_id", "name", "reasoning_content")
    return {"id": "fixture", "task_id": "t", "domain": "store", "kind": "blueprint", "num_turns": 2,
            "messages": [{k: m.get(k) for k in keys} for m in messages], "tools": json.dumps(tools)}


def _parallel_row(tools: list[dict]) -> dict:
    """Two calls in one assistant message, answered by two tool messages, with reasoning on the final turn."""
    def call(i, name, args):
        return {"id": f"call_{i:012d}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}

    a, b = call(1, "get_order_details", {"order_id": "#W0000001"}), call(2, "get_order_details", {"order_id": "#W2"})
    return _stored_row([
        {"role": "system", "content": "Follow the store policy."},
        {"role": "user", "content": "What is the status of orders #W0000001 and #W2?"},
        {"role": "assistant", "tool_calls": [a, b]},  # content None: the model said nothing
        {"role": "tool", "tool_call_id": a["id"], "content": '{"status": "pending"}'},
        {"role": "tool", "tool_call_id": b["id"], "content": '{"status": "delivered"}'},
        {"role": "assistant", "content": "The first is pending, the second delivered.",
         "reasoning_content": "Both results are in."},
        {"role": "user", "content": "Thanks, bye."},
    ], tools)


def test_parallel_calls_and_reasoning_in_every_view_and_template():
    from pipelines.template_check import BUILTINS, check_records, load_template
    from pipelines.views import decoded, sft_record, sharegpt_record

    tools = [t.model_dump() for t in DOMAINS.get("store")(0).tools()]
    row = _parallel_row(tools)
    sft = decoded(sft_record(row), "sft")
    assert [m["role"] for m in sft["messages"]] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert sft["messages"][2] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_000000000001", "type": "function",
         "function": {"name": "get_order_details", "arguments": {"order_id": "#W0000001"}}},
        {"id": "call_000000000002", "type": "function",
         "function": {"name": "get_order_details", "arguments": {"order_id": "#W2"}}}]}
    assert sft["messages"][3]["name"] == "get_order_details"
    assert sft["messages"][-1]["reasoning_content"] == "Both results are in."
    assert "reasoning_content" not in decoded(sft_record(row, reasoning=False), "sft")["messages"][-1]
    share = sharegpt_record(row)
    assert [t["from"] for t in share["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert len(json.loads(share["conversations"][1]["value"])) == 2  # one function_call with both calls
    assert json.loads(share["conversations"][2]["value"]) == ['{"status": "pending"}', '{"status": "delivered"}']
    assert share["conversations"][3]["value"].startswith("<think>\nBoth results are in.\n</think>")
    reports = {r.template.name: r for r in check_records([load_template(n) for n in BUILTINS],
                                                          [("fixture", sft["messages"], sft["tools"])], workers=1)}
    for name in ("qwen2.5", "qwen3", "hermes", "mistral", "granite"):
        assert reports[name].rendered == 1, (name, reports[name].failed)
    for name in ("llama3.1", "llama3.3"):  # Llama 3.x templates refuse parallel calls: reported, with the row id
        assert "only supports single tool-calls" in reports[name].failed["fixture"]
    assert not reports["qwen3"].prefix_failed  # reasoning on the final turn only: prefix-stable


def test_checks_can_fail():
    """Rows as main exported them (null padding, no tool name, content None), and a template that drops a result."""
    from pipelines.template_check import ChatTemplate, check_row, load_template
    from pipelines.views import decoded, sft_record

    tools = [t.model_dump() for t in DOMAINS.get("store")(0).tools()]
    sft = decoded(sft_record(_parallel_row(tools)), "sft")
    padded = [{"role": m["role"], "content": m.get("content") or None, "tool_calls": m.get("tool_calls"),
               "tool_call_id": m.get("tool_call_id")} for m in sft["messages"]]
    assert "template raised" in check_row(load_template("hermes"), padded, tools).problem
    assert check_row(load_template("qwen3"), padded, tools).problem
    hermes = load_template("hermes")
    dropping = ChatTemplate("drops-results", hermes.text.replace("message.content|tojson", '""'), "hermes")
    assert "tool result call_000000000001" in check_row(dropping, sft["messages"], tools).problem
    wrong = ChatTemplate("args-from-first", hermes.text.replace("tool_call.arguments|tojson",
                                                                 'message.tool_calls[0].function.arguments|tojson'),
                         "hermes")
    assert "call_000000000001 arguments (message 2): rendered 2 times" in check_row(wrong, sft["messages"], tools).problem


def test_main_written_dataset_still_exports_role_exact_and_appends(dataset, tmp_path, prefect_server):
    """A store written by the previous code: no reasoning_content field, tool names null, tools in sorted JSON."""
    from deltalake import CommitProperties, write_deltalake

    from pipelines.rows import ROW_SCHEMA
    from schemas import canonical_json

    store = DatasetStore(dataset)
    table = store.read(0).to_arrow()
    old_message = pa.struct([(f.name, f.type) for f in ROW_SCHEMA.field("messages").type.value_type
                             if f.name != "reasoning_content"])
    old_schema = pa.schema([pa.field("messages", pa.list_(old_message)) if f.name == "messages" else f
                            for f in ROW_SCHEMA])
    rows = table.to_pylist()
    for r in rows:
        r["messages"] = [{k: (None if k == "name" else v) for k, v in m.items() if k != "reasoning_content"}
                         for m in r["messages"]]
        r["tools"] = canonical_json(json.loads(r["tools"]))
    old = tmp_path / "old"
    manifest = store.versions()[0].model_dump_json(exclude={"version"})
    write_deltalake(str(old), pa.Table.from_pylist(rows, schema=old_schema), mode="append",
                    commit_properties=CommitProperties(custom_metadata={MANIFEST_KEY: manifest}))
    from export_helpers import config as small

    from pipelines.flow import run_generate
    run_generate(small(13, 20), old, "run-new")  # the new code appends to the old table (schema merged)
    folder = tmp_path / "hf"
    summary = export_version(old, folder, ExportOptions(chat_templates=["hermes", "qwen3"]))
    assert all(t["rendered"] == t["rows"] for t in summary.templates)
    sft = load(folder, "sft", tmp_path)
    for split in sft.values():
        for row in split:
            for m in row["messages"]:
                assert set(m) == ROLE_KEYS.get(m["role"], set(m)) and isinstance(m["content"], str)
            assert all(m["name"] for m in row["messages"] if m["role"] == "tool")
    assert sum(s.num_rows for s in sft.values()) == sum(m.accepted for m in DatasetStore(old).versions())
    assert len(DatasetStore(old).versions()) == 2


def test_check_template_cli(exported, tmp_path, capsys):
    folder, _ = exported
    assert main(["check-template", str(folder), "--chat-template", "qwen3", "--chat-template", "granite"]) == 0
    out = capsys.readouterr().out
    rows = sum(load(folder, "sft", tmp_path)[s].num_rows for s in ("train", "test"))
    assert re.search(rf"qwen3\s+{rows}\s+{rows}\s+{rows}\s+text", out), out
    bad = tmp_path / "bad.jinja"
    bad.write_text((Path(__file__).parents[1] / "pipelines/templates/hermes.jinja").read_text()
                   .replace("message.content|tojson", '""'))
    assert main(["check-template", str(folder), "--chat-template", str(bad), "--limit", "3"]) == 1
    assert re.search(r"bad.jinja: row \w+: tool result", capsys.readouterr().out)
    assert main(["check-template", str(folder), "--chat-template", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chat-template nope: not a built-in template" in err[0]
    # an export that meets an unrenderable row stops, writes nothing, and names the row
    assert main(["export", str(folder.parent), "--to", str(tmp_path / "x"), "--chat-template", str(bad)]) == 2


def test_export_stops_or_drops_unrenderable_rows(dataset, tmp_path, capsys):
    bad = tmp_path / "bad.jinja"
    bad.write_text((Path(__file__).parents[1] / "pipelines/templates/hermes.jinja").read_text()
                   .replace("message.content|tojson", '""'))
    assert main(["export", str(dataset), "--to", str(tmp_path / "x"), "--chat-template", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not render" in err[0] and "row " in err[0] and not (tmp_path / "x").exists()
    assert main(["export", str(dataset), "--to", str(tmp_path / "y"), "--chat-template", str(bad),
                 "--drop-unrenderable", "--sharegpt"]) == 0
    capsys.readouterr()
    text = (tmp_path / "y" / "README.md").read_text()
    assert "accepted rows were left out of every config" in text
    assert not (tmp_path / "y" / "data" / "sft").exists()  # every row has a tool result: all dropped


def _state_after(domain: str, seed: int, calls: list[tuple[str, dict]]) -> str:
    env = DOMAINS.get(domain)(seed)
    for name, arguments in calls:
        env.execute(name, arguments)
    return env.state_hash()


def test_every_rl_row_reward_spec_verifies_its_gold_trajectory(exported, tmp_path):
    folder, _ = exported
    rl, sft = load(folder, "rl", tmp_path), load(folder, "sft", tmp_path)
    dialogues = {r["id"]: r for s in sft.values() for r in s}
    checked = 0
    for split in rl.values():
        for row in split:
            spec = row["reward_spec"]
            assert spec["type"] == "outcome" and spec["expected_state_hash"]
            assert row["prompt"] and all(m["role"] != "assistant" for m in row["prompt"])
            assert row["prompt"][-1]["role"] == "user"
            assert row["scenario"]["instruction"]
            gold = [(a["name"], a["arguments"]) for a in spec["gold_actions"]]
            assert _state_after(row["domain"], row["env_seed"], gold) == spec["expected_state_hash"]
            dialogue = dialogues[row["id"]]
            assert dialogue["messages"][: len(row["prompt"])] == row["prompt"]
            played = [(c["function"]["name"], c["function"]["arguments"])
                      for m in dialogue["messages"] for c in m.get("tool_calls", [])]
            assert _state_after(row["domain"], row["env_seed"], played) == spec["expected_state_hash"]
            said = normalize(" ".join(m["content"] or "" for m in dialogue["messages"] if m["role"] == "assistant"))
            assert all(normalize(o) in said for o in spec["expected_outputs"])
            checked += 1
    assert checked == sum(s.num_rows for s in rl.values()) > 0
    # the check can fail: a task that writes, replayed without its last state-changing action, misses the state
    row = next(r for r in rl["train"] if _state_after(r["domain"], r["env_seed"], []) != r["reward_spec"]["expected_state_hash"])
    gold = [(a["name"], a["arguments"]) for a in row["reward_spec"]["gold_actions"]]
    last_write = max(i for i in range(len(gold)) if _state_after("store", row["env_seed"], gold[: i + 1])
                     != _state_after("store", row["env_seed"], gold[:i]))
    without = gold[:last_write] + gold[last_write + 1:]
    assert _state_after(row["domain"], row["env_seed"], without) != row["reward_spec"]["expected_state_hash"]


def test_kg_question_reward_spec_is_answer_and_aliases():
    task = Task(kind="kg_question", domain="kg", env_seed=3, generator="kg",
                scenario=UserScenario(persona="p", instruction="Which city?", identity="-"),
                gold_actions=[Action(name="lookup", arguments={"entity": "Q1"})], answer="Paris",
                answer_aliases=["Paris, France", "City of Light"])
    spec = reward_spec({"id": "x", "task": task.model_dump_json()})
    assert spec["type"] == "answer" and spec["answer"] == "Paris"
    assert spec["answer_aliases"] == ["Paris, France", "City of Light"]
    assert json.loads(spec["gold_actions"][0]["arguments"]) == {"entity": "Q1"}


def test_sharegpt_turns_alternate(exported, tmp_path):
    folder, _ = exported
    sharegpt = load(folder, "sharegpt", tmp_path)
    for row in sharegpt["train"]:
        turns = row["conversations"]
        assert row["system"] and json.loads(row["tools"])
        assert len(turns) % 2 == 0 and turns[-1]["from"] == "gpt"  # LLaMA-Factory skips odd-length conversations
        for i, turn in enumerate(turns):
            assert turn["from"] in (("human", "observation") if i % 2 == 0 else ("gpt", "function_call")), (i, turns)
            if turn["from"] == "function_call":
                assert set(json.loads(turn["value"])) == {"name", "arguments"}


def test_card_describes_the_version(dataset, exported):
    folder, summary = exported
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["license"] == "cc-by-4.0"
    names = [c["config_name"] for c in meta["configs"]]
    assert names == ["sft", "rl", "rejects", "sharegpt"]
    for config in meta["configs"]:
        for entry in config["data_files"]:
            assert list(folder.glob(entry["path"])), entry
    manifests = DatasetStore(dataset).versions()
    latest = manifests[-1]
    assert f"{latest.total_accepted} accepted trajectories in version {latest.version}" in body
    for m in manifests:
        assert m.run_id in body and m.config_hash in body and m.code_version in body
    stages: dict[str, int] = {}
    for m in manifests:
        for stage, n in m.stages.items():
            stages[stage] = stages.get(stage, 0) + n
    for stage, n in stages.items():
        assert f"| rejected at `{stage}` | {n} |" in body
    assert f"| tasks generated | {sum(m.tasks for m in manifests)} |" in body
    assert f"| store | {latest.total_accepted} |" in body
    assert "| blueprint |" in body and "| user turns |" in body
    assert "offline mode" in body and "perturb_rate" in body and "output_dir" not in body
    assert meta["pretty_name"] == "export-test (trajforge v1)"
    assert f'load_dataset("{folder}", "sft")' in body


def test_past_version_and_cli_errors(dataset, tmp_path, capsys):
    assert main(["export", str(dataset), "--version", "0", "--to", str(tmp_path / "v0"), "--test-ratio", "0"]) == 0
    assert "exported version 0" in capsys.readouterr().out
    v0 = DatasetStore(dataset).versions()[0]
    sft = load(tmp_path / "v0", "sft", tmp_path)
    assert list(sft) == ["train"] and sft["train"].num_rows == v0.accepted
    assert set(sft["train"]["task_id"]) <= set(DatasetStore(dataset).read(0)["task_id"])
    capsys.readouterr()  # datasets' progress bars

    # non-empty destination: refused, nothing replaced, no partial folder left
    assert main(["export", str(dataset), "--to", str(tmp_path / "v0")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0] and str(tmp_path / "v0") in err[0]
    assert main(["export", str(dataset), "--version", "7", "--to", str(tmp_path / "x")]) == 2
    assert "no version 7" in capsys.readouterr().err
    assert main(["export", str(dataset), "--test-ratio", "1.5", "--to", str(tmp_path / "x")]) == 2
    assert "--test-ratio" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--to", str(tmp_path / "x")]) == 2
    assert "no trajforge dataset" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    with pytest.raises(ExportError):
        export_version(dataset, tmp_path / "v0", ExportOptions())


def test_a_folder_exported_again_loads_its_new_rows(dataset, tmp_path, capsys):
    """`datasets` keys its cache of a local folder by the card's YAML alone: the YAML names each config's sizes,
    so the next version exported into the same folder (as a nightly run does) loads as itself, not as the cache
    of the first export."""
    versions = DatasetStore(dataset).versions()
    assert versions[0].total_accepted != versions[-1].total_accepted
    folder = tmp_path / "nightly-hf"
    assert main(["export", str(dataset), "--version", "0", "--to", str(folder), "--test-ratio", "0"]) == 0
    assert load(folder, "sft", tmp_path)["train"].num_rows == versions[0].total_accepted
    assert main(["export", str(dataset), "--to", str(folder), "--test-ratio", "0", "--force"]) == 0
    assert load(folder, "sft", tmp_path)["train"].num_rows == versions[-1].total_accepted
    # whole split entries (name, bytes, examples): `datasets` ignores, with a warning on every load, any less
    info = yaml.safe_load((folder / "README.md").read_text().split("---")[1])["dataset_info"]
    train = next(s for s in next(c for c in info if c["config_name"] == "sft")["splits"] if s["name"] == "train")
    assert train == {"name": "train", "num_examples": versions[-1].total_accepted,
                     "num_bytes": sum(p.stat().st_size for p in (folder / "data" / "sft").glob("train-*.parquet"))}
    capsys.readouterr()
