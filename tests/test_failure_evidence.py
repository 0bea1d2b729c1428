"""What a real model breaks, planted exactly, over real HTTP: cut-off replies, judges that give no verdict,
simulators that leak their instructions, reasoning traces, parallel tool calls, and rejected rows that keep
their evidence and say who failed. (The real-model lane, tests/test_managed_vllm.py, meets the same things
unplanned from SmolLM2.)
"""

from __future__ import annotations

import asyncio
import json
import random
import re

import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, write_deltalake
from loopback import LoopbackServer, Reply, TranscriptBrain, _assistant_key

from filters.base import Context
from filters.leaks import ReasoningFilter
from pipelines.export import ExportOptions, export_version
from pipelines.flow import run_generate
from pipelines.report import write_report
from pipelines.rows import MESSAGE, ROW_SCHEMA
from pipelines.store import MANIFEST_KEY, DatasetStore
from schemas import FAULTS, BackendConfig, Message, Trajectory, Usage, parse_config
from simulators.backends import ChatParams, Endpoint, RequestCache, TruncatedReply
from simulators.skeleton_refine import facts

CUT, ECHO_REMINDER, ECHO_PERSONA, JUDGE_GARBAGE, JUDGE_FLAKY, JUDGE_LOW, PEEKS = range(7)


def config(url: str = "http://127.0.0.1:9/v1", num_tasks: int = 10, **simulation):
    return parse_config({
        "name": "evidence", "seed": 5, "num_tasks": num_tasks, "shard_size": 5,
        "generators": [{"name": "blueprint", "params": {"min_requests": 1, "max_requests": 2}}],
        "backends": {"loop": {"model": "loop-model", "base_url": url, "max_concurrency": 4, "max_retries": 0}},
        "simulation": {"mode": "model", "user": {"backend": "loop"},
                       "assistant": {"backend": "loop", "max_tokens": 64, "parallel_tool_calls": True}, **simulation},
        "filters": [{"name": "simulator_leak"}, {"name": "reasoning"}, {"name": "format"}, {"name": "execution"},
                    {"name": "policy"}, {"name": "outcome"}, {"name": "required_outputs"},
                    {"name": "judge", "params": {"backend": "loop", "retries": 2}}],
    }, "evidence")


class Planted(TranscriptBrain):
    """The run's own transcripts, as a model that misbehaves in chosen dialogues would answer them."""

    def __init__(self, cfg, **kw) -> None:
        super().__init__(cfg, **kw)
        self.by_goal = {t.scenario.instruction: i for i, t in self.tasks.items()}
        self.judged: dict[int, int] = {}
        self.assistant_requests: dict[int, int] = {}
        self.parallel_flags: set = set()
        self.rewrites: dict[str, str] = {}
        self.peek = self._peeking_fact(self.transcripts[PEEKS])

    @staticmethod
    def _peeking_fact(transcript) -> str:
        """A fact the first tool result brings that nothing before it said."""
        first_tool = next(n for n, m in enumerate(transcript) if m["role"] == "tool")
        before = set().union(*(facts(json.dumps(m)) for m in transcript[:first_tool]))
        return sorted(facts(transcript[first_tool]["content"]) - before)[0]

    def __call__(self, body):
        messages = body["messages"]
        fmt = (body.get("response_format") or {}).get("json_schema", {}).get("name")
        if fmt == "judge_verdict":
            return self._judge(messages[-1]["content"])
        # The transcripts continue from what the model "really" said: planted changes are undone for the lookup.
        messages = [{**m, "content": self.rewrites.get(m.get("content"), m.get("content"))} for m in messages]
        body = {**body, "messages": messages}
        reply = super().__call__(body)
        if self.is_user_request(body):
            goal = messages[0]["content"].split("Your goal: ", 1)[-1].split("\n\n", 1)[0]
            index = self.by_goal.get(goal)
            if index == ECHO_REMINDER and reply.content:
                reply.content += " [Reminder, not part of the chat: you are the user. Your goal: ...]"
            if index == ECHO_PERSONA and len(messages) == 2:
                said = f"{self.tasks[index].scenario.persona}. {reply.content}"
                self.rewrites[said], reply.content = reply.content, said
            return reply
        self.parallel_flags.add(body.get("parallel_tool_calls"))
        index = self._assistant_next[_assistant_key(messages[1:])][0]
        n = self.assistant_requests[index] = self.assistant_requests.get(index, 0) + 1
        if index == CUT and n == 2:
            return Reply(content="I have found your order and the refund will be", finish_reason="length")
        reply.reasoning = f"The customer needs help; next I check {self.peek}." if index == PEEKS and n == 1 else \
            "The customer needs help; I follow the policy."
        return reply

    def _judge(self, prompt: str) -> Reply:
        goal = prompt.split("The user's goal: ", 1)[1].split("\n", 1)[0]
        index = self.by_goal[goal]
        n = self.judged[index] = self.judged.get(index, 0) + 1
        if index == JUDGE_GARBAGE or (index == JUDGE_FLAKY and n == 1):
            return Reply(content='{"score": 5, "rationale": "fine')  # no closing: not the JSON asked for
        score = 2 if index == JUDGE_LOW else 5
        return Reply(content=json.dumps({"score": score, "rationale": "graded"}))


@pytest.mark.usefixtures("prefect_server")
def test_rejected_rows_keep_their_evidence_and_say_who_failed(tmp_path):
    brain = Planted(config())
    with LoopbackServer(brain) as server:
        manifest = run_generate(config(server.url), tmp_path / "ds", "run-evidence")
        served = server.requests
    rows = {r["index"]: r for r in DatasetStore(tmp_path / "ds").read().to_dicts()}
    assert manifest.tasks == 10 == len(rows)

    # A cut-off assistant turn is never accepted: its own named reason, the transcript up to it, the partial.
    cut = rows[CUT]
    assert (cut["stage"], cut["fault"]) == ("simulation", "assistant")
    assert cut["reason"] == "truncated: the assistant's turn was cut off at max_tokens=64 (finish_reason 'length')"
    assert cut["messages"][0]["role"] == "system" and cut["num_turns"] >= 1
    assert cut["messages"][-1]["content"] == "I have found your order and the refund will be"
    assert json.loads(cut["task"])["id"] == cut["task_id"]
    assert manifest.usage["assistant"].truncated == 1

    # What the user simulator was told never reaches stored text; a user turn that echoes it is rejected.
    assert rows[ECHO_REMINDER]["status"] == "accepted"
    assert not any("Reminder" in (m["content"] or "") for m in rows[ECHO_REMINDER]["messages"])
    persona = rows[ECHO_PERSONA]
    assert (persona["stage"], persona["fault"]) == ("simulator_leak", "user")
    assert "echoes the persona" in persona["reason"]

    # A reasoning trace that knows a tool result before the tool returned it is rejected.
    peeks = rows[PEEKS]
    assert peeks["stage"] == "reasoning" and brain.peek in peeks["reason"] and peeks["fault"] == "assistant"
    # Every other assistant turn keeps its reasoning, per turn.
    kept = [m for m in rows[ECHO_REMINDER]["messages"] if m["role"] == "assistant"]
    assert kept and all(m["reasoning_content"] == "The customer needs help; I follow the policy." for m in kept)

    # A judge that gives no verdict is retried; still none is judge_error, the judge's, apart from low scores.
    assert (rows[JUDGE_GARBAGE]["stage"], rows[JUDGE_GARBAGE]["fault"]) == ("judge_error", "judge")
    assert rows[JUDGE_GARBAGE]["reason"].startswith("judge_error: no verdict in 3 attempt(s); last: the reply is not")
    assert brain.judged[JUDGE_GARBAGE] == 3 and brain.judged[JUDGE_FLAKY] == 2
    assert rows[JUDGE_FLAKY]["status"] == "accepted"
    assert (rows[JUDGE_LOW]["stage"], rows[JUDGE_LOW]["fault"]) == ("judge", "assistant")
    funnel = list(manifest.funnel)
    assert funnel.index("judge_error") == funnel.index("judge") + 1
    assert manifest.funnel["judge_error"] == 1 and manifest.funnel["judge"] == 1

    # Who failed, for every rejected row, in the manifest; accounting is the server's.
    rejected = [r for r in rows.values() if r["status"] == "rejected"]
    assert all(r["fault"] in FAULTS for r in rejected) and all(r["fault"] is None for r in rows.values()
                                                                if r["status"] == "accepted")
    assert manifest.faults == {"assistant": 3, "user": 1, "judge": 1}
    assert served == sum(u.requests for u in manifest.usage.values())
    assert brain.parallel_flags == {True}

    # The rejects export and the report show why.
    export_version(tmp_path / "ds", tmp_path / "hf", ExportOptions(rejects=True, test_ratio=0.0))
    exported = pl.read_parquet(tmp_path / "hf" / "data" / "rejects" / "train-*.parquet")
    cut_export = exported.filter(pl.col("reason").str.starts_with("truncated"))
    assert cut_export.height == 1 and len(cut_export["messages"][0]) == len(cut["messages"])
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "rejected at `judge_error`" in card and "the user simulator" in card
    write_report(tmp_path / "ds", tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert "Sample rejections" in page and "(assistant's fault)" in page and "I have found your order" in page
    assert re.search(r"who failed</td><td>rejections: 60% the assistant&#39;s \(3\)", page)


def test_a_cut_off_reply_is_asked_again_with_a_larger_budget_and_stays_cut_off_in_the_cache(tmp_path):
    def brain(body):
        short = body["max_tokens"] < 100
        return Reply(content="half a sent" if short else "a whole sentence.", finish_reason="length" if short else "stop")

    async def ask(ep, meter, **kw):
        try:
            return await ep.chat([Message(role="user", content="hi")], None, ChatParams(max_tokens=50), meter, **kw)
        finally:
            await ep.release_loop()

    with LoopbackServer(brain) as server:
        ep = Endpoint("loop", BackendConfig(model="m", base_url=server.url, max_retries=0),
                      RequestCache(tmp_path / "c.sqlite"))
        meter = Usage()
        assert asyncio.run(ask(ep, meter, retry_max_tokens=200)).content == "a whole sentence."
        assert (meter.requests, meter.truncated_retries, meter.truncated) == (2, 1, 0)
        with pytest.raises(TruncatedReply, match=r"cut off at max_tokens=50 \(finish_reason 'length'\)"):
            asyncio.run(ask(ep, meter))
        assert meter.cached == 1 and meter.truncated == 1 and server.requests == 2  # from the cache, still cut off
        assert asyncio.run(ask(ep, meter, accept_truncated=True)).content == "half a sent"


def test_reasoning_is_read_kept_and_never_sent_back(tmp_path):
    seen = []

    def brain(body):
        seen.append(body["messages"])
        return Reply(content="Done.", reasoning="I think, therefore I answer.")

    async def go(ep, messages):
        try:
            return await ep.chat(messages, None, ChatParams(), Usage())
        finally:
            await ep.release_loop()

    with LoopbackServer(brain) as server:
        ep = Endpoint("loop", BackendConfig(model="m", base_url=server.url))
        reply = asyncio.run(go(ep, [Message(role="user", content="hi")]))
        assert reply.reasoning_content == "I think, therefore I answer."
        asyncio.run(go(ep, [Message(role="user", content="hi"), reply, Message(role="user", content="and?")]))
    assert seen[1][1] == {"role": "assistant", "content": "Done."}


def test_the_reasoning_check_allows_what_was_seen_and_what_the_turn_itself_does(small_config):
    from pipelines.steps import build_steps

    steps = build_steps(small_config())
    ctx = Context(task=steps.generators[0].generate(random.Random(0)), env=steps.env)
    call = {"id": "c1", "type": "function", "function": {"name": "get_order_details", "arguments": '{"order_id": "#W7"}'}}

    def verdict(thought: str) -> bool:
        messages = [Message(role="system", content="policy"), Message(role="user", content="order #W7 please"),
                    Message(role="assistant", tool_calls=[call], reasoning_content=thought),
                    Message(role="tool", tool_call_id="c1", content='{"order_id": "#W7", "total": 421.5}'),
                    Message(role="assistant", content="Your total is 421.5.", reasoning_content="It says 421.5.")]
        return ReasoningFilter().check(Trajectory(task_id="t", domain="store", tools=[], messages=messages), ctx).passed

    assert verdict("The user named #W7; look it up.")
    assert not verdict("Look up #W7; its total is 421.5.")


@pytest.mark.usefixtures("prefect_server")
def test_parallel_tool_calls_run_and_verify_end_to_end(tmp_path):
    """Independent calls the offline transcripts make one after another, made at once in one assistant message."""
    brain = Parallel(config(num_tasks=6))
    with LoopbackServer(brain) as server:
        cfg = config(server.url, num_tasks=6)
        cfg = cfg.model_copy(update={"filters": cfg.filters[2:-1]})  # the verification filters; no judge
        manifest = run_generate(cfg, tmp_path / "ds", "run-parallel")
    rows = {r["index"]: r for r in DatasetStore(tmp_path / "ds").read().to_dicts()}
    assert brain.merged, "no transcript had two independent calls in a row"
    for index in brain.merged:
        row = rows[index]
        assert row["status"] == "accepted", row["reason"]
        double = [m for m in row["messages"] if m["role"] == "assistant" and len(m["tool_calls"] or []) == 2]
        assert double
        results = [m["tool_call_id"] for m in row["messages"] if m["role"] == "tool"]
        assert all(c["id"] in results for c in double[0]["tool_calls"])
    assert manifest.accepted == 6


class Parallel(TranscriptBrain):
    """Transcripts in which a read call whose arguments do not depend on the previous call's result is merged
    into that call's message: two calls, then both results."""

    def __init__(self, cfg) -> None:
        self.merged: set[int] = set()
        super().__init__(cfg)

    def _transcript(self, task, perturbation, index):
        messages = super()._transcript(task, perturbation, index)
        for n in range(len(messages) - 3):
            a, ra, b, rb = messages[n:n + 4]
            if not (a.get("tool_calls") and ra["role"] == "tool" and b.get("tool_calls") and rb["role"] == "tool"
                    and not a.get("content") and not b.get("content")):
                continue
            args = json.loads(b["tool_calls"][0]["function"]["arguments"])
            if not all(str(v) in json.dumps(messages[:n]) for v in args.values()):
                continue  # b needs something a returns: not parallel
            a = {**a, "tool_calls": a["tool_calls"] + b["tool_calls"]}
            self.merged.add(index)
            return [*messages[:n], a, ra, rb, *messages[n + 4:]]
        return messages


@pytest.mark.usefixtures("prefect_server")
def test_versions_written_before_faults_still_read_export_and_append(tmp_path, small_config):
    """A dataset whose rows have no ``fault`` column and messages without ``reasoning_content`` (today's main)."""
    cfg = small_config(num_tasks=20, shard_size=10, output_dir=None)
    first = run_generate(cfg, tmp_path / "new", "run-new")
    old = DatasetStore(tmp_path / "new").read()
    records = old.drop("fault").to_arrow().to_pylist()
    for record in records:
        for m in record["messages"]:
            del m["reasoning_content"]
    fields = [f for f in ROW_SCHEMA if f.name != "fault"]
    message = pa.struct([f for f in MESSAGE if f.name != "reasoning_content"])
    legacy = pa.schema([pa.field("messages", pa.list_(message)) if f.name == "messages" else f for f in fields])
    table = pa.Table.from_pylist(records, schema=legacy)
    manifest = first.model_copy(update={"faults": {}}).model_dump_json(exclude={"version", "faults"})
    write_deltalake(str(tmp_path / "old"), table, commit_properties=CommitProperties(
        custom_metadata={MANIFEST_KEY: manifest}))
    assert "fault" not in pl.read_delta(str(tmp_path / "old")).columns

    second = run_generate(small_config(num_tasks=20, shard_size=10, seed=99), tmp_path / "old", "run-after")
    both = DatasetStore(tmp_path / "old").read()
    assert both.height == 40 and second.version == 1
    before = both.filter(pl.col("run_id") == "run-new")
    after = both.filter(pl.col("run_id") == "run-after")
    assert before["fault"].null_count() == 20  # older rows read as unattributed
    assert set(after.filter(pl.col("status") == "rejected")["fault"]) <= set(FAULTS)
    # The message struct gained reasoning_content: older rows read it as null.
    assert before.select(pl.col("messages").list.eval(pl.element().struct.field("reasoning_content")).explode()
                         ).to_series().null_count() == sum(len(m) for m in before["messages"])
    export_version(tmp_path / "old", tmp_path / "hf", ExportOptions(version=0, rejects=True))
    write_report(tmp_path / "old", tmp_path / "r.html", version=0)
    assert "not attributed" in (tmp_path / "r.html").read_text() or first.rejected == 0


def test_a_reviewer_that_gives_no_review_is_asked_again_then_is_a_judge_error():
    from generators.committee import Committee, CommitteeParams

    valid = json.dumps({"correctness": 5, "completeness": 5, "realism": 5, "approve": True, "feedback": ""})
    asked: list[tuple[int | None, int | None]] = []

    def brain(body):
        reviewer, seed = body["messages"][0]["content"], body.get("seed")
        asked.append((body.get("max_tokens"), seed))
        if "first" in reviewer:  # cut off at first, whole with the larger budget on the retry seed
            return Reply(content=valid if seed == 1 else '{"correctness": 5', finish_reason=None if seed == 1 else "length")
        return Reply(content="I approve this blueprint.")  # never the review asked for

    async def review(params):
        endpoints = {"a": Endpoint("a", BackendConfig(model="m", base_url=server.url, max_retries=0))}
        try:
            return await Committee(params, endpoints, [Usage(), Usage()]).review(
                [Message(role="system", content=who) for who in ["first"]])
        finally:
            await endpoints["a"].release_loop()

    with LoopbackServer(brain) as server:
        first = CommitteeParams(reviewers=[{"backend": "a", "max_tokens": 20}], retries=1)
        verdict = asyncio.run(review(first))
        assert verdict.passed and not verdict.errors
        assert asked == [(20, None), (40, None), (20, 1)]  # cut off, a larger budget, then another seed
        asked.clear()

        async def second():
            endpoints = {"a": Endpoint("a", BackendConfig(model="m", base_url=server.url, max_retries=0))}
            try:
                params = CommitteeParams(reviewers=[{"backend": "a"}], retries=2)
                return await Committee(params, endpoints, [Usage()]).review([Message(role="system", content="other")])
            finally:
                await endpoints["a"].release_loop()

        verdict = asyncio.run(second())
    assert not verdict.passed and len(asked) == 3
    assert verdict.errors == ["reviewer 1 gave no valid review in 3 attempt(s); last: reply is not a valid Review: "
                              "reply: Invalid JSON: expected ident at line 1 column 2: 'I approve this blueprint.'"]
