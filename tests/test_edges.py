"""Hard edges (issue 20): every bad input and broken environment of ``tests/edge_cases.py`` ends in one
line on stderr, the documented exit code, the field, file or backend named, and nothing written.

Cases run in-process through ``pipelines.cli.main`` (the same code path as the installed command, minus the
interpreter start), except those about the process itself (a non-UTF-8 config read by a fresh interpreter, a
FIFO, the environment Prefect reads), which run as real subprocesses. Flows run on the session's temporary
Prefect server.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import polars as pl
import pytest
from edge_cases import (
    ALIAS_BOMB,
    CASES,
    PLUGINS,
    Case,
    Servers,
    Workspace,
    build_good_dataset,
    changed,
    config_text,
    expand,
    model_config,
    prepare,
    run_subprocess,
    snapshot,
    subprocess_env,
    tools,
    unexpected_writes,
)

from pipelines.cli import main


@pytest.fixture(scope="module")
def plugins():
    """The misbehaving plug-ins, installed the way a researcher's package is: a dist-info with entry points."""
    from filters import FILTERS
    from generators import GENERATORS
    from simulators.environment import DOMAINS

    sys.path.insert(0, str(PLUGINS))
    for registry in (FILTERS, GENERATORS, DOMAINS):
        registry.refresh()
    yield
    sys.path.remove(str(PLUGINS))
    for registry in (FILTERS, GENERATORS, DOMAINS):
        registry.refresh()


@pytest.fixture(scope="session")
def servers():
    with Servers() as s:
        yield s


@pytest.fixture(scope="session")
def good_dataset(tmp_path_factory, prefect_server):
    return build_good_dataset(tmp_path_factory.mktemp("edge-good") / "ds", main)


def _workspace(tmp_path: Path, case: Case, request) -> Workspace:
    ws = Workspace(tmp_path / "ws", servers=request.getfixturevalue("servers"))
    ws.root.mkdir()
    if "dataset" in case.needs:
        ws.good_dataset = request.getfixturevalue("good_dataset")
    if "plugins" in case.needs:
        request.getfixturevalue("plugins")
    return ws


def _run_in_process(case: Case, ws: Workspace, monkeypatch, capfd) -> tuple[int, str, list[str]]:
    argv, env = expand(case, ws)
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    before = snapshot(ws.root)
    capfd.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's way out
        code = exit_.code if isinstance(exit_.code, int) else 2
    err = capfd.readouterr().err
    return code, err, changed(before, snapshot(ws.root))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(case, tmp_path, request, monkeypatch, capfd):
    if "prefect" in case.needs:  # a flow runs: on the session's temporary server
        request.getfixturevalue("prefect_server")
    ws = _workspace(tmp_path, case, request)
    prepare(case, ws)
    if case.subprocess:
        outcome = run_subprocess(case, ws, subprocess_env(tmp_path / "prefect-home"))
        assert outcome.code is not None, f"{case.name}: hung past {case.timeout_s}s"
        code, err, written = outcome.code, outcome.stderr, outcome.written
    else:
        code, err, written = _run_in_process(case, ws, monkeypatch, capfd)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and "panicked" not in err, err
    assert len(lines) == 1, f"{case.name}: expected one line on stderr, got:\n{err}"
    assert code == case.code, f"{case.name}: exit {code}, expected {case.code}: {lines[0]}"
    assert lines[0].startswith("trajforge: error: ")
    named = case.named.format(**ws.vars())
    assert named in lines[0], f"{case.name}: {named!r} not named in: {lines[0]}"
    # Nothing written: a run that stopped may keep its staging (for resume), and nothing else.
    kept = unexpected_writes(case, written)
    assert not kept, f"{case.name}: wrote {kept}"
    if case.code == 1:  # a run stopped early: no version
        assert not (ws.root / "out" / "_delta_log").exists()


def test_the_table_covers_every_class_with_at_least_60_cases():
    classes = {c.cls for c in CASES}
    assert len(CASES) >= 60
    assert {"inputs", "referenced files", "output locations", "corrupt datasets", "plug-ins", "backends",
            "machine", "small ones", "arguments"} <= classes
    assert len({c.name for c in CASES}) == len(CASES)


# -- what must work ------------------------------------------------------------------------------------

def test_a_path_with_spaces_braces_hash_question_mark_and_non_ascii_works_end_to_end(tmp_path, prefect_server,
                                                                                      capsys):
    folder = tmp_path / "nightly runs {v2} #3? é日本"
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    out = folder / "ds"
    assert main(["generate", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert main(["generate", "--config", str(config), "--out", str(out), "--seed", "9", "--no-progress"]) == 0
    assert main(["versions", str(out), "--check"]) == 0
    assert "ok: 2 version(s)" in capsys.readouterr().out
    assert main(["versions", str(out), "--diff", "0", "1"]) == 0
    assert main(["export", str(out), "--to", str(folder / "hf out"), "--rejects"]) == 0
    assert main(["report", str(out), "--to", str(folder / "report #1.html")]) == 0
    assert (folder / "report #1.html").stat().st_size > 1000
    assert list((folder / "hf out" / "data" / "sft").glob("*.parquet"))
    # The table itself, from polars, as the end-of-run summary says to open it.
    hint = next(line for line in printed.splitlines() if "open it:" in line).split("open it: ", 1)[1]
    assert "use_pyarrow=True" in hint
    frame = pl.read_delta(str(out), version=0, use_pyarrow=True)
    assert frame.height == 8 and set(frame["status"]) <= {"accepted", "rejected"}
    assert pl.read_delta(str(out), use_pyarrow=True).height == 16
    # Nothing was written anywhere but the folder given (no '%20'-named twin folder).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["config.yaml", folder.name])


def test_a_dataset_written_by_the_previous_code_is_read_checked_exported_and_appended(tmp_path, prefect_server, capsys):
    """tests/data/main-dataset: two versions committed by main before this change (no ``fault`` column)."""
    ds = tmp_path / "ds"
    shutil.copytree(Path(__file__).parent / "data" / "main-dataset", ds)
    assert main(["versions", str(ds), "--check"]) == 0
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    assert main(["generate", "--config", str(config), "--out", str(ds), "--seed", "7", "--no-progress"]) == 0
    assert main(["versions", str(ds), "--check"]) == 0
    assert "ok: 3 version(s)" in capsys.readouterr().out
    assert main(["export", str(ds), "--to", str(tmp_path / "hf")]) == 0
    frame = pl.read_delta(str(ds), use_pyarrow=True)
    assert frame.height == 24 and "fault" in frame.columns
    assert frame.filter(pl.col("run_id") == frame["run_id"][-1])["fault"].null_count() == 8


def test_a_plug_in_that_fails_on_some_items_rejects_those_rows_and_names_itself(tmp_path, plugins, prefect_server,
                                                                                 capsys):
    config = tmp_path / "config.yaml"
    config.write_text(config_text(num_tasks=24, shard_size=12, generators=[{"name": "edge_sometimes_generate"}],
                                  filters=[{"name": "format"}, {"name": "edge_sometimes_boom"}]))
    out = tmp_path / "ds"
    assert main(["generate", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    rows = pl.read_delta(str(out))
    assert rows.height == 24
    faults = rows.filter(pl.col("fault") == "plugin")
    synthesis = faults.filter(pl.col("stage") == "synthesis")
    judged = faults.filter(pl.col("stage") == "edge_sometimes_boom")
    assert synthesis.height and judged.height and synthesis.height + judged.height == faults.height
    assert all(r.startswith("generator 'edge_sometimes_generate' (edge_plugins.SometimesGenerate) raised "
                            "ZeroDivisionError: edge boom: division by zero in the plug-in") for r in synthesis["reason"])
    assert all(r == "filter 'edge_sometimes_boom' (edge_plugins.SometimesBoom) raised KeyError: 'edge-missing-field'"
               for r in judged["reason"])
    verdicts = json.loads(judged["verdicts"][0])
    assert verdicts[-1]["stage"] == "edge_sometimes_boom" and not verdicts[-1]["passed"]
    assert rows.filter(pl.col("status") == "accepted")["fault"].null_count() == rows.filter(
        pl.col("status") == "accepted").height
    assert "edge_sometimes_boom" in capsys.readouterr().out  # the funnel lists the step
    # The evidence stays: a filter's fault keeps the dialogue it was judging.
    assert judged["task"].null_count() == 0 and (judged["num_turns"] > 0).all()


def test_a_backend_that_keeps_failing_stops_the_run_keeps_staging_and_resumes(tmp_path, servers, prefect_server,
                                                                             capfd):
    config = tmp_path / "config.yaml"
    config.write_text(model_config(servers.url("flaky"), timeout_s=20, health={"window": 6, "max_error_rate": 0.5}))
    out = tmp_path / "ds"
    servers.flaky_down = True
    try:
        code = main(["generate", "--config", str(config), "--out", str(out), "--run-id", "flaky-1", "--no-progress"])
    finally:
        servers.flaky_down = False
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "backend 'm' at" in err[0] and "kept failing" in err[0] and "HTTP 500" in err[0]
    assert "--run-id flaky-1" in err[0]
    assert not (out / "_delta_log").exists()
    assert (out / "_staging" / "flaky-1" / "run.json").exists()
    # The server is back: the same command resumes the run and commits every task once.
    assert main(["generate", "--config", str(config), "--out", str(out), "--run-id", "flaky-1", "--no-progress"]) == 0
    rows = pl.read_delta(str(out))
    assert rows.height == 24 and rows["index"].n_unique() == 24
    assert not rows["reason"].drop_nulls().str.contains("HTTP 500").any()


def test_versions_diff_of_a_rerun_with_the_same_config_and_seed_says_what_happened(tmp_path, prefect_server, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    out = tmp_path / "ds"
    for _ in range(2):
        assert main(["generate", "--config", str(config), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["versions", str(out), "--diff", "0", "1", "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    rerun = pl.read_delta(str(out), version=1).filter(pl.col("run_id") == diff["runs"][0])
    assert diff["added_total"] == rerun.height == 8 and len(diff["runs"]) == 1
    assert diff["dedup_rejected"] == rerun.filter(pl.col("stage") == "dedup").height > 0
    assert main(["versions", str(out), "--diff", "0", "1"]) == 0
    text = capsys.readouterr().out
    assert "+8 rows" in text
    assert f"1 run(s) committed in between ({diff['runs'][0]}); {diff['dedup_rejected']} of their rows rejected as " \
           "duplicates" in text


def test_versions_check_reports_every_problem_and_exits_2(good_dataset, tmp_path, capfd):
    ds = tmp_path / "ds"
    shutil.copytree(good_dataset, ds)
    assert main(["versions", str(ds), "--check"]) == 0
    files = sorted(ds.glob("part-*.parquet"))
    files[0].unlink()
    files[1].write_bytes(b"junk")
    capfd.readouterr()
    assert main(["versions", str(ds), "--check"]) == 2
    out, err = capfd.readouterr()
    assert files[0].name in out and files[1].name in out
    assert len(err.strip().splitlines()) == 1 and "problem(s) found by --check" in err


# -- the parts, one by one -------------------------------------------------------------------------------

def _read(tmp_path: Path, name: str, text: str | bytes):
    from schemas import ConfigError
    from schemas.documents import read_document

    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        return read_document(path, "config", ConfigError)
    except ConfigError as err:
        return str(err)


def test_a_repeated_key_is_refused_at_any_depth_naming_it_and_both_lines(tmp_path):
    text = "a: 1\nb:\n  c:\n    - d: 1\n      e: 2\n      d: 3\n"
    assert _read(tmp_path, "x.yaml", text).endswith("x.yaml: line 6: duplicate key 'd' (first at line 4)")
    assert _read(tmp_path, "x.json", '{"a": {"b": [1, {"c": 1,\n "c": 2}]}}').endswith(
        "x.json: line 2: duplicate key 'c' (first at line 1)")
    # Not duplicates: the same key in sibling mappings, a merge key overridden, quoted vs plain keys of other types.
    assert _read(tmp_path, "ok.yaml", "base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  x: 3\nother: {x: 4}\n") == {
        "base": {"x": 1, "y": 2}, "mine": {"x": 3, "y": 2}, "other": {"x": 4}}
    assert _read(tmp_path, "ok.json", '[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]
    assert _read(tmp_path, "ok2.yaml", "1: a\n'1': b\n") == {1: "a", "1": "b"}


def test_bytes_that_are_not_utf8_text_are_one_line_with_where(tmp_path):
    assert "line 2, column 4: not UTF-8 text (byte 0xe9)" in _read(tmp_path, "l.yaml", b"a: 1\nb: \xe9\n")
    assert "is UTF-16 text" in _read(tmp_path, "u.yaml", "a: 1\n".encode("utf-16"))
    assert "line 1: contains a NUL byte" in _read(tmp_path, "n.yaml", b"a: 1\x00\n")
    assert _read(tmp_path, "bom.yaml", "\ufeffa: 1\n".encode()) == {"a": 1}  # a UTF-8 byte-order mark is fine
    assert "YAML aliases expand to more than 1,000,000 values" in _read(tmp_path, "bomb.yaml", ALIAS_BOMB)


def test_tool_spec_limits_are_configurable_and_named(tmp_path):
    from simulators.tool_specs import SpecError, SpecLimits, load_tool_spec

    spec = tmp_path / "tools.json"
    spec.write_text(json.dumps(tools(3), indent=1))
    assert len(load_tool_spec(spec)) == 3
    for limits, named in [(SpecLimits(max_tools=2), "defines 3 tools, over the limit of 2 (domain.params.max_tools"),
                          (SpecLimits(max_bytes=100), "over the tool spec size limit of 9.53674e-05 MiB "
                                                      "(domain.params.max_spec_bytes)"),
                          (SpecLimits(max_line_chars=20), "characters is over the line length limit of 20 "
                                                          "(domain.params.max_line_chars)")]:
        with pytest.raises(SpecError) as err:
            load_tool_spec(spec, limits)
        assert named in str(err.value) and str(spec) in str(err.value)


def test_the_health_monitor_trips_on_a_dead_backend_not_on_rate_limits():
    from schemas import BackendHealthConfig
    from simulators.backends import BackendStoppedError, HealthMonitor, TransientError

    monitor = HealthMonitor("m", "http://x/v1", BackendHealthConfig(window=4, max_error_rate=0.5,
                                                                    max_consecutive_failures=3))
    for _ in range(20):  # 429s are the server working: never counted
        monitor.record(TransientError("HTTP 429: slow down"))
    monitor.record(TransientError("HTTP 503", unhealthy=True))
    monitor.record(None)
    monitor.record(TransientError("HTTP 503", unhealthy=True))
    assert monitor.tripped is None  # 2 of the last 4: not more than half
    monitor.record(TransientError("connection refused", unhealthy=True))
    assert monitor.tripped == "3 of the last 4 attempts failed (the last: connection refused)"
    with pytest.raises(BackendStoppedError, match="backend 'm' stopped"):
        monitor.check()
    in_a_row = HealthMonitor("m", "u", BackendHealthConfig(window=100, max_consecutive_failures=3))
    for _ in range(3):
        in_a_row.record(TransientError("timed out", unhealthy=True))
    assert in_a_row.tripped.startswith("3 attempts in a row failed")


def test_a_dialogue_failure_says_refused_timed_out_or_http_error(servers):
    """Through the real HTTP client: the aiohttp transport calls a refused connection a timeout; the reason must not."""
    import asyncio

    from schemas import BackendConfig, Message, Usage
    from simulators.backends import BackendError, ChatParams, Endpoint

    async def reason(url: str) -> str:
        endpoint = Endpoint("m", BackendConfig(model="edge-model", base_url=url, timeout_s=1, max_retries=1,
                                               backoff_s=0.01))
        try:
            await endpoint.chat([Message(role="user", content="hi")], None, ChatParams(), Usage())
        except BackendError as err:
            return str(err)
        finally:
            await endpoint.release_loop()
        return "answered"

    urls = servers.vars()
    assert "connection refused" in asyncio.run(reason(urls["refused"]))
    assert "timed out waiting for an answer after 1s" in asyncio.run(reason(urls["silent"]))
    assert asyncio.run(reason(urls["e500"])).startswith("HTTP 500: scripted outage")
