"""A measured child process that cannot hang its benchmark: time-limited, its whole process tree measured and killed.

Why: a benchmark child that the OOM killer ended left its temporary Prefect server and
process-pool workers running, holding the pipe the parent read, and the benchmark hung
for good. Here the child runs in its own process group with its output in files (no
pipe anyone can hold open); the parent samples the resident memory of every process
descended from it (workers, the Prefect server in its own session, vLLM) and, when the
child exits, dies or runs past its time limit, kills all of them.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    peak_rss_mb: float  # the sum over the child's process tree, at its largest sample
    last_rss_mb: float
    timed_out: bool
    left_running: int  # descendants still alive when the child ended (then killed)

    @property
    def failure(self) -> str | None:
        """One line on why the child did not finish, or None."""
        if self.timed_out:
            why = "timed out"
        elif self.returncode < 0:
            why = f"killed by {signal.Signals(-self.returncode).name}"
        elif self.returncode:
            tail = self.stderr.strip().splitlines()
            why = f"exit {self.returncode}: {tail[-1] if tail else ''}"
        else:
            return None
        return f"{why} (last RSS {self.last_rss_mb:.0f} MB)"


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, start time, RSS pages) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19]), int(fields[21])


def _tree(root: int, known: dict[int, int]) -> float:
    """Add the live descendants of ``root`` to ``known`` (pid -> start time); their RSS in MB (root included)."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    pages, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            known.setdefault(pid, table[pid][1])
            pages += table[pid][2]
        todo += children.get(pid, [])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _alive(pid: int, started: int) -> bool:
    """Still running as itself: the same start time (not a reused pid) and not a zombie."""
    st = _stat(pid)
    if st is None or st[1] != started:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _kill(known: dict[int, int], wait: float = 5.0) -> int:
    """SIGKILL every recorded process still alive as itself and wait (up to ``wait`` s) until they are gone; how many."""
    killed = [(pid, started) for pid, started in known.items() if _alive(pid, started)]
    for pid, _ in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while any(_alive(p, s) for p, s in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(killed)


def run(argv: list[str], timeout: float, mem_limit_gb: float | None = None, env: dict | None = None,
        interval: float = 0.25) -> Outcome:
    """Run ``argv``; wait at most ``timeout`` seconds; leave nothing of it running."""
    limit = None if mem_limit_gb is None else int(mem_limit_gb * 2**30)

    def setup() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, preexec_fn=setup)
        known: dict[int, int] = {}
        peak = last = 0.0
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                last = _tree(proc.pid, known) or last
                peak = max(peak, last)
                time.sleep(interval)
            timed_out = proc.poll() is None
        finally:
            _tree(proc.pid, known)  # late starters too
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            left = _kill({p: s for p, s in known.items() if p != proc.pid})
            proc.wait()
        out.seek(0)
        err.seek(0)
        return Outcome(proc.returncode, out.read(), err.read(), peak, last, timed_out, left)


def _self_check(timeout: float) -> None:
    """A child that starts a grandchild in its own session (as the Prefect server is) and outlives its limit."""
    import sys

    script = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
              "start_new_session=True); time.sleep(600)")
    started = time.monotonic()
    done = run([sys.executable, "-c", script], timeout)
    waited = time.monotonic() - started
    survivors = sum(1 for e in os.scandir("/proc") if e.name.isdigit() and _cmdline(int(e.name)) == "time.sleep(600)")
    print(f"child: {done.failure}; processes it started, killed: {done.left_running}; "
          f"returned after {waited:.1f} s (limit {timeout:.0f} s)")
    print(f"guarded: timed_out={done.timed_out} killed={done.left_running} survivors={survivors}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2].decode(errors="replace").split("; ")[-1]
    except (OSError, IndexError):
        return ""


if __name__ == "__main__":
    _self_check(3.0)
