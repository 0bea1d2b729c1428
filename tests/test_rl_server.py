"""``trajforge env serve`` as a trainer meets it: a separate process on 127.0.0.1, many sessions, hostile input.

The rows are the legacy dataset's (main's store and KG runs) exported by this
code; the server is started by its CLI and stopped with Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipelines.export import ExportOptions, export_version

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from rl_env import fuzz  # noqa: E402

DATA = Path(__file__).parent / "data"


class EnvServerProcess:
    def __init__(self, source: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "env", "serve", str(source),
                                      "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = [self.proc.stdout.readline(), self.proc.stdout.readline()]
        found = re.search(r"http://127\.0\.0\.1:\d+", "".join(lines))
        if not found:
            self.proc.kill()
            raise AssertionError(f"no URL printed: {lines} {self.proc.stderr.read()[-2000:]}")
        self.url = found.group(0)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlserve")
    shutil.copytree(DATA / "legacy-dataset", root / "ds")
    export_version(root / "ds", root / "hf", ExportOptions(test_ratio=0.0))
    sft = {}
    for f in sorted((root / "hf" / "data" / "sft").glob("*.parquet")):
        import pyarrow.parquet as pq
        for r in pq.read_table(f).to_pylist():
            sft[r["id"]] = [json.loads(m) for m in r["messages"]]
    return root, sft


@pytest.fixture(scope="module")
def server(exported):
    root, _ = exported
    proc = EnvServerProcess(root / "ds")  # a dataset: exported by the server itself, newest version
    yield proc
    assert proc.stop() == 0


async def _session(client: httpx.AsyncClient, task: dict, script: list[dict] | None) -> dict:
    """One session: reset on ``task``, step ``script``'s assistant turns (or say nothing useful), read the reward."""
    r = await client.post("/sessions", json={"task_id": task["id"]})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    moves = [m for m in script if m["role"] == "assistant"] if script else \
        [{"role": "assistant", "content": "Is there anything else I can help you with?"}] * 40
    obs = {"done": False}
    for m in moves:
        obs = (await client.post(f"/sessions/{sid}/step", json={"message": m})).json()
        await asyncio.sleep(0)  # let the other sessions interleave
        if obs["done"]:
            break
    state = (await client.get(f"/sessions/{sid}/state")).json()
    reward = (await client.get(f"/sessions/{sid}/reward")).json()
    assert (await client.delete(f"/sessions/{sid}")).status_code == 200
    return {"task": task["id"], "gold": script is not None, "done": obs["done"], "reward": reward,
            "state_hash": state["state_hash"], "messages": state["messages"]}


def test_64_concurrent_sessions_each_earn_their_own_reward(server, exported):
    _, sft = exported
    tasks = httpx.get(f"{server.url}/tasks").json()
    assert len(tasks) >= 10 and {t["kind"] for t in tasks} == {"blueprint", "kg_question"}

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=120,
                                     limits=httpx.Limits(max_connections=64)) as client:
            jobs = [_session(client, tasks[n % len(tasks)], sft[tasks[n % len(tasks)]["id"]] if n % 2 == 0 else None)
                    for n in range(64)]
            return await asyncio.gather(*jobs)

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    gold = [r for r in results if r["gold"]]
    assert len(gold) == 32 and all(r["done"] and r["reward"]["value"] == 1.0 for r in gold), \
        [r["reward"] for r in gold if r["reward"]["value"] != 1.0][:3]
    empty = [r for r in results if not r["gold"]]
    assert all(r["reward"]["value"] == 0.0 and r["reward"]["reason"] for r in empty)
    # no cross-talk: sessions on one task end in the state their own moves made
    by_task = {}
    for r in results:
        by_task.setdefault((r["task"], r["gold"]), set()).add(r["state_hash"])
    assert all(len(hashes) == 1 for hashes in by_task.values()), by_task
    assert all(not any(m.get("content") == "Is there anything else I can help you with?" for m in r["messages"]
                       if m["role"] == "assistant") for r in gold)
    assert httpx.get(f"{server.url}/health").json()["sessions"] == 0
    print(f"env serve: 64 concurrent sessions, {sum(len(r['messages']) for r in results)} messages in {elapsed:.1f}s")


def test_the_server_survives_random_actions_and_leaks_no_session(server, exported):
    """1,000 random actions here; bench/rl_env.py runs the same fuzz with 10,000."""
    _, sft = exported
    started = time.monotonic()
    statuses, left = asyncio.run(fuzz(server.url, 1_000))
    elapsed = time.monotonic() - started
    assert sum(statuses.values()) == 1_000
    assert set(statuses) <= {200, 400, 404, 413}, statuses  # never a 500: every action answered
    assert statuses[200] > 500 and statuses[400] and statuses[404], statuses
    assert left == 0
    # and the server still serves a full, correct episode
    tasks = httpx.get(f"{server.url}/tasks").json()
    task = next(t for t in tasks if t["kind"] == "blueprint")
    result = asyncio.run(_one(server.url, task, sft[task["id"]]))
    assert result["reward"]["value"] == 1.0
    print(f"env serve fuzz: 1000 actions in {elapsed:.1f}s ({1_000 / elapsed:.0f}/s): {statuses}")


async def _one(url: str, task: dict, script: list[dict]) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return await _session(client, task, script)


def test_idle_sessions_expire_and_limits_hold(exported):
    root, _ = exported
    proc = EnvServerProcess(root / "hf", "--idle-timeout", "1", "--max-sessions", "2", "--max-steps", "2")
    try:
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            first = client.post("/sessions", json={"index": 0}).json()["session_id"]
            client.post("/sessions", json={"index": 1})
            full = client.post("/sessions", json={"index": 2})
            assert full.status_code == 503 and "2 sessions open" in full.json()["error"]
            time.sleep(1.5)  # both go silent: the next reset finds them expired
            second = client.post("/sessions", json={"index": 2}).json()["session_id"]
            assert client.get(f"/sessions/{first}/state").status_code == 404
            big = client.post(f"/sessions/{second}/step", content=b"x" * ((1 << 20) + 1))
            assert big.status_code == 413 and big.json()["error"] == "request body over 1048576 bytes"
            deep = client.post(f"/sessions/{second}/step", content=b"[" * 100_000)
            assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
            say = {"message": {"role": "assistant", "content": "Could you tell me more?"}}
            assert not client.post(f"/sessions/{second}/step", json=say).json()["done"]
            client.post(f"/sessions/{second}/step", json=say)
            over = client.post(f"/sessions/{second}/step", json=say).json()
            assert over["done"] and over["error"] == "episode is over (more than 2 steps); reset to start one"
    finally:
        assert proc.stop() == 0


def test_an_episode_ends_at_its_time_limit_however_busy(exported):
    """A session that keeps stepping is still ended by ``max_episode_s`` (the idle timeout never fires for it)."""
    from starlette.testclient import TestClient

    from pipelines.rl.server import EnvServer, load_rows

    root, _ = exported
    server = EnvServer(load_rows(root / "hf"), root / "hf", max_episode_s=0.5)
    say = {"message": {"role": "assistant", "content": "Could you tell me more?"}}
    with TestClient(server.app()) as client:
        sid = client.post("/sessions", json={"index": 0}).json()["session_id"]
        assert not client.post(f"/sessions/{sid}/step", json=say).json()["done"]
        time.sleep(0.6)
        over = client.post(f"/sessions/{sid}/step", json=say).json()
        assert over["done"] and over["error"] == "episode is over (longer than 0.5s); reset to start one"
        assert client.post(f"/sessions/{sid}/reset").status_code == 200  # a reset starts a new episode and clock
        assert not client.post(f"/sessions/{sid}/step", json=say).json()["done"]


def test_bad_source_is_one_line_and_exit_2(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pipelines.cli", "env", "serve", str(tmp_path), "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip() == (f"trajforge: error: {tmp_path}: neither an export folder (data/rl/) nor a dataset "
                                  f"(_delta_log/)")


async def _ws_session(url: str, task: dict, script: list[dict] | None) -> dict:
    """One session on one WebSocket (a real client: the ``websockets`` package): reset, step, state, reward."""
    from websockets.asyncio.client import connect

    async with connect(url.replace("http://", "ws://") + "/ws", max_size=None) as ws:
        async def send(frame: dict) -> dict:
            await ws.send(json.dumps(frame))
            return json.loads(await ws.recv())

        opened = await send({"type": "reset", "task_id": task["id"]})
        assert opened["type"] == "observation" and opened["task_id"] and opened["tools"], opened
        moves = [m for m in script if m["role"] == "assistant"] if script else \
            [{"role": "assistant", "content": "Is there anything else I can help you with?"}] * 40
        obs = {"done": False}
        for m in moves:
            obs = await send({"type": "step", "message": m})
            assert obs["type"] == "observation", obs
            if obs["done"]:
                break
        state = await send({"type": "state"})
        reward = await send({"type": "reward"})
        closed = await send({"type": "close"})
        assert closed["type"] == "closed" and closed["session_id"] == opened["session_id"]
    return {"task": task["id"], "gold": script is not None, "done": obs["done"], "reward": reward,
            "state_hash": state["state_hash"], "messages": state["messages"]}


def test_websocket_sessions_run_concurrently_isolated_and_end_with_their_socket(server, exported):
    _, sft = exported
    tasks = httpx.get(f"{server.url}/tasks").json()

    async def run():
        return await asyncio.gather(*[_ws_session(server.url, tasks[n % len(tasks)],
                                                  sft[tasks[n % len(tasks)]["id"]] if n % 2 == 0 else None)
                                      for n in range(24)])

    results = asyncio.run(run())
    gold = [r for r in results if r["gold"]]
    assert len(gold) == 12 and all(r["done"] and r["reward"]["type"] == "reward" and r["reward"]["value"] == 1.0
                                   for r in gold), [r["reward"] for r in gold if r["reward"].get("value") != 1.0][:3]
    assert all(r["reward"]["value"] == 0.0 and r["reward"]["reason"] for r in results if not r["gold"])
    by_task = {}
    for r in results:
        by_task.setdefault((r["task"], r["gold"]), set()).add(r["state_hash"])
    assert all(len(hashes) == 1 for hashes in by_task.values()), by_task
    assert httpx.get(f"{server.url}/health").json()["sessions"] == 0  # every socket closed: every session gone


def test_a_bad_websocket_frame_gets_an_error_frame_and_the_connection_lives(server):
    from websockets.asyncio.client import connect

    async def run():
        url = server.url.replace("http://", "ws://") + "/ws"
        async with connect(url, max_size=None) as ws:
            async def send(frame: str | bytes) -> dict:
                await ws.send(frame)
                return json.loads(await ws.recv())

            errors = [await send("{not json"), await send("[1, 2]"), await send(json.dumps({"type": "dance"})),
                      await send(json.dumps({"type": "step", "message": {"content": "hi"}})),  # before any reset
                      await send(json.dumps({"type": "reset", "index": 10_000})),
                      await send(json.dumps({"type": "reset", "nope": 1})),
                      await send(b"\xff\xfe"), await send("x" * ((1 << 20) + 1))]
            opened = await send(json.dumps({"type": "reset", "index": 0}))
            more = [await send(json.dumps({"type": "step"})), await send(json.dumps({"type": "state", "x": 1})),
                    await send(json.dumps({"type": "step", "message": {"role": "user", "content": "hi"}}))]
            live = httpx.get(f"{server.url}/health").json()["sessions"]
            again = await send(json.dumps({"type": "reset"}))  # starts the same session over
            return errors, opened, more, live, again
        # the socket closed without a close frame from us: the server dropped the session anyway

    errors, opened, more, live, again = asyncio.run(run())
    assert [e["type"] for e in errors] == ["error"] * len(errors), errors
    assert [e["status"] for e in errors] == [400, 400, 400, 409, 400, 400, 400, 413], errors
    assert all(len(e["error"].splitlines()) == 1 for e in errors)
    assert opened["type"] == "observation" and live == 1
    assert [m["type"] for m in more] == ["error", "error", "observation"]
    assert more[2]["error"] and not more[2]["done"]  # the environment's own answer: not an assistant message
    assert again["session_id"] == opened["session_id"] and again["messages"] == opened["messages"]
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/health").json()["sessions"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{server.url}/health").json()["sessions"] == 0
