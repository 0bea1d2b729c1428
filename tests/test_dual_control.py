"""Dual control end to end: a model user simulator (over real HTTP) calling its own device tools, and a telecom
run committed, exported and rendered through real chat templates with the user's actions kept out of the chat."""

from __future__ import annotations

import asyncio
import json
import random
import re

import pytest
from domain_helpers import first_failure, make_task
from loopback import LoopbackServer, Reply

from pipelines.export import export_version
from pipelines.flow import run_generate
from pipelines.rows import row_user_actions
from pipelines.store import DatasetStore
from pipelines.template_check import check_folder
from schemas import BackendConfig, Trajectory, Usage, UserRoleConfig, parse_config
from simulators.agents import STOP
from simulators.backends import Endpoint
from simulators.conversation import rollout
from simulators.domains.telecom import TelecomEnv
from simulators.domains.telecom.intents import VOICE
from simulators.model_agents import LLMUser
from simulators.scripted import ASKS_CONFIRM, ASKS_IDENTITY, OFFERS_MORE, ScriptedAssistant


class PhoneUser:
    """Plays the customer from the user simulator's view (roles swapped): asked to do something on the phone, it
    calls its tools (what it heard, read by the domain's voice); after the results, it says what it saw."""

    def __init__(self) -> None:
        self.saw_results: list[str] = []
        self.offered_tools: set[str] = set()

    def __call__(self, body: dict) -> Reply:
        messages = body["messages"]
        self.offered_tools |= {t["function"]["name"] for t in body.get("tools") or []}
        last = messages[-1]
        if last["role"] == "tool":  # its own actions just ran: report them (the view shows their results)
            self.saw_results.append(last["content"])
            return Reply(content=f"Done. The phone says: {last['content']}")
        text = last.get("content") or ""
        identity = re.search(r"How you prove who you are, when asked: (.*)", messages[0]["content"]).group(1)
        wanted = VOICE.parse(text)
        if wanted:
            calls = [{"id": f"u{len(messages)}_{k}", "type": "function",
                      "function": {"name": a.name, "arguments": json.dumps(a.arguments)}} for k, a in enumerate(wanted)]
            return Reply(tool_calls=calls)
        if len(messages) == 2:
            return Reply(content="My phone has no signal at all.")
        if ASKS_IDENTITY.search(text):
            return Reply(content=identity)
        if ASKS_CONFIRM.search(text):
            return Reply(content="Yes, please go ahead.")
        if OFFERS_MORE.search(text):
            return Reply(content=f"No, that's all. Thanks! {STOP}")
        return Reply(content="It started this morning, I didn't change anything.")


def test_a_model_user_simulator_acts_on_its_own_phone_over_http():
    env = TelecomEnv(0)
    task = make_task(env, ["no_service_airplane"], seed=3)
    brain = PhoneUser()
    with LoopbackServer(brain) as server:
        endpoint = Endpoint("loop", BackendConfig(model="loop-user", base_url=server.url, max_retries=1), None)
        fresh = env.fresh(task.env_seed)
        user = LLMUser(task, endpoint, UserRoleConfig(backend="loop"), Usage(), tools=fresh.user_tools())

        async def go():
            try:
                return await rollout(task, fresh, user, ScriptedAssistant(task, fresh, random.Random(0)))
            finally:
                await endpoint.release_loop()

        result = asyncio.run(go())
    assert brain.offered_tools == set(env.user_specs())  # the simulator is given the phone's tools, and only those
    names = [a.call.function.name for a in result.user_actions]
    assert names == ["check_status_bar", "toggle_airplane_mode", "check_status_bar"]
    assert json.loads(result.user_actions[-1].result)["signal"] == "4 bars"
    assert brain.saw_results[-1] == result.user_actions[-1].result  # it reported what it saw, in its own turn
    assert not any(m.tool_calls for m in result.messages if m.role == "user")
    trajectory = Trajectory(task_id=task.id, domain=task.domain, tools=fresh.tools(), messages=result.messages,
                            user_tools=fresh.user_tools(), user_actions=result.user_actions,
                            final_state_hash=result.final_state_hash)
    assert first_failure(env, trajectory, task) is None
    assert result.final_state_hash == task.expected_state_hash


@pytest.mark.usefixtures("prefect_server")
def test_a_telecom_run_is_verified_stored_exported_and_renders_through_chat_templates(tmp_path):
    config = parse_config({"name": "dual", "seed": 5, "num_tasks": 40, "shard_size": 20,
                           "domain": {"name": "telecom"},
                           "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
                           "simulation": {"perturb_rate": 0.3}}, "dual-test")
    manifest = run_generate(config, tmp_path / "ds", "run-dual")
    assert manifest.accepted >= 25 and manifest.diversity.user_actions_per_dialogue
    rows = DatasetStore(tmp_path / "ds").read().to_dicts()
    acted = [r for r in rows if r["status"] == "accepted" and r["user_actions"]]
    assert acted, "no accepted dialogue with device actions"
    for row in acted:
        actions = row_user_actions(row)
        assert all(0 < a.at < len(row["messages"]) and row["messages"][a.at]["role"] == "user" for a in actions)
        assert row["tool_chain"].count("user:") == len(actions) and row["num_writes"] >= 1
    # a mistake on the phone is caught by the state the rows were verified against
    assert any(r["stage"] in ("outcome", "policy") and r["user_actions"] for r in rows if r["status"] == "rejected")

    summary = export_version(tmp_path / "ds", tmp_path / "hf")
    assert summary.rows["sft"]
    for report in check_folder(tmp_path / "hf", ["qwen3", "llama3.1"], None, "sft", None):
        assert report.failed == {} and report.summary()["rendered"] == sum(summary.rows["sft"].values())
