"""RL environments rebuilt from exported ``rl`` rows: replay fidelity, wrong rollouts, hostile input, TRL.

The rows are real: the legacy dataset main wrote (a store run and a KG run),
exported by this code, read back with ``datasets``. Each accepted row's own
assistant turns, replayed through ``TaskEnvironment``, must earn reward 1.0;
each row a verifier rejected must earn 0.0 with the reason stored on it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest

from pipelines.export import ExportOptions, export_version
from pipelines.flow import run_generate
from pipelines.reward import verify_trajectory
from pipelines.rl import TaskEnvironment
from pipelines.rl.trl import environment_factory
from schemas import load_config
from simulators.domains.kg.env import KGEnv
from simulators.domains.store.env import StoreEnv
from simulators.kinds import kind_of

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlenv")
    shutil.copytree(DATA / "legacy-dataset", root / "ds")
    export_version(root / "ds", root / "hf", ExportOptions(test_ratio=0.0, rejects=True))

    def load(config):
        return datasets.load_dataset(str(root / "hf"), config, cache_dir=str(root / "cache"))["train"]

    return root / "hf", load("rl"), {r["id"]: r for r in load("sft")}, load("rejects")


def replay(env: TaskEnvironment, messages: list[dict]):
    """Every assistant turn of ``messages`` stepped through ``env``; the last observation."""
    obs = None
    for m in messages:
        if m["role"] == "assistant":
            obs = env.step(m)
    return obs


def test_replaying_every_accepted_row_earns_reward_one(exported):
    _, rl, sft, _ = exported
    by_kind = {}
    for row in rl:
        env = TaskEnvironment.from_row(row)
        # the episode opens with the exported prompt's own words: the trainer's prompt and the episode agree
        opening = env.reset()
        assert [m["role"] for m in opening] == [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert opening == row["prompt"]
        # the tools the row offered (main's wording may be older; names and parameters are the contract)
        assert [(t["function"]["name"], sorted(t["function"]["parameters"]["properties"])) for t in env.tools] == \
            [(t["function"]["name"], sorted(t["function"]["parameters"]["properties"])) for t in row["tools"]]
        obs = replay(env, sft[row["id"]]["messages"])
        reward = env.reward()
        assert obs.done and obs.error is None, (row["id"], obs)
        assert reward.value == 1.0, (row["id"], reward)
        assert list(reward.components) == ["policy", *kind_of(row["kind"]).verifiers]
        assert reward.components["policy"]["passed"] is True
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + 1
    assert set(by_kind) == {"blueprint", "kg_question"} and min(by_kind.values()) >= 5, by_kind


def test_a_dual_control_row_replays_with_the_users_own_phone_actions(tmp_path):
    """A telecom row made by this code: the rebuilt environment opens with the exported policy, its
    scripted user carries out on their phone what the replayed assistant asks (as in generation), and the
    reward replays both sides' calls; the row's gold with the phone steps left out earns 0."""
    config = load_config(Path(__file__).parents[1] / "examples" / "telecom.yaml", num_tasks=16, shard_size=16)
    run_generate(config, tmp_path / "ds", "telecom")
    export_version(tmp_path / "ds", tmp_path / "hf", ExportOptions(test_ratio=0.0))
    rl = datasets.load_dataset(str(tmp_path / "hf"), "rl", cache_dir=str(tmp_path / "cache"))["train"]
    sft = {r["id"]: r for r in datasets.load_dataset(str(tmp_path / "hf"), "sft",
                                                      cache_dir=str(tmp_path / "cache"))["train"]}
    phone = fixes = 0
    for row in rl:
        assert row["user_tools"] and row["env_config"]["domain"] == "telecom"  # decoded by the Json feature
        env = TaskEnvironment.from_row(row)
        opening = env.reset()
        assert opening == row["prompt"] and [m["role"] for m in opening] == ["system", "user"]
        obs = replay(env, sft[row["id"]]["messages"])
        reward = env.reward()
        assert obs.done and reward.value == 1.0, (row["id"], reward)
        phone += len(env.user_actions)
        specs = env.domain.user_specs()
        if any(specs[a.call.function.name].writes for a in env.user_actions):
            # the same dialogue with the user's phone actions left out: the device side of the state differs
            bare = env.trajectory().model_copy(update={"user_actions": []})
            verdicts = verify_trajectory(env.task, bare, env.domain(env.task.env_seed))
            assert any("(device)" in (v.reason or "") for v in verdicts if not v.passed), (row["id"], verdicts)
            fixes += 1
    assert len(rl) >= 10 and phone > 0 and fixes > 0


def test_rows_a_verifier_rejected_earn_zero_with_the_stored_reason(exported):
    _, rl, _, rejects = exported
    env_config = {r["domain"]: r["env_config"] for r in rl}
    checked = 0
    for row in rejects:
        task = row["task"]  # decoded by the Json feature
        if task is None or row["stage"] not in ("policy", *kind_of(row["kind"]).verifiers):
            continue
        env = TaskEnvironment.from_row({"id": row["id"], "env_config": env_config[row["domain"]], "task": task})
        env.reset()
        replay(env, row["messages"])
        reward = env.reward()
        assert reward.value == 0.0 and reward.reason == row["reason"], (row["id"], reward, row["reason"])
        assert reward.components[row["stage"]]["passed"] is False
        checked += 1
    assert checked >= 3


def _gold_without_asking(env: TaskEnvironment, row: dict) -> None:
    """The gold calls made straight away (no confirmation asked), then the required outputs told to the user."""
    env.reset()
    for n, action in enumerate(row["reward_spec"]["gold_actions"]):
        env.step({"role": "assistant", "tool_calls": [
            {"id": f"c{n}", "function": {"name": action["name"], "arguments": action["arguments"]}}]})
    env.step({"role": "assistant", "content": "Done: " + ", ".join(row["reward_spec"]["expected_outputs"]) + "."})


def test_reaching_the_gold_state_against_the_policy_earns_zero_with_the_policy_reason(exported):
    """The policy filter's verdict is part of the reward: the gold writes made without the user's yes reach the
    gold state and say the required outputs, yet earn 0.0 with the words a rejected row would carry."""
    _, rl, _, _ = exported
    store = next(r for r in rl if r["kind"] == "blueprint" and any(
        StoreEnv.specs()[a["name"]].writes for a in r["reward_spec"]["gold_actions"]))
    env = TaskEnvironment.from_row(store)
    _gold_without_asking(env, store)
    reward = env.reward()
    assert reward.components["outcome"]["passed"] and reward.components["required_outputs"]["passed"], reward
    assert reward.value == 0.0 and reward.components["policy"]["passed"] is False, reward
    assert reward.reason == reward.components["policy"]["reason"] and "confirm" in reward.reason, reward
    lenient = TaskEnvironment.from_row(store, policy=False)  # a version made without the policy filter
    _gold_without_asking(lenient, store)
    assert lenient.reward().value == 1.0 and "policy" not in lenient.reward().components


def test_a_wrong_or_empty_rollout_earns_zero_with_a_reason(exported):
    _, rl, _, _ = exported
    store = next(r for r in rl if r["kind"] == "blueprint" and any(
        StoreEnv.specs()[a["name"]].writes for a in r["reward_spec"]["gold_actions"]))
    env = TaskEnvironment.from_row(store)
    env.reset()
    while not env.step({"role": "assistant", "content": "Is there anything else I can help you with?"}).done:
        pass
    reward = env.reward()
    assert reward.value == 0.0 and reward.reason == "final state differs from the gold final state", reward

    # the gold calls with one write argument changed: the state is not the gold state
    env.reset()
    gold = store["reward_spec"]["gold_actions"]
    for n, action in enumerate(gold):
        args = json.loads(action["arguments"]) if isinstance(action["arguments"], str) else dict(action["arguments"])
        if StoreEnv.specs()[action["name"]].writes and "reason" not in args:
            key = sorted(args)[-1]
            args[key] = args[key][::-1] if isinstance(args[key], str) else args[key]
        env.step({"role": "assistant", "tool_calls": [
            {"id": f"c{n}", "function": {"name": action["name"], "arguments": args}}]})
    assert env.reward().components["outcome"]["passed"] is False

    kg = next(r for r in rl if r["kind"] == "kg_question")
    env = TaskEnvironment.from_row(kg)  # (KG rollouts: their domain has no checkable policy rule)
    env.reset()
    env.step({"role": "assistant", "content": "The answer is Atlantis."})
    reward = env.reward()
    assert reward.value == 0.0 and "answer" in reward.reason, reward


def test_hostile_messages_get_error_observations_and_sessions_stay_isolated(exported):
    _, rl, _, _ = exported
    row = next(r for r in rl if r["kind"] == "blueprint")
    env = TaskEnvironment.from_row(row, max_steps_per_turn=3)
    assert env.step({"role": "assistant", "content": "hi"}).error.startswith("episode is over (not started)")
    env.reset()

    def call(name, arguments):
        return env.step({"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": name,
                                                                                      "arguments": arguments}}]})

    for bad, expected in [("not-a-message", "a step takes an assistant message"),
                          ({"role": "user", "content": "x"}, "got role 'user'"),
                          ({"role": "assistant"}, "needs content or tool_calls"),
                          ({"role": "assistant", "content": "x" * 70_000}, "more than the 64000 allowed"),
                          ({"role": "assistant", "tool_calls": [{"function": {}}]}, "function.name: missing"),
                          ({"role": "assistant", "tool_calls": "x"}, "tool_calls: must be a list")]:
        obs = env.step(bad)
        assert not obs.done and obs.messages == [] and expected in obs.error, (bad, obs)
    assert call("get_order_details", "{not json").messages[0]["content"].startswith(
        "Error: arguments are not valid JSON")
    assert call("drop_tables", {}).messages[0]["content"] == "Error: unknown tool 'drop_tables'"
    obs = call("get_order_details", {"order_id": 7})
    assert obs.messages[0]["content"].startswith("Error: invalid arguments for get_order_details") and not obs.done
    obs = call("list_product_types", {})  # the fourth tool step in one turn: over the limit, the episode ends
    assert obs.done and obs.error == "more than 3 tool steps in one turn"
    assert env.step({"role": "assistant", "content": "hi"}).error.startswith("episode is over")

    # two sessions of one row: a write in one leaves the other at the initial state
    a, b = TaskEnvironment.from_row(row), TaskEnvironment.from_row(row)
    a.reset(), b.reset()
    start = b.env.state_hash()
    for n, action in enumerate(row["reward_spec"]["gold_actions"]):
        a.step({"role": "assistant", "tool_calls": [{"id": f"c{n}", "function": action}]})
    assert b.env.state_hash() == start and (a.env.state_hash() != start or not any(
        StoreEnv.specs()[x["name"]].writes for x in row["reward_spec"]["gold_actions"]))


def test_every_coded_tool_method_passes_get_json_schema_with_its_own_schema():
    from transformers.utils import get_json_schema

    for cls in (StoreEnv, KGEnv):
        for name, spec in cls.specs().items():
            got = get_json_schema(spec.method)["function"]
            mine = spec.schema.function
            assert got["name"] == name and got["description"] == mine.description
            assert got["parameters"]["required"] == mine.parameters["required"] if mine.parameters["required"] \
                else "required" not in got["parameters"] or not got["parameters"]["required"]
            for arg, prop in mine.parameters["properties"].items():
                assert got["parameters"]["properties"][arg]["description"] == prop["description"], (name, arg)
                if "type" in prop:  # an optional argument is an anyOf in both, written differently
                    assert got["parameters"]["properties"][arg]["type"] == prop["type"], (name, arg)


def test_trl_environment_class_replays_gold_to_reward_one(exported):
    """The class TRL's GRPOTrainer instantiates, driven as TRL drives it: reset(**row), methods(**arguments)."""
    from transformers.utils import get_json_schema

    _, rl, sft, _ = exported
    rows = [r for r in rl if r["kind"] == "blueprint"]
    cls = environment_factory(rows)
    env = cls()
    schemas = {s["function"]["name"]: s["function"] for s in
               (get_json_schema(getattr(env, n)) for n in dir(cls) if not n.startswith("_")
                and n not in ("reset", "get_reward", "episode", "domain"))}
    assert set(schemas) == {*StoreEnv.specs(), "send_message_to_user"}
    for row in rows[:10]:
        assert env.reset(**row) is None
        for m in sft[row["id"]]["messages"][2:]:  # after the prompt: the assistant's moves, through TRL's tools
            if m["role"] != "assistant":
                continue
            for c in m.get("tool_calls") or []:
                getattr(env, c["function"]["name"])(**c["function"]["arguments"])
            if m["content"]:
                env.send_message_to_user(m["content"])
        assert env.get_reward() == 1.0, (row["id"], env.episode.reward())
        env.reset(**row)
        assert env.get_reward() == 0.0  # a fresh rollout with nothing done
    assert env.get_order_details(order="#W1").startswith("Error: invalid arguments for get_order_details")


def test_trl_grpo_trains_steps_on_the_environments(exported, tmp_path):
    """TRL's own GRPOTrainer on rl rows of both domains: environments reset from the rows, rewards from them."""
    import sys

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.chat_template_utils import qwen2_5_chat_template

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_model import build_tiny_model

    _, rl, _, _ = exported
    picked = [i for kind in ("blueprint", "kg_question") for i in [n for n, r in enumerate(rl) if r["kind"] == kind][:2]]
    train = rl.select(picked).map(lambda r: {"environment": r["domain"]})  # TRL's routing column, by domain
    classes = environment_factory(train)
    assert set(classes) == {"store", "kg"}
    made = []

    def factory(cls):
        def make():
            made.append(cls())
            return made[-1]
        return make

    folder = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = qwen2_5_chat_template  # a template TRL knows how to parse tool calls from
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, learning_rate=1e-2, report_to=[], use_cpu=True, logging_steps=1,
                      save_strategy="no", bf16=False, max_tool_calling_iterations=2, seed=0)
    trainer = GRPOTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                          environment_factory={name: factory(cls) for name, cls in classes.items()})
    tool_names = {t.__name__ for t in trainer.tools}
    assert {*StoreEnv.specs(), *KGEnv.specs(), "send_message_to_user"} == tool_names
    result = trainer.train()
    assert result.global_step == 2
    logged = [h for h in trainer.state.log_history if "loss" in h]
    for cls in classes.values():  # each environment's get_reward is a reward column TRL logged (None: not in a batch)
        values = [h[f"rewards/{cls.__name__}/mean"] for h in logged]
        assert any(v is not None for v in values) and all(v is None or 0.0 <= v <= 1.0 for v in values), values
    task_ids = set(train["task_id"])
    started = [m for m in made if m.episode is not None]
    assert started and all(m.episode.task.id in task_ids and m.episode.messages[1].role == "user" for m in started)


def test_a_schema_only_export_carries_its_spec_and_rebuilds_without_the_original(prefect_server, tmp_path):
    """The spec file a schema-only run names is bundled into the export; the folder alone rebuilds the domain."""
    from test_tool_specs import PETSTORE
    from transformers.utils import get_json_schema

    from pipelines.flow import run_generate
    from schemas import parse_config

    spec = tmp_path / "work" / "pets.json"
    spec.parent.mkdir()
    spec.write_text(json.dumps(PETSTORE))
    cfg = parse_config({"name": "byot", "seed": 4, "num_tasks": 12, "shard_size": 12,
                        "domain": {"name": "schema_only", "params": {"spec": str(spec)}},
                        "generators": [{"name": "tool_calls", "params": {"min_calls": 1, "max_calls": 2}}]}, "byot.yaml")
    run_generate(cfg, tmp_path / "ds", "byot-1")
    export_version(tmp_path / "ds", tmp_path / "hf", ExportOptions(test_ratio=0.0))
    shutil.rmtree(spec.parent)  # the run's own spec is gone: only the export's copy remains
    moved = shutil.move(tmp_path / "hf", tmp_path / "elsewhere")
    load = lambda c: datasets.load_dataset(str(moved), c, cache_dir=str(tmp_path / "cache"))["train"]  # noqa: E731
    rl, sft = load("rl"), {r["id"]: r for r in load("sft")}
    config = rl[0]["env_config"]
    (bundled,) = config["files"]
    assert config["params"]["spec"] == bundled and (moved / bundled).is_file() and bundled.startswith("environment/")
    for row in rl:
        env = TaskEnvironment.from_row(row, root=moved)
        env.reset()
        assert replay(env, sft[row["id"]]["messages"]).done and env.reward().value == 1.0, row["id"]
    with pytest.raises(FileNotFoundError, match="pass the export folder as root"):
        TaskEnvironment.from_row(rl[0], root=tmp_path)

    # TRL's class for a domain with no Python methods: signatures written from the tool schemas
    cls = environment_factory(rl, root=moved)
    env = cls()
    assert {n for n in ("getPet", "create_pet", "delete_pets_petId")
            if get_json_schema(getattr(env, n))["function"]["parameters"]["properties"]} == {"getPet", "create_pet",
                                                                                             "delete_pets_petId"}
    for row in rl:
        env.reset(**row)
        for m in sft[row["id"]]["messages"][2:]:
            if m["role"] == "assistant":
                for c in m.get("tool_calls") or []:
                    getattr(env, c["function"]["name"])(**c["function"]["arguments"])
                if m["content"]:
                    env.send_message_to_user(m["content"])
        assert env.get_reward() == 1.0, (row["id"], env.episode.reward())
