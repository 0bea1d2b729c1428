"""The Ray task runner (prefect-ray): shards run as Ray tasks, locally or on a cluster.

Shards are already the unit of work and pass file paths, not rows, so the
runner only has to make this checkout's code importable on the workers. It
ships the project's packages with the job (``runtime_env.py_modules``) rather
than relying on an installed copy: a worker then runs exactly the code the
driver runs, on a laptop or on a remote cluster. Third-party dependencies must
already be installed on a remote cluster's nodes (the same ``pip install``).

The shard files are written where the driver says (the dataset's staging
folder), so on a multi-node cluster the output directory must be shared
storage that every node can reach.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from schemas.config import RunnerConfig

# The packages the flow's tasks import; shipped to every Ray worker.
PROJECT_PACKAGES = ("schemas", "dedup", "simulators", "generators", "filters", "pipelines")
LOCAL_CPUS = 2  # a local instance stays small unless `runner.workers` says otherwise
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # tasks pass paths, not rows


def project_modules() -> list[str]:
    """Folders of this checkout's packages, as the driver imports them."""
    return [str(Path(importlib.import_module(name).__file__).parent) for name in PROJECT_PACKAGES]


def ray_init_kwargs(runner: RunnerConfig) -> dict:
    """``ray.init`` arguments: a small local instance when no address is given, a client connection otherwise."""
    kwargs: dict = {
        "runtime_env": {"py_modules": project_modules(), "excludes": ["__pycache__"]},
        "log_to_driver": False,
    }
    if runner.address is None:
        kwargs.update(num_cpus=runner.workers or LOCAL_CPUS, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    return kwargs


def ray_task_runner(runner: RunnerConfig):
    """A ``RayTaskRunner`` for ``runner`` (kind 'ray'); it starts and stops a local instance itself."""
    from prefect_ray import RayTaskRunner

    return RayTaskRunner(address=runner.address, init_kwargs=ray_init_kwargs(runner))
