"""Shared fixtures: a temporary Prefect server for the whole session, and small configs."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Subprocess runs start their own temporary Prefect server; on 2 busy cores the default 20 s limit is tight.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


@pytest.fixture(scope="session")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server) -> str:
    """The session server's API URL, for ``trajforge`` subprocesses that need no ephemeral server of their own
    (each would take tens of seconds to start on a busy machine)."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _small_config(**overrides):
    from schemas import parse_config

    data = {
        "name": "test",
        "seed": 11,
        "num_tasks": 60,
        "shard_size": 20,
        "domain": {"name": "store", "db_seed": 0},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "simulation": {"perturb_rate": 0.25},
    }
    data.update(overrides)
    return parse_config(data, "test-config")


@pytest.fixture
def small_config():
    """A factory for a small valid RunConfig (60 tasks, 3 shards, mistakes planted)."""
    return _small_config


@pytest.fixture(scope="session")
def real_model_lane():
    """vLLM's CPU build and SmolLM2 (tests/real_model/lane.py). ``make test`` builds it and sets
    TRAJFORGE_REAL_MODEL_REQUIRED, so there these tests can never skip; a bare pytest without the lane skips them."""
    from real_model.lane import Lane, cache_dir, is_built

    lane = Lane(cache_dir())
    missing = is_built(lane)
    if missing:
        message = f"real-model lane not built ({missing}): run `make real-model`"
        if os.environ.get("TRAJFORGE_REAL_MODEL_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return lane
