"""Schemas: JSON round trips, content-hash ids, and run-config validation errors."""

from __future__ import annotations

import json

import pytest

from schemas import (
    Action,
    ConfigError,
    DatasetManifest,
    Lineage,
    Message,
    Request,
    RunConfig,
    Task,
    Tool,
    ToolCall,
    Trajectory,
    Usage,
    UserScenario,
    Verdict,
    canonical_json,
    content_hash,
    load_config,
)

# -- builders ------------------------------------------------------------------


def make_tool(name: str = "get_order_details") -> Tool:
    return Tool.model_validate({"function": {
        "name": name,
        "description": "Status, items and tracking of an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "description": "The order id."}},
                       "required": ["order_id"], "additionalProperties": False},
    }})


def make_messages(order_id: str = "#W1234567") -> list[Message]:
    call = ToolCall.make("call_1", "get_order_details", {"order_id": order_id})
    return [
        Message(role="system", content="You are a support agent."),
        Message(role="user", content=f"Where is order {order_id}?"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", tool_call_id="call_1", name="get_order_details",
                content=json.dumps({"order_id": order_id, "status": "shipped"})),
        Message(role="assistant", content=f"Order {order_id} has shipped."),
    ]


def make_task(order_id: str = "#W1234567", **overrides) -> Task:
    scenario = UserScenario(
        persona="a retired teacher",
        instruction=f"You want to cancel order {order_id}.",
        known_info={"email": "ava.kim12@example.com", "order_id": order_id},
        unknown_info=["item ids"],
        identity="My email is ava.kim12@example.com.",
        requests=[Request(intent="cancel_order", opening="I need to cancel an order.",
                          details=f"It's order {order_id}.", actions=[1, 2])],
    )
    fields = dict(
        domain="store", env_seed=0, scenario=scenario,
        gold_actions=[Action(name="find_customer_id_by_email", arguments={"email": "ava.kim12@example.com"}),
                      Action(name="get_order_details", arguments={"order_id": order_id}),
                      Action(name="cancel_pending_order", arguments={"order_id": order_id, "reason": "no longer needed"})],
        expected_outputs=["$12.50"], expected_state_hash="abc123",
    )
    fields.update(overrides)
    return Task(**fields)


def make_trajectory(order_id: str = "#W1234567", **overrides) -> Trajectory:
    fields = dict(
        task_id="task-1", domain="store", tools=[make_tool()], messages=make_messages(order_id),
        final_state_hash="ffff", verdicts=[Verdict(stage="format", passed=True)],
        usage={"assistant": Usage(prompt_tokens=10, completion_tokens=5, requests=2, latency_s=0.5)},
    )
    fields.update(overrides)
    return Trajectory(**fields)


def make_lineage(run_id: str = "run-1") -> Lineage:
    return Lineage(run_id=run_id, config_hash="cfg", code_version="0.1.0+abc", seed=7, models={"user": "scripted"})


# -- round trips ------------------------------------------------------------------


@pytest.mark.parametrize("model", [
    make_tool(),
    ToolCall.make("call_9", "cancel_pending_order", {"reason": "ordered by mistake", "order_id": "#W7654321"}),
    Message(role="assistant", content=None,
            tool_calls=[ToolCall.make("c1", "get_order_details", {"order_id": "#W1"}),
                        ToolCall.make("c2", "get_product_details", {"product_id": "P1003"})]),
    Message(role="tool", tool_call_id="c1", name="get_order_details", content='{"status":"pending"}'),
    make_task(),
    make_trajectory(lineage=make_lineage()),
    Verdict(stage="outcome", passed=False, reason="final state differs from the gold final state"),
    DatasetManifest(version=3, parent_version=2, run_id="run-1", config_hash="cfg", code_version="0.1.0", seed=7,
                    created_at="2024-01-01T00:00:00Z", tasks=10, accepted=7, rejected=3,
                    stages={"format": 2, "policy": 1}, reasons={"unknown tool": 2}, config={"num_tasks": 10},
                    total_accepted=21),
], ids=["Tool", "ToolCall", "Message-tool_calls", "Message-tool_call_id", "Task", "Trajectory", "Verdict",
        "DatasetManifest"])
def test_json_round_trip(model):
    text = model.model_dump_json()
    again = type(model).model_validate_json(text)
    assert again == model
    assert again.model_dump_json() == text


def test_round_trip_keeps_tool_call_fields():
    msg = Message(role="assistant", tool_calls=[ToolCall.make("c1", "get_order_details", {"order_id": "#W1"})])
    tool_msg = Message(role="tool", tool_call_id="c1", content="{}")
    again = Message.model_validate_json(msg.model_dump_json())
    assert again.tool_calls[0].id == "c1"
    assert again.tool_calls[0].function.name == "get_order_details"
    assert again.tool_calls[0].parsed_arguments() == {"order_id": "#W1"}
    assert Message.model_validate_json(tool_msg.model_dump_json()).tool_call_id == "c1"
    # the OpenAI form leaves unset fields out
    assert "tool_call_id" not in msg.to_openai() and "tool_calls" not in tool_msg.to_openai()


def test_tool_call_arguments_are_canonical_json_string():
    a = ToolCall.make("c", "f", {"b": 1, "a": [2, {"d": 3, "c": 4}]})
    b = ToolCall.make("c", "f", {"a": [2, {"c": 4, "d": 3}], "b": 1})
    assert isinstance(a.function.arguments, str)
    assert a.function.arguments == b.function.arguments == canonical_json({"a": [2, {"c": 4, "d": 3}], "b": 1})
    with pytest.raises(ValueError):
        ToolCall(id="x", function={"name": "f", "arguments": "[1, 2]"}).parsed_arguments()


def test_tool_name_pattern_is_enforced():
    with pytest.raises(ValueError):
        make_tool("not a valid name!")


def test_task_round_trip_keeps_id():
    task = make_task()
    again = Task.model_validate_json(task.model_dump_json())
    assert again.id == task.id
    assert again.gold_actions == task.gold_actions
    assert again.scenario.requests[0].actions == [1, 2]


# -- content-hash ids ----------------------------------------------------------------


def test_content_hash_is_key_order_independent():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1, "b": [1, 2]}) != content_hash({"a": 1, "b": [2, 1]})
    assert len(content_hash("x", 32)) == 32


def test_task_id_is_content_hash():
    a, b = make_task(), make_task()
    assert a.id and a.id == b.id
    assert make_task(order_id="#W7654321").id != a.id
    assert make_task(expected_outputs=["$99.00"]).id != a.id
    assert make_task(env_seed=1).id != a.id
    # an explicit id is kept as given
    assert make_task(id="fixed").id == "fixed"


def test_trajectory_id_is_content_hash_and_ignores_lineage():
    a = make_trajectory()
    b = make_trajectory(lineage=make_lineage("run-1"))
    c = make_trajectory(lineage=make_lineage("run-2"), usage={"assistant": Usage(prompt_tokens=999)})
    assert a.id and a.id == b.id == c.id
    assert make_trajectory(order_id="#W7654321").id != a.id
    assert make_trajectory(task_id="task-2").id != a.id


def test_first_failure():
    t = make_trajectory(verdicts=[Verdict(stage="format", passed=True), Verdict(stage="policy", passed=False, reason="r"),
                                  Verdict(stage="outcome", passed=False, reason="s")])
    assert t.first_failure().stage == "policy"
    assert make_trajectory().first_failure() is None


# -- run config -----------------------------------------------------------------------

VALID_YAML = """\
name: unit
seed: 5
num_tasks: 25
shard_size: 10
domain: {name: store, db_seed: 2}
generators:
  - name: blueprint
    params: {min_requests: 1, max_requests: 2}
simulation:
  perturb_rate: 0.25
filters:
  - {name: format}
  - {name: outcome}
"""


def write(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_valid_config(tmp_path):
    config = load_config(write(tmp_path, VALID_YAML))
    assert isinstance(config, RunConfig)
    assert (config.name, config.seed, config.num_tasks, config.shard_size) == ("unit", 5, 25, 10)
    assert config.domain.db_seed == 2
    assert config.generators[0].params == {"min_requests": 1, "max_requests": 2}
    assert config.simulation.perturb_rate == 0.25
    assert [f.name for f in config.filters] == ["format", "outcome"]
    assert config.num_shards == 3


def test_load_config_overrides_replace_top_level_keys(tmp_path):
    path = write(tmp_path, VALID_YAML)
    config = load_config(path, num_tasks=7, seed=None)
    assert config.num_tasks == 7
    assert config.seed == 5  # None means "not overridden"


def test_config_hash_ignores_output_dir_and_runner(tmp_path):
    base = load_config(write(tmp_path, VALID_YAML))
    moved = load_config(write(tmp_path, VALID_YAML + "output_dir: /elsewhere\nrunner: {kind: process}\n", "b.yaml"))
    changed = load_config(write(tmp_path, VALID_YAML.replace("seed: 5", "seed: 6"), "c.yaml"))
    assert base.config_hash() == moved.config_hash()
    assert base.config_hash() != changed.config_hash()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("num_tasks: 3\nsimulaton:\n  max_turns: 4\n", "simulaton"),  # typo at the top level
        ("num_tasks: 3\nsimulation:\n  max_turn: 4\n", "simulation.max_turn"),  # typo nested
        ("num_tasks: 3\nsimulation:\n  perturb_rate: 2\n", "simulation.perturb_rate"),  # out of range
    ],
)
def test_config_error_names_file_and_field_path(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert named in msg


def test_missing_required_field(tmp_path):
    path = write(tmp_path, "seed: 1\n")
    with pytest.raises(ConfigError, match="num_tasks"):
        load_config(path)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "num_tasks: 3\nseed: 1\nname: a: b\nshard_size: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "line 3" in msg
    assert "invalid YAML" in msg


def test_non_mapping_yaml_is_a_config_error(tmp_path):
    path = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_missing_file_names_file(tmp_path):
    path = tmp_path / "does-not-exist.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)
