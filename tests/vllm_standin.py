"""A stand-in for ``vllm serve`` that is strict where the real one is: for the managed-backend tests that need
behaviour no real model gives on demand (dying at start, never getting healthy, replaying exact transcripts).

- Its argv is parsed against the options of the real CPU build (``tests/data/vllm_serve_options.txt``, the
  option lines of ``vllm serve --help=all``; the real-model lane checks the snapshot is current), so a flag
  vLLM does not have, a value a flag does not take or an unknown tool parser exits 2 as vLLM would.
- It forks a child (vLLM's engine core is one), so stopping the process group is really tested.
- What it should do is baked into the executable the test writes (``write_executable``), never passed as flags.

Regenerate the snapshot from a built lane: ``python tests/vllm_standin.py --snapshot .cache/real-model/serve-help.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
OPTIONS = TESTS / "data" / "vllm_serve_options.txt"


def option_lines(help_text: str) -> list[str]:
    """The option signatures of ``vllm serve --help=all``: ``--name METAVAR, -x METAVAR``, one per line."""
    out = []
    for line in help_text.splitlines():
        if re.match(r"^  -{1,2}\w", line):
            out.append(re.split(r"\s{2,}", line.strip(), maxsplit=1)[0])
    return sorted(set(out))


def parser_from(lines: list[str]) -> argparse.ArgumentParser:
    """An argparse parser accepting exactly the options (and value shapes) the real build lists."""
    p = argparse.ArgumentParser(prog="vllm serve", add_help=False, allow_abbrev=False)
    p.add_argument("model_tag")
    for line in lines:
        specs = re.split(r", (?=-)", line)
        names, shape = [], None
        for spec in specs:
            name, _, rest = spec.partition(" ")
            names.append(name)
            shape = shape or rest
        if "-h" in names:
            continue
        kwargs: dict[str, Any] = {}
        if not shape:
            kwargs["action"] = "store_true"
        elif shape.startswith("{"):
            choices = shape[1:shape.index("}")].split(",")
            if "or name registered" not in shape:  # a plug-in may register more names: then any is let through
                kwargs["choices"] = choices
        elif shape.endswith("...]"):
            kwargs["nargs"] = "+"
        elif shape.startswith("["):
            kwargs["nargs"] = "?"
        p.add_argument(*names, **kwargs)
    return p


def write_executable(folder: Path, **behaviour: Any) -> str:
    """A ``vllm`` executable in ``folder`` that runs this stand-in with ``behaviour``: ``pid_file``,
    ``child_pid_file``, ``argv_file``, ``config`` (replay a run's transcripts), ``fail_start`` (exit 3),
    ``hang`` (never healthy)."""
    exe = folder / "vllm"
    exe.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                   f"import vllm_standin\nvllm_standin.main(sys.argv[1:], {json.dumps(behaviour)!r})\n")
    exe.chmod(0o755)
    return str(exe)


def main(argv: list[str], behaviour_json: str = "{}") -> None:
    behaviour = json.loads(behaviour_json)
    if not argv or argv[0] != "serve":
        print("vllm: only `vllm serve` is stood in for", file=sys.stderr)
        sys.exit(2)
    args = parser_from(OPTIONS.read_text().splitlines()).parse_args(argv[1:])  # exits 2 on a bad argv, as vLLM
    if behaviour.get("argv_file"):
        Path(behaviour["argv_file"]).write_text(json.dumps(argv))
    if behaviour.get("pid_file"):
        Path(behaviour["pid_file"]).write_text(str(os.getpid()))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like vLLM's engine core
    if behaviour.get("child_pid_file"):
        Path(behaviour["child_pid_file"]).write_text(str(child.pid))
    if behaviour.get("fail_start"):
        print("stand-in vllm: refusing to start", file=sys.stderr, flush=True)
        child.kill()
        sys.exit(3)
    if behaviour.get("hang"):
        print("stand-in vllm: loading forever", flush=True)
        while True:
            time.sleep(1)
    import loopback

    brain: loopback.Brain = loopback.echo_brain
    if behaviour.get("config"):
        from schemas import load_config

        brain = loopback.TranscriptBrain(load_config(behaviour["config"]))
    loopback.serve_forever(brain, args.host or "127.0.0.1", int(args.port or 0))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--snapshot"]:
        OPTIONS.write_text("\n".join(option_lines(Path(sys.argv[2]).read_text())) + "\n")
    else:
        main(sys.argv[1:])
