"""Run artifacts on a real Prefect server, and ``trajforge report`` checked against the dataset and in Chromium."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
from functools import partial
from html.parser import HTMLParser

import polars as pl
import pytest
from browser import required_chromium
from loopback import LoopbackServer, TranscriptBrain

from pipelines.artifacts import artifact_key, dialogue_markdown, funnel_table, usage_table
from pipelines.cli import main
from pipelines.flow import run_generate
from pipelines.report import ReportData, collect, render
from pipelines.store import DatasetStore, reason_key
from schemas import DatasetManifest, parse_config

pytestmark = pytest.mark.usefixtures("prefect_server")

PLOTS = ["Filter funnel: rows left after each step", "Rejections by reason", "Rejections by who failed (fault)",
         "Turns per dialogue (user turns, accepted)",
         "Tool usage (calls in accepted dialogues)", "Message lengths (accepted dialogues)",
         # the version's diversity and difficulty (a store run: no device actions, one domain, no judge)
         "Tool chains: the 10 most frequent (dialogues)", "User turns: the 10 most frequent (dialogues containing it)",
         "Tool calls per dialogue", "Writes per dialogue (both sides)",
         "Difficulty (writes+1 x withheld+1 x dependencies+1)", "Intents (requests)", "Personas (dialogues)",
         "Yield over versions (accepted / tasks)", "Cost per accepted trajectory over versions"]


def _config(seed: int, num_tasks: int = 40):
    return parse_config({
        "name": "obs", "seed": seed, "num_tasks": num_tasks, "shard_size": 20,
        "domain": {"name": "store", "db_seed": 0},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "simulation": {"perturb_rate": 0.3},
        "filters": [{"name": n} for n in ("format", "execution", "policy", "outcome", "required_outputs")]
        + [{"name": "turn_count", "params": {"min_user_turns": 1, "max_user_turns": 30}}],
        "dedup": {"exact": True, "near": {"enabled": True}},
    }, "obs-config")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two versions from two runs, so a report has to pick its version's rows."""
    root = tmp_path_factory.mktemp("obs") / "ds"
    manifests = [run_generate(_config(3), root, "Run-A_1"), run_generate(_config(4), root, "run-b")]
    return root, manifests


def _artifact(key: str):
    from prefect.artifacts import Artifact

    found = Artifact.get(key)
    assert found is not None, f"no artifact {key}"
    return found


# -- artifacts ---------------------------------------------------------------------------------------------------


def test_artifact_keys_are_valid_prefect_keys():
    assert artifact_key("funnel", "20261121T124400Z-5b9570") == "trajforge-funnel-20261121t124400z-5b9570"
    assert re.fullmatch(r"[a-z0-9-]+", artifact_key("samples", "Run A/1_ü"))


def test_each_run_leaves_funnel_usage_and_sample_artifacts(dataset):
    root, manifests = dataset
    for manifest in manifests:
        funnel = _artifact(artifact_key("funnel", manifest.run_id))
        assert funnel.type == "table" and funnel.flow_run_id is not None
        table = json.loads(funnel.data)
        assert table == funnel_table(manifest)
        assert [r["step"] for r in table[1:]] == list(manifest.funnel)
        assert table[-1]["left"] == manifest.accepted and sum(r["rejected"] for r in table) == manifest.rejected

        assert json.loads(_artifact(artifact_key("usage", manifest.run_id)).data) == []  # offline: no model calls

        samples = _artifact(artifact_key("samples", manifest.run_id))
        assert samples.type == "markdown"
        assert samples.data.count("## Dialogue ") == 3
        first = (DatasetStore(root).read(manifest.version)
                 .filter((pl.col("run_id") == manifest.run_id) & (pl.col("status") == "accepted")).sort("index"))
        user_turn = next(m["content"] for m in first["messages"][0] if m["role"] == "user")
        assert user_turn.splitlines()[0].replace("<", "&lt;") in samples.data


def test_usage_artifact_counts_requests_and_tokens_per_role(tmp_path):
    def config(url: str):
        return parse_config({
            "name": "obs-model", "seed": 5, "num_tasks": 4, "shard_size": 4,
            "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 1}}],
            "backends": {"loop": {"model": "loop-model", "base_url": url, "max_concurrency": 4}},
            "simulation": {"mode": "model", "user": {"backend": "loop"}, "assistant": {"backend": "loop"}},
            "runner": {"kind": "thread", "workers": 1}}, "obs-model")

    with LoopbackServer(TranscriptBrain(config("http://127.0.0.1:9/v1"))) as server:
        manifest = run_generate(config(server.url), tmp_path / "ds", "model-run")
    rows = json.loads(_artifact(artifact_key("usage", "model-run")).data)
    assert {r["role"] for r in rows} == set(manifest.usage) == {"user", "assistant"}
    for row in rows:
        usage = manifest.usage[row["role"]]
        assert row["model"] == "loop-model" and row["requests"] == usage.requests > 0
        assert row["prompt_tokens"] == usage.prompt_tokens > 0 and row["completion_tokens"] == usage.completion_tokens
    assert sum(r["requests"] for r in rows) == server.requests


def test_dialogue_markdown_quotes_model_text():
    md = dialogue_markdown([
        {"role": "user", "content": "# not a heading\n<img src=x onerror=alert(1)>", "tool_calls": None},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_order", "arguments": '{"id": 1}'}}]},
    ])
    assert "> # not a heading" in md and "<img" not in md and "&lt;img" in md
    assert '> → get_order({"id": 1})' in md


def test_usage_table_from_manifest():
    manifest = DatasetManifest.model_validate({
        "parent_version": None, "run_id": "r", "config_hash": "c", "code_version": "v", "seed": 1, "created_at": "t",
        "tasks": 1, "accepted": 1, "rejected": 0, "models": {"user": "m"},
        "usage": {"user": {"prompt_tokens": 7, "completion_tokens": 3, "requests": 2, "latency_s": 0.123}}})
    assert usage_table(manifest) == [{"role": "user", "model": "m", "requests": 2, "cached": 0, "retries": 0, "errors": 0,
                                      "prompt_tokens": 7, "completion_tokens": 3, "latency_s": 0.12}]


# -- report numbers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", [0, 1])
def test_report_numbers_equal_the_dataset_and_manifest(dataset, which):
    root, manifests = dataset
    manifest = manifests[which]
    data = collect(root, manifest.version)
    assert data.manifest.run_id == manifest.run_id and data.rows == manifest.tasks

    # the funnel is the manifest's, as rows left after each step
    assert [step.split(" (")[0] for step, _ in data.funnel] == ["tasks", *manifest.funnel]
    assert data.funnel[0][1] == manifest.tasks and data.funnel[-1][1] == manifest.accepted
    lefts = [left for _, left in data.funnel]
    assert [a - b for a, b in zip(lefts, lefts[1:], strict=False)] == list(manifest.funnel.values())

    # counted from the rows, independently of the report's polars code
    rows = DatasetStore(root).read(manifest.version).filter(pl.col("run_id") == manifest.run_id).to_dicts()
    accepted = [r for r in rows if r["status"] == "accepted"]
    rejected = [r for r in rows if r["status"] == "rejected"]
    assert len(accepted) == manifest.accepted > 0 and len(rejected) == manifest.rejected > 0
    assert data.reasons == manifest.reasons
    assert sum(data.reasons.values()) == len(rejected)
    assert data.reasons == {k: sum(reason_key(r["stage"], r["reason"]) == k for r in rejected) for k in data.reasons}
    assert sum(data.turns.values()) == len(accepted)
    assert all(data.turns[t] == sum(r["num_turns"] == t for r in accepted) for t in data.turns)
    assert sum(data.tools.values()) == sum(r["num_tool_calls"] for r in accepted) > 0
    texts = [m["content"] for r in accepted for m in r["messages"] if m["content"] is not None]
    assert sum(data.lengths.values()) == len(texts)
    assert data.lengths.get("0–49 chars", 0) == sum(len(t) < 50 for t in texts)
    assert data.samples == [r["messages"] for r in sorted(accepted, key=lambda r: r["index"])[:3]]


def test_report_escapes_dataset_text(dataset):
    root, manifests = dataset
    data = collect(root, 0)
    evil = "<script>alert(1)</script>"
    hostile = ReportData(
        manifest=data.manifest, rows=data.rows, turns=data.turns, tools={evil: 3}, funnel=data.funnel,
        lengths=data.lengths, reasons={f"format: {evil}": 1},
        samples=[[{"role": "user", "content": evil, "tool_calls": None, "tool_call_id": None, "name": None},
                  {"role": "assistant", "content": None, "tool_call_id": None, "name": None, "tool_calls": [
                      {"id": "c", "type": "function", "function": {"name": evil, "arguments": json.dumps({"q": evil})}}]}]])
    page = render(hostile, "<b>dir</b>")
    assert "<script" not in page and "<b>dir" not in page
    assert page.count("&lt;script&gt;") >= 4


# -- the CLI -------------------------------------------------------------------------------------------------------


def test_report_cli_writes_a_file_and_bad_input_writes_nothing(dataset, tmp_path, capsys):
    root, manifests = dataset
    out = tmp_path / "r.html"
    assert main(["report", str(root), "--to", str(out)]) == 0
    assert manifests[1].run_id in out.read_text() and "wrote" in capsys.readouterr().out

    for argv, says in ([str(root), "--version", "7"], "no version 7; readable versions: 0, 1"), \
                      ([str(tmp_path / "nothing")], "no trajforge dataset here"):
        target = tmp_path / "bad.html"
        assert main(["report", *argv, "--to", str(target)]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
        assert not target.exists()


# -- headless Chromium -----------------------------------------------------------------------------------------------


class _Dom(HTMLParser):
    """What the rendered DOM holds: chart titles, bubble classes, scripts and outside references."""

    def __init__(self) -> None:
        super().__init__()
        self.charts, self.bubbles, self.scripts, self.remote = [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg" and "chart" in (attrs.get("class") or ""):
            self.charts.append(attrs.get("data-title"))
        if "bubble" in (attrs.get("class") or "").split():
            self.bubbles.append(attrs["class"].split()[-1])
        self.scripts += tag == "script"
        self.remote += [v for k, v in attrs.items() if k in ("src", "href") and v and "://" in v]


def chromium_args(browser: str, tmp_path) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]


def test_report_renders_in_headless_chromium(dataset, tmp_path):
    browser = required_chromium()
    root, _ = dataset
    page = tmp_path / "report.html"
    assert main(["report", str(root), "--version", "0", "--to", str(page)]) == 0
    args = chromium_args(browser, tmp_path)
    done = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Uncaught" not in done.stderr and "CONSOLE" not in done.stderr, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    assert dom.charts == PLOTS
    assert dom.scripts == 0 and dom.remote == []
    assert {"user", "assistant", "tool", "system"} <= set(dom.bubbles)
    assert done.stdout.count('class="dialogue"') == 3 and 'class="tool-call"' in done.stdout
    assert done.stdout.count('class="dialogue rejected"') == 3  # the first rejections, with what they kept

    shot = tmp_path / "report.png"
    done = subprocess.run([*args, "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


class _Counting(http.server.SimpleHTTPRequestHandler):
    """Serves the report folder on 127.0.0.1 and records every path a page asks for."""

    asked: list[str] = []

    def do_GET(self):
        type(self).asked.append(self.path)
        if self.path.startswith("/probe/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"x")
            return
        super().do_GET()

    def log_message(self, *args):
        pass


HOSTILE = """<img src="/probe/img"><link rel="stylesheet" href="/probe/css"><script src="/probe/js"></script>
<script>document.title = "script ran"</script><iframe src="/probe/frame"></iframe>
<style>@import url("/probe/import"); body { background: url("/probe/bg"); }</style>
<object data="/probe/object"></object><link rel="preload" as="fetch" href="/probe/preload">"""


def test_report_content_security_policy_forbids_loading_anything(dataset, tmp_path):
    """The report's CSP, as a browser enforces it: a page with the report's head loads nothing and runs no
    script, even with hostile markup in its body; the same page without the CSP loads and runs it all."""
    root, _ = dataset
    page = tmp_path / "site" / "report.html"
    page.parent.mkdir()
    assert main(["report", str(root), "--to", str(page)]) == 0
    text = page.read_text()
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text)
    assert policy is not None and text.index(policy.group(0)) < text.index("<title>")  # before anything it governs
    directives = dict(d.strip().split(" ", 1) for d in policy.group(1).split(";") if d.strip())
    assert directives == {"default-src": "'none'", "style-src": "'unsafe-inline'"}, directives

    browser = required_chromium()
    with_csp = text.replace("</body>", HOSTILE + "</body>")
    (page.parent / "with.html").write_text(with_csp)
    (page.parent / "without.html").write_text(with_csp.replace(policy.group(0), ""))
    handler = type("Handler", (_Counting,), {"asked": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(page.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        def load(name: str) -> str:
            url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
            done = subprocess.run([*chromium_args(browser, tmp_path), "--virtual-time-budget=3000", "--dump-dom", url],
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
            return done.stdout

        dom = load("with.html")
        assert [p for p in handler.asked if p.startswith("/probe/")] == [], handler.asked
        assert "<title>script ran</title>" not in dom and "<title>trajforge report" in dom
        handler.asked.clear()
        dom = load("without.html")  # the control: the same markup without the policy does load and run
        assert {"/probe/img", "/probe/css", "/probe/js", "/probe/frame"} <= set(handler.asked), handler.asked
        assert "<title>script ran</title>" in dom
    finally:
        server.shutdown()
        server.server_close()
