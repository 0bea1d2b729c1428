"""TRL's ``GRPOTrainer(environment_factory=...)`` on an exported ``rl`` config.

TRL probes one instance of the factory's class: every public method but
``reset`` and ``get_reward`` becomes a tool (schema from
``transformers.utils.get_json_schema``), ``reset(**example)`` starts a rollout
from a dataset row, and ``get_reward()`` scores it when the rollout ends. So
the class is made per domain: one method per domain tool, with the domain
method's own signature and docstring (coded domains' docstrings carry a Google
``Args:`` section written from their ``Param``s), plus ``send_message_to_user``,
because TRL's loop has tool calls but no user turn, and the details a task
needs come from the user in later turns. Calls run through
``TaskEnvironment.step``: validated and executed exactly as in generation, and
``get_reward`` is its reward, the kind's verifiers.

The policy's final message (no tool call) ends TRL's rollout; what it must
tell the user (an order total, a KG answer) it says through
``send_message_to_user``.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipelines.rl.environment import Observation, TaskEnvironment, build_domain
from schemas import Task, Tool, canonical_json
from simulators.environment import Environment

_JSON_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict}


class TRLTaskEnvironment:
    """Base of the per-domain classes ``environment_factory`` returns; one instance serves many rollouts."""

    domain: type[Environment]

    def __init__(self) -> None:
        self.episode: TaskEnvironment | None = None

    def reset(self, **example: Any) -> str | None:
        """Start the rollout of ``example`` (an ``rl`` row): its prompt already holds the user's opening."""
        task = example["task"]
        self.episode = TaskEnvironment(Task.model_validate(json.loads(task) if isinstance(task, str) else task),
                                       self.domain)
        self.episode.reset()
        return None

    def get_reward(self) -> float:
        return self.episode.reward().value if self.episode else 0.0

    def send_message_to_user(self, message: str) -> str:
        """Send a message to the user (a question, a confirmation request, a result) and get the user's reply.

        Args:
            message: What to say to the user.
        """
        return user_reply(self._episode().step({"role": "assistant", "content": message}))

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        episode = self._episode()
        return call_result(episode.step(call_message(episode, name, arguments)))

    def _episode(self) -> TaskEnvironment:
        if self.episode is None:
            raise RuntimeError("reset() first: TRL calls it with the dataset row before the rollout")
        return self.episode


def call_message(episode: TaskEnvironment, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tool call as the assistant message a step takes (adapters whose trainer calls tools one at a time)."""
    call = {"id": f"call_{len(episode.messages)}", "type": "function",
            "function": {"name": name, "arguments": canonical_json(arguments)}}
    return {"role": "assistant", "content": "", "tool_calls": [call]}


def call_result(obs: Observation) -> str:
    return f"Error: {obs.error}" if obs.error else obs.messages[0]["content"]


def user_reply(obs: Observation) -> str:
    """What the policy's message to the user comes back as: the user's words, and whether they have left."""
    if obs.error:
        return f"Error: {obs.error}"
    reply = " ".join(m["content"] for m in obs.messages if m["role"] == "user")
    return reply + (" (The user has left the conversation.)" if obs.done else "")


def _tool_method(tool: Tool, method: Callable) -> Callable:
    name = tool.function.name

    def call(self: TRLTaskEnvironment, **arguments: Any) -> str:
        return self._call(name, arguments)

    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(method).parameters.values()):
        _from_schema(call, tool)  # a schema-only tool has no Python signature: write one from its JSON schema
    else:
        functools.update_wrapper(call, method)  # signature, type hints (in the domain's module) and docstring
    return call


def _from_schema(fn: Callable, tool: Tool) -> None:
    spec = tool.function
    props: dict[str, Any] = spec.parameters.get("properties", {})
    required = set(spec.parameters.get("required", []))
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {"return": str}
    lines = []
    for pname, prop in props.items():
        types = prop.get("type") if isinstance(prop.get("type"), list) else [prop.get("type")]
        hint = next((_JSON_TYPES[t] for t in types if t in _JSON_TYPES), str)  # ["string", "null"]: str
        annotations[pname] = hint
        params.append(inspect.Parameter(pname, inspect.Parameter.KEYWORD_ONLY,
                                        default=inspect.Parameter.empty if pname in required else None,
                                        annotation=hint))
        choices = f" (choices: {json.dumps(prop['enum'])})" if "enum" in prop else ""
        lines.append(f"    {pname}: {' '.join((prop.get('description') or pname).split())}{choices}")
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)
    fn.__name__ = fn.__qualname__ = spec.name
    fn.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    fn.__annotations__ = annotations
    fn.__doc__ = (spec.description or spec.name) + ("\n\nArgs:\n" + "\n".join(lines) if lines else "")


def environment_class(env_config: dict[str, Any] | str, root: str | Path | None = None) -> type[TRLTaskEnvironment]:
    """The TRL environment class of one ``env_config`` (an ``rl`` row's column): the domain's tools as methods."""
    config = json.loads(env_config) if isinstance(env_config, str) else env_config
    domain = build_domain(config, root)
    reserved = set(dir(TRLTaskEnvironment))
    methods: dict[str, Any] = {}
    for name, spec in domain.specs().items():
        if name in reserved:
            raise ValueError(f"domain {config['domain']!r}: tool {name!r} clashes with a TRL environment method")
        methods[name] = _tool_method(spec.schema, spec.method)
    cls_name = f"TRL{''.join(p.title() for p in str(config['domain']).replace('-', '_').split('_'))}Environment"
    return type(cls_name, (TRLTaskEnvironment,), {"domain": domain, **methods})


def environment_factory(rows: Iterable[dict[str, Any]], root: str | Path | None = None
                        ) -> Callable[[], TRLTaskEnvironment] | dict[str, Callable[[], TRLTaskEnvironment]]:
    """What ``GRPOTrainer(environment_factory=...)`` takes for these ``rl`` rows.

    One domain configuration: its class. Several (a version made by runs on
    different domains): a dict by domain name, and each example then needs
    TRL's ``environment`` column naming its domain
    (``dataset.map(lambda r: {"environment": r["domain"]})``).
    """
    configs: dict[str, dict[str, Any]] = {}
    for row in rows:
        config = row["env_config"]
        config = json.loads(config) if isinstance(config, str) else config
        known = configs.setdefault(config["domain"], config)
        if canonical_json(known) != canonical_json(config):
            raise ValueError(f"domain {config['domain']!r} appears with two configurations; train on one at a time")
    if not configs:
        raise ValueError("no rl rows: nothing to build an environment for")
    classes = {name: environment_class(config, root) for name, config in configs.items()}
    return next(iter(classes.values())) if len(classes) == 1 else classes
