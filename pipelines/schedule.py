"""Scheduled runs: a cron-scheduled deployment served from this process (``trajforge serve``).

The deployment runs ``scheduled-generate``, a thin flow around the one way in
(``run_generate``, which runs ``generate`` as a subflow with the config's task
runner). It exists for what a bare ``generate`` deployment cannot do:

- every run gets its own seed, ``config.seed + the version it will become``,
  so a schedule keeps adding new tasks instead of re-making the same ones
  (which dedup would reject); the seed is recorded in each version's manifest,
  so every version can still be reproduced exactly;
- the run id follows from the deployment, the config and that seed, so a run
  that failed midway (a crash, a lost machine, a stop while it ran) is resumed
  by the next scheduled run, which has the same seed because nothing was
  committed: its staged shards are kept and its rows are committed once;
- the manifest records the deployment, the schedule and the flow run
  (``origin``), so ``trajforge versions`` and the report say where each
  version came from.

``serve`` does not take the server's word for it that the schedule works: after
registering, it waits until the server has scheduled the deployment's next run
(a Prefect server whose scheduler fails, as prefect 3.8 does with SQLAlchemy
2.1, schedules nothing and says so only in its own log), and while serving it
prints each run's start and outcome, a failure with its one-line reason.

The config is validated when serving starts and frozen into the deployment's
parameters, so an edit to the file does not change what a schedule makes
until it is served again.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow

from pipelines.flow import run_generate
from pipelines.prefect_server import PrefectApi, prefect_api, seconds_from_env
from pipelines.store import DatasetStore
from schemas import ConfigError, RunConfig, RunOrigin, parse_config

FLOW_NAME = "scheduled-generate"
CHECK_ENV = "TRAJFORGE_SCHEDULE_CHECK_S"
DEFAULT_CHECK_S = 120.0
POLL_S = 2.0


def scheduled_seed(base_seed: int, out_dir: str) -> int:
    """The seed of the next scheduled run: the base seed plus the version number it will become."""
    latest = DatasetStore(out_dir).latest_version()
    return base_seed + (0 if latest is None else latest + 1)


def scheduled_run_id(deployment: str, config: RunConfig) -> str:
    """The same for every attempt at one version (same deployment, config and seed), so a retry resumes."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', deployment)}-seed{config.seed}-{config.config_hash()[:8]}"


@flow(name=FLOW_NAME, log_prints=True)
def scheduled_generate(config: dict[str, Any], out_dir: str, schedule: str | None = None) -> dict:
    """One scheduled run: the next seed, then one new dataset version (or the resumption of a failed attempt)."""
    from prefect.runtime import deployment, flow_run

    base = parse_config(config, "deployment parameter `config`")
    run_config = base.model_copy(update={"seed": scheduled_seed(base.seed, out_dir)})
    name = deployment.name or "local"
    origin = None
    if deployment.name:
        due = flow_run.scheduled_start_time
        origin = RunOrigin(deployment=f"{FLOW_NAME}/{name}", schedule=schedule if _auto_scheduled(flow_run.id) else None,
                           scheduled_for=due.astimezone(UTC).isoformat(timespec="seconds") if due else None,
                           flow_run_id=str(flow_run.id))
    run_id = scheduled_run_id(name, run_config)
    manifest = run_generate(run_config, out_dir, run_id, origin=origin)
    print(f"version {manifest.version} committed to {out_dir}: run {run_id}, seed {run_config.seed}, "
          f"{manifest.accepted} accepted, {manifest.rejected} rejected")
    return {"version": manifest.version, "run_id": run_id, "seed": run_config.seed,
            "accepted": manifest.accepted, "rejected": manifest.rejected}


def _auto_scheduled(flow_run_id: str | None) -> bool:
    """Whether the server's scheduler made this flow run (not `prefect deployment run` or the UI)."""
    from prefect.client.orchestration import get_client

    if not flow_run_id:
        return False
    with get_client(sync_client=True) as client:
        return bool(client.read_flow_run(UUID(flow_run_id)).auto_scheduled)


def check_cron(expr: str) -> str:
    """Reject a bad cron expression before anything is registered."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expr)
    except ValueError:
        raise ConfigError(f"--cron: invalid cron expression {expr!r}") from None
    return expr


def check_window_s() -> float:
    return seconds_from_env(CHECK_ENV, DEFAULT_CHECK_S)


def serve(config: dict[str, Any], out_dir: str, cron: str, name: str) -> int:
    """Register ``scheduled-generate/NAME`` with ``cron`` and run its flow runs until SIGINT or SIGTERM.

    Returns the exit status: 0 after a requested stop (the schedule is paused,
    a server this started is stopped), 1 when the server schedules no runs or
    serving ends on its own.
    """
    check_window = check_window_s()
    signal.signal(signal.SIGTERM, _interrupt)  # until the event loop takes over: stop like Ctrl-C
    out_dir = str(Path(out_dir).resolve())
    try:
        with prefect_api(out_dir, scheduler=True) as api:
            where = f"local server, pid {api.pid}, log {api.log}" if api.started_here else "PREFECT_API_URL"
            print(f"Prefect API: {api.url} ({where})", flush=True)
            return asyncio.run(_serve(config, out_dir, cron, name, api, check_window))
    except KeyboardInterrupt:  # stopped before serving began
        return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


async def _serve(config: dict[str, Any], out_dir: str, cron: str, name: str, api: PrefectApi,
                 check_window: float) -> int:
    from prefect.client.orchestration import get_client
    from prefect.runner import Runner
    from prefect.types.entrypoint import EntrypointType

    full_name = f"{FLOW_NAME}/{name}"
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    runner = Runner(name=name, pause_on_shutdown=True, limit=1)
    registered = datetime.now(UTC)
    deployment_id = await runner.aadd_flow(
        scheduled_generate, name=name, cron=cron, parameters={"config": config, "out_dir": out_dir, "schedule": cron},
        description=f"trajforge: a new version of {out_dir} on the schedule {cron!r}", tags=["trajforge"],
        entrypoint_type=EntrypointType.MODULE_PATH)  # flow runs load the flow by module path, from any directory
    async with get_client() as client:
        checking = asyncio.create_task(upcoming_runs(client, deployment_id, cron, registered, check_window))
        await asyncio.wait({checking, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set() or not checking.result():
            checking.cancel()
            await client.pause_deployment(deployment_id)  # nobody serves it: do not let runs pile up as Late
            if stop.is_set():
                print(f"stopped: {full_name} paused", flush=True)
                return 0
            log = f"see {api.log}" if api.log else "see that server's log"
            print(f"trajforge: error: the Prefect server at {api.url} scheduled no run of {full_name} within "
                  f"{check_window:.0f}s of registering it (cron {cron!r}); its scheduler is not working, {log}",
                  file=sys.stderr, flush=True)
            return 1
        print(f"serving {full_name}: cron {cron!r} (UTC), a new version of {out_dir} each run; next runs: "
              + ", ".join(_hhmm(r.expected_start_time) for r in checking.result()[:3]), flush=True)
        print("stop with Ctrl-C or SIGTERM (the schedule is paused)", flush=True)

        started = asyncio.create_task(runner.start())
        while not runner.started and not started.done():
            await asyncio.sleep(0.05)
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # again: Runner.start installs a SIGTERM handler of its own
        reporter = RunReporter(client, deployment_id, out_dir, registered)
        reporting = asyncio.create_task(reporter.run())
        await asyncio.wait({started, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for label in reporter.running.values():
            print(f"{_now()} {label} is cancelled with serve; the next run resumes what it staged", flush=True)
        if runner.started:
            await runner.astop()
        error = None
        try:
            await started  # leaving the runner pauses the schedule
        except Exception as err:  # the runner itself failed (e.g. the server went away)
            error = err
        for task in (reporting, stopping):
            task.cancel()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    if not stop.is_set():
        why = f": {str(error).splitlines()[0]}" if error and str(error) else ""
        print(f"trajforge: error: serving {full_name} ended on its own{why}", file=sys.stderr, flush=True)
        return 1
    print(f"stopped: {full_name} paused", flush=True)
    return 0


async def upcoming_runs(client, deployment_id: UUID, cron: str, registered: datetime, within_s: float) -> list:
    """The deployment's runs the server's scheduler made since ``registered``, once one of them is due no later than
    the cron's next time (a run whose time passed while the scheduler was busy counts: it was made); an empty list
    if there is none within ``within_s`` seconds."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.client.schemas.sorting import FlowRunSort

    created_after = registered - timedelta(seconds=30)  # a remote server's clock may be a little behind
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=20)
        runs = [r for r in runs if r.auto_scheduled and r.created and r.created >= created_after
                and r.expected_start_time and r.expected_start_time >= registered - timedelta(seconds=1)]
        if runs and runs[0].expected_start_time <= await _next_time(cron, datetime.now(UTC)) + timedelta(seconds=1):
            return runs
        if loop.time() > deadline:
            return []
        await asyncio.sleep(1)


async def _next_time(cron: str, after: datetime) -> datetime:
    from prefect.server.schemas.schedules import CronSchedule

    return (await CronSchedule(cron=cron, timezone="UTC").get_dates(n=1, start=after))[0]


class RunReporter:
    """Prints each flow run of the deployment as it starts and ends: the version it committed, or why it failed."""

    def __init__(self, client, deployment_id: UUID, out_dir: str, since: datetime) -> None:
        self.client, self.deployment_id, self.out_dir, self.since = client, deployment_id, out_dir, since
        self.running: dict[UUID, str] = {}  # started, not ended: flow run -> its label
        self._ended: set[UUID] = set()

    async def run(self) -> None:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        flow_runs = FlowRunFilter(  # runs that started since serving began; the scheduled ones are not news
            deployment_id=FlowRunFilterDeploymentId(any_=[self.deployment_id]),
            start_time=FlowRunFilterStartTime(after_=self.since),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[
                StateType.RUNNING, StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED])))
        while True:
            try:
                runs = await self.client.read_flow_runs(flow_run_filter=flow_runs, limit=50)
            except Exception as err:  # a slow or restarting server must not end serving
                print(f"(could not read flow runs from the Prefect API: {str(err).splitlines()[0] if str(err) else err!r})",
                      flush=True)
                runs = []
            for run in sorted(runs, key=lambda r: r.start_time or self.since):
                if run.id in self._ended:
                    continue
                label = f"run {run.name} (due {_hhmm(run.expected_start_time)})"
                if run.id not in self.running:
                    self.running[run.id] = label
                    print(f"{_now()} {label} started", flush=True)
                if run.state is not None and run.state.is_final():
                    del self.running[run.id]
                    self._ended.add(run.id)
                    print(f"{_now()} {label} {_outcome(run, self.out_dir)}", flush=True)
            await asyncio.sleep(POLL_S)


def _outcome(run, out_dir: str) -> str:
    state = run.state
    try:
        made = [m for m in DatasetStore(out_dir).versions() if m.origin and m.origin.flow_run_id == str(run.id)]
    except Exception:  # the dataset is reported on here, not checked: a read error is no outcome of the run
        made = []
    committed = (f"committed version {made[-1].version}: seed {made[-1].seed}, {made[-1].accepted} accepted, "
                 f"{made[-1].rejected} rejected ({made[-1].total_accepted} accepted in the dataset)") if made else ""
    if state.is_completed():
        return committed or "completed"
    reason = (state.message or "").strip().splitlines()
    after = f"; it had {committed}" if made else "; nothing was committed (the next run resumes it)"
    return f"{state.name.lower()}: {reason[0] if reason else 'no reason given'}{after}"


def _hhmm(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC") if moment else "?"


def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")
