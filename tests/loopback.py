"""A real OpenAI-compatible HTTP server on 127.0.0.1 whose replies a test scripts.

The server is uvicorn + Starlette, so the client side (the aiohttp model client,
the shared endpoint layer, the agents) is exercised over real sockets. What it
answers is decided by a *brain*: a function from the request body to a
``Reply`` (a message, an HTTP error with headers, a delay). ``TranscriptBrain``
plays both the user simulator and the assistant by replaying offline
transcripts, so a model-mode run can be checked turn for turn.

Also runnable as a process (the benchmark's server; ``tests/vllm_standin.py``
serves it behind ``vllm serve``'s real command line)::

    python tests/loopback.py --port P [--latency S] [--config FILE] [--pid-file F]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.viewer.server import bind  # noqa: E402 - after ROOT is importable (run as a script)


@dataclass
class Reply:
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    error: str = ""
    finish_reason: str | None = None  # default: "tool_calls" with calls, else "stop"; "length" plays a cut-off reply
    reasoning: str | None = None  # sent as vLLM sends it (``reasoning``), the way reasoning parsers do


Brain = Callable[[dict[str, Any]], Reply]


def _json(value: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply serialized by orjson: the benchmark's server shares the machine's CPUs with the client it
    measures, so what it spends per request is taken from the client."""
    return Response(orjson.dumps(value), status_code=status_code, headers=headers, media_type="application/json")


def request_key(messages: list[dict[str, Any]]) -> str:
    """A request's messages as one string (sorted keys): how ``arrivals`` and a brain's faults name a request."""
    return orjson.dumps(messages, option=orjson.OPT_SORT_KEYS).decode()


def echo_brain(body: dict[str, Any]) -> Reply:
    last = body["messages"][-1].get("content") or ""
    return Reply(content=f"echo: {last}")


class LoopbackServer:
    """Serve ``brain`` on 127.0.0.1; counts requests and measures how many are in flight.

    ``capacity`` K plays a server that admits only K requests at once and answers 429 (with ``retry_after``,
    when given) to any request above that; ``slots`` K one that works on K at once and queues the rest, so its
    latency grows with load (vLLM beyond ``--max-num-seqs``). ``GET /stats`` reports what it saw, including
    ``busy_area``, the integral over time of requests being worked on (divide by K × seconds: utilization).
    """

    def __init__(self, brain: Brain = echo_brain, latency_s: float = 0.0, port: int = 0,
                 capacity: int | None = None, retry_after: str | None = None, slots: int | None = None,
                 models: tuple[str, ...] = ("loopback", "loop-model")) -> None:
        self.brain = brain
        self.models = list(models)  # what GET /v1/models lists (preflight checks a run's model is among them)
        self.latency_s = latency_s
        self.port = port
        self.capacity, self.retry_after, self.slots = capacity, retry_after, slots
        self._slots: asyncio.Semaphore | None = None  # made on the server's own loop
        self.working = 0
        self.busy_area = 0.0
        self._busy_since = time.monotonic()
        self.first_work: float | None = None  # when the first request started being worked on
        self.last_work: float | None = None  # when the latest one ended
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.tokens = Counter()
        self.billed: list[tuple[int, int, float]] = []  # (prompt, completion, delay) per 200 reply
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[tuple[float, str]] = []  # (time, request key) for backoff checks
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- HTTP ---------------------------------------------------------------
    def _work(self, delta: int) -> None:
        """Requests being worked on, integrated over time (under the lock)."""
        now = time.monotonic()
        self.busy_area += self.working * (now - self._busy_since)
        self._busy_since = now
        self.working += delta
        if delta > 0 and self.first_work is None:
            self.first_work = now
        elif delta < 0:
            self.last_work = now

    async def _completions(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        with self._lock:
            self.requests += 1
            if self.capacity is not None and self.in_flight >= self.capacity:
                self.statuses[429] += 1
                self.arrivals.append((time.monotonic(), ""))
                return _json({"error": {"message": f"over capacity ({self.capacity} in flight)"}},
                             status_code=429, headers={"Retry-After": self.retry_after} if self.retry_after else {})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.arrivals.append((time.monotonic(), request_key(body["messages"])))
        if self.slots is not None and self._slots is None:
            self._slots = asyncio.Semaphore(self.slots)
        try:
            if self._slots is not None:
                await self._slots.acquire()
            with self._lock:
                self._work(+1)
            try:
                reply = self.brain(body)
                delay = self.latency_s + reply.delay_s
                if delay:
                    await asyncio.sleep(delay)
            finally:
                with self._lock:
                    self._work(-1)
                if self._slots is not None:
                    self._slots.release()
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.statuses[reply.status] += 1
        if reply.status != 200:
            return _json({"error": {"message": reply.error or f"scripted {reply.status}"}},
                         status_code=reply.status, headers=reply.headers)
        prompt = sum(len(json.dumps(m)) for m in body["messages"]) // 4 + 1
        completion = len(json.dumps([reply.content, reply.tool_calls])) // 4 + 1
        with self._lock:
            self.tokens["prompt"] += prompt
            self.tokens["completion"] += completion
            self.billed.append((prompt, completion, reply.delay_s))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = reply.tool_calls
        if reply.reasoning is not None:
            message["reasoning"] = reply.reasoning
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        return _json({
            "id": f"chatcmpl-{self.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "loopback"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "stop_reason": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        })

    async def _health(self, request: Request) -> Response:
        return _json({"ok": True})

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._work(0)
            return {"requests": self.requests, "statuses": {str(k): v for k, v in self.statuses.items()},
                    "busy_area": self.busy_area, "max_in_flight": self.max_in_flight, "in_flight": self.in_flight,
                    "tokens": dict(self.tokens), "now": time.monotonic(), "first_work": self.first_work,
                    "last_work": self.last_work}

    async def _stats(self, request: Request) -> Response:
        return _json(self.stats())

    async def _models(self, request: Request) -> Response:
        return _json({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"]),
                                 Route("/health", self._health), Route("/v1/models", self._models),
                                 Route("/stats", self._stats)])

    # -- lifecycle ------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _socket(self) -> socket.socket:
        sock = bind(self.port)  # the product's own listener: TCP_NODELAY on every connection
        self.port = sock.getsockname()[1]
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        return uvicorn.Server(uvicorn.Config(self.app(), log_level="warning", access_log=False,
                                             timeout_keep_alive=30, backlog=2048))

    def start(self) -> LoopbackServer:
        sock = self._socket()
        self._server = self._uvicorn()
        self._thread = threading.Thread(target=asyncio.run, args=(self._server.serve(sockets=[sock]),), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("loopback server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def reset_counts(self) -> None:
        with self._lock:
            self.requests, self.max_in_flight = 0, 0
            self.statuses.clear()
            self.tokens.clear()
            self.billed.clear()
            self.arrivals.clear()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a brain that replays offline transcripts ------------------------------------------------------


def synthesized_tasks(config: Any, steps: Any = None) -> dict[int, Any]:
    """The tasks a run with ``config`` will synthesize, by index: what a scripted server needs to know."""
    import tempfile

    import pyarrow.parquet as pq

    from pipelines.shard import shard_indices, synthesize_shard
    from schemas import Task

    tasks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shard in range(config.num_shards):
            path = synthesize_shard(config, shard, Path(tmp) / f"t{shard}.parquet", steps)
            for row, index in zip(pq.read_table(path).to_pylist(), shard_indices(config, shard), strict=True):
                if row["task"]:
                    tasks[index] = Task.model_validate_json(row["task"])
    return tasks


class TranscriptBrain:
    """Plays the user simulator and the assistant by replaying the offline rollouts of a run's own tasks.

    Built from the same config and seed as the model-mode run, so it knows the
    exact tasks that run will synthesize. ``perturb`` plants a scripted mistake
    in chosen tasks' transcripts (``malformed_json`` breaks a call's JSON);
    ``faults`` makes a task's first assistant request fail: ``429`` (with
    Retry-After) or ``500`` for ``times`` attempts, or ``slow`` (replies after
    ``slow_s``), each for ``times`` attempts (0 = always).
    """

    def __init__(self, config: Any, perturb: dict[int, str] | None = None,
                 faults: dict[int, tuple[str, int]] | None = None, slow_s: float = 2.0,
                 retry_after: str = "1", tasks: dict[int, Any] | None = None) -> None:
        from pipelines.steps import build_steps

        self.steps = build_steps(config)
        self.perturb = perturb or {}
        self.faults = faults or {}
        self.slow_s, self.retry_after = slow_s, retry_after
        # Tasks a model wrote (model blueprints) are passed in: synthesizing them here would need this server.
        self.tasks = tasks if tasks is not None else synthesized_tasks(config, self.steps)
        self.seed = config.seed
        self.transcripts: dict[int, list[dict[str, Any]]] = {}
        for index, task in self.tasks.items():
            self.transcripts[index] = self._transcript(task, self.perturb.get(index), index)
        self._index()
        self.attempts: Counter[str] = Counter()
        self.fault_keys: dict[int, str] = {}
        self._lock = threading.Lock()

    def _transcript(self, task: Any, perturbation: str | None, index: int) -> list[dict[str, Any]]:
        import random

        from simulators.conversation import rollout
        from simulators.scripted import ScriptedAssistant, ScriptedUser

        env = self.steps.env.fresh(task.env_seed)
        # The user's own random stream, as the run seeds it: a run whose scripted user talks to this server as the
        # assistant then says exactly what this transcript says (its persona's phrasing is drawn from that stream).
        user_rng = random.Random(f"{self.seed}:rollout:{index}")
        scripted = "malformed_arguments" if perturbation == "malformed_json" else perturbation
        result = asyncio.run(rollout(task, env, ScriptedUser(task, user_rng, env),
                                     ScriptedAssistant(task, env, random.Random(task.id), scripted)))
        messages = [m.to_openai() for m in result.messages[1:]]  # without the system prompt (the policy)
        if perturbation == "malformed_json":
            for n, m in enumerate(messages):
                if m.get("tool_calls") and messages[n + 1]["content"].startswith("Error"):
                    call = m["tool_calls"][0]
                    call["function"]["arguments"] = call["function"]["arguments"][:-3]  # cut mid-JSON
                    messages[n + 1]["content"] = env.fresh(task.env_seed).execute(
                        call["function"]["name"], call["function"]["arguments"])
                    break
        return messages

    def is_user_request(self, body: dict[str, Any]) -> bool:
        return not body.get("tools")

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        if self.is_user_request(body):
            return self._user(messages)
        return self._assistant(messages[1:], messages)

    def _assistant(self, conversation: list[dict[str, Any]], messages: list[dict[str, Any]]) -> Reply:
        found = self._assistant_next.get(_assistant_key(conversation))
        if found is None:
            return Reply(status=400, error=f"no transcript continues this conversation ({len(conversation)} messages)")
        index, nxt = found
        fault = self._fault(index, conversation, messages)
        if fault is not None:
            return fault
        return Reply(content=nxt.get("content"), tool_calls=nxt.get("tool_calls"))

    def _fault(self, index: int, conversation: list[dict[str, Any]], messages: list[dict[str, Any]]) -> Reply | None:
        if index not in self.faults or len(conversation) != 1:
            return None
        kind, times = self.faults[index]
        key = request_key(messages)
        with self._lock:
            self.attempts[key] += 1
            self.fault_keys[index] = key
            attempt = self.attempts[key]
        if times and attempt > times:
            return None
        if kind == "429":
            return Reply(status=429, headers={"Retry-After": self.retry_after}, error="rate limited")
        if kind == "500":
            return Reply(status=500, error="upstream exploded")
        if kind == "slow":
            transcript = self.transcripts[index]
            return Reply(content=transcript[1].get("content"), tool_calls=transcript[1].get("tool_calls"),
                         delay_s=self.slow_s)
        raise ValueError(kind)

    def _user(self, messages: list[dict[str, Any]]) -> Reply:
        """The user side sees roles swapped: its own turns are ``assistant`` messages."""
        goal = messages[0]["content"].split("Your goal: ", 1)[-1].split("\n\n", 1)[0]
        said = [m["content"] for m in messages[2:] if m["role"] == "assistant"]
        text = self._user_next.get(_prefix([goal, said]))
        if text is None:
            return Reply(status=400, error="no task matches this user simulator prompt")
        return Reply(content=text)

    def _index(self) -> None:
        """Every transcript prefix → the next message, so each request is one dictionary lookup."""
        self._assistant_next: dict[str, tuple[int, dict[str, Any]]] = {}
        self._user_next: dict[str, str] = {}
        for index, transcript in self.transcripts.items():
            users = [m for m in transcript if m["role"] == "user"]
            said: list[str] = []
            for p, m in enumerate(transcript):
                if m["role"] == "assistant":
                    self._assistant_next.setdefault(_assistant_key(transcript[:p]), (index, m))
                elif m["role"] == "user":
                    last = len(said) == len(users) - 1 and p == len(transcript) - 1
                    text = m["content"] + (" ###STOP###" if last else "")
                    self._user_next.setdefault(_prefix([self.tasks[index].scenario.instruction, said]), text)
                    said = [*said, m["content"]]


def _assistant_key(conversation: list[dict[str, Any]]) -> str:
    """A conversation without the assistant's wording: tasks that open alike and differ only in how the
    assistant phrased a question stay on their own transcript."""
    return _prefix([{k: v for k, v in m.items() if not (m["role"] == "assistant" and k == "content")}
                    for m in conversation])


def _prefix(value: Any) -> str:
    return hashlib.sha1(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


# -- a brain that fills skeleton_refine slots ---------------------------------------------------------------------


class RefineBrain:
    """Answers skeleton_refine requests by reading the slot list of the prompt; one reply fills every slot.

    By default each fill is a natural rewrite that keeps the slot's facts. ``faults`` (task index → kind)
    plant a scripted failure in chosen dialogues, which needs ``config`` to tell the dialogues apart:
    ``drop_id`` leaves an id (else the first fact) out of a rewritten customer turn; ``drop_output`` removes
    the task's expected outputs that carry no digit from rewritten assistant turns (the cheap fact check
    cannot see those: required_outputs must); ``invent_id`` adds an order id the dialogue never mentions
    to customer turns; ``refuse_consent`` turns a consent into a hedge;
    ``invalid_json`` replies with text that is not JSON; ``missing_slot`` leaves the last slot unfilled.
    """

    USER_OPENERS = ("So, ", "Okay, so ", "Right, ", "Hey, ")

    def __init__(self, config: Any = None, faults: dict[int, str] | None = None) -> None:
        self.faults = faults or {}
        self.tasks = synthesized_tasks(config) if config is not None else {}
        self.by_goal = {task.scenario.instruction: index for index, task in self.tasks.items()}
        self.requests_by_index: Counter[int] = Counter()
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        fmt = body.get("response_format") or {}
        if fmt.get("type") != "json_schema" or body.get("tools"):
            return Reply(status=400, error="refine requests ask for json_schema output and offer no tools")
        prompt = body["messages"][-1]["content"]
        if "SLOTS:\n" not in prompt:
            return Reply(status=400, error="no slot list in the prompt")
        slots = json.loads(prompt.split("SLOTS:\n", 1)[1])
        goal = prompt.split("The customer's goal: ", 1)[1].split("\n", 1)[0]
        index = self.by_goal.get(goal)
        with self._lock:
            self.requests_by_index[-1 if index is None else index] += 1
        fault = self.faults.get(index) if index is not None else None
        if fault == "invalid_json":
            return Reply(content='{"fills": [{"slot": 0, "text": "unterminated')
        fills, wrong = [], ""
        for slot in slots:
            text, wrong = self._fill(slot, wrong, fault, self.tasks.get(index))
            fills.append({"slot": slot["slot"], "text": text})
        if fault == "missing_slot":
            fills.pop()
        return Reply(content=json.dumps({"fills": fills}))

    def _fill(self, slot: dict[str, Any], wrong: str, fault: str | None, task: Any) -> tuple[str, str]:
        kind, original, keep = slot["kind"], slot["original"] or "", slot["keep"]
        opener = self.USER_OPENERS[int(hashlib.sha1(original.encode()).hexdigest(), 16) % len(self.USER_OPENERS)]
        if kind == "clarify_question":
            return "Just so I get this right, could you put that another way for me?", wrong
        if kind == "clarify_answer":
            return "Sure, I mean exactly what I said before.", wrong
        if kind == "correction_wrong":
            wrong = _garbled(keep[0])
            return opener + original.replace(keep[0], wrong), wrong
        if kind == "correction_check":
            return f"Just to double-check: did you say {wrong}?", wrong
        if kind == "correction_fix":
            return f"Oh sorry, I mistyped that. {original}", wrong
        if slot["speaker"] == "assistant":
            text = f"Alright. {original}"
            if fault == "drop_output" and task is not None:
                for out in task.expected_outputs:
                    if not any(c.isdigit() for c in out):
                        text = text.replace(out, "the carrier")
            return text, wrong
        if "explicit yes" in slot["instruction"]:
            if fault == "refuse_consent":  # a hedge that still keeps the facts, so only the policy can object
                about = f" {', '.join(keep)}" if keep else " that"
                return f"Hmm, I'm not sure about{about} yet, let me think it over.", wrong
            with_facts = f" with {', '.join(keep)}" if keep else ""  # the instruction: keep every item of `keep`
            return f"Yes, that all sounds right, please go ahead{with_facts}.", wrong
        text = opener + original[:1].lower() + original[1:]
        if fault == "drop_id" and keep:
            gone = next((k for k in keep if k.startswith("#")), keep[0])
            text = text.replace(gone, "my order")
        if fault == "invent_id":
            text += " Oh, and my other order is #W0000001."
        return text, wrong


def _garbled(fact: str) -> str:
    """The same detail with its last digit changed: the typo a correction then fixes."""
    for i in range(len(fact) - 1, -1, -1):
        if fact[i].isdigit():
            return fact[:i] + str((int(fact[i]) + 1) % 10) + fact[i + 1:]
    return fact + "x"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--capacity", type=int, help="admit this many requests at once; 429 above it")
    p.add_argument("--retry-after", help="the Retry-After header of those 429s (default: none)")
    p.add_argument("--slots", type=int, help="work on this many at once and queue the rest")
    p.add_argument("--config", help="run config: replay its tasks' transcripts (TranscriptBrain)")
    p.add_argument("--pid-file")
    args = p.parse_args(argv)
    brain: Brain = echo_brain
    if args.config:
        from schemas import load_config

        brain = TranscriptBrain(load_config(args.config))
    if args.pid_file:
        Path(args.pid_file).write_text(str(os.getpid()))
    serve_forever(brain, args.host, args.port, args.latency, capacity=args.capacity, retry_after=args.retry_after,
                  slots=args.slots)


def serve_forever(brain: Brain, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0,
                  **limits: Any) -> None:
    """Serve ``brain`` in this process until SIGTERM (the benchmark's server, the vLLM stand-in)."""
    assert host == "127.0.0.1", "loopback only"
    server = LoopbackServer(brain, latency_s=latency_s, port=port, **limits)
    sock = server._socket()
    uv = server._uvicorn()
    signal.signal(signal.SIGTERM, lambda *_: setattr(uv, "should_exit", True))
    print(f"listening on {server.url}", flush=True)
    asyncio.run(uv.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
