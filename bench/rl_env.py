"""RL environments: replay throughput, served sessions per second, and a 10,000-action fuzz of the server.

One command (``python bench/rl_env.py``), on the legacy dataset's rows
(main's store and KG runs) exported by this code:

- replay: every accepted row's own assistant turns through ``TaskEnvironment``
  in this process, reward computed (rows/s; every reward must be 1.0);
- serve: ``trajforge env serve`` in its own process, 64 concurrent HTTP
  sessions each replaying a row to its reward (sessions/s), and the same 64
  over WebSocket (``/ws``, one connection per session), side by side; and one
  client's calls one after another on a keep-alive connection (ms per call);
- fuzz: 10,000 random actions (bad JSON, unknown sessions and tools, wrong
  roles, oversized bodies, resets, deletes) from 16 concurrent clients; the
  server must answer every one without a 5xx and end with no session open.

``python bench/rl_env.py --export FOLDER`` instead replays every accepted row
of an export (``make demo``'s ``out/demo-hf``, say) once and counts the rows
that earn reward 1.0. ``fuzz`` is also what tests/test_rl_server.py runs, with
fewer actions.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _action(rng: random.Random, sids: list[str], tasks: list[dict]) -> tuple[str, str, bytes | None]:
    sid = rng.choice(sids) if sids and rng.random() < 0.9 else rng.choice(["nope", "..%2Fx", "0" * 32])
    roll = rng.random()
    if roll < 0.06:
        body = rng.choice([{"index": rng.randrange(-2, len(tasks) + 2)}, {"task_id": rng.choice(tasks)["id"]},
                           {"task_id": "zz"}, {"index": "1"}, {"bogus": 1}, b"{not json", b"[]"])
        return "POST", "/sessions", body if isinstance(body, bytes) else json.dumps(body).encode()
    if roll < 0.07:
        return "DELETE", f"/sessions/{sid}", None
    if roll < 0.10:
        return "GET", f"/sessions/{sid}/{rng.choice(['state', 'reward'])}", None
    if roll < 0.11:
        return "POST", f"/sessions/{sid}/reset", None
    if roll < 0.12:
        return "POST", f"/sessions/{sid}/step", rng.choice([b"x" * ((1 << 20) + 1),  # over the body limit
                                                             b"[" * 100_000])  # nested past any parser
    junk = [None, 0, "text", [], {"a": 1}, "{", "[1,2]", "x" * 5000]
    tools = ["get_order_details", "cancel_pending_order", "search_entities", "get_entity", "nope", "", "x" * 70]
    args = rng.choice([{"order_id": "#W" + str(rng.randrange(10**7))}, {"query": rng.choice(junk)},
                       rng.choice(junk), {"entity_id": "country:FRA"}, {}])
    message = rng.choice([
        {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": rng.choice(tools), "arguments": args}}]},
        {"role": "assistant", "content": rng.choice(["yes", "Shall I proceed?", "The answer is Paris.", "",
                                                      "your email please"])},
        {"role": rng.choice(["user", "tool", "system"]), "content": "x"},
        rng.choice(junk),
        {"role": "assistant", "tool_calls": rng.choice(junk)},
    ])
    return "POST", f"/sessions/{sid}/step", json.dumps(rng.choice([{"message": message}] * 9 + [{"msg": message}])).encode()


async def fuzz(url: str, actions: int, workers: int = 16, seed: int = 0) -> tuple[dict[int, int], int]:
    """``actions`` random requests from ``workers`` clients; the status counts, and the sessions left after
    every session the fuzz made is deleted (0 when none leaked)."""
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    made: set[str] = set()
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        tasks = (await client.get("/tasks")).json()
        sids = []
        for _ in range(20):
            sids.append((await client.post("/sessions", json={"index": rng.randrange(len(tasks))})).json()["session_id"])
        made.update(sids)

        async def worker(n: int) -> None:
            for _ in range(n):
                method, path, content = _action(rng, sids, tasks)
                r = await client.request(method, path, content=content)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if path == "/sessions" and r.status_code == 200:
                    sids.append(r.json()["session_id"])
                    made.add(sids[-1])
                elif method == "DELETE" and r.status_code == 200:
                    sids.remove(path.rsplit("/", 1)[1])

        share = [actions // workers + (i < actions % workers) for i in range(workers)]
        await asyncio.gather(*(worker(n) for n in share))
        for sid in made:
            await client.delete(f"/sessions/{sid}")
        left = (await client.get("/health")).json()["sessions"]
    return statuses, left


def _export(tmp: Path) -> tuple[Path, dict[str, list[dict]]]:
    import pyarrow.parquet as pq

    from pipelines.export import ExportOptions, export_version

    shutil.copytree(ROOT / "tests" / "data" / "legacy-dataset", tmp / "ds")
    export_version(tmp / "ds", tmp / "hf", ExportOptions(test_ratio=0.0))
    sft = {r["id"]: [json.loads(m) for m in r["messages"]]
           for f in sorted((tmp / "hf" / "data" / "sft").glob("*.parquet")) for r in pq.read_table(f).to_pylist()}
    return tmp / "hf", sft


def _replay(folder: Path, sft: dict[str, list[dict]], seconds: float = 3.0) -> float:
    from pipelines.rl import TaskEnvironment
    from pipelines.rl.server import load_rows

    rows = load_rows(folder)
    for row in rows:  # warm up: each domain's base data is built once per process
        TaskEnvironment.from_row(row).reset()
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        for row in rows:
            env = TaskEnvironment.from_row(row)
            env.reset()
            for m in sft[row["id"]]:
                if m["role"] == "assistant":
                    env.step(m)
            assert env.reward().value == 1.0, row["id"]
            done += 1
    return done / (time.monotonic() - started)


async def _sessions(url: str, sft: dict[str, list[dict]], n: int = 64) -> float:
    # aiohttp, not httpx: at 64 concurrent sessions httpx's own cost capped this figure near 11 sessions/s,
    # while 8 plain http.client threads reached ~90 (the server was never the limit)
    import aiohttp

    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=120),
                                     connector=aiohttp.TCPConnector(limit=n)) as client:
        async def call(method: str, path: str, body: dict | None = None) -> dict:
            async with client.request(method, path, json=body) as response:
                return await response.json()

        tasks = await call("GET", "/tasks")

        async def one(task: dict) -> float:
            sid = (await call("POST", "/sessions", {"task_id": task["id"]}))["session_id"]
            for m in sft[task["id"]]:
                if m["role"] == "assistant":
                    await call("POST", f"/sessions/{sid}/step", {"message": m})
            value = (await call("GET", f"/sessions/{sid}/reward"))["value"]
            await call("DELETE", f"/sessions/{sid}")
            return value

        started = time.monotonic()
        values = await asyncio.gather(*(one(tasks[i % len(tasks)]) for i in range(n)))
        assert all(v == 1.0 for v in values), values
        return n / (time.monotonic() - started)


def _sequential_ms(url: str, sft: dict[str, list[dict]], episodes: int = 5) -> float:
    """A trainer's own loop: one client, one keep-alive connection, calls one after another (median ms per call).

    What a listener without TCP_NODELAY cost: ~40 ms per call, the client's delayed ACK (pipelines/viewer/server.py).
    """
    import http.client

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def call(method: str, path: str, body: dict | None = None) -> dict:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"content-type": "application/json"})
        return json.loads(conn.getresponse().read())

    per_call = []
    for task in call("GET", "/tasks")[:episodes]:
        started, calls = time.perf_counter(), 1
        sid = call("POST", "/sessions", {"task_id": task["id"]})["session_id"]
        for m in sft[task["id"]]:
            if m["role"] == "assistant":
                call("POST", f"/sessions/{sid}/step", {"message": m})
                calls += 1
        per_call.append((time.perf_counter() - started) / calls * 1000)
        call("DELETE", f"/sessions/{sid}")
    conn.close()
    return sorted(per_call)[len(per_call) // 2]


async def _ws_sessions(url: str, sft: dict[str, list[dict]], n: int = 64) -> float:
    from websockets.asyncio.client import connect

    async with httpx.AsyncClient(base_url=url) as client:
        tasks = (await client.get("/tasks")).json()

    async def one(task: dict) -> float:
        async with connect(url.replace("http://", "ws://") + "/ws", max_size=None) as ws:
            async def send(frame: dict) -> dict:
                await ws.send(json.dumps(frame))
                return json.loads(await ws.recv())

            await send({"type": "reset", "task_id": task["id"]})
            for m in sft[task["id"]]:
                if m["role"] == "assistant":
                    await send({"type": "step", "message": m})
            return (await send({"type": "reward"}))["value"]

    started = time.monotonic()
    values = await asyncio.gather(*(one(tasks[i % len(tasks)]) for i in range(n)))
    assert all(v == 1.0 for v in values), values
    return n / (time.monotonic() - started)


def fidelity(folder: Path) -> None:
    """Every accepted row of an export folder (``trajforge export``) replayed once: how many earn reward 1.0."""
    import pyarrow.parquet as pq

    from pipelines.rl import TaskEnvironment
    from pipelines.rl.server import load_rows

    rows = load_rows(folder)
    sft = {r["id"]: [json.loads(m) for m in r["messages"]]
           for f in sorted((folder / "data" / "sft").glob("*.parquet")) for r in pq.read_table(f).to_pylist()}
    ones, failed, started = 0, [], time.monotonic()
    for row in rows:
        env = TaskEnvironment.from_row(row, root=folder)
        env.reset()
        for m in sft[row["id"]]:
            if m["role"] == "assistant":
                env.step(m)
        reward = env.reward()
        if reward.value == 1.0 and env.done:
            ones += 1
        else:
            failed.append(f"{row['id']}: {reward.reason or env.end_reason}")
    rate = len(rows) / (time.monotonic() - started)
    print("\n".join(failed[:5]))
    print(f"replay_fidelity: {ones}/{len(rows)} accepted rows of {folder} earn reward 1.0 ({rate:.1f} rows/s)")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--export":
        return fidelity(Path(sys.argv[2]))
    with tempfile.TemporaryDirectory() as tmp:
        folder, sft = _export(Path(tmp))
        print(f"replay: {_replay(folder, sft):.1f} rows/s (TaskEnvironment in process, reward 1.0 on every row)")
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "env", "serve", str(folder), "--port", "0"],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline() + proc.stdout.readline()).group(0)
            asyncio.run(_sessions(url, sft, n=16))  # warm up: the server builds each domain's base data once
            http = asyncio.run(_sessions(url, sft))
            ws = asyncio.run(_ws_sessions(url, sft))
            print(f"serve: {http:.1f} sessions/s over HTTP, {ws:.1f} over WebSocket ({ws / http:.2f}x; "
                  f"64 concurrent gold replays each); one client's keep-alive loop: "
                  f"{_sequential_ms(url, sft):.1f} ms per call")
            started = time.monotonic()
            statuses, left = asyncio.run(fuzz(url, 10_000))
            elapsed = time.monotonic() - started
            assert set(statuses) <= {200, 400, 404, 413} and left == 0, (statuses, left)
            print(f"fuzz: 10000 actions in {elapsed:.1f}s, statuses {dict(sorted(statuses.items()))}, "
                  f"sessions left {left}")
            print(f"env_fuzz_actions_per_s: {10_000 / elapsed:.0f}")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
