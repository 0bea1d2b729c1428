"""Generator step ``overdue_returns``: a member returns a late book and must be told the fee.

A generator yields one ``Task`` per call from the ``rng`` it is given (so runs
are reproducible), or raises ``SynthesisError`` (the task becomes a rejected
row with that reason). Its ``Params`` model validates ``params:`` from the run
config. Found through the entry point
``overdue_returns = "trajforge_library.generator:OverdueReturns"``.
"""

from __future__ import annotations

import json
import random

from pydantic import Field

from generators import Generator, GeneratorParams, SynthesisError
from schemas import Request, Task, UserScenario
from simulators import Environment, is_error
from trajforge_library.domain import days_late


class OverdueParams(GeneratorParams):
    min_days_late: int = Field(default=1, ge=1, description="only loans at least this many days overdue")


class OverdueReturns(Generator):
    name = "overdue_returns"
    Params = OverdueParams

    def __init__(self, env: Environment, params: OverdueParams) -> None:
        super().__init__(env, params)
        if "return_book" not in env.intents:
            raise ValueError(f"overdue_returns needs the library domain, not {env.name!r}")
        self.candidates = sorted(
            (loan["member_id"], loan["loan_id"]) for _, loan in env.db.scan("loans")
            if loan["status"] == "active" and days_late(loan) >= params.min_days_late)
        if not self.candidates:
            raise ValueError(f"no loan is {params.min_days_late}+ days late in this library")

    def generate(self, rng: random.Random) -> Task:
        member_id, loan_id = rng.choice(self.candidates)
        identity = self.env.identify(rng, member_id)
        intent = self.env.intents["return_book"]
        target = intent.ground(self.env, rng, {"loans": [loan_id]}).target  # ground on this one loan
        gold = [identity.action, target]
        env = self.env.fresh()
        results = [env.execute(a.name, a.arguments) for a in gold]
        if any(is_error(r) for r in results):
            raise SynthesisError(f"gold calls failed: {[r for r in results if is_error(r)]}")
        fee = intent.outputs(target, json.loads(results[-1]))
        scenario = UserScenario(
            persona="a member who knows the book is late and wants to settle up",
            instruction=f"You are {identity.first_name}. You are returning a late book (loan {loan_id}) and want to "
                        f"know the fee. {identity.says}",
            known_info={**identity.known_info, "loan_id": loan_id}, identity=identity.says,
            requests=[Request(intent="return_book", opening="Hi, I'm returning a book and I think it's late.",
                              details=f"It's loan {loan_id}.", actions=[1])])
        return Task(domain=self.env.name, env_seed=self.env.seed, scenario=scenario, gold_actions=gold,
                    expected_outputs=fee, expected_state_hash=env.state_hash(), generator=self.name)
