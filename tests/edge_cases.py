"""The hard-edges table (issue 20): bad inputs and broken environments, as a new user meets them.

Each case is a command line, a setup that builds the bad input in a fresh
workspace, the exit code the README documents for it, and a word the one
error line must carry (the field, file or backend it is about). The promise
each case checks: exactly one line on stderr, that exit code, the thing named,
and nothing written.

Two consumers:

- ``tests/test_edges.py`` walks the table (in-process through
  ``pipelines.cli.main`` where that is faithful, as a real subprocess where
  the case is about the process itself);
- ``python tests/edge_cases.py survey`` runs every case as a real subprocess,
  as a user would, and prints how each class fared: the before/after survey
  of the issue.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BASE: dict[str, Any] = {"name": "edges", "seed": 5, "num_tasks": 8, "shard_size": 4,
                        "simulation": {"perturb_rate": 0.25}}
MODEL_NAME = "edge-model"
PLUGINS = Path(__file__).resolve().parent / "data" / "edge_plugins"


def config_text(**overrides: Any) -> str:
    return yaml.safe_dump({**BASE, **overrides}, sort_keys=False)


def model_config(url: str, **backend: Any) -> str:
    """A model-mode run whose assistant is backend ``m`` at ``url``; fast retries so a dead backend is quick."""
    return config_text(num_tasks=24, shard_size=12,
                       backends={"m": {"model": MODEL_NAME, "base_url": url, "timeout_s": 1, "max_retries": 2,
                                       "backoff_s": 0.01, "backoff_max_s": 0.02, **backend}},
                       simulation={"mode": "model", "assistant": {"backend": "m"}})


# -- the workspace a case runs in ---------------------------------------------------------------------

@dataclass
class Workspace:
    """A fresh folder per case; ``good_dataset`` is a committed two-version dataset to copy from."""

    root: Path
    good_dataset: Path | None = None
    servers: Servers | None = None
    env: dict[str, str | None] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def write(self, rel: str, data: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
        return path

    def config(self, text: str | bytes | None = None, rel: str = "config.yaml") -> Path:
        return self.write(rel, config_text() if text is None else text)

    def dataset(self, rel: str = "ds") -> Path:
        """The prebuilt dataset, copied here once."""
        assert self.good_dataset is not None, "this case needs the prebuilt dataset"
        dest = self.root / rel
        if not dest.exists():
            shutil.copytree(self.good_dataset, dest, symlinks=True)
        return dest

    def vars(self) -> dict[str, str]:
        out = {"ws": str(self.root), "cfg": str(self.root / "config.yaml"), "ds": str(self.root / "ds")}
        if self.servers is not None:
            out.update(self.servers.vars())
        return out


def log_entries(ds: Path) -> list[Path]:
    return sorted(p for p in (ds / "_delta_log").iterdir() if p.name.endswith(".json") and p.name[:1].isdigit())


def data_files(ds: Path) -> list[Path]:
    """The data files the newest log entry adds (relative paths are percent-encoded in the log)."""
    from urllib.parse import unquote

    files = []
    for line in log_entries(ds)[-1].read_text().splitlines():
        action = json.loads(line)
        if "add" in action:
            files.append(ds / unquote(action["add"]["path"]))
    return files


# -- corruptions ---------------------------------------------------------------------------------------

def truncate_log(ws: Workspace) -> None:
    entry = log_entries(ws.dataset())[-1]
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])


def empty_log(ws: Workspace) -> None:
    log_entries(ws.dataset())[-1].write_bytes(b"")


def junk_log(ws: Workspace) -> None:
    log_entries(ws.dataset())[-1].write_bytes(b"\x89PNG\r\n\x1a\n this is not a commit \xff\xfe")


def delete_data_file(ws: Workspace) -> None:
    data_files(ws.dataset())[0].unlink()


def corrupt_data_file(ws: Workspace) -> None:
    data_files(ws.dataset())[0].write_bytes(b"PAR1 garbage garbage garbage")


def empty_log_dir(ws: Workspace) -> None:
    ds = ws.dataset()
    for p in (ds / "_delta_log").iterdir():
        if p.is_file():
            p.unlink()
        else:
            shutil.rmtree(p)


def log_gap(ws: Workspace) -> None:
    log_entries(ws.dataset())[0].unlink()


def log_dir_is_file(ws: Workspace) -> None:
    ds = ws.dataset()
    shutil.rmtree(ds / "_delta_log")
    (ds / "_delta_log").write_text("not a folder")


def junk_checkpoint_marker(ws: Workspace) -> None:
    ws.dataset()
    ws.write("ds/_delta_log/_last_checkpoint", "{ not json")


def fewer_rows(ws: Workspace) -> None:
    """A data file replaced by a valid Parquet file with fewer rows: the files are there, the counts are not."""
    import pyarrow.parquet as pq

    path = data_files(ws.dataset())[0]
    table = pq.read_table(path)
    pq.write_table(table.slice(0, max(0, table.num_rows - 1)), path)


def foreign_delta_table(ws: Workspace) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(ws.path("ds").as_uri(), pa.table({"x": [1, 2]}))


# -- the backends a case talks to ----------------------------------------------------------------------

class _Scripted(BaseHTTPRequestHandler):
    """``/<behaviour>/v1/...``: ok, e500, e401, nomodel (the model is not served), chat500 (healthy list, failing
    chat), flaky (chat fails while ``Servers.flaky_down``)."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        behaviour = self.path.strip("/").split("/")[0]
        if behaviour == "e500":
            return self._reply(500, {"error": {"message": "scripted outage"}})
        if behaviour == "e401":
            return self._reply(401, {"error": {"message": "invalid api key"}})
        served = "other-model" if behaviour == "nomodel" else MODEL_NAME
        return self._reply(200, {"object": "list", "data": [{"id": served, "object": "model"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        behaviour = self.path.strip("/").split("/")[0]
        if behaviour in ("chat500", "e500") or (behaviour == "flaky" and self.server.owner.flaky_down):
            return self._reply(500, {"error": {"message": "scripted outage"}})
        return self._reply(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": MODEL_NAME,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Done."}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a run opens dozens of connections at once; http.server's default backlog is 5


class Servers:
    """Loopback endpoints for the backend cases: a scripted HTTP server, a refused port, a port that never answers."""

    def __enter__(self) -> Servers:
        self.http = _Server(("127.0.0.1", 0), _Scripted)
        self.http.owner = self  # type: ignore[attr-defined]
        self.flaky_down = False
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._thread.start()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.refused_port = closed.getsockname()[1]
        closed.close()  # nothing listens here now: connection refused
        self.silent = socket.socket()  # listens, never accepts or answers: a timeout
        self.silent.bind(("127.0.0.1", 0))
        self.silent.listen(64)
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.silent.close()

    def url(self, behaviour: str) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/{behaviour}/v1"

    def vars(self) -> dict[str, str]:
        return {"refused": f"http://127.0.0.1:{self.refused_port}/v1",
                "silent": f"http://127.0.0.1:{self.silent.getsockname()[1]}/v1",
                **{b: self.url(b) for b in ("ok", "e500", "e401", "nomodel", "chat500")}}


# -- the cases -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    cls: str
    argv: tuple[str, ...]
    setup: Callable[[Workspace], None] | None = None
    code: int = 2
    named: str = ""  # a word the one error line must carry ({placeholders} allowed)
    subprocess: bool = False  # about the process itself: never run in-process
    env: tuple[tuple[str, str | None], ...] = ()  # environment changes (None: unset)
    needs: tuple[str, ...] = ()  # "dataset", "servers", "plugins", "prefect" (a flow runs)
    timeout_s: float = 120


CASES: list[Case] = []


def case(name: str, cls: str, argv: str | tuple[str, ...], setup: Callable[[Workspace], None] | None = None,
         **kw: Any) -> None:
    args = tuple(argv.split()) if isinstance(argv, str) else argv
    needs = set(kw.pop("needs", ()))
    if any("{ds}" in a for a in args):
        needs.add("dataset")
    if any(token in a for a in args for token in ("{ok}", "{refused}", "{silent}", "{e500}", "{e401}",
                                                  "{nomodel}", "{chat500}")):
        needs.add("servers")
    CASES.append(Case(name, cls, args, setup, needs=tuple(sorted(needs)), **kw))


def cfg(text: str | bytes | Callable[[Workspace], str | bytes], rel: str = "config.yaml"):
    """A setup that writes the config (text may depend on the workspace, e.g. a server URL)."""
    def setup(ws: Workspace) -> None:
        ws.config(text(ws) if callable(text) else text, rel)
    return setup


def both(*setups: Callable[[Workspace], None]):
    def setup(ws: Workspace) -> None:
        for s in setups:
            s(ws)
    return setup


GEN = "generate --config {cfg} --out {ws}/out --no-progress"
GOOD_TEXT = config_text()

# ---- inputs that are not what they claim: the config ----
INPUTS = "inputs"
case("config-latin1", INPUTS, GEN, cfg(GOOD_TEXT.replace("edges", "caf\xe9").encode("latin-1")),
     named="UTF-8", subprocess=True)
case("config-utf16", INPUTS, GEN, cfg(GOOD_TEXT.encode("utf-16")), named="UTF-8")
case("config-binary", INPUTS, GEN, cfg(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))), named="config.yaml")
case("config-nul-byte", INPUTS, GEN, cfg(GOOD_TEXT.replace("seed: 5", "seed: 5\x00").encode()), named="NUL")
case("dup-key-top", INPUTS, GEN, cfg(GOOD_TEXT + "seed: 6\n"), named="seed")
case("dup-key-flow", INPUTS, GEN,
     cfg(GOOD_TEXT.replace("simulation:\n  perturb_rate: 0.25\n", "simulation: {perturb_rate: 0.2, perturb_rate: 0.3}\n")),
     named="perturb_rate")
case("dup-key-deep", INPUTS, GEN, cfg(GOOD_TEXT + "generators:\n- name: blueprint\n  params:\n    max_requests: 2\n"
                                      "    min_requests: 1\n    max_requests: 3\n"), named="max_requests")
case("dup-key-json", INPUTS, "generate --config {ws}/config.json --out {ws}/out",
     cfg('{"num_tasks": 4, "seed": 1, "num_tasks": 8}', "config.json"), named="num_tasks")
case("config-empty", INPUTS, GEN, cfg(""), named="config.yaml")
case("config-list", INPUTS, GEN, cfg("- num_tasks: 4\n"), named="mapping")
case("config-scalar", INPUTS, GEN, cfg("hello\n"), named="mapping")
case("config-is-dir", INPUTS, "generate --config {ws} --out {ws}/out", named="config")
case("config-missing", INPUTS, "generate --config {ws}/nope.yaml --out {ws}/out", named="nope.yaml")
case("yaml-syntax", INPUTS, GEN, cfg("num_tasks: [1\n"), named="invalid YAML")
case("yaml-tab-indent", INPUTS, GEN, cfg("num_tasks: 4\nsimulation:\n\tperturb_rate: 0.1\n"), named="config.yaml")
case("yaml-python-tag", INPUTS, GEN, cfg("num_tasks: !!python/object/apply:os.system ['true']\n"),
     named="config.yaml")
case("yaml-two-documents", INPUTS, GEN, cfg(GOOD_TEXT + "---\nnum_tasks: 3\n"), named="config.yaml")
ALIAS_BOMB = GOOD_TEXT + "domain:\n  name: store\n  params:\n    a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"    {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))  # 10**9 values
case("yaml-alias-bomb", INPUTS, GEN, cfg(ALIAS_BOMB), named="alias")
case("json-invalid", INPUTS, "generate --config {ws}/config.json --out {ws}/out", cfg("{", "config.json"),
     named="invalid JSON")
case("unknown-key", INPUTS, GEN, cfg(GOOD_TEXT + "num_taks: 5\n"), named="num_taks")
case("bad-type", INPUTS, GEN, cfg(config_text(num_tasks="many")), named="num_tasks")
case("zero-tasks", INPUTS, GEN, cfg(config_text(num_tasks=0)), named="num_tasks")
case("config-huge", INPUTS, GEN, cfg(GOOD_TEXT + "#" + "x" * (17 << 20) + "\n"), named="MiB")
case("config-fifo", INPUTS, GEN, lambda ws: os.mkfifo(ws.path("config.yaml")), named="config.yaml",
     subprocess=True, timeout_s=120)  # hung forever before; a fresh interpreter on a busy machine is slow

# ---- the command line itself ----
ARGS = "arguments"
case("no-arguments", ARGS, (), named="command")
case("unknown-command", ARGS, "frobnicate", named="frobnicate")
case("generate-no-config", ARGS, "generate --out {ws}/out", named="--config")
case("seed-not-int", ARGS, GEN + " --seed abc", cfg(GOOD_TEXT), named="--seed")
case("diff-one-arg", ARGS, "versions {ds} --diff 0", named="--diff")
case("export-version-not-int", ARGS, "export {ds} --version x --to {ws}/hf", named="--version")
case("run-id-escapes", ARGS, GEN + " --run-id ../../escape", cfg(GOOD_TEXT), named="--run-id")
case("run-id-empty", ARGS, (*GEN.split(), "--run-id", ""), cfg(GOOD_TEXT), named="--run-id")
case("out-empty", ARGS, ("generate", "--config", "{cfg}", "--out", ""), cfg(GOOD_TEXT), named="--out")
case("test-ratio-range", ARGS, "export {ds} --to {ws}/hf --test-ratio 1.5", named="--test-ratio")
case("shard-rows-zero", ARGS, "export {ds} --to {ws}/hf --shard-rows 0", named="--shard-rows")
case("bins-zero", ARGS, "dedup-histogram {ds} --bins 0", named="--bins")
case("retain-zero", ARGS, "versions {ds} --retain 0", named="--retain")
case("cron-invalid", ARGS, ("serve", "--config", "{cfg}", "--out", "{ws}/out", "--cron", "not a cron"),
     cfg(GOOD_TEXT), named="--cron")
case("push-bad-repo", ARGS, "push {ds} --version 0 --repo not-a-repo", named="--repo")

# ---- files the config refers to ----
FILES = "referenced files"


def spec_config(rel: str = "tools.json", **params: Any) -> Callable[[Workspace], None]:
    return cfg(lambda ws: config_text(domain={"name": "schema_only", "params": {"spec": str(ws.path(rel)), **params}},
                                      generators=[{"name": "tool_calls"}]))


def tools(n: int, description: str = "Look something up.") -> list[dict]:
    return [{"type": "function", "function": {"name": f"lookup_{i}", "description": description,
                                               "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                                              "required": ["q"]}}} for i in range(n)]


def spec(rel: str, data: str | bytes) -> Callable[[Workspace], None]:
    return lambda ws: ws.write(rel, data)


TOOLS_JSON = json.dumps(tools(2), indent=1)
case("spec-missing", FILES, GEN, spec_config(), named="tools.json")
case("spec-latin1", FILES, GEN, both(spec_config(), spec("tools.json", TOOLS_JSON.replace("Look", "L\xf6ok").encode("latin-1"))),
     named="UTF-8")
case("spec-dup-key-yaml", FILES, GEN, both(spec_config("tools.yaml"), spec("tools.yaml", yaml.safe_dump(tools(1)).replace(
    "  type: function\n", "  type: function\n  type: function\n", 1))), named="type")
case("spec-dup-key-json", FILES, GEN, both(spec_config(), spec("tools.json", TOOLS_JSON.replace(
    '"description": "Look something up."', '"description": "a", "description": "b"', 1))), named="description")
case("spec-is-dir", FILES, GEN, both(spec_config("specdir"), lambda ws: ws.path("specdir").mkdir()), named="specdir")
case("spec-empty", FILES, GEN, both(spec_config(), spec("tools.json", "")), named="tools.json")
case("spec-invalid-json", FILES, GEN, both(spec_config(), spec("tools.json", '[{"type": "function",')),
     named="invalid JSON")
case("spec-too-many-tools", FILES, GEN, both(spec_config(), spec("tools.json", json.dumps(tools(200)))), named="max_tools")
case("spec-too-large", FILES, GEN, both(spec_config("tools.yaml"),
                                       spec("tools.yaml", yaml.safe_dump(tools(1)) + "#" + "y" * (17 << 20))),
     named="max_spec_bytes")
case("spec-line-too-long", FILES, GEN, both(spec_config("tools.yaml"),
                                           spec("tools.yaml", yaml.safe_dump(tools(1, "z" * (2 << 20)), width=1 << 30))),
     named="max_line_chars")
case("spec-tool-limit-configured", FILES, GEN, both(spec_config(max_tools=1), spec("tools.json", TOOLS_JSON)),
     named="max_tools")
def kg_config(ws: Workspace) -> str:
    return config_text(domain={"name": "kg", "params": {"source": "file", "path": str(ws.path("kg.csv"))}},
                       generators=[{"name": "kg_question"}])


case("kg-missing", FILES, GEN, cfg(kg_config), named="kg.csv")
case("kg-latin1", FILES, GEN, both(cfg(kg_config), spec("kg.csv", "head,relation,tail\nS\xe3o Paulo,located_in,Brazil\n"
                                                        .encode("latin-1"))), named="kg.csv")
case("kg-is-dir", FILES, GEN, both(cfg(kg_config), lambda ws: ws.path("kg.csv").mkdir()), named="kg.csv")
case("kg-huge-entity", FILES, GEN, both(cfg(kg_config), spec("kg.csv", "head,relation,tail\n" + "A" * (10 << 20)
                                                            + ",located_in,Brazil\nX,located_in,Y\n")),
     named="max_line_chars")  # the 10 MB entity name: refused at load, not a 3.6 GB run
case("kg-long-field", FILES, GEN, both(cfg(kg_config), spec("kg.csv", "head,relation,tail\n" + "A" * 5000
                                                           + ",located_in,Brazil\nX,located_in,Y\n")),
     named="max_field_chars")
case("cache-path-under-file", FILES, GEN, both(cfg(lambda ws: model_config(ws.servers.url("ok")).rstrip() + "\n"
                                                   + f"cache: {{path: {json.dumps(str(ws.path('afile/requests.sqlite')))}}}\n"),
                                               spec("afile", "x")), named="cache.path")
case("vllm-executable-missing", FILES, GEN, cfg(lambda ws: config_text(
    backends={"m": {"kind": "vllm", "model": "/models/x", "vllm": {"executable": str(ws.path("no-vllm"))}}},
    simulation={"mode": "model", "assistant": {"backend": "m"}})), named="executable")

# ---- where the output goes ----
OUT = "output locations"
case("out-is-file", OUT, "generate --config {cfg} --out {ws}/afile", both(cfg(GOOD_TEXT), spec("afile", "x")), named="afile")
case("out-under-file", OUT, "generate --config {cfg} --out {ws}/afile/ds", both(cfg(GOOD_TEXT), spec("afile", "x")),
     named="afile")
case("out-under-proc", OUT, "generate --config {cfg} --out /proc/trajforge-ds", cfg(GOOD_TEXT), named="/proc")
case("out-proc-self", OUT, "generate --config {cfg} --out /proc/self", cfg(GOOD_TEXT), named="/proc")
case("out-under-sys", OUT, "generate --config {cfg} --out /sys/trajforge-ds", cfg(GOOD_TEXT), named="/sys")
case("out-under-dev", OUT, "generate --config {cfg} --out /dev/trajforge-edges-ds", cfg(GOOD_TEXT), named="/dev")
case("out-dev-null", OUT, "generate --config {cfg} --out /dev/null", cfg(GOOD_TEXT), named="/dev/null")
case("out-foreign-folder", OUT, "generate --config {cfg} --out {ws}/photos",
     both(cfg(GOOD_TEXT), spec("photos/holiday.jpg", b"\xff\xd8\xff")), named="photos")
case("out-symlink-to-file", OUT, "generate --config {cfg} --out {ws}/link",
     both(cfg(GOOD_TEXT), spec("afile", "x"), lambda ws: ws.path("link").symlink_to(ws.path("afile"))), named="link")
case("out-dangling-symlink", OUT, "generate --config {cfg} --out {ws}/link",
     both(cfg(GOOD_TEXT), lambda ws: ws.path("link").symlink_to(ws.path("gone"))), named="link")
case("output-dir-in-config-is-file", OUT, "generate --config {cfg}",
     both(cfg(lambda ws: config_text(output_dir=str(ws.path("afile")))), spec("afile", "x")), named="output_dir")
case("out-percent-escape", OUT, "generate --config {cfg} --out {ws}/a%20b", cfg(GOOD_TEXT), named="%20")
case("out-newline", OUT, ("generate", "--config", "{cfg}", "--out", "{ws}/line\nbreak"), cfg(GOOD_TEXT),
     named="--out")
case("out-foreign-delta-table", OUT, "generate --config {cfg} --out {ws}/ds", both(cfg(GOOD_TEXT), foreign_delta_table),
     named="trajforge")
case("export-to-file", OUT, "export {ds} --to {ws}/afile", spec("afile", "x"), named="afile")
case("export-to-under-file", OUT, "export {ds} --to {ws}/afile/hf", spec("afile", "x"), named="afile")
case("export-to-proc", OUT, "export {ds} --to /proc/trajforge-hf", named="/proc")
case("report-to-dir", OUT, "report {ds} --to {ws}/reports", lambda ws: ws.path("reports").mkdir(), named="reports")
case("report-to-under-file", OUT, "report {ds} --to {ws}/afile/r.html", spec("afile", "x"), named="afile")
case("report-to-proc", OUT, "report {ds} --to /proc/trajforge.html", named="/proc")

# ---- corrupt datasets ----
CORRUPT = "corrupt datasets"
for command, argv in [("versions", "versions {ds}"), ("export", "export {ds} --to {ws}/hf"),
                      ("report", "report {ds} --to {ws}/r.html"), ("generate", "generate --config {cfg} --out {ds}")]:
    for what, damage, named in [("truncated-log", truncate_log, "00000000000000000001.json"),
                                ("empty-log", empty_log, "00000000000000000001.json"),
                                ("junk-log", junk_log, "00000000000000000001.json"),
                                ("missing-file", delete_data_file, ".parquet")]:
        setup = both(cfg(GOOD_TEXT), damage) if command == "generate" else damage
        case(f"{command}-{what}", CORRUPT, argv, setup, named=named)
case("diff-truncated-log", CORRUPT, "versions {ds} --diff 0 1", truncate_log, named="00000000000000000001.json")
case("diff-missing-file", CORRUPT, "versions {ds} --diff 0 1", delete_data_file, named=".parquet")
case("retain-missing-file", CORRUPT, "versions {ds} --retain 1", delete_data_file, named=".parquet")
case("histogram-junk-log", CORRUPT, "dedup-histogram {ds}", junk_log, named="00000000000000000001.json")
case("push-missing-file", CORRUPT, "push {ds} --version 1 --repo acme/edges", delete_data_file, named=".parquet",
     env=(("HF_TOKEN", "hf_edge_fake"), ("HF_ENDPOINT", "http://127.0.0.1:9")))
case("versions-empty-log-dir", CORRUPT, "versions {ds}", empty_log_dir, named="_delta_log")
case("versions-log-gap", CORRUPT, "versions {ds}", log_gap, named="00000000000000000000.json")
case("versions-log-dir-is-file", CORRUPT, "versions {ds}", log_dir_is_file, named="_delta_log")
case("versions-junk-checkpoint-marker", CORRUPT, "versions {ds}", junk_checkpoint_marker, named="_last_checkpoint")
case("export-corrupt-parquet", CORRUPT, "export {ds} --to {ws}/hf", corrupt_data_file, named=".parquet")
case("generate-corrupt-parquet", CORRUPT, "generate --config {cfg} --out {ds}", both(cfg(GOOD_TEXT), corrupt_data_file),
     named=".parquet")
case("check-missing-file", CORRUPT, "versions {ds} --check", delete_data_file, named=".parquet")
case("check-fewer-rows", CORRUPT, "versions {ds} --check", fewer_rows, named="rows")

# ---- plug-ins that raise at run time (tests/data/edge_plugins, installed through its entry points) ----
PLUGIN = "plug-ins"


def plugin_config(generator: str = "blueprint", filt: str | None = None, domain: str | None = None) -> Callable:
    filters = [{"name": "format"}, {"name": "outcome"}] + ([{"name": filt}] if filt else [])
    over: dict[str, Any] = {"generators": [{"name": generator}], "filters": filters}
    if domain:
        over["domain"] = {"name": domain}
    return cfg(config_text(**over))


case("filter-raises-always", PLUGIN, GEN, plugin_config(filt="edge_boom_check"), code=1, named="edge_boom_check",
     needs=("plugins", "prefect"))
case("filter-returns-none", PLUGIN, GEN, plugin_config(filt="edge_none_verdict"), code=1, named="edge_none_verdict",
     needs=("plugins", "prefect"))
case("generator-raises-always", PLUGIN, GEN, plugin_config("edge_boom_generate"), code=1, named="edge_boom_generate",
     needs=("plugins", "prefect"))
case("generator-returns-none", PLUGIN, GEN, plugin_config("edge_none_task"), code=1, named="edge_none_task",
     needs=("plugins", "prefect"))
case("generator-constructor-raises", PLUGIN, GEN, plugin_config("edge_boom_generator_init"),
     named="edge_boom_generator_init", needs=("plugins",))
case("filter-constructor-raises", PLUGIN, GEN, plugin_config(filt="edge_boom_filter_init"),
     named="edge_boom_filter_init", needs=("plugins",))
case("domain-constructor-raises", PLUGIN, GEN, plugin_config(domain="edge_boom_domain"),
     named="edge_boom_domain", needs=("plugins",))
case("plugin-import-error", PLUGIN, GEN, plugin_config(filt="edge_broken_import"), named="edge_broken_import",
     needs=("plugins",))

# ---- backends that are not there ----
BACKEND = "backends"
case("api-key-env-unset", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.url("ok"), api_key_env="EDGE_KEY_UNSET")),
     named="EDGE_KEY_UNSET", env=(("EDGE_KEY_UNSET", None),), needs=("servers",))
case("api-key-env-empty", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.url("ok"), api_key_env="EDGE_KEY_EMPTY")),
     named="EDGE_KEY_EMPTY", env=(("EDGE_KEY_EMPTY", ""),), needs=("servers",))
case("backend-refused", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.vars()["refused"])), code=3,
     named="refused", needs=("servers",))
case("backend-timeout", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.vars()["silent"])), code=3,
     named="timed out", needs=("servers",))
case("backend-http-500", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.url("e500"))), code=3, named="500",
     needs=("servers",))
case("backend-http-401", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.url("e401"))), code=3, named="401",
     needs=("servers",))
case("backend-model-not-served", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.url("nomodel"))), code=3,
     named=MODEL_NAME, needs=("servers",))
case("backend-unresolvable-host", BACKEND, GEN, cfg(model_config("http://trajforge-edge.invalid/v1")), code=3,
     named="trajforge-edge.invalid")
case("backend-bad-scheme", BACKEND, GEN, cfg(model_config("ftp://127.0.0.1/v1")), named="base_url")
case("backend-no-scheme", BACKEND, GEN, cfg(model_config("127.0.0.1:8000/v1")), named="base_url")
case("judge-backend-refused", BACKEND, GEN, cfg(lambda ws: config_text(
    backends={"j": {"model": MODEL_NAME, "base_url": ws.servers.vars()["refused"], "timeout_s": 1, "max_retries": 0}},
    filters=[{"name": "format"}, {"name": "judge", "params": {"backend": "j"}}])), code=3, named="refused",
    needs=("servers",))
case("push-hub-unreachable", BACKEND, "push {ds} --version 1 --repo acme/edges", code=3, named="127.0.0.1:9",
     subprocess=True, env=(("HF_TOKEN", "hf_edge_fake"), ("HF_ENDPOINT", "http://127.0.0.1:9")))
case("backend-fails-mid-run", BACKEND, GEN, cfg(lambda ws: model_config(ws.servers.url("chat500"))), code=1,
     named="'m'", needs=("servers", "prefect"))

# ---- the machine ----
MACHINE = "machine"
case("prefect-home-is-file", MACHINE, GEN, both(cfg(GOOD_TEXT), spec("prefect-home", "x")), named="PREFECT_HOME",
     subprocess=True, env=(("PREFECT_HOME", "{ws}/prefect-home"), ("PREFECT_API_URL", None)))
case("prefect-api-down", MACHINE, GEN, cfg(GOOD_TEXT), code=3, named="PREFECT_API_URL", subprocess=True,
     env=(("PREFECT_API_URL", "{refused}"),), needs=("servers",))
case("staging-of-other-config", MACHINE, GEN + " --run-id killed-run", both(
    cfg(GOOD_TEXT), spec("out/_staging/killed-run/run.json", '{"run_id": "killed-run", "config_hash": "0000"}')),
    named="killed-run")
case("staging-folder-is-file", MACHINE, GEN + " --run-id killed-run", both(
    cfg(GOOD_TEXT), spec("out/_staging/killed-run", "x")), named="killed-run")
case("killed-run-marker-junk", MACHINE, GEN + " --run-id killed-run", both(
    cfg(GOOD_TEXT), spec("out/_staging/killed-run/run.json", '{"run_id": "killed')), named="run.json")

# ---- small ones ----
SMALL = "small ones"
case("diff-unknown-version", SMALL, "versions {ds} --diff 0 9", named="9")
case("export-unknown-version", SMALL, "export {ds} --version 9 --to {ws}/hf", named="9")
case("report-unknown-version", SMALL, "report {ds} --version 9 --to {ws}/r.html", named="9")
case("push-unknown-version", SMALL, "push {ds} --version 9 --repo acme/edges", named="9",
     env=(("HF_TOKEN", "hf_edge_fake"), ("HF_ENDPOINT", "http://127.0.0.1:9")))
case("versions-on-file", SMALL, "versions {ws}/afile", spec("afile", "x"), named="afile")
case("versions-missing", SMALL, "versions {ws}/nothing", named="nothing")
case("export-to-nonempty", SMALL, "export {ds} --to {ws}/hf", spec("hf/keep.txt", "x"), named="hf")
case("histogram-missing", SMALL, "dedup-histogram {ws}/nothing", named="nothing")
case("report-not-a-dataset", SMALL, "report {ws}/photos --to {ws}/r.html", spec("photos/a.jpg", b"\xff"),
     named="photos")
case("check-missing", SMALL, "versions {ws}/nothing --check", named="nothing")


def by_class() -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for c in CASES:
        out.setdefault(c.cls, []).append(c)
    return out


# -- running a case and judging what happened ----------------------------------------------------------

@dataclass
class Outcome:
    code: int | None  # None: it hung past its timeout
    stderr: str
    written: list[str]  # paths that appeared or changed in the workspace

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def verdict(self, c: Case, named: str) -> str:
        """'one line' (the promise kept), or what went wrong instead."""
        text = self.stderr
        if self.code is None:
            return "hung"
        if "Traceback (most recent call last)" in text or "panicked at" in text or "stack backtrace" in text:
            return "traceback"
        if self.code == 0:
            return "silently accepted"
        if unexpected_writes(c, self.written):
            return "left something on disk"
        lines = self.lines()
        if len(lines) != 1 or self.code != c.code or named not in lines[0]:
            return "unclear"
        return "one line"


def unexpected_writes(c: Case, written: list[str]) -> list[str]:
    """What a case wrote that it should not have: a run that stopped (exit 1) keeps its staging, for resume."""
    if c.code == 1:
        return [p for p in written if p != "out" and not p.startswith(("out/_staging", "out/_cache"))]
    return written


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns if not p.is_dir() else 0)
    return out


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(k for k, v in after.items() if before.get(k) != v)


def expand(c: Case, ws: Workspace) -> tuple[list[str], dict[str, str | None]]:
    values = ws.vars()
    argv = [a.format(**values) for a in c.argv]
    env = {k: (v.format(**values) if v is not None else None) for k, v in c.env}
    return argv, env


def run_subprocess(c: Case, ws: Workspace, base_env: dict[str, str]) -> Outcome:
    argv, env_changes = expand(c, ws)
    env = dict(base_env)
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    before = snapshot(ws.root)
    try:
        proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=c.timeout_s, errors="replace")
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, err = None, (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
    return Outcome(code, err, changed(before, snapshot(ws.root)))


class _Hung(BaseException):
    """Raised by the alarm in a case that outlived its limit (in-process survey)."""


def run_in_process(c: Case, ws: Workspace, base_env: dict[str, str]) -> Outcome:
    """One case through ``pipelines.cli.main`` in this process: what escapes it is what a user sees as a traceback.

    Much cheaper than an interpreter per case on a loaded machine; stderr is captured at the file descriptor, so
    a Rust panic or a logging handler's output counts too. The caller runs the cases about the process itself
    (``c.subprocess``) as subprocesses.
    """
    import signal
    import tempfile
    import traceback

    from pipelines.cli import main

    argv, env_changes = expand(c, ws)
    saved = {k: os.environ.get(k) for k in env_changes}  # base_env is for subprocesses: this one has its own
    for k, v in env_changes.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    before = snapshot(ws.root)

    def hung(*_: object) -> None:
        raise _Hung

    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved_fd = os.dup(2)
        os.dup2(captured.fileno(), 2)
        previous = signal.signal(signal.SIGALRM, hung)
        signal.alarm(int(c.timeout_s))
        code: int | None
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if not isinstance(exit_.code, int | None):
                print(exit_.code, file=sys.stderr)
        except _Hung:
            code = None
        except BaseException:  # noqa: BLE001 - a traceback is the finding
            traceback.print_exc()
            code = 1
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
        captured.seek(0)
        err = captured.read().decode(errors="replace")
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    return Outcome(code, err, changed(before, snapshot(ws.root)))


def subprocess_env(prefect_home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(ROOT)]), "HF_HUB_OFFLINE": "0"}
    env.pop("PREFECT_API_URL", None)
    return env


def prepare(c: Case, ws: Workspace) -> None:
    if "dataset" in c.needs:
        ws.dataset()
    if c.setup is not None:
        c.setup(ws)


def build_good_dataset(dest: Path, run: Callable[[list[str]], int]) -> Path:
    """Two committed versions of the base config (seeds 5 and 6), through the CLI."""
    config = dest.parent / "good-config.yaml"
    config.write_text(GOOD_TEXT)
    for seed in ("5", "6"):
        code = run(["generate", "--config", str(config), "--out", str(dest), "--seed", seed, "--no-progress"])
        if code != 0:
            raise RuntimeError(f"could not build the dataset the corrupt-dataset cases start from (exit {code})")
    return dest


def survey(work: Path, only: str | None = None, classes: set[str] | None = None, timeout_s: float | None = None,
           resume: bool = False, in_process: bool = False) -> Counter:
    """Every case as a real subprocess; prints one line per case, then the counts per class.

    Each outcome is also appended to ``WORK/results.jsonl``, so surveys of disjoint classes can run side by
    side in one work folder (sharing its prebuilt dataset) and ``table`` prints their counts together.
    ``timeout_s`` raises every case's limit (a loaded machine starts an interpreter slowly: a case that
    outlives its limit counts as hung); ``resume`` skips the cases already surveyed there, except the hung.
    ``in_process`` runs each case through ``pipelines.cli.main`` in this process, on one temporary Prefect server
    (the cases about the process itself still get their own interpreter).
    """
    done = {case for case, row in newest_results(work).items() if row["verdict"] != "hung"} if resume else set()
    work.mkdir(parents=True, exist_ok=True)
    prefect_home = work / "prefect-home"
    base_env = subprocess_env(prefect_home)
    good = work / "good" / "ds"
    if not (good / "_delta_log").is_dir():
        shutil.rmtree(good.parent, ignore_errors=True)
        good.parent.mkdir(parents=True)
        build_good_dataset(good, lambda argv: subprocess.run([sys.executable, "-m", "pipelines.cli", *argv],
                                                             cwd=ROOT, env=base_env).returncode)
    with contextlib.ExitStack() as stack:
        servers = stack.enter_context(Servers())
        if in_process:
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # as the CLI sets it before importing Prefect
            from prefect.testing.utilities import prefect_test_harness

            sys.path.insert(0, str(PLUGINS))
            stack.enter_context(prefect_test_harness(server_startup_timeout=600))
        for n, c in enumerate(CASES):
            if (only and only not in c.name) or (classes and c.cls not in classes) or c.name in done:
                continue
            if timeout_s is not None:
                c = replace(c, timeout_s=max(c.timeout_s, timeout_s))
            ws = Workspace(work / "cases" / f"c{n:03d}", good, servers)  # not the name: it must not match `named`
            shutil.rmtree(ws.root, ignore_errors=True)
            ws.root.mkdir(parents=True)
            start = time.monotonic()
            prepare(c, ws)
            run = run_in_process if in_process and not c.subprocess else run_subprocess
            outcome = run(c, ws, base_env)
            verdict = outcome.verdict(c, c.named.format(**ws.vars()))
            last = (outcome.lines() or [""])[-1][:150]
            with open(work / "results.jsonl", "a", encoding="utf-8") as results:
                results.write(json.dumps({"case": c.name, "cls": c.cls, "code": outcome.code, "verdict": verdict,
                                          "wrote": bool(outcome.written), "line": last,
                                          "stderr": outcome.stderr[-2000:]}) + "\n")
            print(f"{n + 1:>3} {c.cls:<17} {c.name:<32} exit {outcome.code!s:<4} {verdict:<22} "
                  f"{time.monotonic() - start:5.1f}s  {last}", flush=True)
            if outcome.written:
                print(f"      wrote: {', '.join(outcome.written[:4])}", flush=True)
    print()
    return table(work)


def newest_results(work: Path) -> dict[str, dict[str, Any]]:
    results = work / "results.jsonl"
    lines = results.read_text(encoding="utf-8").splitlines() if results.exists() else []
    return {row["case"]: row for row in map(json.loads, lines)}


def table(work: Path) -> Counter:
    """The verdicts per class of every case surveyed in ``work`` (its newest outcome per case)."""
    newest = newest_results(work)
    counts: Counter = Counter()
    for row in newest.values():
        counts[(row["cls"], row["verdict"])] += 1
        counts[(row["cls"], "wrote something")] += row["wrote"]
    classes = [name for name in dict.fromkeys(c.cls for c in CASES) if any(r["cls"] == name for r in newest.values())]
    verdicts = ["one line", "traceback", "silently accepted", "left something on disk", "unclear", "hung"]
    print(f"{'class':<18}" + "".join(f"{v:>24}" for v in verdicts) + f"{'cases':>8}{'of them wrote':>15}")
    for name in classes:
        row = [counts[(name, v)] for v in verdicts]
        print(f"{name:<18}" + "".join(f"{n:>24}" for n in row) + f"{sum(row):>8}"
              f"{counts[(name, 'wrote something')]:>15}")
    total = [sum(counts[(name, v)] for name in classes) for v in verdicts]
    print(f"{'all':<18}" + "".join(f"{n:>24}" for n in total) + f"{sum(total):>8}"
          f"{sum(counts[(name, 'wrote something')] for name in classes):>15}")
    print(f"one line: {total[0]} of {sum(total)}")
    return counts


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["survey", "list", "table"])
    p.add_argument("--work", type=Path, default=Path("/tmp/trajforge-edge-survey"))
    p.add_argument("--only", help="run the cases whose name contains this")
    p.add_argument("--cls", help="run the cases of these classes (comma-separated)")
    p.add_argument("--timeout", type=float, help="seconds each case may take at least (default: its own, 120 mostly)")
    p.add_argument("--in-process", action="store_true", help="each case through pipelines.cli.main in one process "
                   "(fast on a loaded machine); the cases about the process itself still run as subprocesses")
    p.add_argument("--resume", action="store_true", help="skip the cases WORK already has an outcome for (not hung)")
    a = p.parse_args()
    if a.command == "list":
        for cls, cases in by_class().items():
            print(f"{cls} ({len(cases)}): " + ", ".join(c.name for c in cases))
        print(f"{len(CASES)} cases")
    elif a.command == "table":
        table(a.work)
    else:
        survey(a.work, a.only, set(a.cls.split(",")) if a.cls else None, a.timeout, a.resume, a.in_process)
