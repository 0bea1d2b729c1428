"""The Prefect flow ``generate``: shards of synthesis → rollout + verification → one commit.

One Prefect task per shard and stage, never per item; tasks pass file paths,
not rows. Shard files land in the store's staging folder as they finish, and
only the final publish step makes them a version.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from pipelines.artifacts import create_run_artifacts
from pipelines.budget import TARGET, RunLedger, StopCheck, clear_stop, ledger_for, spend_of, write_stop
from pipelines.cost import run_cost
from pipelines.interrupt import flow_body_unwound
from pipelines.resume import checkpoint, claim_staging, committed, finished, staged_summary
from pipelines.shard import ShardAbandoned, rollout_shard, shard_indices, synthesize_shard
from pipelines.store import DatasetStore, ShortOfTarget
from pipelines.target import AcceptedCount, Finished, ShardPlan
from pipelines.tethered import exit_with_parent
from pipelines.version import code_version
from schemas import DatasetManifest, Lineage, RunConfig, RunCost, RunFailedError, RunOrigin, RunStop, Usage
from simulators.backends import forget_endpoints, managed_vllm
from simulators.environment import release_all


def _stop_check(config: RunConfig, run_id: str, staging: str) -> StopCheck:
    """What a shard asks before each task: the run's spend in this process, and the flow's stop file."""
    return StopCheck(staging, ledger_for(run_id, config))


def _usage_dump(usage: dict[str, Usage]) -> dict[str, dict]:
    return {role: u.model_dump() for role, u in usage.items()}


@task(name="synthesize-shard", cache_policy=NONE)
def synthesize(config: RunConfig, shard: int, staging: str, cache_path: str | None, run_id: str = "") -> dict:
    out = Path(staging) / f"tasks-{shard:05d}.parquet"
    if finished(out, len(shard_indices(config, shard))):  # resumed run: this shard's tasks were already staged
        return {"shard": shard, "path": str(out)}
    try:
        synthesize_shard(config, shard, out, cache_path=cache_path, stop=_stop_check(config, run_id, staging))
    except ShardAbandoned as gone:  # the target was reached while this shard was still being synthesized
        return {"shard": shard, "path": None, "usage": _usage_dump(gone.usage)}
    checkpoint(f"synthesized:{shard}")
    return {"shard": shard, "path": str(out)}


@task(name="rollout-shard", cache_policy=NONE)
def simulate(config: RunConfig, shard: int, tasks_path: str, staging: str, lineage: Lineage,
             cache_path: str | None) -> dict:
    out = Path(staging) / f"rows-{shard:05d}.parquet"
    if finished(out, len(shard_indices(config, shard))):  # resumed run: this shard was already rolled out
        result = staged_summary(out)
    else:
        try:
            result = rollout_shard(config, shard, Path(tasks_path), out, lineage, cache_path=cache_path,
                                   stop=_stop_check(config, lineage.run_id, staging))
        except ShardAbandoned as gone:
            return {"shard": shard, "path": None, "usage": _usage_dump(gone.usage)}
        checkpoint(f"rolled-out:{shard}")
    return {"shard": shard, "path": str(out), "counts": result.counts, "synthesis": result.synthesis,
            "usage": _usage_dump(result.usage), "unstarted": result.unstarted}


@task(name="publish", cache_policy=NONE)
def publish(config: RunConfig, out_dir: str, run_id: str, shard_files: list[str], lineage: Lineage,
            usage: dict[str, Usage], synthesis: dict[str, dict[str, int]], origin: RunOrigin | None = None,
            cost: RunCost | None = None, stop: RunStop | None = None) -> dict:
    """One commit of the staged shards; a target run keeps exactly ``target_accepted`` accepted rows
    (``ShortOfTarget`` when another run's commit took some of them meanwhile: nothing is written)."""
    store = DatasetStore(out_dir)
    draft = DatasetManifest(
        parent_version=None, run_id=run_id, config_hash=lineage.config_hash, code_version=lineage.code_version,
        seed=config.seed, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tasks=0, accepted=0, rejected=0, config=_public_config(config), models=lineage.models, usage=usage,
        synthesis=synthesis, origin=origin, cost=cost, stop=stop)
    # A factory, not an object: a retry after a concurrent commit dedups against that commit too.
    # On Ray, the near layer's signatures and candidate pairs run as tasks on the run's Ray instance.
    manifest = store.commit([Path(f) for f in shard_files], draft,
                            lambda: store.deduplicator(config.dedup, on_ray=config.runner.kind == "ray"),
                            accept_limit=config.target_accepted, exact=stop is not None and stop.reason == TARGET,
                            known_intents=known_intents(config))
    checkpoint("committed")
    store.clear_staging(run_id)
    return manifest.model_dump()


@task(name="push", cache_policy=NONE)
def push(config: RunConfig, out_dir: str, version: int) -> str:
    """The version just committed, exported and pushed to the Hub repo the config names."""
    from pipelines.export import ExportOptions
    from pipelines.hub import push_version

    p = config.publish
    result = push_version(out_dir, p.repo or "", ExportOptions(version=version, test_ratio=p.test_ratio,
                                                               license=p.license, rejects=p.rejects,
                                                               json_as_text=p.json_as_text),
                          private=p.private or None)
    print(f"pushed version {version} to {result.repo_id} (tag {result.tag})")
    return result.tag


def known_intents(config: RunConfig) -> dict[str, list[str]]:
    """The intents the run's domains offer (for the intent coverage figure)."""
    from pipelines.steps import build_environment

    envs = [build_environment(config, domain=d.name) for d in config.mixed_domains()]
    return {env.name: sorted(env.intents) for env in envs}


def task_runner_for(config: RunConfig):
    if config.runner.kind == "ray":
        from pipelines.ray_runner import ray_task_runner

        return ray_task_runner(config.runner)
    if config.runner.kind == "process":
        return ProcessPoolTaskRunner(max_workers=config.runner.workers, initializer=exit_with_parent,
                                     initargs=(os.getpid(),))
    return ThreadPoolTaskRunner(max_workers=config.runner.workers or 4)


def _public_config(config: RunConfig) -> dict:
    """The config as stored in a manifest: where a model was served is not part of the data's description."""
    data = json.loads(config.model_dump_json())
    for backend in data.get("backends", {}).values():
        backend.pop("base_url", None)
    return data


def cache_path_for(config: RunConfig, out_dir: str) -> str | None:
    if not config.cache.enabled or not config.model_users():
        return None
    return config.cache.path or str(Path(out_dir) / "_cache" / "requests.sqlite")


@flow(name="generate", log_prints=True)
def generate(config: RunConfig, out_dir: str, run_id: str, progress: bool = False,
             origin: RunOrigin | None = None) -> dict:
    """Generate ``config.num_tasks`` tasks (or until ``target_accepted`` rows are accepted, or a budget runs out)
    and commit them as one new dataset version.

    Managed vLLM servers the config asks for run for exactly the length of the
    flow: started before the first shard, stopped after the commit or failure.

    Started again with the run id of a run that was killed, it resumes: staged
    shards are kept (see ``pipelines.resume``). ``origin`` is what started it when a
    deployment did (``pipelines.schedule``); it goes into the manifest. Callers go
    through ``start_run``, which does not start it at all for a run id that already
    committed.
    """
    try:
        with managed_servers(config, out_dir) as config:
            return _generate(config, out_dir, run_id, progress, origin)
    except KeyboardInterrupt:
        flow_body_unwound()  # the servers are stopped; the CLI exits soon (see pipelines.interrupt)
        raise


@contextmanager
def managed_servers(config: RunConfig, out_dir: str | Path) -> Iterator[RunConfig]:
    """Start the ``kind: vllm`` servers the run uses (those not started yet), yield the config pointing at them,
    and stop them on the way out, whatever happens."""
    with ExitStack() as servers:
        for name, backend in config.backends.items():
            if backend.kind == "vllm" and not backend.base_url and name in config.model_users().values():
                url = servers.enter_context(managed_vllm(name, backend, Path(out_dir) / "_logs"))
                config = config.model_copy(update={"backends": {
                    **config.backends, name: backend.model_copy(update={"base_url": url})}})
        yield config


def _generate(config: RunConfig, out_dir: str, run_id: str, progress: bool, origin: RunOrigin | None) -> dict:
    models = {user: config.backends[backend].model for user, backend in config.model_users().items()}
    lineage = Lineage(run_id=run_id, config_hash=config.config_hash(), code_version=code_version(),
                      seed=config.seed, models=models)
    store = DatasetStore(out_dir)
    staging = str(store.staging(run_id))
    claim_staging(Path(staging), run_id, lineage.config_hash)
    clear_stop(Path(staging))  # a restarted run decides again where it stops
    forget_endpoints(staging)  # a resumed run in this process starts with fresh limits and health
    ledger = ledger_for(run_id, config, base_seconds=_clock(staging), fresh=True)
    shards = _Shards(config, staging, lineage, cache_path_for(config, out_dir), ledger)
    plan = ShardPlan(config, window=_window(config), count=_count(config, store))
    with _progress(progress, config.target_accepted or config.task_limit or 0,
                   "accepted" if config.target_accepted else "tasks") as advance:
        while True:
            shards.run(plan, advance)
            results = [shards.results[s] for s in plan.committed()]
            synthesis: dict[str, Counter[str]] = {}
            for result in results:
                for generator, counts in result["synthesis"].items():
                    synthesis.setdefault(generator, Counter()).update(counts)
            usage = ledger.usage()  # everything this run spent, shards discarded beyond a target included
            usage = {name: usage.get(name, Usage()) for name in config.model_users()}
            seconds = ledger.seconds()
            _clock(staging, seconds)
            spend = spend_of(config, usage, seconds)
            reason, _, detail = (plan.stop or "num_tasks").partition(":")
            stop = RunStop(reason=reason, detail=detail.strip(),
                           target_accepted=config.target_accepted, shards=len(results),
                           discarded_shards=len(plan.done) - len(results),
                           unstarted=sum(r.get("unstarted", 0) for r in results),
                           requests=spend.requests, tokens=spend.tokens,
                           cost=spend.cost if run_cost(config, usage) is not None else None)
            try:
                manifest = publish(config, out_dir, run_id, [r["path"] for r in results], lineage, usage,
                                   {g: dict(sorted(c.items())) for g, c in sorted(synthesis.items())}, origin,
                                   run_cost(config, usage, seconds), stop)
                break
            except ShortOfTarget as short:  # another run committed some of our rows meanwhile: run on for more
                print(f"another run committed meanwhile: {short}; running more shards")
                plan.recount(_count(config, store))
                clear_stop(Path(staging))
    create_run_artifacts(DatasetManifest.model_validate(manifest), out_dir)
    if config.publish.repo:
        push(config, out_dir, manifest["version"])
    return manifest


def _window(config: RunConfig) -> int:
    """Shards open at once: enough that the next shard's dialogues are there when one shard's tail runs out."""
    return config.runner.shards_in_flight or config.runner.workers or 4


def _count(config: RunConfig, store: DatasetStore) -> AcceptedCount | None:
    """A target run's count of accepted rows, deduplicated against what the dataset already holds."""
    return AcceptedCount(store.deduplicator(config.dedup)) if config.target_accepted else None


CLOCK_FILE = "clock.json"


def _clock(staging: str, seconds: float | None = None) -> float:
    """The run's generation time so far, kept in its staging folder so a resumed run charges GPU-hours for the
    attempts before it too."""
    path = Path(staging) / CLOCK_FILE
    if seconds is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seconds": seconds}))
        tmp.replace(path)
        return seconds
    try:
        return float(json.loads(path.read_text())["seconds"])
    except (OSError, ValueError, KeyError):
        return 0.0


class _Shards:
    """The Prefect side of a run: submits the plan's shards, chains each rollout to its synthesis, and reports
    every shard that ends back to the plan, until the plan has stopped and nothing is running."""

    def __init__(self, config: RunConfig, staging: str, lineage: Lineage, cache_path: str | None,
                 ledger: RunLedger) -> None:
        self.config, self.staging, self.lineage, self.cache_path, self.ledger = config, staging, lineage, cache_path, ledger
        self.results: dict[int, dict] = {}
        self._stop_written = False

    def run(self, plan: ShardPlan, advance) -> None:
        pending: dict = {}
        while True:
            for shard in plan.to_start():
                if shard in self.results:  # counted again after a concurrent commit: already rolled out
                    plan.finished(shard, Finished(self.results[shard]["path"], self._rows(shard)))
                    continue
                pending[synthesize.submit(self.config, shard, self.staging, self.cache_path,
                                          self.lineage.run_id)] = ("synthesize", shard)
            if plan.over() or not pending:
                return
            future = next(as_completed(list(pending)))
            stage, shard = pending.pop(future)
            result = future.result()
            if result.get("usage") is not None:
                self.ledger.track(shard, {r: Usage.model_validate(u) for r, u in result["usage"].items()})
            if result["path"] is None:  # abandoned: the target was reached before this shard was needed
                plan.finished(shard, Finished(None, 0))
            elif stage == "synthesize":
                pending[simulate.submit(self.config, shard, result["path"], self.staging, self.lineage,
                                        self.cache_path)] = ("simulate", shard)
            else:
                self.results[shard] = result
                before = plan.count.survivors if plan.count else 0
                plan.finished(shard, Finished(result["path"], sum(result["counts"].values())))
                if plan.count is not None:
                    advance(plan.count.survivors - before, plan.count.survivors - before)
                else:
                    advance(sum(result["counts"].values()), result["counts"].get("accepted", 0))
            _clock(self.staging, self.ledger.seconds())
            if (why := self.ledger.exceeded()) is not None:
                plan.budget_out(why)
            if plan.stop is not None and pending and not self._stop_written:  # tell the shards still running
                write_stop(Path(self.staging), plan.stop)
                self._stop_written = True

    def _rows(self, shard: int) -> int:
        return sum(self.results[shard]["counts"].values())
class _ContainedFailures(logging.Filter):
    """Keeps a run failure trajforge reports itself (a ``RunFailedError``: one line from the CLI) off the console,
    where Prefect would print its traceback once per task and again for the flow. The Prefect API still records
    the failed state and its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RunFailedError):
            return False
        message = record.getMessage()
        return not any(f"{name}:" in message or f"{name}(" in message for name in _failure_names())


def _failure_names() -> set[str]:
    names, todo = set(), [RunFailedError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


@contextmanager
def _console_without_contained_failures() -> Iterator[None]:
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    quiet = _ContainedFailures()
    for h in handlers:
        h.addFilter(quiet)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(quiet)


class _progress:
    """A rich progress bar on the terminal, or nothing."""

    def __init__(self, enabled: bool, total: int, unit: str = "tasks") -> None:
        self.enabled, self.total, self.bar, self.unit = enabled, total, None, unit
        self.accepted = 0
        # a target run counts rows after dedup; otherwise a shard knows only what passed verification
        self.passed = "accepted" if unit == "accepted" else "passed verification"

    def __enter__(self):
        if not self.enabled:
            return lambda done, accepted: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                            TextColumn("{task.fields[accepted]} " + self.passed), TimeRemainingColumn())
        self.bar.start()
        self.task = self.bar.add_task("generate", total=self.total, accepted=0)

        def advance(done: int, accepted: int) -> None:
            self.accepted += accepted
            self.bar.update(self.task, advance=done, accepted=self.accepted)

        return advance

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


@dataclass(frozen=True)
class RunResult:
    manifest: DatasetManifest
    already_committed: bool  # the run id had committed this version before (killed after its commit): nothing ran


def start_run(config: RunConfig, out_dir: str | Path, run_id: str, progress: bool = False,
              origin: RunOrigin | None = None) -> RunResult:
    """The one way in: run the flow with the config's task runner and commit one version.

    The one place that asks whether ``run_id`` already committed (a run killed
    after its commit, started again): then nothing runs (no server, no flow), the
    leftover staging folder is cleared, and that version is the result.

    Against the Prefect API that ``PREFECT_API_URL`` names, or else a local
    server of this run's own, stopped with it (``pipelines.prefect_server``).

    Managed vLLM servers are started here, before the flow: a server that will not start is one
    ``BackendError`` line for the caller, not a failed flow run with Prefect's traceback, and nothing
    has been staged or committed.
    """
    from pipelines.prefect_server import prefect_api

    store = DatasetStore(out_dir)
    done = committed(store, run_id)
    if done is not None:
        store.clear_staging(run_id)
        return RunResult(done, already_committed=True)
    flow_ = generate.with_options(task_runner=task_runner_for(config))
    try:
        with _console_without_contained_failures(), managed_servers(config, out_dir) as served, prefect_api(out_dir):
            manifest = flow_(config=served, out_dir=str(out_dir), run_id=run_id, progress=progress, origin=origin)
    finally:
        release_all()  # tool servers the domain started (MCP) stop with the run, whatever happened
    return RunResult(DatasetManifest.model_validate(manifest), already_committed=False)


def run_generate(config: RunConfig, out_dir: str | Path, run_id: str, progress: bool = False,
                 origin: RunOrigin | None = None) -> DatasetManifest:
    """``start_run``, for callers that want the committed version's manifest and nothing else."""
    return start_run(config, out_dir, run_id, progress, origin).manifest
