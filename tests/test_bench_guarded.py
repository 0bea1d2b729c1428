"""A benchmark's measured child cannot hang it: time limit, its whole process tree killed, memory measured."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import guarded  # noqa: E402

DETACHED = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
            "start_new_session=True); print(p.pid, flush=True); {after}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_child_past_its_limit_is_killed_with_what_it_started_in_its_own_session():
    started = time.monotonic()
    done = guarded.run([sys.executable, "-c", DETACHED.format(after="time.sleep(120)")], timeout=3)
    assert time.monotonic() - started < 30 and done.timed_out and done.left_running == 1
    assert done.failure.startswith("timed out (last RSS ") and done.peak_rss_mb > 5
    assert not alive(int(done.stdout.split()[0]))  # the grandchild in its own session is gone too


def test_a_child_that_dies_is_reported_and_its_leftovers_killed():
    done = guarded.run([sys.executable, "-c", DETACHED.format(after="time.sleep(1); os.kill(os.getpid(), 9)")
                        .replace("import subprocess", "import os, subprocess")], timeout=60)
    assert not done.timed_out and done.failure.startswith("killed by SIGKILL (last RSS ")
    assert done.left_running == 1 and not alive(int(done.stdout.split()[0]))
    ok = guarded.run([sys.executable, "-c", "print('fine')"], timeout=60, mem_limit_gb=2)
    assert ok.failure is None and ok.stdout == "fine\n" and ok.left_running == 0
