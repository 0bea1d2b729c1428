"""A schema-only domain: tools from a spec, answered by a pluggable tool simulator, runnable end to end."""

from __future__ import annotations

import itertools
import json
import random

import fastjsonschema
import polars as pl
import pytest
from test_tool_specs import OPENAI_TOOLS, PETSTORE

from pipelines.flow import run_generate
from pipelines.steps import build_steps
from schemas import ConfigError, parse_config
from simulators import TOOL_SIMULATORS, SimulatedCall, ToolError, ToolSimulator


@pytest.fixture
def petstore(tmp_path):
    path = tmp_path / "pets.json"
    path.write_text(json.dumps(PETSTORE))
    return str(path)


def config(spec: str, **overrides):
    data = {"name": "byot", "seed": 4, "num_tasks": 30, "shard_size": 10,
            "domain": {"name": "schema_only", "params": {"spec": spec}},
            "generators": [{"name": "tool_calls", "params": {"min_calls": 1, "max_calls": 2}}]}
    data.update(overrides)
    return parse_config(data, "byot.yaml")


def test_offline_results_are_schema_conformant_deterministic_and_consistent(petstore):
    env = build_steps(config(petstore)).env
    assert {t.name for t in env.tools()} == {"getPet", "delete_pets_petId", "create_pet"}
    response = fastjsonschema.compile(env.schema_tools["getPet"].response_schema)
    first = env.execute("getPet", {"petId": 7})
    response(json.loads(first))
    assert env.execute("getPet", {"petId": 7}) == first  # same call, same result
    assert env.fresh().execute("getPet", {"petId": 7}) == first  # and in every run
    assert env.execute("getPet", {"petId": 8}) != first
    assert env.execute("getPet", {"petId": 0}).startswith("Error: invalid arguments for getPet")
    assert env.execute("nope", {}).startswith("Error: unknown tool")
    generic = json.loads(env.execute("delete_pets_petId", {"petId": 3}))  # no response schema: a generic object
    assert generic["status"] == "ok" and generic["tool"] == "delete_pets_petId"


def test_state_is_the_log_of_writes(petstore):
    env = build_steps(config(petstore)).env
    start = env.state_hash()
    env.execute("getPet", {"petId": 1})
    assert env.state_hash() == start  # reads leave no trace
    env.execute("create_pet", {"name": "Rex"})
    after_create = env.state_hash()
    assert after_create != start
    other = env.fresh()
    other.execute("create_pet", {"name": "Rex"})
    assert other.state_hash() == after_create
    other.execute("delete_pets_petId", {"petId": 2})
    assert other.state_hash() != after_create


class _Coin(ToolSimulator):
    """A stochastic simulator: the domain's cache must still answer a repeated call the same way."""

    counter = itertools.count()

    def simulate(self, call: SimulatedCall):
        if call.arguments.get("city") == "Atlantis":
            raise ToolError("no such city")
        return {"n": next(self.counter), "seen": len(call.history), "writes": call.writes}


def test_a_pluggable_simulator_is_chosen_by_name_and_cached_per_call(tmp_path):
    TOOL_SIMULATORS.register("coin_test")(_Coin)
    spec = tmp_path / "tools.json"
    spec.write_text(json.dumps(OPENAI_TOOLS))
    cfg = config(str(spec), domain={"name": "schema_only", "params": {"spec": str(spec), "simulator": {"name": "coin_test"}}})
    env = build_steps(cfg).env
    a = env.execute("get_weather", {"city": "Oslo"})
    assert env.execute("get_weather", {"city": "Oslo"}) == a
    assert json.loads(env.execute("send_email", {"to": "a@b.co", "body": "hi"})) == {"n": 1, "seen": 2, "writes": True}
    assert env.execute("get_weather", {"city": "Atlantis"}) == "Error: no such city"
    TOOL_SIMULATORS._items.pop("coin_test")


@pytest.mark.parametrize(
    ("domain", "named"),
    [
        ({"name": "schema_only"}, "byot.yaml: domain.params.spec: Field required"),
        ({"name": "schema_only", "params": {"spec": "missing.json"}}, "domain.params: missing.json: no such tool spec file"),
        ({"name": "schema_only", "params": {"spec": "SPEC", "simulator": {"name": "oracle"}}},
         "domain.params: simulator.name: unknown tool simulator 'oracle'; known: "),
        ({"name": "schema_only", "params": {"spec": "SPEC", "simulator": {"name": "offline", "params": {"x": 1}}}},
         "domain.params: simulator.params.x: Extra inputs are not permitted"),
        ({"name": "schema_only", "params": {"spec": "SPEC", "spek": 1}}, "domain.params.spek: Extra inputs"),
        ({"name": "store", "params": {"size": 3}}, "domain.params.size: Extra inputs"),
        ({"name": "stor"}, "domain.name: unknown domain 'stor'; known: "),
    ],
)
def test_domain_errors_are_one_line_naming_the_field(petstore, domain, named):
    domain = json.loads(json.dumps(domain).replace("SPEC", petstore.replace("\\", "/")))
    with pytest.raises(ConfigError) as err:
        build_steps(config(petstore, domain=domain), "byot.yaml")
    assert named in str(err.value) and "\n" not in str(err.value)
    if "known: " in named:
        assert "schema_only" in str(err.value) or "offline" in str(err.value)


def test_malformed_spec_error_names_file_and_pointer(tmp_path):
    spec = tmp_path / "broken.json"
    spec.write_text(json.dumps({"openapi": "3.0.0", "paths": {"/x": {"get": {"parameters": [{"in": "query"}]}}}}))
    with pytest.raises(ConfigError) as err:
        build_steps(config(str(spec)), "byot.yaml")
    assert str(err.value) == f"byot.yaml: domain.params: {spec}: /paths/~1x/get/parameters/0: missing 'name'"


def test_tool_calls_generator_needs_a_schema_only_domain():
    with pytest.raises(ConfigError, match=r"generators\[0\]\.params: domain 'store' has no call_<tool> intent"):
        build_steps(parse_config({"num_tasks": 1, "generators": [{"name": "tool_calls"}]}), "c")


def test_tool_calls_tasks_replay_to_their_state(petstore):
    steps = build_steps(config(petstore))
    gen = steps.generators[0]
    for i in range(20):
        task = gen.generate(random.Random(i))
        env = steps.env.fresh()
        assert not any(r.startswith("Error: ") for r in env.run_actions(task.gold_actions))
        assert env.state_hash() == task.expected_state_hash
        assert task.domain == "schema_only" and task.generator == "tool_calls"
        assert 1 <= len(task.gold_actions) <= 2 and task.expected_outputs


def test_generate_end_to_end_on_an_openapi_spec(prefect_server, petstore, tmp_path):
    cfg = config(petstore, simulation={"perturb_rate": 0.2})
    manifest = run_generate(cfg, tmp_path / "ds", "byot-1")
    assert manifest.tasks == 30 and manifest.accepted + manifest.rejected == 30
    assert manifest.accepted >= 15  # only planted mistakes are rejected
    df = pl.read_delta(str(tmp_path / "ds"))
    assert df.height == 30 and set(df["domain"]) == {"schema_only"} and set(df["generator"]) == {"tool_calls"}
    accepted = df.filter(pl.col("status") == "accepted")
    assert {t["function"]["name"] for t in json.loads(accepted["tools"][0])} == {"getPet", "delete_pets_petId", "create_pet"}
    rerun = run_generate(cfg, tmp_path / "ds2", "byot-2")
    again = pl.read_delta(str(tmp_path / "ds2"))
    assert (rerun.accepted, sorted(again["dedup_hash"].drop_nulls())) == (manifest.accepted,
                                                                         sorted(df["dedup_hash"].drop_nulls()))
