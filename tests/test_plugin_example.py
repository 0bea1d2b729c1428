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
                       "from simulators import DOMAINS, KINDS; from generators import GENERATORS; "
                       "print(json.dumps({g: sorted(p.value for p in e(group=f'trajforge.{g}')) "
                       "for g in ('domains', 'generators', 'kinds', 'filters')} | {"
                       "'names': DOMAINS.names() + GENERATORS.names() + KINDS.names(), "
                       "'cls': DOMAINS.get('library').__module__, 'kind': KINDS.get('fee_quote').__module__}))"],
                plugin_env)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["domains"] == ["trajforge_library.domain:LibraryEnv"]
    assert found["generators"] == ["trajforge_library.fee_quote:FeeQuotes", "trajforge_library.generator:OverdueReturns"]
    assert found["kinds"] == ["trajforge_library.fee_quote:FeeQuote"]
    assert found["filters"] == ["trajforge_library.fee_quote:FeeStated"]
    assert {"library", "store", "schema_only", "overdue_returns", "fee_quotes", "blueprint", "tool_calls",
            "fee_quote", "kg_question"} <= set(found["names"])
    assert found["cls"] == "trajforge_library.domain" and found["kind"] == "trajforge_library.fee_quote"
    # and the shared environment stayed untouched: without the target folder nothing is found
    bare = subprocess.run([sys.executable, "-c", "from simulators import DOMAINS, KINDS; print(DOMAINS.names(), "
                           "KINDS.names())"], cwd=ROOT, env={**plugin_env["env"], "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    assert "library" not in bare.stdout and "fee_quote" not in bare.stdout


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


VERIFY = """
import json, sys
import polars as pl
from pipelines.reward import verify_row
from pipelines.steps import build_steps
from pipelines.store import DatasetStore
from schemas import parse_config
store = DatasetStore(sys.argv[1])
env = build_steps(parse_config(store.versions()[-1].config)).env
out = []
for row in store.read().filter(pl.col("messages").list.len() > 0).to_dicts():
    out.append({"status": row["status"], "stage": row["stage"], "reason": row["reason"], "fault": row["fault"],
                "verdicts": [v.model_dump() for v in verify_row(row, env)]})
print(json.dumps(out))
"""


def test_the_plugins_own_kind_runs_end_to_end(plugin_env, tmp_path):
    """generate (its generator, its scripted pair) -> verify (its filter) -> export (its reward fields) -> reward."""
    out, hf = plugin_env["tmp"] / "fees-ds", plugin_env["tmp"] / "fees-hf"
    gen = run(["-m", "pipelines.cli", "generate", "--config", str(EXAMPLE / "fees.yaml"), "--out", str(out),
               "--no-progress", "--run-id", "fees-1"], plugin_env)
    assert gen.returncode == 0, gen.stderr
    assert "60 tasks" in gen.stdout and "fee_stated" in gen.stdout
    df = pl.read_delta(str(out))
    assert df.height == 60 and set(df["kind"].drop_nulls()) == {"fee_quote"}
    accepted = df.filter(pl.col("status") == "accepted")
    assert accepted.height >= 30
    assert "fee_stated" in set(df["stage"].drop_nulls())  # its planted under-quotes were caught by its own filter
    for row in accepted.to_dicts():
        task = json.loads(row["task"])
        assert task["owed"] in row["messages"][-2]["content"] and task["overdue_loans"]

    export = run(["-m", "pipelines.cli", "export", str(out), "--to", str(hf)], plugin_env)
    assert export.returncode == 0, export.stderr
    from datasets import load_dataset

    rl = load_dataset(str(hf), "rl", cache_dir=str(tmp_path / "cache"))
    rows = [r for split in rl.values() for r in split]
    assert len(rows) == accepted.height and {r["kind"] for r in rows} == {"fee_quote"}
    by_id = {r["id"]: json.loads(r["task"]) for r in accepted.to_dicts()}
    for r in rows:
        spec = r["reward_spec"]
        assert spec["type"] == "fee" and spec["owed"] == by_id[r["id"]]["owed"]
        assert spec["overdue_loans"] == by_id[r["id"]]["overdue_loans"]
        assert spec["answer"] is None and spec["answer_aliases"] == []  # the built-in kinds' fields, at defaults

    # the kind's verifiers, re-run on the stored rows, agree with the verdicts the run wrote
    verified = run(["-c", VERIFY, str(out)], plugin_env)
    assert verified.returncode == 0, verified.stderr
    results = json.loads(verified.stdout)
    for r in results:
        assert [v["stage"] for v in r["verdicts"]] == ["outcome", "fee_stated"]
        if r["status"] == "accepted":
            assert all(v["passed"] for v in r["verdicts"])
        if r["stage"] == "fee_stated":
            # an under-quote is the assistant's fault, and the stored row names the same party
            assert r["verdicts"][1] == {"stage": "fee_stated", "passed": False, "reason": r["reason"],
                                        "fault": "assistant"}
            assert r["fault"] == "assistant"
    assert any(r["stage"] == "fee_stated" for r in results)
