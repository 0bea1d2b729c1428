"""``trajforge view``: the real command serving real datasets over loopback HTTP, checked in headless Chromium
(page scripts off) and against counts taken independently from the Delta table."""

from __future__ import annotations

import html
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import polars as pl
import pytest
from browser import Browser
from viewer_data import commit_rows, replicate, without_fault

from pipelines.cli import main
from pipelines.flow import run_generate
from pipelines.store import DatasetStore, reason_key
from pipelines.versioning import diff_versions
from schemas import Usage, parse_config

pytestmark = pytest.mark.usefixtures("prefect_server")
EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def _config(seed: int, num_tasks: int = 80):
    return parse_config({
        "name": "view", "seed": seed, "num_tasks": num_tasks, "shard_size": 40,
        "domain": {"name": "store", "db_seed": 0},
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 3}}],
        "simulation": {"perturb_rate": 0.35},
        "filters": [{"name": n} for n in ("format", "execution", "policy", "outcome", "required_outputs")],
        "dedup": {"exact": True, "near": {"enabled": True}},
    }, "view-config")


def _hostile(rows: list[dict]) -> list[dict]:
    """Real rows with dataset text that is HTML: a user turn, tool-call arguments, a tool result and a reason."""
    out = []
    for n, row in enumerate(rows):
        messages = [dict(m) for m in row["messages"]]
        user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[user]["content"] = f"{EVIL} please help"
        call = next(m for m in messages if m["tool_calls"])
        call["tool_calls"] = [{**call["tool_calls"][0], "function": {
            "name": call["tool_calls"][0]["function"]["name"], "arguments": json.dumps({"note": EVIL})}}]
        messages.append({"role": "tool", "content": EVIL, "tool_calls": None, "tool_call_id": "x", "name": "evil"})
        out.append({**row, "messages": messages, "index": n, "status": "rejected", "stage": "format",
                    "reason": f"message {user}: {EVIL}"})
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two real offline runs, then a version of hostile rows committed through the store."""
    root = tmp_path_factory.mktemp("view") / "ds"
    run_generate(_config(3), root, "run-a")
    run_generate(_config(4), root, "run-b")
    accepted = pl.read_delta(str(root)).filter(pl.col("status") == "accepted").sort("index").head(3).to_dicts()
    usage = {"assistant": Usage(requests=7, prompt_tokens=1200, completion_tokens=300)}
    commit_rows(root, _hostile(accepted), "hostile", usage=usage, models={"assistant": "tiny-model"})
    return root


def _read(root: Path, version: int) -> list[dict]:
    return pl.read_delta(str(root), version=version).to_dicts()


class Viewer:
    """``trajforge view`` in its own process, as a user starts it; stopped with Ctrl-C (SIGINT)."""

    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "view", str(root), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [self.proc.stdout.readline(), self.proc.stdout.readline()]
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", "".join(lines))
        if not found:
            self.proc.kill()
            raise AssertionError(f"no URL printed: {lines} {self.proc.stderr.read()[-2000:]}")
        self.url, self.port = found.group(0), int(found.group(1))

    def get(self, path: str, host: str | None = None) -> tuple[int, dict, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        body = response.read().decode()
        conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body

    def page(self, path: str) -> str:
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[-500:])
        return body

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def viewer(dataset):
    server = Viewer(dataset, "--allow-host", "tunnel.example")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # fails where chromium could be installed, skips saying why only where it cannot (tests/browser.py)
    with Browser(tmp_path_factory.mktemp("chromium")) as b:
        yield b


def _total(body: str) -> int:
    return int(re.search(r'<span id="total">([\d,]+)</span>', body).group(1).replace(",", ""))


def _rows(body: str) -> list[dict]:
    return [{"status": s, "stage": g, "turns": int(t)} for s, g, t in
            re.findall(r'<tr class="row \w+" data-status="(\w+)" data-stage="(\w*)" data-turns="(\d+)">', body)]


def _calls(row: dict) -> list[str]:
    return [c["function"]["name"] for m in row["messages"] if m["role"] == "assistant" for c in m["tool_calls"] or []]


def _arguments(call: dict) -> str:
    """Arguments as the page should show them: compact JSON, or the stored text when it is not JSON."""
    try:
        return json.dumps(json.loads(call["function"]["arguments"]))
    except ValueError:
        return call["function"]["arguments"]


def _mentions(row: dict, text: str) -> bool:
    t = text.lower()
    return any(m["role"] != "system" and (t in (m["content"] or "").lower()
                                          or any(t in c["function"]["arguments"].lower() for c in m["tool_calls"] or []))
               for m in row["messages"])


# -- the row list ------------------------------------------------------------------------------------------------


def test_filters_change_the_rows_shown_in_chromium(dataset, viewer, browser):
    rows = _read(dataset, 1)
    browser.goto(viewer.url + "v/1/rows")
    assert int(browser.texts("#total")[0].replace(",", "")) == len(rows) > 100
    assert len(browser.texts("tr.row")) == 50 and set(browser.texts("tr.row td.status")) == {"accepted", "rejected"}

    browser.eval("document.querySelector('select[name=status]').value = 'rejected'")
    browser.eval("document.querySelector('select[name=stage]').value = 'format'")
    browser.act("document.querySelector('form.filters button').click()")
    format_rows = [r for r in rows if r["stage"] == "format"]
    assert "status=rejected" in browser.url() and "stage=format" in browser.url()
    assert int(browser.texts("#total")[0]) == len(format_rows) > 0
    assert set(browser.texts("tr.row td.status")) == {"rejected"}
    assert len(browser.texts("tr.row")) == min(50, len(format_rows))

    # a generic reason, as the store counts them, chosen from the form's list
    key = reason_key("format", format_rows[0]["reason"])
    browser.goto(viewer.url + "v/1/rows")
    browser.eval(f"document.querySelector('select[name=reason]').value = {json.dumps(key)}")
    browser.act("document.querySelector('form.filters button').click()")
    assert int(browser.texts("#total")[0]) == sum(r["status"] == "rejected" and reason_key(r["stage"], r["reason"]) == key
                                                 for r in rows)

    # tool used, then free text with it: the form keeps both
    browser.goto(viewer.url + "v/1/rows")
    browser.eval("document.querySelector('select[name=tool]').value = 'get_order_details'")
    browser.eval("document.querySelector('input[name=q]').value = 'REFUND'")
    browser.act("document.querySelector('form.filters button').click()")
    want = [r for r in rows if "get_order_details" in _calls(r) and _mentions(r, "refund")]
    assert int(browser.texts("#total")[0]) == len(want) > 0
    assert all("refund" in s.lower() for s in browser.texts("td.snippet") if "(in tool-call arguments)" not in s)
    assert browser.problems() == []


def test_every_filter_counts_what_the_table_holds(dataset, viewer):
    rows = _read(dataset, 2)
    run_a = next(m for m in DatasetStore(dataset).versions() if m.run_id == "run-a").version
    reasons = {reason_key(r["stage"], r["reason"]) for r in rows if r["status"] == "rejected"}
    cases = [
        ({}, rows),
        ({"status": "accepted"}, [r for r in rows if r["status"] == "accepted"]),
        ({"stage": "dedup"}, [r for r in rows if r["stage"] == "dedup"]),
        ({"domain": "store", "kind": "blueprint", "generator": "blueprint"},
         [r for r in rows if (r["domain"], r["kind"], r["generator"]) == ("store", "blueprint", "blueprint")]),
        ({"tool": "cancel_pending_order"}, [r for r in rows if "cancel_pending_order" in _calls(r)]),
        ({"turns_min": 3, "turns_max": 4}, [r for r in rows if 3 <= r["num_turns"] <= 4]),
        ({"added": run_a}, [r for r in rows if r["run_id"] == "run-a"]),
        ({"after": run_a}, [r for r in rows if r["run_id"] != "run-a"]),
        ({"q": "gift card"}, [r for r in rows if _mentions(r, "gift card")]),
        ({"q": "<script>"}, [r for r in rows if _mentions(r, "<script>")]),
        ({"id": rows[5]["task_id"]}, [r for r in rows if rows[5]["task_id"] in (r["id"], r["task_id"], r["cluster_id"])]),
        *(({"reason": key}, [r for r in rows if r["status"] == "rejected" and reason_key(r["stage"], r["reason"]) == key])
          for key in sorted(reasons)[:6]),
    ]
    for params, want in cases:
        body = viewer.page(f"/v/2/rows?{urlencode(params)}")
        assert _total(body) == len(want), params
        shown = _rows(body)
        assert len(shown) == min(50, len(want)), params
        if "turns_min" in params:
            assert all(3 <= r["turns"] <= 4 for r in shown)
    form = re.search(r'<select name="reason">(.*?)</select>', viewer.page("/v/2/rows"), re.S).group(1)
    assert len(reasons) > 3 and {html.unescape(v) for v in re.findall(r'<option value="([^"]+)"', form)} == reasons
    # older versions are read as they were
    assert _total(viewer.page("/v/0/rows")) == len(_read(dataset, 0))


# -- the row page ----------------------------------------------------------------------------------------------


def test_row_page_shows_tool_calls_verdicts_and_the_failure(dataset, viewer, browser):
    rows = _read(dataset, 1)
    row = next(r for r in rows if r["stage"] == "format" and r["reason"].startswith("message "))
    failing = int(row["reason"].split()[1].rstrip(":"))
    browser.goto(viewer.url + "v/1/rows?" + urlencode({"status": "rejected", "stage": "format"}))
    link = f"/v/1/row/{quote(row['run_id'], safe='')}/{row['index']}?"
    browser.act(f"Array.from(document.querySelectorAll('a.open')).find(a => a.getAttribute('href').startsWith("
                f"{json.dumps(link)})).click()")
    assert urlsplit(browser.url()).path == link.rstrip("?")

    verdicts = json.loads(row["verdicts"])
    assert browser.texts("tr.verdict td:first-child") == [v["stage"] for v in verdicts]
    assert browser.texts("tr.verdict.fail td:nth-child(3)") == [row["reason"]]
    assert row["reason"] in browser.texts("#rejection")[0]

    calls = [c for m in row["messages"] for c in m["tool_calls"] or []]
    shown = browser.texts(".tool-call")
    assert len(shown) == len(calls) == row["num_tool_calls"] > 0
    for call, text in zip(calls, shown, strict=True):
        assert call["function"]["name"] in text and _arguments(call) in text
    assert browser.eval("document.querySelector('.bubble.failed').id") == f"m{failing}"
    after = len(row["messages"]) - failing - 1
    assert len(browser.texts(".after-failure .bubble")) == after  # folded after the failure, not lost
    assert browser.eval("document.querySelector('details.bubble.system').open") is False
    assert browser.texts("details.bubble.system")[0].count(row["messages"][0]["content"][:60]) == 1
    tool_results = [m for m in row["messages"] if m["role"] == "tool"]
    assert len(browser.texts(".bubble.tool")) == len(tool_results)
    task = json.loads(row["task"])
    assert browser.texts("ol.gold li") == [f"{a['name']}({json.dumps(a['arguments'], sort_keys=True)})"
                                           for a in task["gold_actions"]]
    assert browser.texts("ul.outputs li") == task["expected_outputs"]
    assert browser.problems() == []


def test_state_diff_shows_what_the_dialogue_missed(dataset, viewer):
    rows = _read(dataset, 1)
    row = next(r for r in rows if r["stage"] == "outcome")
    body = viewer.page(f"/v/1/row/{quote(row['run_id'], safe='')}/{row['index']}")
    assert "(reproduces the task's expected state hash)" in body and "(reproduces the row's final state hash)" in body
    assert 'class="differs"' in body  # an outcome reject: the dialogue's state is not the gold's
    accepted = next(r for r in rows if r["status"] == "accepted" and r["num_tool_calls"] > 4)
    body = viewer.page(f"/v/1/row/{quote(accepted['run_id'], safe='')}/{accepted['index']}")
    assert 'class="grid state"' in body or "No state changes" in body
    assert 'class="differs"' not in body
    synthesis = [r for r in rows if r["stage"] == "synthesis"]
    for r in synthesis[:1]:
        assert "No dialogue" in viewer.page(f"/v/1/row/{quote(r['run_id'], safe='')}/{r['index']}")


def test_dataset_text_renders_as_text(dataset, viewer, browser):
    rows = _read(dataset, 2)
    hostile = next(r for r in rows if r["run_id"] == "hostile")
    status, _, raw = viewer.get(f"/v/2/row/hostile/{hostile['index']}")
    assert status == 200 and "<script" not in raw and "<img" not in raw and raw.count("&lt;script&gt;") >= 4
    browser.goto(viewer.url + f"v/2/row/hostile/{hostile['index']}")
    assert browser.eval("document.scripts.length") == 0 and browser.eval("document.images.length") == 0
    assert any(t.endswith(f"{EVIL} please help") for t in browser.texts(".bubble.user"))
    assert any(EVIL in t for t in browser.texts(".bubble.tool"))
    assert any(json.dumps({"note": EVIL}) in t for t in browser.texts(".tool-call"))
    assert EVIL in browser.texts("#rejection")[0]
    browser.goto(viewer.url + "v/2/rows?q=" + quote("<script>"))
    assert browser.eval("document.scripts.length") == 0
    assert int(browser.texts("#total")[0]) == 3 and all(EVIL in s for s in browser.texts("td.snippet"))
    assert any(EVIL in t for t in browser.texts("td.reason"))
    assert browser.problems() == []


# -- version views -----------------------------------------------------------------------------------------------


def test_version_page_and_diff_show_the_manifests(dataset, viewer):
    store = DatasetStore(dataset)
    versions = store.versions()
    m = versions[1]
    body = viewer.page("/v/1")
    assert 'data-title="Filter funnel: rows left after each step"' in body and 'data-title="Rejections by reason"' in body
    shown = re.findall(r'<tr><td>([\d,]+)</td>\s*<td><a href="[^"]*reason=[^"]*">([^<]*)</a>', body)
    assert {html.unescape(k): int(n.replace(",", "")) for n, k in shown} == m.reasons
    assert 'data-group="usage"' not in body
    assert 'data-group="usage"' in viewer.page("/v/2")  # any numeric figure the manifest carries is shown

    a, b = versions[0].version, versions[2].version
    body = viewer.page(f"/diff?a={a}&b={b}")
    old, new = _read(dataset, a), _read(dataset, b)
    keys = {(r["run_id"], r["index"]) for r in old}
    added = [r for r in new if (r["run_id"], r["index"]) not in keys]
    counts = re.search(r'<tr class="added"><td>rows added</td>\s*<td><a [^>]*>([\d,]+)</a></td>\s*<td><a [^>]*>([\d,]+)</a>',
                       body)
    assert (int(counts.group(1)), int(counts.group(2))) == (sum(r["status"] == "accepted" for r in added),
                                                            sum(r["status"] == "rejected" for r in added))
    reasons = re.findall(r'<tr><td>([\d,]+)</td><td><a href="[^"]*after=\d+&amp;reason=[^"]*">', body)
    assert sum(int(n) for n in reasons) == sum(r["status"] == "rejected" for r in added)
    side = re.search(r'data-group="totals">(.*?)</table>', body, re.S).group(1)
    assert re.search(rf"<td>tasks</td><td class=\"num\">{versions[0].tasks}</td><td class=\"num\">{versions[2].tasks}</td>",
                     side)
    # the diff links to exactly the rows it counts
    link = html.unescape(re.search(r'<a href="(/v/\d+/rows\?status=rejected&amp;after=\d+)"', body).group(1))
    assert _total(viewer.page(link)) == sum(r["status"] == "rejected" for r in added)


# -- safety and errors -------------------------------------------------------------------------------------------


def test_headers_and_hosts(viewer):
    status, headers, body = viewer.get("/v/1/rows")
    assert status == 200 and "<script" not in body
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp and "script-src" not in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert viewer.get("/v/1", host="evil.example")[0] == 400  # DNS rebinding: a page under another name
    assert viewer.get("/v/1", host=f"localhost:{viewer.port}")[0] == 200
    assert viewer.get("/v/1", host="tunnel.example")[0] == 200  # named with --allow-host
    assert viewer.get("/v/9")[0] == 404 and "no version 9" in viewer.get("/v/9")[2]
    assert viewer.get("/v/1/rows?turns_min=lots")[0] == 400
    assert viewer.get("/v/1/row/nope/1")[0] == 404
    # bound to loopback only
    with socket.socket() as s:
        s.settimeout(2)
        outside = socket.gethostbyname(socket.gethostname())
        if not outside.startswith("127."):
            assert s.connect_ex((outside, viewer.port)) != 0


def _nodelay_of_accepted(listener: socket.socket) -> int:
    """TCP_NODELAY on the socket an asyncio server (uvicorn's, here bare) accepts from ``listener``."""
    import asyncio

    seen: list[int] = []

    class Report(asyncio.Protocol):
        def connection_made(self, transport):
            seen.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def accept_one() -> None:
        server = await asyncio.get_running_loop().create_server(Report, sock=listener)
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        await reader.read()  # until the server closes it
        writer.close()
        server.close()

    asyncio.run(accept_one())
    return seen[0]


def test_the_listener_gives_every_connection_tcp_nodelay():
    """``bind`` (the viewer's and ``trajforge env serve``'s listener) names IPPROTO_TCP: a listener left at proto 0
    (``socket.socket()``) hands asyncio connections it does not set TCP_NODELAY on, and every keep-alive
    reply after the first then waits ~40 ms for the client's delayed ACK."""
    from pipelines.viewer.server import bind

    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen(1)
    assert _nodelay_of_accepted(plain) == 0  # the trap this guards against, as the kernel and asyncio have it
    assert _nodelay_of_accepted(bind(0)) != 0


def test_bad_input_is_one_line_and_exit_2(dataset, tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    (tmp_path / "first-run" / "_staging" / "run-1").mkdir(parents=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = [([str(tmp_path / "plain")], "no trajforge dataset here"),
                 ([str(tmp_path / "first-run")], "no committed version yet"),
                 ([str(dataset), "--version", "7"], "no version 7; readable versions: 0, 1, 2"),
                 ([str(dataset), "--port", str(port)], f"--port {port}: already in use")]
        for argv, says in cases:
            assert main(["view", *argv]) == 2
            err = capsys.readouterr().err
            assert says in err and len(err.strip().splitlines()) == 1, err


def test_a_running_generate_is_viewed_at_its_last_committed_version(dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    store = DatasetStore(root)
    before = [m.version for m in store.versions()]
    server = Viewer(root)
    try:
        run = threading.Thread(target=run_generate, args=(_config(9, num_tasks=160), root, "run-live"))
        run.start()
        seen = set()
        while run.is_alive():
            committed = [m.version for m in store.versions()]
            status, headers, body = server.get("/")
            listed = [int(v) for v in re.findall(r'<td><a href="/v/(\d+)">', server.page("/versions"))]
            if [m.version for m in store.versions()] == committed:  # no commit landed while we asked
                assert status == 307 and headers["location"] == f"/v/{committed[-1]}"
                assert sorted(listed) == committed
                seen.add(tuple(committed))
                if (root / "_staging" / "run-live").exists():
                    assert _total(server.page(f"/v/{committed[-1]}/rows")) == len(_read(root, committed[-1]))
            time.sleep(0.2)
        run.join()
        assert tuple(before) in seen  # asked while the run was going, and saw the last committed version
        after = [m.version for m in store.versions()]
        assert len(after) == len(before) + 1
        assert server.get("/")[1]["location"] == f"/v/{after[-1]}"
    finally:
        server.stop()


# -- fault attribution and paging ------------------------------------------------------------------------------


def test_who_failed_filter_when_rows_carry_it_and_not_when_they_do_not(dataset, viewer, browser, tmp_path):
    rows = _read(dataset, 1)
    faults = {r["fault"] for r in rows if r["fault"]}
    assert faults and all((r["fault"] is None) == (r["status"] == "accepted") for r in rows)
    browser.goto(viewer.url + "v/1/rows")
    options = browser.eval("Array.from(document.querySelectorAll('select[name=fault] option')).map(o => o.value)")
    assert options == ["", *sorted(faults)]
    chosen = sorted(faults)[0]
    browser.eval(f"document.querySelector('select[name=fault]').value = {json.dumps(chosen)}")
    browser.act("document.querySelector('form.filters button').click()")
    assert int(browser.texts("#total")[0].replace(",", "")) == sum(r["fault"] == chosen for r in rows)
    cells = browser.eval("Array.from(document.querySelectorAll('tr.row')).map(r => r.children[9].textContent)")
    assert set(cells) == {chosen}

    # a dataset written before rows carried ``fault``: no such filter, and its pages still work
    n = without_fault(dataset, tmp_path / "older")
    server = Viewer(tmp_path / "older")
    try:
        browser.goto(server.url + "v/0/rows?status=rejected")
        assert browser.eval("document.querySelector('select[name=fault]')") is None
        assert int(browser.texts("#total")[0].replace(",", "")) < n
        assert server.get("/v/0/rows?fault=assistant")[0] == 400
        browser.act("document.querySelector('a.open').click()")
        assert browser.texts("tr.verdict") and browser.problems() == []
    finally:
        server.stop()


def test_paging_in_chromium(dataset, tmp_path, browser):
    big = tmp_path / "big"
    replicate(dataset, big, rows_per_version=1537, versions=2)
    server = Viewer(big)
    try:
        rows = _read(big, 1)
        browser.goto(server.url + "v/1/rows")
        assert int(browser.texts("#total")[0].replace(",", "")) == len(rows) == 3074
        first = browser.texts("a.open")
        assert first[:2] == ["v1 #0", "v1 #1"] and len(first) == 50
        browser.act("document.querySelector('a.next').click()")
        second = browser.texts("a.open")
        assert second[0] == "v1 #50" and not set(first) & set(second)
        browser.act("document.querySelector('a.last').click()")
        last = browser.texts("a.open")
        assert len(last) == 3074 - 61 * 50 and last[-1] == "v0 #1536" and "page=62" in browser.url()
        browser.act("document.querySelector('a.prev').click()")
        assert browser.texts("nav.pager .at")[0] == "page 61 of 62"
        # paging keeps the filters
        browser.goto(server.url + "v/1/rows?status=rejected")
        browser.act("document.querySelector('a.next').click()")
        assert "status=rejected" in browser.url() and set(browser.texts("tr.row td.status")) == {"rejected"}
        assert browser.problems() == []
    finally:
        server.stop()
    # the copies carry the same row ids (as a re-run of one config does): a diff by row key still counts them
    diff = diff_versions(DatasetStore(big), 0, 1)
    assert sum(diff.added.values()) == 1537 and sum(diff.added_reasons.values()) == diff.added["rejected"]


def test_chat_folds_reasoning_when_messages_carry_it():
    """``reasoning_content`` (a model's thinking, kept by model backends that return it) is folded, and escaped."""
    from pipelines.pages import environment

    chat = environment().from_string('{% from "chat.html" import dialogue %}{{ dialogue(messages, failure) }}')
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Done.", "reasoning_content": f"think {EVIL}", "tool_calls": None},
                {"role": "assistant", "content": "Bye."}]
    page = chat.render(messages=messages, failure={"stage": "judge", "reason": "rude", "at": 1})
    assert '<details class="reasoning"><summary>reasoning\n(' in page and f"think {html.escape(EVIL, quote=False)}" in page
    assert page.count('<details class="reasoning">') == 1 and "<script" not in page
    assert 'class="bubble failed assistant" id="m1"' in page and "1 more message(s) after the failure" in page
