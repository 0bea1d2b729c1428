"""Run by tests/test_verl.py inside the verl venv: verl's own code on ``trajforge env verl``'s output.

verl's ``RLHFDataset`` loads every parquet file (with verl's default config
keys, and the tool config so its length filter sees the tool schemas); verl's
``initialize_tools_from_config`` builds the tools; each row's gold dialogue is
then driven through verl's own ``ToolAgentLoop._call_tool`` (the dispatch its
agent loop runs on each parsed call, with verl's ``AgentData``), and the
rollout is scored by ``reward.py``'s ``compute_score`` loaded the way verl
loads a custom reward, with ``extra_info`` merged as verl's naive reward manager
does. Prints one JSON object.

argv: VERL_DIR GOLD_JSON TOKENIZER_DIR CACHE_DIR
"""

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import verl
from omegaconf import OmegaConf
from transformers import AutoTokenizer
from verl.experimental.agent_loop.tool_agent_loop import AgentData, ToolAgentLoop
from verl.experimental.agent_loop.tool_parser import FunctionCall
from verl.interactions.base import BaseInteraction  # verl 0.7.1's, laid over 0.9.1 by the test
from verl.interactions.utils.interaction_registry import initialize_interactions_from_config
from verl.tools.base_tool import BaseTool
from verl.tools.tool_registry import initialize_tools_from_config
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.import_utils import load_extern_object

out, gold_file, tokenizer_dir, cache = sys.argv[1:5]
tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
gold = json.loads(Path(gold_file).read_text())
score = load_extern_object(module_path=str(Path(out) / "reward.py"), object_name="compute_score")
report = {"verl": verl.__version__, "domains": {}}


async def call(loop, agent_data, name, arguments):
    response, _, _ = await ToolAgentLoop._call_tool(loop, FunctionCall(name=name, arguments=arguments),
                                                    agent_data.tools_kwargs, agent_data)
    return response.text


def agent_data(item, n):
    return AgentData(messages=list(item["raw_prompt"]), image_data=None, video_data=None, audio_data=None,
                     mm_processor_kwargs=None, metrics={}, request_id=f"rollout-{n}", tools_kwargs=item["tools_kwargs"])


async def scored(item, data):
    extra = dict(item["extra_info"])
    extra.update(data.extra_fields.items())  # as verl's naive reward manager: tool_extra_fields merged, and a
    # synchronous compute_score run in the loop's executor
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: score(item["data_source"], "", item["reward_model"]["ground_truth"], extra))


async def interaction_rollouts(folder, loop, dataset):
    """verl 0.7's interacting state: its loop calls generate_response(request_id, messages, **interaction_kwargs)
    when the policy answers without a tool call; tool calls go to the tools with the same request id."""
    import pipelines.rl.verl as ours

    interactions = initialize_interactions_from_config(str(folder / "interaction_config.yaml"))
    user = interactions["trajforge"]
    out = {"base_interaction": isinstance(user, BaseInteraction), "name": user.name, "rollouts": []}
    for n in range(min(3, len(dataset))):
        item = dataset[n]
        kwargs = item["interaction_kwargs"]
        data = agent_data(item, f"i{n}")
        await user.start_interaction(data.request_id, **kwargs)
        messages, terminated, score = list(item["raw_prompt"]), False, 0.0
        for m in gold[item["extra_info"]["id"]]:
            if m["role"] != "assistant":
                continue
            messages.append(m)
            for c in m.get("tool_calls") or []:
                await call(loop, data, c["function"]["name"], c["function"]["arguments"])
            if not m.get("tool_calls"):
                terminated, reply, score, _ = await user.generate_response(data.request_id, messages, **kwargs)
                messages.append({"role": "user", "content": reply})
        final = await user.calculate_score(data.request_id)
        await user.finalize_interaction(data.request_id)
        out["rollouts"].append({"terminated": terminated, "score": final if score == final else (score, final),
                                "compute_score": (await scored(item, data))["score"],
                                "finalized": data.request_id not in ours._EPISODES})
    return out


async def main():
    for folder in sorted(p for p in Path(out).iterdir() if (p / "tool_config.yaml").is_file()):
        files = sorted(str(f) for f in folder.glob("*.parquet"))
        written = [r for f in files for r in pq.read_table(f).to_pylist()]
        config = OmegaConf.create({
            "prompt_key": "prompt", "max_prompt_length": 32768, "return_raw_chat": True, "truncation": "error",
            "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1, "cache_dir": cache,
            "tool_config_path": str(folder / "tool_config.yaml"), "need_tools_kwargs": True})
        dataset = RLHFDataset(files, tokenizer, config)
        tools = initialize_tools_from_config(str(folder / "tool_config.yaml"))
        loop = SimpleNamespace(tools={t.name: t for t in tools}, max_tool_response_length=1 << 20,
                               tool_response_truncate_side="middle")
        items, rewards = [], []
        for n in range(len(dataset)):
            item = dataset[n]
            items.append({"raw_prompt": item["raw_prompt"], "data_source": item["data_source"],
                          "ability": item["ability"], "agent_name": item["agent_name"], "reward_model": item["reward_model"],
                          "index": item["index"], "tools_kwargs": item["tools_kwargs"],
                          "interaction_kwargs": item["interaction_kwargs"], "id": item["extra_info"]["id"]})
            data = agent_data(item, n)
            for m in gold[item["extra_info"]["id"]]:
                if m["role"] != "assistant":
                    continue
                for c in m.get("tool_calls") or []:
                    await call(loop, data, c["function"]["name"], c["function"]["arguments"])
                if not m.get("tool_calls"):
                    await call(loop, data, "send_message_to_user", json.dumps({"message": m["content"]}))
            rewards.append(await scored(item, data))
        # a wrong rollout: verl's own dispatch answers a malformed call and an unknown tool, and it says goodbye
        wrong = agent_data(dataset[0], -1)
        hostile = [await call(loop, wrong, next(iter(loop.tools)), "{not json"),
                   await call(loop, wrong, "no_such_tool", "{}")]
        await call(loop, wrong, "send_message_to_user", json.dumps({"message": "Goodbye."}))
        interaction = await interaction_rollouts(folder, loop, dataset)
        report["domains"][folder.name] = {
            "interaction": interaction,
            "written": len(written), "loaded": len(dataset), "items": items, "written_prompts":
            [[{"role": m["role"], "content": m["content"]} for m in r["prompt"]] for r in written],
            "tools": sorted(loop.tools), "base_tool": all(isinstance(t, BaseTool) for t in tools),
            "rewards": rewards, "empty": await scored(dataset[0], agent_data(dataset[0], -2)),
            "wrong": await scored(dataset[0], wrong), "hostile": hostile}
    print(json.dumps(report, default=str))


asyncio.run(main())
