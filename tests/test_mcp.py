"""The ``mcp`` domain against real MCP servers started by the tests: the reference filesystem and memory servers
(npm, ``make mcp-servers``), a server of our own on the official SDK over streamable HTTP, and one that breaks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import datasets
import fastjsonschema
import polars as pl
import pytest
from mcp_helpers import (
    ROOT,
    WORKSPACE,
    faulty_server,
    fs_server,
    mcp_config,
    memory_server,
    need_reference_servers,
    notes_server,
)
from procs import gone, with_env

from generators.tool_graph import ToolGraph
from pipelines.export import export_version
from pipelines.export_request import ExportOptions
from pipelines.flow import run_generate
from pipelines.steps import build_steps
from schemas import ConfigError, Task
from simulators.environment import is_error

MARK = "TRAJFORGE_TEST_MCP_MARK"


@pytest.fixture(scope="module")
def reference():
    need_reference_servers()
    return build_steps(mcp_config([fs_server(), memory_server()])).env


def test_tools_are_listed_namespaced_and_offered_as_openai_tools(reference):
    names = [t.name for t in reference.tools()]
    assert "fs__read_text_file" in names and "memory__create_entities" in names and "fs__get_file_info" not in names
    specs = reference.specs()
    assert not specs["fs__read_text_file"].writes and specs["fs__write_file"].writes  # the servers' readOnlyHint
    assert not specs["memory__read_graph"].writes and specs["memory__delete_entities"].writes
    for tool in reference.tools():
        fastjsonschema.compile(tool.function.parameters)  # what the assistant is offered is valid JSON schema
        assert tool.function.parameters["type"] == "object" and "$schema" not in tool.function.parameters
    assert "fs__write_file" in reference.policy and "verif" not in reference.policy
    # entity types inferred from parameter names, so the tool graph links a listing to the reads it enables
    graph = ToolGraph(specs)
    assert graph.graph.has_edge("fs__list_directory", "fs__read_text_file")
    assert "path" in graph.graph.edges["fs__list_directory", "fs__read_text_file"]["via"]
    assert specs["memory__open_nodes"].entities == {"names": "name"}
    assert "Maya Chen" in reference.value_pools()["name"] and "docs/plan.md" in reference.value_pools()["path"]


def test_each_copy_starts_from_the_seed_and_its_state_is_read_from_the_files(reference):
    a, b = reference.fresh(), reference.fresh()
    start = a.state_hash()
    assert a.execute("fs__read_text_file", {"path": "docs/plan.md"}) == (WORKSPACE / "docs/plan.md").read_text()
    assert a.state_hash() == start  # a read changes nothing
    assert a.execute("fs__write_file", {"path": "/sandbox/notes/new.md", "content": "hello"}).startswith(
        "Successfully wrote")
    assert a.execute("fs__move_file", {"source": "notes/todo.txt", "destination": "notes/done.txt"}).startswith(
        "Successfully moved")
    assert a.db.diff() == {"fs": {"notes/done.txt": (WORKSPACE / "notes/todo.txt").read_text(), "notes/new.md": "hello",
                                  "notes/todo.txt": None}}
    # b never sees a's changes, though both may run on the same server process
    assert is_error(b.execute("fs__read_text_file", {"path": "notes/new.md"}))
    assert b.execute("fs__read_text_file", {"path": "notes/todo.txt"}).startswith("Renew")
    assert b.state_hash() == start != a.state_hash()
    b.execute("fs__write_file", {"path": "notes/new.md", "content": "hello"})
    b.execute("fs__move_file", {"source": "notes/todo.txt", "destination": "notes/done.txt"})
    assert b.state_hash() == a.state_hash()  # the same calls give the same state, whichever worker ran them
    # the assistant sees the virtual root, never where the sandbox really is
    listing = a.execute("fs__search_files", {"path": "/sandbox", "pattern": "**/*.md"})
    missing = a.execute("fs__read_text_file", {"path": "nothing.txt"})
    assert "/sandbox/notes/new.md" in listing and "trajforge-mcp-" not in listing + missing
    assert missing.startswith("Error: ") and "/sandbox/nothing.txt" in missing  # the server's error, as a result
    assert a.execute("fs__read_text_file", {"path": 5}).startswith("Error: invalid arguments")  # checked first
    # the memory server keeps its graph in the sandbox: what it says matches the file trajforge read itself
    a.execute("memory__create_entities", {"entities": [{"name": "Iris Novak", "entityType": "person",
                                                        "observations": ["joined in June"]}]})
    graph = json.loads(a.execute("memory__read_graph", {}))
    in_file = [json.loads(line) for line in a.files("memory")["memory.jsonl"].splitlines()]
    assert [e["name"] for e in graph["entities"]] == [e["name"] for e in in_file if e["type"] == "entity"]
    assert "Iris Novak" in a.db.diff()["memory"]["memory.jsonl"] and "memory" not in b.db.diff()


def test_offline_generation_is_verified_by_state_and_leaves_no_server_running(prefect_server, tmp_path,
                                                                             monkeypatch):
    need_reference_servers()
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)  # passed to the fs server by name: it must reach no row, manifest or log
    config = mcp_config([fs_server(env=[MARK]), memory_server()], num_tasks=48, shard_size=24,
                        simulation={"perturb_rate": 0.3})
    manifest = run_generate(config, tmp_path / "ds", "mcp-offline")
    assert gone(lambda: with_env(MARK, mark), timeout=20)  # every server process this run started is stopped
    df = pl.read_delta(str(tmp_path / "ds"))
    assert manifest.tasks == 48 == df.height
    accepted = df.filter(pl.col("status") == "accepted")
    rejected = df.filter(pl.col("status") == "rejected")
    assert accepted.height >= 30
    env = build_steps(config).env
    writes = 0
    for row in accepted.iter_rows(named=True):
        task = Task.model_validate_json(row["task"])
        verdicts = {v["stage"]: v for v in json.loads(row["verdicts"])}
        assert verdicts["outcome"]["passed"] and verdicts["outcome"]["reason"] == ""
        # replayed independently: the dialogue's own calls reach the state the blueprint's execution recorded
        replay = env.fresh()
        for message in row["messages"]:
            for call in message.get("tool_calls") or []:
                replay.execute(call["function"]["name"], call["function"]["arguments"])
        assert replay.state_hash() == task.expected_state_hash
        writes += bool(replay.db.diff())
        text = " ".join(m.get("content") or "" for m in row["messages"] if m["role"] == "assistant")
        assert "verif" not in text and "identity" not in text  # nobody signs in, nobody is "verified"
    assert writes >= 8  # dialogues whose state the check actually compared
    stages = dict(rejected.group_by("stage").len().iter_rows())
    assert set(stages) <= {"format", "policy", "outcome", "required_outputs"} and stages.get("outcome", 0) >= 1
    assert set(rejected["fault"]) == {"assistant"}  # planted mistakes only; the servers never failed
    for row in rejected.filter(pl.col("stage") == "outcome").iter_rows(named=True):
        assert "final state differs" in row["reason"]
    stored = " ".join(str(v) for row in df.iter_rows() for v in row) + json.dumps(manifest.model_dump(), default=str)
    logs = " ".join(p.read_text(errors="replace") for p in (tmp_path / "ds").rglob("*") if p.suffix in (".log", ".json"))
    assert mark not in stored + logs and MARK in json.dumps(manifest.config)  # the name is recorded, the value never
    # the rows export as a trainer reads them: every accepted dialogue, its real tools, rendered by a chat template
    summary = export_version(tmp_path / "ds", tmp_path / "hf", ExportOptions(test_ratio=0.2, chat_templates=["qwen2.5"]))
    sft = datasets.load_dataset(str(tmp_path / "hf"), "sft", cache_dir=str(tmp_path / "cache"))
    assert sum(len(split) for split in sft.values()) == accepted.height and summary.version == manifest.version
    row = sft["train"][0]
    assert row["domain"] == "mcp" and {"fs__read_text_file", "memory__read_graph"} <= {
        t["function"]["name"] for t in row["tools"]}
    assert any(m["role"] == "tool" for m in row["messages"])


def test_same_config_and_seed_give_the_same_dataset(prefect_server, tmp_path):
    need_reference_servers()
    config = mcp_config([fs_server(), memory_server()], num_tasks=12, shard_size=6)
    first = run_generate(config, tmp_path / "a", "rep-a")
    second = run_generate(config, tmp_path / "b", "rep-b")
    a, b = (pl.read_delta(str(tmp_path / d)).sort("index") for d in ("a", "b"))
    assert first.accepted == second.accepted and a["id"].to_list() == b["id"].to_list()
    assert a["messages"].to_list() == b["messages"].to_list()


def test_model_mode_through_the_loopback_server_runs_the_real_servers(prefect_server, tmp_path):
    need_reference_servers()
    from loopback import LoopbackServer, TranscriptBrain

    def model(url: str):
        return mcp_config([fs_server(), memory_server()], num_tasks=8, shard_size=4, backends={
            "loop": {"model": "loop-model", "base_url": url, "max_concurrency": 4, "timeout_s": 5, "max_retries": 1}},
            simulation={"mode": "model", "user": {"backend": "loop"}, "assistant": {"backend": "loop"}})

    brain = TranscriptBrain(model("http://127.0.0.1:9/v1"))
    with LoopbackServer(brain) as server:
        manifest = run_generate(model(server.url), tmp_path / "ds", "mcp-model")
        requests = server.requests
    df = pl.read_delta(str(tmp_path / "ds"))
    assert manifest.accepted == 8 == df.height and requests > 8
    tools = {t["function"]["name"] for t in json.loads(df["tools"][0])}
    assert {"fs__read_text_file", "memory__read_graph"} <= tools  # the servers' tools, as OpenAI tools
    results = [m for r in df["messages"].to_list() for m in r if m["role"] == "tool"]
    assert results and not any("trajforge-mcp-" in (m["content"] or "") for m in results)


def test_a_blueprint_writer_model_over_mcp_tools(prefect_server, tmp_path):
    need_reference_servers()
    from loopback import LoopbackServer, Reply

    def write(body):
        name = body["response_format"]["json_schema"]["name"]
        if name == "review":
            return Reply(content=json.dumps({"correctness": 5, "completeness": 5, "realism": 5, "approve": True,
                                             "feedback": ""}))
        prompt = body["messages"][1]["content"]
        context = json.loads(prompt.split("<context>", 1)[1].split("</context>", 1)[0])
        goals = context["goals"]
        calls = [d["call"] for d in context["data"]]
        env = build_steps(config("http://127.0.0.1:9/v1")).env.fresh()
        outputs = []
        for call in [*calls, *[g["call"] for g in goals]]:
            result = env.execute(call["name"], call["arguments"])
            if call in [g["call"] for g in goals] and not is_error(result):
                outputs.append(result.strip().splitlines()[0][:60])
        requests = [{"opening": "Hi, I need a hand with my files.", "details": g["goal"].replace("You want", "I want"),
                     "actions": ([c for c in calls if c not in [x["call"] for x in goals]] if n == 0 else []) +
                     [g["call"]]} for n, g in enumerate(goals)]
        return Reply(content=json.dumps({"instruction": " ".join(g["goal"] for g in goals), "identity": "",
                                         "known_info": {}, "unknown_info": [], "authentication": [],
                                         "requests": requests, "outputs": outputs}))

    def config(url: str):
        return mcp_config([fs_server(), memory_server()], num_tasks=6, shard_size=6, backends={
            "writer": {"model": "writer", "base_url": url, "max_retries": 1}},
            generators=[{"name": "model_blueprint", "params": {
                "backend": "writer", "committee": {"reviewers": [{"backend": "writer"}]}, "pool_lag": 2}}])

    with LoopbackServer(write) as server:
        manifest = run_generate(config(server.url), tmp_path / "ds", "mcp-writer")
    df = pl.read_delta(str(tmp_path / "ds"))
    assert manifest.tasks == 6 and manifest.accepted >= 4, df.select("stage", "reason").to_dicts()
    for row in df.filter(pl.col("status") == "accepted").iter_rows(named=True):
        task = Task.model_validate_json(row["task"])
        assert task.generator == "model_blueprint" and task.expected_state_hash
        assert all(a.name in {t.name for t in build_steps(config("http://x/v1")).env.tools()} for a in task.gold_actions)


def test_our_own_http_server_with_a_sandbox_and_one_already_running(prefect_server, tmp_path, capfd):
    # started by the domain on a free port, state in a sandbox: verified by state like the reference servers
    config = mcp_config([notes_server()], num_tasks=10, shard_size=10)
    manifest = run_generate(config, tmp_path / "started", "notes-started")
    df = pl.read_delta(str(tmp_path / "started"))
    rejected = df.filter(pl.col("status") == "rejected")
    assert manifest.accepted >= 8 and all(s.startswith("dedup") for s in rejected["stage"])  # offline: only repeats
    saved = [r for r in df.iter_rows(named=True) if "\"save_note\"" in r["task"]]
    assert saved and all(json.loads(r["task"])["expected_state_hash"] for r in saved)
    # one that runs already (started here, reached by URL): shared by every dialogue, its state not captured
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests/mcp/notes_server.py"), "--store",
                               str(tmp_path / "shared.json"), "--port", str(port)], start_new_session=True)
    try:
        _wait_port(port)
        running = mcp_config([{"name": "notes", "url": f"http://127.0.0.1:{port}/mcp"}], num_tasks=10, shard_size=10,
                             seed=4)
        capfd.readouterr()
        run_generate(running, tmp_path / "running", "notes-running")
        said = capfd.readouterr().err
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    assert "the state of server 'notes' is not captured (a server trajforge does not start)" in said
    rows = pl.read_delta(str(tmp_path / "running")).filter(pl.col("status") == "accepted")
    notes = [{v["stage"]: v for v in json.loads(r["verdicts"])}["outcome"]["reason"] for r in rows.iter_rows(named=True)
             if "\"save_note\"" in r["task"] or "\"delete_note\"" in r["task"]]
    assert notes and all("state of MCP server 'notes' not captured" in n and "outputs and judges" in n for n in notes)


def test_state_through_the_servers_own_read_tools_with_a_process_per_dialogue():
    env = build_steps(mcp_config([notes_server(":memory:", state_tools=[{"name": "list_notes"}])])).env
    a, b = env.fresh(), env.fresh()
    start = a.state_hash()
    a.execute("save_note", {"title": "groceries", "text": "milk"})
    assert a.db.diff() == {"notes": {"list_notes {}": "groceries"}} and a.state_hash() != start
    assert b.execute("list_notes", {}) == "(no notes)" and b.state_hash() == start  # its own process
    a.close()
    b.close()


def test_a_server_that_crashes_hangs_or_garbles_rejects_only_its_dialogues(tmp_path, monkeypatch):
    from pipelines.shard import rollout_shard, synthesize_shard
    from schemas import Lineage

    arm = tmp_path / "armed"
    monkeypatch.setenv("FAULTY_ARM", str(arm))
    config = mcp_config([faulty_server(env=["FAULTY_ARM"], timeout_s=2)], num_tasks=16, shard_size=16,
                        generators=[{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 1}}])
    tasks = synthesize_shard(config, 0, tmp_path / "tasks.parquet")  # the server works while tasks are made
    arm.touch()  # ... and breaks before the dialogues
    lineage = Lineage(run_id="faults", config_hash=config.config_hash(), code_version="test", seed=config.seed)
    started = time.monotonic()
    result = rollout_shard(config, 0, tasks, tmp_path / "rows.parquet", lineage)
    assert time.monotonic() - started < 60
    rows = pl.read_parquet(tmp_path / "rows.parquet").to_dicts()
    assert sum(result.counts.values()) == 16
    by_tool: dict[str, list[dict]] = {}
    for row in rows:
        if row["task"]:
            by_tool.setdefault(json.loads(row["task"])["gold_actions"][-1]["name"], []).append(row)
    expected = {"crash_item": "crashed or exited", "stall_item": "no answer within 2s", "garble_item": "malformed result"}
    for tool, words in expected.items():
        assert by_tool.get(tool), f"no task called {tool}"
        for row in by_tool[tool]:
            assert (row["status"], row["stage"], row["fault"]) == ("rejected", "simulation", "tool"), row
            assert f"MCP server 'faulty': {tool}: " in row["reason"] and words in row["reason"]
    assert by_tool.get("check_item") and all(r["status"] == "accepted" for r in by_tool["check_item"])
    # a tool's own error result is the assistant's to see: such blueprints never pass their execution
    assert "refuse_item" not in by_tool


def test_a_server_that_will_not_start_is_one_line_before_any_work(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(json.dumps({"name": "broken", "num_tasks": 4, "domain": {"name": "mcp", "params": {
        "servers": [faulty_server("--die-at-start")]}}}))
    out = tmp_path / "out"
    proc = subprocess.run([str(ROOT / ".venv/bin/trajforge"), "generate", "--config", str(config), "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    line = lines[0]
    for part in ("domain.params: servers[0]: server 'faulty'", "faulty_server.py --die-at-start",
                 "exited before it answered `initialize`", "boom: cannot open the inventory database",
                 "exited with status 4"):
        assert part in line, line
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(("server", "named"), [
    ({"name": "fs", "url": "http://127.0.0.1:9/mcp", "sandbox": {}}, "need a server trajforge starts"),
    ({"name": "fs", "command": "x", "env": ["TRAJFORGE_SURELY_UNSET_VAR"]},
     "servers[0] (fs): environment variable TRAJFORGE_SURELY_UNSET_VAR is not set"),
    ({"name": "fs", "command": "x", "sandbox": {"seed": "no/such/folder"}}, "sandbox.seed: no such folder"),
    ({"name": "fs", "command": "x", "url": "http://127.0.0.1:9", "transport": "stdio"}, "leave `url` out"),
    ({"name": "1fs", "command": "x"}, "servers.0.name: String should match pattern"),
    ({"name": "nope", "command": "/no/such/server"}, "cannot start '/no/such/server': No such file or directory"),
])
def test_config_problems_are_one_line_naming_the_field(server, named):
    with pytest.raises(ConfigError) as err:
        build_steps(mcp_config([server]), "mcp.yaml")
    assert named in str(err.value) and "\n" not in str(err.value)


def test_unknown_tools_in_a_server_config_are_named(reference):
    with pytest.raises(ConfigError, match=r"servers\[0\] \(fs\): exclude_tools: the server has no tool 'rm_rf'; it has"):
        build_steps(mcp_config([fs_server(exclude_tools=["rm_rf"])]))


def test_a_killed_run_leaves_no_server_behind(tmp_path):
    need_reference_servers()
    mark = uuid.uuid4().hex
    config = tmp_path / "long.json"
    data = mcp_config([fs_server(env=[MARK]), memory_server()], num_tasks=4000, shard_size=500).model_dump(mode="json")
    config.write_text(json.dumps(data))
    proc = subprocess.Popen([str(ROOT / ".venv/bin/trajforge"), "generate", "--config", str(config), "--out",
                             str(tmp_path / "out"), "--no-progress"], cwd=ROOT, env={**os.environ, MARK: mark},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not with_env(MARK, mark):
            assert time.monotonic() < deadline and proc.poll() is None, "the servers never started"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)  # the main process only: no cleanup runs
        proc.wait(10)
    assert gone(lambda: with_env(MARK, mark), timeout=30)


def test_blueprints_ground_in_the_seed_and_find_lookups(reference):
    from generators.blueprints import BlueprintGenerator, BlueprintParams

    gen = BlueprintGenerator(reference, BlueprintParams(min_requests=1, max_requests=1))
    lookups = 0
    for i in range(60):
        task = gen.generate(random.Random(i))
        assert not task.scenario.identity and task.gold_actions  # nobody signs in
        if len(task.gold_actions) > 1:
            lookups += 1
            assert task.scenario.unknown_info  # what the lookup finds, the user does not know
        env = reference.fresh()
        assert not any(is_error(r) for r in env.run_actions(task.gold_actions))
        assert env.state_hash() == task.expected_state_hash
    assert lookups >= 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_examples_parse():
    from schemas import load_config

    for name in ("mcp.yaml", "tool_list.yaml", "openapi.yaml"):
        load_config(Path(ROOT / "examples" / name))
