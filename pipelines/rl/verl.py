"""verl on an exported ``rl`` config: its dataset columns, a tool config of ``BaseTool`` classes, ``compute_score``.

verl's multi-turn agent loop (``ToolAgentLoop``) reads a parquet file through
``RLHFDataset`` (``prompt``, ``data_source``, ``ability``, ``reward_model``,
``extra_info`` with ``tools_kwargs`` / ``interaction_kwargs``), loads tools from
a YAML file of ``class_name`` + ``tool_schema``, calls each tool as
``create`` → ``execute(instance_id, args, agent_data=...)`` → ``release`` (a
new instance per call), and scores the rollout with
``compute_score(data_source, solution_str, ground_truth, extra_info)``, where
``extra_info`` has the rollout's ``agent_data.extra_fields`` merged in.

So the episode lives on the rollout, not on the tool instance: the first call
of a rollout rebuilds its ``TaskEnvironment`` from ``tools_kwargs["trajforge"]``
(the row's ``env_config`` and ``task``) and keeps it on ``agent_data``; each
call steps it exactly as ``TaskEnvironment.step`` does in generation, and the
assistant messages stepped so far go into ``extra_fields["trajforge_messages"]``.
``compute_score`` replays those messages on a fresh environment (deterministic:
the scripted user is seeded by the task) and returns its reward. verl >= 0.8
has no ``BaseInteraction`` (its loop has no user turn of its own), so the
simulated user is reached through the ``send_message_to_user`` tool, as in the
TRL adapter; ``TrajforgeInteraction`` serves verl 0.6/0.7's interaction loop.

The classes subclass verl's ``BaseTool`` / ``BaseInteraction`` where verl is
importable and are plain classes with the same methods elsewhere, so this
module imports (and the export runs) without verl installed.
"""

from __future__ import annotations

import functools
import json
import shutil
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.rl.bundle import BUNDLE_DIR
from pipelines.rl.environment import TaskEnvironment, build_domain
from pipelines.rl.trl import TRLTaskEnvironment, call_message, call_result, user_reply
from schemas import ConfigError, Task
from simulators.environment import Environment

try:  # verl's own base classes where verl is installed (the tool registry needs nothing more than the methods)
    from verl.tools.base_tool import BaseTool as _BaseTool
    from verl.tools.schemas import ToolResponse
except ImportError:  # pragma: no cover - exercised where verl is absent (the main venv)
    _BaseTool, ToolResponse = object, None
try:  # verl 0.6 / 0.7 only
    from verl.interactions.base import BaseInteraction as _BaseInteraction
except ImportError:
    _BaseInteraction = object

USER_TOOL = "send_message_to_user"
EPISODE_KEY = "trajforge"  # tools_kwargs[EPISODE_KEY]: what rebuilds the row's environment
MESSAGES_KEY = "trajforge_messages"  # extra_fields / extra_info: the assistant messages the rollout stepped
_PROMPT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_EPISODE = pa.struct([("env_config", pa.string()), ("task", pa.string()), ("opening", pa.string())])
VERL_SCHEMA = pa.schema([
    ("data_source", pa.string()), ("prompt", _PROMPT), ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("agent_name", pa.string()),
    ("extra_info", pa.struct([
        ("index", pa.int64()), ("split", pa.string()), ("id", pa.string()), ("task_id", pa.string()),
        ("need_tools_kwargs", pa.bool_()), ("tools_kwargs", pa.struct([(EPISODE_KEY, _EPISODE)])),
        ("interaction_kwargs", pa.struct([("name", pa.string()), *_EPISODE]))])),
])


def _text(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def verl_record(row: dict[str, Any], index: int, split: str) -> dict[str, Any]:
    """One ``rl`` row (as pyarrow reads it: JSON columns as text) in verl's columns."""
    prompt = [_text(m) for m in row["prompt"]]
    opening = next((m.get("content") for m in prompt if m.get("role") == "user"), None)
    episode = {"env_config": row["env_config"], "task": row["task"], "opening": opening}
    return {
        "data_source": f"trajforge/{row['domain']}",
        "prompt": [{"role": m["role"], "content": m.get("content") or ""} for m in prompt],
        "ability": f"tool_use/{row['kind']}",
        # what the reward checks (expected state hash, required outputs, a KG answer), for reading: the score
        # itself replays the rollout through the task's verifiers
        "reward_model": {"style": "rule", "ground_truth": json.dumps(_text(row["reward_spec"]), sort_keys=True)},
        "agent_name": "tool_agent",  # verl's multi-turn loop with tools (its default is single-turn)
        "extra_info": {"index": index, "split": split, "id": row["id"], "task_id": row["task_id"],
                       "need_tools_kwargs": True, "tools_kwargs": {EPISODE_KEY: episode},
                       "interaction_kwargs": {"name": EPISODE_KEY, **episode}},
    }


def tool_config(env_config: dict[str, Any] | str, root: str | Path) -> dict[str, Any]:
    """verl's tool config (``actor_rollout_ref.rollout.multi_turn.tool_config_path``) for one domain:
    one entry per domain tool plus ``send_message_to_user``, each naming ``TrajforgeTool``."""
    config = _text(env_config)
    domain = build_domain(config, root)
    schemas = [_verl_schema(t.model_dump(mode="json", exclude_none=True)) for t in domain.tools()]
    schemas.append({"type": "function", "function": {
        "name": USER_TOOL, "description": TRLTaskEnvironment.send_message_to_user.__doc__.split("\n")[0],
        "parameters": {"type": "object", "properties": {"message": {"type": "string",
                                                                    "description": "What to say to the user."}},
                       "required": ["message"]}}})
    return {"tools": [{"class_name": f"{__name__}.TrajforgeTool",
                       "config": {"type": "native", "root": str(Path(root).resolve())},
                       "tool_schema": s} for s in schemas]}


def _verl_schema(tool: dict[str, Any]) -> dict[str, Any]:
    """verl's ``OpenAIFunctionPropertySchema`` needs a ``type`` on every parameter (a list for a union) and reads
    only ``type``/``description``/``enum``: an ``anyOf`` (an optional argument) becomes its types and enums."""
    parameters = tool["function"].get("parameters") or {}
    properties = {}
    for name, prop in (parameters.get("properties") or {}).items():
        if "type" not in prop:
            branches = prop.get("anyOf") or prop.get("oneOf") or []
            types = list(dict.fromkeys(t for b in branches
                                       for t in (b.get("type") if isinstance(b.get("type"), list) else [b.get("type")])
                                       if t))
            enum = [v for b in branches for v in b.get("enum") or []]
            prop = {**{k: v for k, v in prop.items() if k not in ("anyOf", "oneOf")},
                    "type": types[0] if len(types) == 1 else types or "string", **({"enum": enum} if enum else {})}
        properties[name] = prop
    function = {**tool["function"], "description": tool["function"].get("description") or tool["function"]["name"],
                "parameters": {**parameters, "type": parameters.get("type", "object"), "properties": properties}}
    return {**tool, "function": function}


def interaction_config(root: str | Path) -> dict[str, Any]:
    """verl 0.6/0.7's interaction config (``multi_turn.interaction_config_path``): the simulated user."""
    return {"interaction": [{"name": EPISODE_KEY, "class_name": f"{__name__}.TrajforgeInteraction",
                             "config": {"root": str(Path(root).resolve())}}]}


def write_verl(folder: str | Path, out: str | Path | None = None) -> dict[str, dict[str, int]]:
    """The export folder's ``rl`` config as verl reads it: ``OUT/<domain>/{train,test}.parquet``,
    ``tool_config.yaml``, ``interaction_config.yaml``, and ``reward.py`` (``compute_score``). The bundled
    environment files are copied along, so ``OUT`` alone rebuilds every row's environment."""
    import yaml

    folder = Path(folder)
    out = Path(out) if out else folder / "verl"
    files = sorted((folder / "data" / "rl").glob("*.parquet"))
    if not files:
        raise ConfigError(f"{folder}: no rl config (data/rl/*.parquet); give an export folder")
    by_domain: dict[str, dict[str, list[dict[str, Any]]]] = {}
    configs: dict[str, str] = {}
    for f in files:
        split = f.name.split("-")[0]
        for row in pq.read_table(f).to_pylist():
            if not row.get("env_config") or not row.get("task"):
                raise ConfigError(f"{f}: row {row['id']} has no env_config/task (exported by an older "
                                  f"trajforge); export again")
            known = configs.setdefault(row["domain"], row["env_config"])
            if _text(known) != _text(row["env_config"]):
                raise ConfigError(f"{f}: domain {row['domain']!r} appears with two configurations")
            by_domain.setdefault(row["domain"], {}).setdefault(split, []).append(row)
    if (folder / BUNDLE_DIR).is_dir():
        shutil.copytree(folder / BUNDLE_DIR, out / BUNDLE_DIR, dirs_exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for domain, splits in by_domain.items():
        target = out / domain
        target.mkdir(parents=True, exist_ok=True)
        for split, rows in splits.items():
            records = [verl_record(r, n, split) for n, r in enumerate(rows)]
            pq.write_table(pa.Table.from_pylist(records, schema=VERL_SCHEMA), target / f"{split}.parquet")
            counts.setdefault(domain, {})[split] = len(records)
        (target / "tool_config.yaml").write_text(yaml.safe_dump(tool_config(configs[domain], out), sort_keys=False))
        (target / "interaction_config.yaml").write_text(yaml.safe_dump(interaction_config(out), sort_keys=False))
    (out / "reward.py").write_text(
        '"""verl\'s custom_reward_function.path: trajforge\'s reward, environment files under this folder."""\n'
        "from pathlib import Path\n\nfrom pipelines.rl.verl import compute_score as _score\n\n\n"
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):\n"
        "    return _score(data_source, solution_str, ground_truth, extra_info, root=Path(__file__).parent)\n")
    return counts


# -- what verl runs at training time ---------------------------------------------------------------------------
_EPISODES: OrderedDict[str, TaskEnvironment] = OrderedDict()  # verl 0.6/0.7 interactions, by rollout request id
MAX_EPISODES = 4096


@functools.lru_cache(maxsize=64)
def _domain(env_config: str, root: str) -> type[Environment]:
    return build_domain(json.loads(env_config), root)


def _episode(episode: dict[str, Any], root: str | Path) -> TaskEnvironment:
    """A rollout's environment, not yet reset; the domain class (and a KG it loads) is built once per config."""
    config = episode["env_config"]
    domain = _domain(config if isinstance(config, str) else json.dumps(config, sort_keys=True), str(root))
    env = TaskEnvironment(Task.model_validate(_text(episode["task"])), domain, opening=episode.get("opening"))
    env.stepped = []  # type: ignore[attr-defined]  # the assistant messages stepped so far: see _record
    return env


def _record(env: TaskEnvironment) -> list[dict[str, Any]]:
    """The episode's stepped assistant messages, updated in place: the list ``extra_fields`` holds is this one, so
    what verl 0.7's interaction steps after the rollout's last tool call reaches ``compute_score`` too."""
    env.stepped[:] = [m.to_openai() for m in env.messages if m.role == "assistant"]  # type: ignore[attr-defined]
    return env.stepped  # type: ignore[attr-defined]


class TrajforgeTool(_BaseTool):
    """Every trajforge tool of a domain, and ``send_message_to_user``: one class, one instance per tool name."""

    def __init__(self, config: dict[str, Any], tool_schema: Any) -> None:
        self.config = config
        self.tool_schema = tool_schema
        function = tool_schema.function if hasattr(tool_schema, "function") else tool_schema["function"]
        self.name = function.name if hasattr(function, "name") else function["name"]
        self.root = config.get("root") or "."

    def get_openai_tool_schema(self) -> Any:
        return self.tool_schema

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        return instance_id or str(uuid.uuid4()), _response("")

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any) -> tuple[Any, float, dict]:
        """One call on the rollout's episode (kept on verl's ``agent_data``); a call verl could not tie to a row
        of ours is an error result, never an exception."""
        agent_data = kwargs.get("agent_data")
        env = getattr(agent_data, "trajforge_episode", None)
        if env is None:
            env = _EPISODES.get(getattr(agent_data, "request_id", None) or "")
            if env is None:
                episode = (getattr(agent_data, "tools_kwargs", None) or {}).get(EPISODE_KEY)
                if not episode:
                    return _response(f"Error: no {EPISODE_KEY} entry in this row's tools_kwargs"), 0.0, {}
                env = _episode(episode, self.root)
                await env.areset()
            if agent_data is not None:
                agent_data.trajforge_episode = env
        if not isinstance(parameters, dict):
            return _response("Error: arguments must be a JSON object"), 0.0, {}
        if self.name == USER_TOOL:
            text = user_reply(await env.astep({"role": "assistant", "content": str(parameters.get("message", ""))}))
        else:
            text = call_result(await env.astep(call_message(env, self.name, parameters)))
        if isinstance(getattr(agent_data, "extra_fields", None), dict):
            agent_data.extra_fields[MESSAGES_KEY] = _record(env)
        return _response(text), 0.0, {}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        return 0.0  # the outcome reward is compute_score's: it needs the whole rollout

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        return None


class TrajforgeInteraction(_BaseInteraction):
    """The simulated user for verl 0.6/0.7's interaction loop (``interaction_kwargs.name: trajforge``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.name = config.get("name", EPISODE_KEY)
        self.root = config.get("root") or "."

    async def start_interaction(self, instance_id: str | None = None, **kwargs: Any) -> str:
        instance_id = instance_id or str(uuid.uuid4())
        env = _episode(kwargs, self.root)
        await env.areset()
        _EPISODES[instance_id] = env
        while len(_EPISODES) > MAX_EPISODES:
            _EPISODES.popitem(last=False)
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]], **kwargs: Any
                                ) -> tuple[bool, str, float, dict[str, Any]]:
        """The user's reply to the policy's last message; the episode's reward once the user has ended it."""
        env = _EPISODES.get(instance_id)
        if env is None:
            return True, "Error: unknown interaction instance", 0.0, {}
        last = next((m for m in reversed(messages) if m.get("role") == "assistant"), None)
        reply = user_reply(await env.astep({"role": "assistant", "content": (last or {}).get("content") or ""}))
        _record(env)
        score = (await env.areward()).value if env.done else 0.0
        return env.done, reply, score, {}

    async def calculate_score(self, instance_id: str | None = None, **kwargs: Any) -> float:
        env = _EPISODES.get(instance_id or "")
        return (await env.areward()).value if env else 0.0

    async def finalize_interaction(self, instance_id: str | None = None, **kwargs: Any) -> None:
        _EPISODES.pop(instance_id or "", None)


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None,
                  root: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """verl's reward function: the rollout's stepped messages replayed on a fresh environment, scored by the
    task's verifiers. ``score`` is the reward; ``reason`` the first failing verifier's words ("" when it passed).
    A rollout that never reached a tool scores 0.0 with that reason. Synchronous, as verl's reward managers
    call it (in an executor thread)."""
    extra_info = extra_info or {}
    episode = (extra_info.get("tools_kwargs") or {}).get(EPISODE_KEY) or extra_info.get("interaction_kwargs") or {}
    if not episode.get("task"):
        return {"score": 0.0, "reason": f"extra_info has no tools_kwargs.{EPISODE_KEY} (not a trajforge row)"}
    stepped = _text(extra_info.get(MESSAGES_KEY) or "[]")
    if not stepped:
        return {"score": 0.0, "reason": "the rollout called no tool (no step reached the environment)"}
    env = _episode(episode, root or ".")
    env.reset()
    for message in stepped:
        env.step(message)
    reward = env.reward()
    return {"score": reward.value, "reason": reward.reason or ""}


def _response(text: str) -> Any:
    return ToolResponse(text=text) if ToolResponse is not None else {"text": text}
