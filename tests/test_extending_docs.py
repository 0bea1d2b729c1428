"""docs/extending.md works exactly as written: its first Python block is run as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "extending.md"


def first_python_block(text: str) -> str:
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def test_the_write_your_own_step_example_runs_as_written(tmp_path):
    code = first_python_block(DOC.read_text())
    assert 25 <= len(code.strip().splitlines()) <= 50
    script = tmp_path / "my_steps.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}  # 2 shared cores: the default 20 s is tight
    env.pop("PREFECT_API_URL", None)
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = run.stdout.strip().splitlines()[-1]
    assert re.match(r"20 tasks: \d+ accepted, \d+ rejected ", line), line
    df = pl.read_delta(str(tmp_path / "out" / "extending-demo"))
    assert df.height == 20 and set(df["generator"]) == {"hurried_blueprint"}
    assert all('"persona":"a night-shift nurse"' in t for t in df["task"])
    # the custom filter really judged: its stage is on the verdicts, and long dialogues were cut
    assert all('"stage":"max_turns"' in v for v in df.filter(pl.col("stage").is_null())["verdicts"])
    assert "max_turns" in set(df["stage"].drop_nulls())
