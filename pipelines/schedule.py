"""Scheduled runs: a cron-scheduled deployment served from this process (``trajforge serve``).

The deployment runs ``scheduled-generate``, a thin flow around the one way in
(``run_generate``, which runs ``generate`` as a subflow with the config's task
runner). It exists for two things a bare ``generate`` deployment cannot do:

- every run needs its own run id (a repeated id means "resume that run");
- every run gets its own seed, ``config.seed + the version it will become``,
  so a schedule keeps adding new tasks instead of re-making the same ones
  (which dedup would reject); the seed is recorded in each version's manifest,
  so every version can still be reproduced exactly.

The config is validated when serving starts and frozen into the deployment's
parameters, so an edit to the file does not change what a schedule makes
until it is served again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from pipelines.flow import run_generate
from pipelines.store import DatasetStore
from schemas import ConfigError, parse_config

FLOW_NAME = "scheduled-generate"


def scheduled_seed(base_seed: int, out_dir: str) -> int:
    """The seed of the next scheduled run: the base seed plus the version number it will become."""
    latest = DatasetStore(out_dir).latest_version()
    return base_seed + (0 if latest is None else latest + 1)


@flow(name=FLOW_NAME, log_prints=True)
def scheduled_generate(config: dict[str, Any], out_dir: str) -> dict:
    """One scheduled run: a fresh run id and seed, then one new dataset version."""
    from prefect.runtime import flow_run

    run_config = parse_config(config, "deployment parameter `config`")
    seed = scheduled_seed(run_config.seed, out_dir)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + str(flow_run.id or "local")[:8]
    manifest = run_generate(run_config.model_copy(update={"seed": seed}), out_dir, run_id)
    print(f"version {manifest.version} committed to {out_dir}: run {run_id}, seed {seed}, "
          f"{manifest.accepted} accepted, {manifest.rejected} rejected")
    return {"version": manifest.version, "run_id": run_id, "seed": seed,
            "accepted": manifest.accepted, "rejected": manifest.rejected}


def check_cron(expr: str) -> str:
    """Reject a bad cron expression before anything is registered."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=expr)
    except ValueError:
        raise ConfigError(f"--cron: invalid cron expression {expr!r}") from None
    return expr


@contextmanager
def prefect_api(log_dir: Path) -> Iterator[str]:
    """``PREFECT_API_URL`` when set; otherwise a local ``prefect server start`` for as long as this lasts."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield url
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines.prefect_server import local_prefect_server

    with local_prefect_server(log_dir / "prefect-server.log") as url:
        os.environ["PREFECT_API_URL"] = url  # flow runs are child processes: they read it from here
        try:
            with temporary_settings({PREFECT_API_URL: url}):
                yield url
        finally:
            os.environ.pop("PREFECT_API_URL", None)


def serve(config: dict[str, Any], out_dir: str, cron: str, name: str) -> None:
    """Register the deployment ``scheduled-generate/NAME`` with ``cron`` and run its flow runs until stopped.

    SIGTERM stops it like Ctrl-C: the schedule is paused, then a server this
    started is shut down.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    out_dir = str(Path(out_dir).resolve())
    with prefect_api(Path(out_dir) / "_logs") as url:
        print(f"Prefect API: {url}", flush=True)
        scheduled_generate.serve(
            name=name, cron=cron, parameters={"config": config, "out_dir": out_dir},
            description=f"trajforge: a new version of {out_dir} on the schedule {cron!r}",
            tags=["trajforge"], limit=1, pause_on_shutdown=True, entrypoint_type=_module_entrypoint())


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _module_entrypoint():
    """Flow runs load the flow by module path, so they work from any working directory."""
    from prefect.types.entrypoint import EntrypointType

    return EntrypointType.MODULE_PATH
