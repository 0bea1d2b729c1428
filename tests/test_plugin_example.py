"""The example plug-in, installed the way a researcher would, found by entry point and run through the CLI.

It is installed with pip into a temporary ``--target`` folder (never into the
shared environment) and made visible with PYTHONPATH, which is all
``importlib.metadata`` needs to see its entry points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "trajforge-plugin-example"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin")
    source = tmp / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "out"))
    target = tmp / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)]),
           "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # 2 shared cores: the default 20 s is tight
    env.pop("PREFECT_API_URL", None)
    return {"env": env, "tmp": tmp, "target": target}


def run(args: list[str], plugin_env, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=plugin_env["env"], capture_output=True, text=True,
                          timeout=300)


def test_entry_points_are_found_from_the_target_folder(plugin_env):
    probe = run(["-c", "import json; from importlib.metadata import entry_points as e; "
                       "from simulators import DOMAINS; from generators import GENERATORS; "
                       "print(json.dumps({'domains': [p.value for p in e(group='trajforge.domains')], "
                       "'generators': [p.value for p in e(group='trajforge.generators')], "
                       "'names': DOMAINS.names() + GENERATORS.names(), "
                       "'cls': DOMAINS.get('library').__module__}))"], plugin_env)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["domains"] == ["trajforge_library.domain:LibraryEnv"]
    assert found["generators"] == ["trajforge_library.generator:OverdueReturns"]
    assert {"library", "store", "schema_only", "overdue_returns", "blueprint", "tool_calls"} <= set(found["names"])
    assert found["cls"] == "trajforge_library.domain"
    # and the shared environment stayed untouched: without the target folder nothing is found
    bare = subprocess.run([sys.executable, "-c", "from simulators import DOMAINS; print(DOMAINS.names())"],
                          cwd=ROOT, env={**plugin_env["env"], "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert "library" not in bare.stdout


def test_the_plugins_own_tests_pass(plugin_env):
    tests = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")], plugin_env,
                cwd=plugin_env["tmp"])
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout


def test_generate_runs_the_plugin_config(plugin_env):
    out = plugin_env["tmp"] / "library-ds"
    gen = run(["-m", "pipelines.cli", "generate", "--config", str(EXAMPLE / "library.yaml"), "--out", str(out),
               "--no-progress", "--run-id", "plugin-1"], plugin_env)
    assert gen.returncode == 0, gen.stderr
    print(gen.stdout)  # the counts, for the record (pytest -s)
    assert "120 tasks" in gen.stdout
    df = pl.read_delta(str(out))
    assert df.height == 120
    assert set(df["domain"]) == {"library"}
    assert set(df["generator"].drop_nulls()) == {"overdue_returns", "blueprint"}
    accepted = df.filter(pl.col("status") == "accepted")
    assert accepted.height >= 90  # 10% planted mistakes are the only expected rejections
    tools = {t["function"]["name"] for t in json.loads(accepted["tools"][0])}
    assert tools == {"find_member_by_email", "get_member", "get_loan", "renew_loan", "return_book"}


def test_a_bad_plugin_param_is_one_line(plugin_env):
    config = plugin_env["tmp"] / "bad.yaml"
    config.write_text((EXAMPLE / "library.yaml").read_text().replace("min_days_late: 3", "min_days_late: 0"))
    gen = run(["-m", "pipelines.cli", "generate", "--config", str(config), "--out", str(plugin_env["tmp"] / "bad")],
              plugin_env)
    assert gen.returncode == 2
    assert gen.stderr.strip().count("\n") == 0
    assert "generators[0].params.min_days_late: Input should be greater than or equal to 1" in gen.stderr
