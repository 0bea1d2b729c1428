"""The work of one shard, with no Prefect in sight, so it can be tested and
benchmarked directly and run under any task runner.

Every task index of the shard ends as exactly one row: accepted, or rejected
with the stage and reason. Randomness is derived from (seed, index), so a
shard's output depends on nothing but the config and its own index.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dedup import exact_hash
from filters import Context
from generators import SynthesisContext, SynthesisError
from generators.base import ExamplePool
from pipelines.budget import NEVER, StopCheck
from pipelines.collector import for_shards
from pipelines.difficulty import dialogue_figures
from pipelines.rows import ROW_SCHEMA, rejected_row, trajectory_row
from pipelines.shard_rows import ShardRows
from pipelines.steps import Steps, build_steps
from schemas import (
    Lineage,
    Message,
    RunConfig,
    RunFailedError,
    Task,
    Trajectory,
    Usage,
    UserAction,
    Verdict,
    one_line,
    total_usage,
)
from simulators.agents import AssistantAgent, UserAgent
from simulators.backends import BackendError, Endpoint, TruncatedReply, open_endpoints, raise_if_unhealthy
from simulators.conversation import AsyncToolSimulator, RolloutError, rollout
from simulators.environment import Environment, ToolFault
from simulators.kinds import TaskKindError, kind_of
from simulators.model_agents import LLMAssistant, LLMUser, ModelToolSimulator
from simulators.scripted import perturbations_for
from simulators.skeleton_refine import Refiner, refine_rollout

# ``evidence``: for a task that could not be built, what its making left (JSON: the writer's messages, the last
# candidate task, who failed), so the rejected row says why.
TASK_SCHEMA = pa.schema([("index", pa.int64()), ("task", pa.string()), ("error", pa.string()),
                         ("evidence", pa.string())])


class StepFailedError(RunFailedError):
    """A step raised on every item of a shard: a broken step, not bad items, so the run stops (nothing committed)."""


class _Faults:
    """Per step: items it saw and items it raised on (or answered with the wrong type), to contain a broken step.

    One item's exception becomes that item's rejected row (``fault: plugin``);
    a step that fails on every item of a shard (two at least, or the whole
    shard) fails the run with one line naming it, instead of a version of
    rejects.
    """

    def __init__(self, shard: int, items: int) -> None:
        self.shard, self.items = shard, items
        self.seen: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def reason(self, kind: str, step: Any, err: BaseException) -> str:
        cls = type(step)
        message = f"{kind} {step.name!r} ({cls.__module__}.{cls.__qualname__}) raised {one_line(err)}"
        self.failed[step.name] += 1
        self.first.setdefault(step.name, message)
        return message

    def check(self) -> None:
        for name, n in self.failed.items():
            if n == self.seen[name] and (n >= 2 or n == self.items):
                raise StepFailedError(f"{self.first[name]} on every item of shard {self.shard} ({n} of {n}); "
                                      "stopped, nothing committed")


def _wrong_type(kind: str, value: Any, expected: str) -> TypeError:
    return TypeError(f"the {kind} returned {type(value).__name__}, not a {expected}")


def shard_indices(config: RunConfig, shard: int) -> range:
    """Shard k is always the same task indices, whatever the run's size: a target run's shards are those of a
    fixed run of the same seed, so shard k's content depends on nothing but the config and k."""
    start = shard * config.shard_size
    limit = config.task_limit
    return range(start, start + config.shard_size if limit is None else min(start + config.shard_size, limit))


class ShardAbandoned(Exception):  # noqa: N818 (a signal, not an error)
    """The run reached its target before this shard was needed: its work is not committed, so none is written."""

    def __init__(self, usage: dict[str, Usage]) -> None:
        super().__init__("abandoned: the run's target was reached")
        self.usage = usage


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write beside, then rename: a shard file is either whole or absent."""
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


USAGE_KEY = b"trajforge.usage"
FUNNEL_KEY = b"trajforge.synthesis"
STOP_KEY = b"trajforge.stopped"  # a shard that stopped starting tasks (a budget ran out): why, and tasks left out


def read_meta(schema: pa.Schema, key: bytes) -> dict[str, Any]:
    """A JSON value the shard stored in a Parquet file's metadata (model usage, the synthesis funnel)."""
    return json.loads((schema.metadata or {}).get(key, b"{}"))


def _stopped_meta(stop: StopCheck, rows: ShardRows) -> dict[bytes, str]:
    """The file metadata of a shard some of whose tasks never started, since a budget ran out."""
    left_out = rows.missing
    if not left_out:
        return {}
    if stop.discards():
        raise AssertionError("a discarded shard is never written")
    return {STOP_KEY: json.dumps({"reason": stop.reason(), "unstarted": left_out})}


def synthesize_shard(config: RunConfig, shard: int, out: Path, steps: Steps | None = None,
                     cache_path: str | None = None, stop: StopCheck = NEVER) -> Path:
    """Propose one task per index; model calls and each generator's funnel are kept in the file's metadata.

    ``stop`` is asked before each task starts: once it names a reason, no more start. Tasks never started
    are left out of the file (its metadata says why); when the reason is the run's target, the shard is
    abandoned (``ShardAbandoned``) and nothing is written.
    """
    for_shards()
    steps = steps or build_steps(config)
    indices = shard_indices(config, shard)
    rows = ShardRows(len(indices), TASK_SCHEMA)
    used = config.generator_backends()
    endpoints = open_endpoints({name: config.backends[name] for name in used}, cache_path, scope=str(out.parent))
    limit = asyncio.Semaphore(config.simulation.concurrency)
    faults = _Faults(shard, len(indices))

    async def one(ctx: SynthesisContext, slot: int, index: int) -> None:
        rng = random.Random(f"{config.seed}:task:{index}")
        generator = steps.generator_for(config.seed, index, rng)
        try:
            if generator.pool_lag:  # waits outside the slot: items it waits for must be able to run
                await ctx.pool.settled(index - generator.pool_lag)
            async with limit:
                if stop.reason():
                    return
                faults.seen[generator.name] += 1
                try:
                    task = await generator.agenerate(rng, ctx.at(index))
                    if not isinstance(task, Task):
                        raise _wrong_type("generator", task, "Task")
                    rows[slot] = {"index": index, "task": _fitted(task).model_dump_json(), "error": None,
                                  "evidence": None}
                except (SynthesisError, BackendError) as err:
                    rows[slot] = {"index": index, "task": None, "error": f"{generator.name}: {err}",
                                  "evidence": _synthesis_evidence(err)}
                except Exception as err:  # a broken step: this item is rejected, the shard goes on
                    rows[slot] = {"index": index, "task": None, "error": faults.reason("generator", generator, err),
                                  "evidence": json.dumps({"fault": "plugin", "messages": [], "task": None})}
        finally:
            ctx.pool.finish(index)

    async def run_all() -> SynthesisContext:
        ctx = SynthesisContext(endpoints=endpoints, usage={name: Usage() for name in config.model_users()},
                               pool=ExamplePool(indices))
        stop.track(shard, ctx.usage)
        try:
            await asyncio.gather(*(one(ctx, slot, index) for slot, index in enumerate(indices)))
        finally:
            for endpoint in endpoints.values():
                await endpoint.release_loop()
        return ctx

    ctx = asyncio.run(run_all())
    if stop.discards() and rows.missing:
        raise ShardAbandoned(ctx.usage)
    raise_if_unhealthy(endpoints)  # a backend that kept failing stops the run: this shard is not staged
    faults.check()
    usage = {name: u.model_dump() for name, u in ctx.usage.items() if u.requests or u.cached}
    meta = {USAGE_KEY: json.dumps(usage), FUNNEL_KEY: json.dumps({g: dict(c) for g, c in ctx.funnel.items()}),
            **_stopped_meta(stop, rows)}
    _write_atomic(rows.table(meta), out)
    return out


def _fitted(task: Task) -> Task:
    """The task checked against its kind (a known kind, its own fields valid); one that does not fit is a
    synthesis failure that keeps the task as evidence."""
    try:
        return kind_of(task).validate(task)
    except TaskKindError as err:
        raise SynthesisError(str(err), task=task) from None


def _synthesis_evidence(err: Exception) -> str:
    if isinstance(err, SynthesisError):
        return json.dumps({"fault": err.fault, "messages": [m.model_dump(exclude_none=True) for m in err.messages],
                           "task": err.task.model_dump(mode="json") if err.task else None})
    return json.dumps({"fault": "backend", "messages": [], "task": None})


def _synthesis_reject(error: str | None, evidence: str | None, lineage: Lineage, shard: int, index: int,
                      domain: str) -> dict[str, Any]:
    """The rejected row of a task that was never built; shards staged before evidence was kept have none."""
    found = json.loads(evidence) if evidence else {}
    task = Task.model_validate(found["task"]) if found.get("task") else None
    messages = [Message.model_validate(m) for m in found.get("messages", [])]
    return rejected_row("synthesis", error or "unknown", lineage, shard, index, task=task, domain=domain,
                        fault=found.get("fault", "synthesis"), messages=messages)


def _simulation_failure(err: BaseException, config: RunConfig) -> tuple[str, str]:
    """A dialogue that stopped: its reason, named for what happened (a cut-off reply is truncation, not a
    JSON error), and who failed."""
    if isinstance(err, TimeoutError):
        return f"dialogue exceeded its time budget of {config.simulation.dialogue_timeout_s:g}s", "backend"
    if isinstance(err, RolloutError):
        return str(err), err.fault
    if isinstance(err, TruncatedReply):
        return f"truncated: {err}", "assistant"
    if isinstance(err, BackendError):
        return f"model backend: {err}", "backend"
    return f"internal error: {type(err).__name__}: {err}", "plugin"


@dataclass
class _Dialogue:
    """The agents of one dialogue and the meters their model calls are charged to."""

    user: UserAgent
    assistant: AssistantAgent
    tool_simulator: AsyncToolSimulator | None
    usage: dict[str, Usage]
    refiner: Refiner | None = None  # skeleton_refine: the scripted pair builds the skeleton, this model refines it


def _agents(config: RunConfig, endpoints: dict[str, Endpoint], task: Task, env: Environment, index: int) -> _Dialogue:
    rng = random.Random(f"{config.seed}:rollout:{index}")
    sim = config.simulation
    kind = kind_of(task)
    scripted_assistant = kind.Assistant

    def scripted_user() -> UserAgent:
        return kind.user(task, rng, env)

    usage = {name: Usage() for name in config.model_users()}  # filters may call models in offline mode too
    if sim.mode == "offline":
        rate = sim.perturb_rate
        perturbation = rng.choice(perturbations_for(env)) if rate and rng.random() < rate else None
        return _Dialogue(scripted_user(), scripted_assistant(task, env, rng, perturbation), None, usage)
    if sim.strategy == "skeleton_refine":
        assert sim.refine is not None  # the config validator requires it
        refiner = Refiner(endpoints[sim.refine.backend], sim.refine, usage["refine"],
                          random.Random(f"{config.seed}:refine:{index}"))
        return _Dialogue(scripted_user(), scripted_assistant(task, env, rng), None, usage, refiner)
    user: UserAgent = (LLMUser(task, endpoints[sim.user.backend], sim.user, usage["user"], env.user_tools())
                       if sim.user else scripted_user())
    assert sim.assistant is not None  # the config validator requires it in model mode
    assistant = LLMAssistant(endpoints[sim.assistant.backend], sim.assistant, usage["assistant"])
    tools = ModelToolSimulator(endpoints[sim.tool.backend], sim.tool, usage["tool"]) if sim.tool else None
    return _Dialogue(user, assistant, tools, usage)


async def _simulate(config: RunConfig, steps: Steps, task: Task, env: Environment, dialogue: _Dialogue,
                    transcript: list[Message], user_actions: list[UserAction]) -> Trajectory:
    async with asyncio.timeout(config.simulation.dialogue_timeout_s):
        if dialogue.refiner is not None:
            result = await refine_rollout(task, env, dialogue.user, dialogue.assistant, dialogue.refiner,
                                          max_turns=config.simulation.max_turns, transcript=transcript)
        else:
            result = await rollout(task, env, dialogue.user, dialogue.assistant, max_turns=config.simulation.max_turns,
                                   tool_simulator=dialogue.tool_simulator, transcript=transcript,
                                   user_actions=user_actions)
    return Trajectory(task_id=task.id, domain=task.domain, kind=task.kind, tools=env.tools(),
                      messages=result.messages, user_tools=env.user_tools(), user_actions=result.user_actions,
                      final_state_hash=result.final_state_hash, usage=dialogue.usage)


async def _verify(steps: Steps, trajectory: Trajectory, task: Task, endpoints: dict[str, Endpoint],
                  usage: dict[str, Usage], faults: _Faults) -> None:
    """Run the filters in order until one rejects; a filter that breaks rejects with ``fault: plugin``."""
    ctx = Context(task=task, env=steps.env_for(task.domain), endpoints=endpoints, usage=usage)
    for check in steps.filters:
        faults.seen[check.name] += 1
        try:
            verdict = await check.acheck(trajectory, ctx)
            if not isinstance(verdict, Verdict):
                raise _wrong_type("filter", verdict, "Verdict")
        except BackendError as err:  # a judge that could not be reached rejects, with the reason, never crashes
            verdict = check.failed(f"model backend: {err}", fault="backend")
        except ToolFault as err:  # a tool server that broke while the filter ran its calls
            verdict = check.failed(str(err), fault="tool")
        except Exception as err:  # a broken filter rejects this row, naming itself; the shard goes on
            verdict = Verdict(stage=check.name, passed=False, reason=faults.reason("filter", check, err), fault="plugin")
        trajectory.verdicts.append(verdict)
        if not verdict.passed:
            return


def _expected_length(item: tuple[int, int, Task | None, str | None, str | None]) -> int:
    """How long a dialogue will likely run: its gold calls (each a turn of the assistant's, and the user's turns
    that ask for it).

    In model mode the longest start first (longest-processing-time-first): the shard's tail is then its
    shortest dialogues, so the requests in flight stay near the limit until the shard is almost done, instead of
    a few long dialogues running on alone while the endpoint idles. Rows keep their slots, so the order of
    starts changes nothing in the output; offline mode keeps index order (budgets stop it deterministically).
    """
    task = item[2]
    return -1 if task is None else len(task.gold_actions)


@dataclass
class ShardResult:
    counts: dict[str, int]
    usage: dict[str, Usage]
    synthesis: dict[str, dict[str, int]]  # per generator: its own funnel counters
    unstarted: int = 0  # tasks never started: a budget ran out (``stop`` in rollout_shard)


def rollout_shard(
    config: RunConfig, shard: int, tasks_path: Path, out: Path, lineage: Lineage, steps: Steps | None = None,
    cache_path: str | None = None, stop: StopCheck = NEVER,
) -> ShardResult:
    """Simulate and verify every task of a shard: counts by status, and model usage by role.

    Dialogues stream: each starts as soon as one of ``simulation.concurrency``
    slots frees, so one slow dialogue never holds back the rest. ``stop`` is asked
    before each dialogue starts, as in ``synthesize_shard``: a dialogue that started
    always ends as a row; one never started is not a row of this shard.
    """
    for_shards()
    steps = steps or build_steps(config)
    # only the backends something calls: a configured but unused one (examples/model.yaml's managed vLLM,
    # never started) has no server to talk to
    used = set(config.model_users().values())
    endpoints = (open_endpoints({name: config.backends[name] for name in used}, cache_path, scope=str(out.parent))
                 if used else {})
    table = pq.read_table(tasks_path)
    faults = _Faults(shard, table.num_rows)
    rows = ShardRows(table.num_rows, ROW_SCHEMA)
    usage: dict[str, Usage] = {name: Usage() for name in config.model_users()}
    for name, spent in read_meta(table.schema, USAGE_KEY).items():
        usage[name].add(Usage.model_validate(spent))  # synthesis's model calls travel with its tasks
    synthesis = read_meta(table.schema, FUNNEL_KEY)
    unstarted = read_meta(table.schema, STOP_KEY).get("unstarted", 0)  # tasks synthesis never started
    stop.track(shard, usage)  # replaces the synthesis meters, which ``usage`` now includes
    limit = asyncio.Semaphore(config.simulation.concurrency)
    evidence_column = (table.column("evidence").to_pylist() if "evidence" in table.column_names
                       else [None] * table.num_rows)

    async def one(slot: int, index: int, task: Task | None, error: str | None, evidence: str | None) -> None:
        if task is None:
            rows[slot] = _synthesis_reject(error, evidence, lineage, shard, index,
                                           steps.domain_of(config.seed, index).name)
            return
        env = steps.env_for(task.domain).fresh(task.env_seed)
        dialogue = _agents(config, endpoints, task, env, index)
        transcript: list[Message] = []  # the dialogue as it happens: the evidence if it stops
        user_actions: list[UserAction] = []  # dual control: the user's own actions so far, evidence too
        try:
            async with limit:
                if stop.reason():
                    return
                try:
                    trajectory = await _simulate(config, steps, task, env, dialogue, transcript, user_actions)
                except Exception as err:  # RolloutError, BackendError, TimeoutError; one broken dialogue never sinks the shard
                    reason, fault = _simulation_failure(err, config)
                    partial = getattr(err, "partial", None)
                    rows[slot] = rejected_row("simulation", reason, lineage, shard, index, task=task, fault=fault,
                                              messages=[*transcript, *([partial] if partial else [])],
                                              tools=env.tools(), usage=total_usage(dialogue.usage),
                                              user_tools=env.user_tools(), user_actions=user_actions)
                    return
                finally:
                    env.close()  # its final state is in the trajectory; what it held (a server) goes back first
            await _verify(steps, trajectory, task, endpoints, dialogue.usage, faults)
        finally:
            for name, meter in dialogue.usage.items():
                usage[name].add(meter)
        rows[slot] = {**trajectory_row(trajectory, task, exact_hash(trajectory.messages), lineage, shard, index),
                      **dialogue_figures(trajectory, task, steps.env_for(task.domain))}

    items = [(slot, index, Task.model_validate_json(task_json) if task_json is not None else None, error, evidence)
             for slot, (index, task_json, error, evidence) in enumerate(zip(
                 table.column("index").to_pylist(), table.column("task").to_pylist(),
                 table.column("error").to_pylist(), evidence_column, strict=False))]
    if config.simulation.mode == "model":
        items.sort(key=_expected_length, reverse=True)

    async def run_all() -> None:
        try:
            await asyncio.gather(*(one(*item) for item in items))
        finally:
            for endpoint in endpoints.values():
                await endpoint.release_loop()

    asyncio.run(run_all())
    if stop.discards() and rows.missing:
        raise ShardAbandoned(usage)
    raise_if_unhealthy(endpoints)  # a backend that kept failing stops the run: this shard is not staged
    faults.check()
    # Usage and the synthesis funnel ride in the file's metadata, so a resumed run that keeps this shard reports them.
    meta = {USAGE_KEY: json.dumps({name: u.model_dump() for name, u in usage.items()}),
            FUNNEL_KEY: json.dumps(synthesis), **_stopped_meta(stop, rows)}
    if unstarted:
        meta[STOP_KEY] = json.dumps({"reason": stop.reason() or read_meta(table.schema, STOP_KEY).get("reason"),
                                     "unstarted": unstarted + rows.missing})
    _write_atomic(rows.table(meta), out)
    return ShardResult(counts=rows.counts(), usage=usage, synthesis=synthesis, unstarted=unstarted + rows.missing)
