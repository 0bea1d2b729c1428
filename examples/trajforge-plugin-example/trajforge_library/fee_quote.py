"""Kind ``fee_quote``: a member asks what they would owe in late fees today; the assistant looks it up and says.

A plug-in's own kind of task, declared in one place (``FeeQuote``): its fields
(the amount owed and the overdue loans), the scripted pair that plays it
offline, the filter that is its outcome (``fee_stated``), and the fields it adds
to the RL view's ``reward_spec``. ``FeeQuotes`` is the generator step that
makes such tasks. Three entry points wire it in: ``trajforge.kinds``
``fee_quote``, ``trajforge.generators`` ``fee_quotes`` and ``trajforge.filters``
``fee_stated``.
"""

from __future__ import annotations

import json
import random
import re

import pyarrow as pa

from filters import Context, Filter
from generators import Generator, GeneratorParams, SynthesisError
from schemas import Action, Message, Request, Task, Tool, ToolCall, Trajectory, UserScenario, Verdict, content_hash
from simulators import STOP, Environment, ExportField, KindFields, TaskKind, is_error
from trajforge_library.domain import FEE_PER_DAY, days_late


class FeeQuoteFields(KindFields):
    owed: str  # e.g. "$3.75": what returning every active loan today would cost
    overdue_loans: list[str]


class FeeQuoteUser:
    """Asks for the total, gives the email when asked, thanks and leaves once a total is named."""

    def __init__(self, task: Task, rng: random.Random) -> None:
        self.scenario = task.scenario

    async def respond(self, messages: list[Message]) -> Message:
        last = next((m.content or "" for m in reversed(messages) if m.role == "assistant" and m.content), None)
        if last is None:
            return Message(role="user", content=self.scenario.requests[0].opening)
        if "email" in last.lower():
            return Message(role="user", content=self.scenario.identity)
        return Message(role="user", content=f"{self.scenario.closing} {STOP}")


class FeeQuoteAssistant:
    """Asks for the email, makes the gold lookups, and sums the late fees from the real tool results.

    With a planted mistake (any perturbation) it forgets the last loan it looked up, as a model might.
    """

    def __init__(self, task: Task, env: Environment, rng: random.Random, perturbation: str | None = None) -> None:
        self.task, self.forget = task, perturbation is not None
        self.steps: list[Action | str] = ["ask", *task.gold_actions, "total"]

    def _total(self, messages: list[Message]) -> str:
        loans = [json.loads(m.content) for m in messages if m.role == "tool" and '"days_late"' in (m.content or "")
                 and not is_error(m.content or "")]
        if self.forget:
            loans = loans[:-1]
        owed = sum(loan["days_late"] * FEE_PER_DAY for loan in loans if loan["status"] == "active")
        return f"If you returned everything today, you would owe ${owed:.2f} in late fees."

    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        step = self.steps.pop(0) if self.steps else "bye"
        if isinstance(step, Action):
            call_id = f"call_{content_hash([self.task.id, len(self.steps)], 12)}"
            return Message(role="assistant", tool_calls=[ToolCall.make(call_id, step.name, step.arguments)])
        text = {"ask": "Happy to check. What is the email on your library account?",
                "bye": "Anything else I can do for you?"}.get(step) or self._total(messages)
        return Message(role="assistant", content=text)


class FeeQuote(TaskKind):
    """The declaration: fields, agents, reward and what the RL view shows of it."""

    Fields = FeeQuoteFields
    User = FeeQuoteUser
    Assistant = FeeQuoteAssistant
    reward = "fee"
    verifiers = ("outcome", "fee_stated")
    columns = (
        ExportField("rl", "reward_spec.owed", pa.string(), lambda task: task.owed),
        ExportField("rl", "reward_spec.overdue_loans", pa.list_(pa.string()), lambda task: task.overdue_loans,
                    default=[]),
    )


class FeeStated(Filter):
    """The assistant's last message names exactly the amount owed; tasks of other kinds pass."""

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        if not isinstance(ctx.kind, FeeQuote):
            return self.passed()
        owed = ctx.kind.fields(ctx.task).owed
        last = next((m.content or "" for m in reversed(trajectory.messages) if m.role == "assistant"), "")
        said = re.findall(r"\$\d+\.\d\d", last)
        return self.passed() if said == [owed] else self.failed(f"quoted {said or 'no amount'}, owed {owed}")


class FeeQuotes(Generator):
    """Tasks of kind ``fee_quote`` for members with at least one overdue loan."""

    def __init__(self, env: Environment, params: GeneratorParams) -> None:
        super().__init__(env, params)
        if not hasattr(env, "active_loans"):
            raise ValueError(f"fee_quotes needs the library domain, not {env.name!r}")
        self.members = sorted(member_id for member_id, member in env.db.scan("members")
                              if any(days_late(loan) for loan in env.active_loans(member)))

    def generate(self, rng: random.Random) -> Task:
        member_id = rng.choice(self.members)
        member = self.env.db.get("members", member_id)
        identity = self.env.identify(rng, member_id)
        gold = [identity.action, Action(name="get_member", arguments={"member_id": member_id}),
                *(Action(name="get_loan", arguments={"loan_id": loan_id}) for loan_id in member["loans"])]
        env = self.env.fresh()
        if any(is_error(result) for result in env.run_actions(gold)):
            raise SynthesisError(f"a lookup for member {member_id} failed")
        active = self.env.active_loans(member)
        owed = sum(days_late(loan) for loan in active) * FEE_PER_DAY
        scenario = UserScenario(
            persona="a member who wants to know what they owe before coming in",
            instruction=f"You are {identity.first_name}. Ask how much you would owe in late fees if you returned "
                        f"all your books today. {identity.says}",
            known_info=identity.known_info, identity=identity.says,
            requests=[Request(intent="fee_quote", opening="Hi! How much would I owe in late fees if I returned "
                              "everything today?", details=identity.says, actions=list(range(len(gold))))])
        return Task(kind="fee_quote", domain=self.env.name, env_seed=self.env.seed, scenario=scenario,
                    gold_actions=gold, expected_state_hash=env.state_hash(), generator=self.name,
                    owed=f"${owed:.2f}", overdue_loans=[loan["loan_id"] for loan in active if days_late(loan)])
