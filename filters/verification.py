"""Verification as in tau-bench: the dialogue is well-formed, ran cleanly,
followed the policy, left the world in the gold state and told the user what
they needed to hear."""

from __future__ import annotations

from pydantic import Field

from filters.answer_match import check_answer
from filters.base import FILTERS, Context, Filter, FilterParams
from schemas import Trajectory, Verdict, canonical_json
from simulators.environment import Environment, ToolFault, Validator, compile_validator, is_error, validate_arguments
from simulators.model_agents import TOOL_SIMULATOR_ERROR
from simulators.text import normalize


@FILTERS.register("format")
class FormatFilter(Filter):
    """Every call names an offered tool with schema-valid arguments, and every call is answered."""


    def __init__(self, params: FilterParams | None = None) -> None:
        super().__init__(params)
        self._validators: dict[str, Validator] = {}

    def _validator(self, schema: dict) -> Validator:
        key = canonical_json(schema)
        if key not in self._validators:
            self._validators[key] = compile_validator(schema)
        return self._validators[key]

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        offered = {t.name: t for t in trajectory.tools}
        pending: set[str] = set()
        for n, msg in enumerate(trajectory.messages):
            if msg.role == "assistant":
                if not msg.content and not msg.tool_calls:
                    return self.failed(f"message {n}: empty assistant message")
                for call in msg.tool_calls or []:
                    name = call.function.name
                    if name not in offered:
                        return self.failed(f"message {n}: call to unknown tool {name!r}")
                    try:
                        args = call.parsed_arguments()
                    except ValueError as err:
                        return self.failed(f"message {n}: {name} arguments are not a JSON object ({err})")
                    problem = validate_arguments(self._validator(offered[name].function.parameters), args)
                    if problem:
                        return self.failed(f"message {n}: {name} arguments invalid: {problem}")
                    pending.add(call.id)
            elif msg.role == "tool":
                if msg.tool_call_id not in pending:
                    return self.failed(f"message {n}: tool result answers no open call ({msg.tool_call_id})")
                pending.discard(msg.tool_call_id)
        if pending:
            return self.failed(f"unanswered tool calls: {sorted(pending)}")
        return self._check_user_actions(trajectory)

    def _check_user_actions(self, trajectory: Trajectory) -> Verdict:
        """Dual control: every device action of the user names one of the user's tools, with valid arguments."""
        offered = {t.name: t for t in trajectory.user_tools}
        for k, action in enumerate(trajectory.user_actions):
            name = action.call.function.name
            if name not in offered:
                return self.failed(f"user action {k}: unknown user-side tool {name!r}")
            try:
                args = action.call.parsed_arguments()
            except ValueError as err:
                return self.failed(f"user action {k}: {name} arguments are not a JSON object ({err})")
            problem = validate_arguments(self._validator(offered[name].function.parameters), args)
            if problem:
                return self.failed(f"user action {k}: {name} arguments invalid: {problem}")
            if action.at > len(trajectory.messages):
                return self.failed(f"user action {k}: placed after the end of the dialogue (at {action.at})")
        return self.passed()


class ExecutionParams(FilterParams):
    max_errors: int = Field(default=0, ge=0, description="tool errors tolerated (a model that recovers)")


@FILTERS.register("execution")
class ExecutionFilter(Filter):
    """Tool calls ran without errors (beyond ``max_errors``)."""

    Params = ExecutionParams

    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        errors = [m.content for m in trajectory.messages if m.role == "tool" and is_error(m.content or "")]
        errors += [f"(user-side {a.call.function.name}) {a.result}" for a in trajectory.user_actions
                   if is_error(a.result)]
        if len(errors) > self.params.max_errors:
            # A result the tool simulator could not give is its failure; any other error is a call gone wrong.
            fault = "tool" if any((e or "").startswith(TOOL_SIMULATOR_ERROR) for e in errors) else None
            return self.failed(f"{len(errors)} tool error(s); first: {errors[0]}", fault)
        return self.passed()


@FILTERS.register("policy")
class PolicyFilter(Filter):
    """The domain's checkable policy rules (authentication, confirmation, ownership)."""


    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        env = ctx.fresh_env()
        if env.user_specs():  # dual control: the policy also governs what the user was guided to do
            violations = env.check_policy(trajectory.messages, user_actions=trajectory.user_actions,
                                          user=ctx.task.user)
        else:
            violations = env.check_policy(trajectory.messages)
        return self.failed("; ".join(violations)) if violations else self.passed()


@FILTERS.register("outcome")
class OutcomeFilter(Filter):
    """Replaying the gold actions and the dialogue's own calls on fresh environments ends in the same state.

    Both hashes are recomputed here rather than trusted from the rollout. In a
    dual-control domain the state is the account *and* the user's device, and
    the replay runs the user's actions where they happened in the dialogue.
    """


    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        user = ctx.task.user
        try:
            gold_env, gold = _replayed(ctx, lambda env: env.run_actions(ctx.task.gold_actions, user=user))
            if ctx.task.expected_state_hash and gold != ctx.task.expected_state_hash:
                return self.failed("gold actions no longer reach the blueprint's state (environment changed)")
            calls = [call for msg in trajectory.messages for call in msg.tool_calls or []]
            env, final = _replayed(ctx, lambda env: env.replay(trajectory.messages, trajectory.user_actions, user=user))
        except ToolFault as err:  # a server that broke during the replay: the tool's failure, not the dialogue's
            return self.failed(f"replay: {err}", fault="tool")
        if final != gold:
            return self.failed(f"final state differs from the gold final state{_which_side(env, gold_env)}")
        # Writes whose effect the state cannot show are verified by outputs and judges alone: say so on the row.
        blind = ctx.env.unverified({a.name for a in ctx.task.gold_actions} | {c.function.name for c in calls})
        return Verdict(stage=self.name, passed=True, reason=blind) if blind else self.passed()


def _replayed(ctx: Context, run) -> tuple[Environment, str]:
    """A fresh environment after ``run`` and its state hash; the environment is let go of right after (its
    in-memory tables stay readable, for saying which side of a dual-control state differs)."""
    env = ctx.fresh_env()
    try:
        run(env)
        return env, env.state_hash()
    finally:
        env.close()


def _which_side(env, gold_env) -> str:
    """For a dual-control domain, which side of the state differs: the evidence a reviewer looks for first."""
    if not env.user_tables:
        return ""
    mine, gold = env.state_sides(), gold_env.state_sides()
    sides = [side for side in ("account", "device") if canonical_json(mine[side]) != canonical_json(gold[side])]
    return f" ({' and '.join(sides)})" if sides else ""


@FILTERS.register("required_outputs")
class RequiredOutputsFilter(Filter):
    """Every expected output appears in what the assistant told the user (for a kind with a closed-form
    answer, the answer or an alias of it is what must be said)."""


    def check(self, trajectory: Trajectory, ctx: Context) -> Verdict:
        if ctx.kind.answer(ctx.task) is not None:  # an answer may be given by any alias: match it as answer_match does
            problem = check_answer(trajectory, ctx.task, grounded=False)
            return self.failed(problem) if problem else self.passed()
        said = normalize(" ".join(m.content or "" for m in trajectory.messages if m.role == "assistant"))
        missing = [o for o in ctx.task.expected_outputs if normalize(o) not in said]
        if missing:
            return self.failed(f"assistant never said: {', '.join(missing)}")
        return self.passed()
