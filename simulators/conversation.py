"""The conversation loop: user ↔ assistant ↔ tools on a stateful environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from schemas import Message, Task, ToolCall, UserAction
from simulators.agents import STOP, AssistantAgent, UserAgent
from simulators.environment import Environment, ToolFault
from simulators.tool_simulator import SimulatedCall


class AsyncToolSimulator(Protocol):
    async def simulate(self, request: SimulatedCall) -> str:
        """A result for a tool that has only a schema (a model's answer, say)."""


class RolloutError(Exception):
    """A dialogue that could not finish; becomes a rejected row at stage ``simulation``.

    ``fault`` says who failed (``schemas.FAULTS``); the messages produced so far are in the caller's
    ``transcript`` (see ``rollout``), so the rejected row keeps them.
    """

    def __init__(self, message: str, fault: str = "assistant", partial: Message | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        self.partial = partial  # the message that failed (a cut-off turn), kept as evidence, never as data


@dataclass
class Rollout:
    messages: list[Message]
    final_state_hash: str
    user_actions: list[UserAction] = field(default_factory=list)  # dual control: what the user did on their side


async def rollout(
    task: Task,
    env: Environment,
    user: UserAgent,
    assistant: AssistantAgent,
    max_turns: int = 40,
    max_steps_per_turn: int = 12,
    tool_simulator: AsyncToolSimulator | None = None,
    transcript: list[Message] | None = None,
    user_actions: list[UserAction] | None = None,
) -> Rollout:
    """Run one dialogue to its end; ``env`` must be fresh and is mutated.

    A turn is one user message and everything the assistant does before the
    user speaks again; tool calls are executed here, in the order given (all
    calls of one message before the next model request: parallel calls).
    ``transcript``, when given, is the list the dialogue is written into as it
    happens, so whatever stops it (an error, a timeout) leaves the evidence;
    ``user_actions`` likewise for the user's own device actions (dual control).
    """
    tools = env.tools()
    messages = transcript if transcript is not None else []
    messages.append(Message(role="system", content=env.policy))
    actions: list[UserAction] = user_actions if user_actions is not None else []
    for _turn in range(max_turns):
        said = await user_turn(task, env, user, messages, actions, max_steps_per_turn)
        text = (said.content or "").replace(STOP, "").strip()
        stop = STOP in (said.content or "")
        if text:
            messages.append(Message(role="user", content=text))
        if stop:
            break
        for _step in range(max_steps_per_turn):
            reply = await assistant.respond(messages, tools)
            messages.append(reply)
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                result = await _run_tool(env, call, tool_simulator)
                messages.append(Message(role="tool", tool_call_id=call.id, content=result))
        else:
            raise RolloutError(f"assistant made more than {max_steps_per_turn} tool steps in one turn")
    else:
        # A model user that never says it is done is the simulator's failure; a scripted one ends its script.
        raise RolloutError(f"dialogue did not end within {max_turns} turns",
                           fault="user" if getattr(user, "is_model", False) else "assistant")
    return Rollout(messages=list(messages), final_state_hash=env.state_hash(), user_actions=list(actions))


async def user_turn(task: Task, env: Environment, user: UserAgent, messages: list[Message],
                    actions: list[UserAction], max_steps: int) -> Message:
    """The user's next message; in a dual-control domain, after running the device actions the user chose first.

    Text that comes with device actions is not said: the user speaks once they
    have seen the results, as a person reports back after trying something.
    The RL environment (``pipelines.rl``) runs its user turns through this too.
    """
    if not env.user_specs():
        return await user.respond(messages)
    for _step in range(max_steps):
        said = await user.respond(messages, actions)
        if not said.tool_calls:
            return said
        for call in said.tool_calls:
            actions.append(UserAction(at=len(messages), call=call, result=env.execute_user_call(task.user, call)))
    raise RolloutError(f"user made more than {max_steps} device steps in one turn",
                       fault="user" if getattr(user, "is_model", False) else "assistant")


async def _run_tool(env: Environment, call: ToolCall, simulator: AsyncToolSimulator | None) -> str:
    if simulator is not None and (request := env.simulation_request(call)) is not None:
        env.provide(request, await simulator.simulate(request))
    try:
        return await env.aexecute_call(call)
    except ToolFault as err:  # a server that crashed, hung or answered nonsense: this dialogue cannot go on
        raise RolloutError(str(err), fault="tool") from None
