"""Tool lists as they are shipped: BFCL's multi-turn function docs (JSON Lines in ``.json`` files, Gorilla type
names, response schemas), OpenAI tools and bare functions as arrays or lines; and the policy a schema-only domain
built from them enforces."""

from __future__ import annotations

import json
from pathlib import Path

import fastjsonschema
import polars as pl
import pytest

from pipelines.flow import run_generate
from pipelines.steps import build_steps
from schemas import Message, ToolCall, load_config, parse_config
from simulators.tool_dialects import uses_gorilla_types
from simulators.tool_specs import SpecError, load_tool_spec

ROOT = Path(__file__).resolve().parents[1]
BFCL = ROOT / "tests" / "data" / "bfcl_multi_turn_func_doc"
FILES = sorted(BFCL.glob("*.json"))


def _shipped(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_bfcl_function_doc_imports_all_its_tools_as_shipped(path):
    shipped = _shipped(path)
    tools = load_tool_spec(path)
    assert [t.name for t in tools] == [d["name"] for d in shipped]
    for doc, tool in zip(shipped, tools, strict=True):
        parameters = tool.tool.function.parameters
        assert parameters["type"] == "object" and not uses_gorilla_types(parameters)
        fastjsonschema.compile(parameters)
        assert tool.tool.function.description == doc["description"]
        assert set(parameters.get("properties", {})) == set(doc["parameters"].get("properties", {}))
        assert parameters.get("required", []) == doc["parameters"].get("required", [])
        if "response" in doc:  # kept, in JSON schema's own type names
            assert tool.response_schema is not None and not uses_gorilla_types(tool.response_schema)
            assert set(tool.response_schema.get("properties", {})) == set(doc["response"].get("properties", {}))
        else:
            assert tool.response_schema is None


def test_all_bfcl_multi_turn_tools_import():
    assert sum(len(load_tool_spec(p)) for p in FILES) == sum(len(_shipped(p)) for p in FILES) == 162


def test_the_same_tools_in_every_shipped_shape(tmp_path):
    docs = _shipped(BFCL / "ticket_api.json")
    openai = [{"type": "function", "function": d} for d in docs]
    shapes = {
        "bare.json": json.dumps(docs), "openai.json": json.dumps(openai), "wrapped.json": json.dumps({"tools": openai}),
        "bare.jsonl": "\n".join(json.dumps(d) for d in docs) + "\n",
        "openai.ndjson": "\n\n".join(json.dumps(d) for d in openai),  # blank lines between are fine
    }
    loaded = {}
    for name, text in shapes.items():
        (tmp_path / name).write_text(text)
        loaded[name] = [(t.name, t.tool.function.parameters, t.response_schema) for t in load_tool_spec(tmp_path / name)]
    first = loaded["bare.json"]
    assert len(first) == len(docs) and all(v == first for v in loaded.values())


@pytest.mark.parametrize(
    "name, text, problem",
    [
        ("t.jsonl", '{"name": "a"}\n{"name": "b"\n', "t.jsonl: line 2: invalid JSON Lines: Expecting ',' delimiter"),
        ("t.json", '{"name": "a"}\n\n{"name": "b", "parameters": {"type": "dict", "properties": {"x": {"type": "int"}}}}\n',
         "t.json: line 3: /parameters/properties/x/type: unknown type 'int'"),
        ("t.jsonl", '{"name": "a", "response": {"type": "dict", "properties": {"r": {"type": "matrix"}}}}\n',
         "t.jsonl: line 1: /response/properties/r/type: unknown type 'matrix'"),
        ("t.jsonl", '[{"name": "a"}]\n', "t.jsonl: line 1: /: a tool must be an object, got list"),
        ("t.jsonl", '{"name": "a"}\n{"description": "no name"}\n', "t.jsonl: line 2: /: missing 'name'"),
    ],
)
def test_a_bad_line_is_one_line_with_file_and_pointer(tmp_path, name, text, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as err:
        load_tool_spec(tmp_path / name)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(tmp_path / problem.split(":")[0]))
    assert problem.split(": ", 1)[1] in message


def _domain(spec: Path, **params) -> dict:
    return {"name": "schema_only", "params": {"spec": str(spec), **params}}


def test_response_schemas_shape_the_offline_tool_results():
    env = build_steps(parse_config({"num_tasks": 1, "domain": _domain(BFCL / "trading_bot.json")}, "c")).env
    for name in ("get_stock_info", "get_watchlist", "place_order"):
        tool = env.schema_tools[name]
        arguments = env.sample_arguments(name, __import__("random").Random(1))
        result = json.loads(env.execute(name, arguments))
        fastjsonschema.compile(tool.response_schema)(result)  # what the spec says the call returns
        assert set(result) <= set(tool.response_schema["properties"]) and result


def _call(name: str, arguments: dict) -> Message:
    return Message(role="assistant", content=None, tool_calls=[ToolCall.model_validate(
        {"id": f"c_{name}", "function": {"name": name, "arguments": json.dumps(arguments)}})])


def test_the_schema_only_policy_is_checked_and_configurable():
    spec = BFCL / "ticket_api.json"
    env = build_steps(parse_config({"num_tasks": 1, "domain": _domain(spec)}, "c")).env
    assert env.specs()["create_ticket"].writes and not env.specs()["get_ticket"].writes
    assert "create_ticket" in env.policy and "verif" not in env.policy.lower()
    unasked = [Message(role="user", content="Open a ticket titled Printer."), _call("get_ticket", {"ticket_id": 1}),
               _call("create_ticket", {"title": "Printer"})]
    assert env.check_policy(unasked) == ["create_ticket called without an explicit confirmation from the user"]
    asked = [Message(role="user", content="Open a ticket titled Printer."),
             Message(role="assistant", content="To confirm: I will run create_ticket. Shall I proceed?"),
             Message(role="user", content="Yes, go ahead."), _call("create_ticket", {"title": "Printer"}),
             _call("edit_ticket", {"ticket_id": 1, "updates": {}})]  # one yes covers one write
    assert env.check_policy(asked) == ["edit_ticket called without an explicit confirmation from the user"]
    relaxed = build_steps(parse_config({"num_tasks": 1, "domain": _domain(spec, policy={"confirm": "none"})}, "c")).env
    assert relaxed.check_policy(unasked) == [] and "explicit yes" not in relaxed.policy
    overridden = build_steps(parse_config({"num_tasks": 1, "domain": _domain(spec, writes={"create_ticket": False})},
                                          "c")).env
    assert overridden.check_policy(unasked) == []


def test_offline_generation_over_bfcl_tools_rejects_unconfirmed_writes_at_policy(prefect_server, tmp_path):
    # the README's example, as written but smaller and with more planted mistakes
    config = load_config(ROOT / "examples" / "tool_list.yaml", num_tasks=40, shard_size=20,
                         simulation={"mode": "offline", "perturb_rate": 0.8})
    assert not build_steps(config).env.specs()["ticket_get_login_status"].writes  # the example's override
    manifest = run_generate(config, tmp_path / "ds", "bfcl-1")
    df = pl.read_delta(str(tmp_path / "ds"))
    assert manifest.tasks == 40 == df.height and manifest.accepted >= 5
    policy = df.filter(pl.col("stage") == "policy")
    assert policy.height >= 1 and all("without an explicit confirmation" in r for r in policy["reason"])
    assert set(policy["fault"]) == {"assistant"}
    for row in df.filter(pl.col("status") == "accepted").iter_rows(named=True):
        text = " ".join(m["content"] or "" for m in row["messages"] if m["role"] in ("assistant", "user")).lower()
        assert "verif" not in text and "identity" not in text  # no accounts, so no authentication talk


def test_the_openapi_example_builds_tasks_that_replay_to_their_state():
    import random

    steps = build_steps(load_config(ROOT / "examples" / "openapi.yaml"))
    specs = steps.env.specs()
    assert sorted(specs) == ["borrowBook", "getBook", "returnBook", "searchBooks"]
    assert specs["borrowBook"].writes and specs["returnBook"].writes and not specs["searchBooks"].writes
    for i in range(10):
        task = steps.generators[0].generate(random.Random(i))
        env = steps.env.fresh()
        assert not any(r.startswith("Error: ") for r in env.run_actions(task.gold_actions))
        assert env.state_hash() == task.expected_state_hash
