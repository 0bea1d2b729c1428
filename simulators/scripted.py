"""Offline agents: a dialogue skeleton built from the blueprint, no model needed.

The scripted user reveals the scenario piece by piece (opening, identity when
asked, specifics when asked, a yes to a confirmation, the next request when
offered help) in its persona's voice: register, small talk, typos, indirect
requests, a detail given wrong and then corrected, specifics volunteered
before they are asked for (``simulators.phrasing``). The scripted assistant
follows the policy: authenticate, look up, confirm, write, report; it *reads*
the user's messages to skip a question already answered and to ask for a
detail that does not match. In a dual-control domain it guides the user
through checks and fixes on their own device, and the scripted user does
what it was asked (parsed from the words, by the domain's ``DeviceVoice``)
and reports what it saw. Tool results are real: the loop executes every call
on the environment.

``perturb`` plants one of the mistakes models really make, so the offline run
exercises every verification path; it is seeded, so the same task and seed
always make the same mistake.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas import Action, Message, Task, Tool, ToolCall, UserAction, content_hash
from simulators.agents import STOP
from simulators.environment import Environment, is_error, result_value
from simulators.intents import DeviceVoice, Intent
from simulators.personas import persona_of
from simulators.phrasing import (
    CLOSERS,
    THANKS_TAIL,
    TRANSITIONS,
    agent_voice,
    consent,
    expand,
    indirect,
    lower_first,
    pick,
    pick_fragment,
    shuffled,
    small_talk,
    styled,
)
from simulators.text import facts

PERTURBATIONS = ("malformed_arguments", "unknown_tool", "skip_confirmation", "claim_without_call", "omit_outputs")
DOMAIN_PERTURBATIONS = ("break_rule",)  # where an intent names the write the policy forbids
DEVICE_PERTURBATIONS = ("wrong_device_step", "skip_device_check")  # dual-control domains


def perturbations_for(env: Environment) -> tuple[str, ...]:
    """The mistakes worth planting in this domain's dialogues (a device mistake needs a device)."""
    extra = DOMAIN_PERTURBATIONS if any(type(i).forbidden is not Intent.forbidden for i in env.intents.values()) \
        else ()
    return PERTURBATIONS + extra + (DEVICE_PERTURBATIONS if env.device_voice is not None else ())


ASKS_IDENTITY = re.compile(r"verify your identity|confirm who you are|confirm your identity|"
                           r"(find|locate|look up|pull up) your (account|profile)|authenticate you", re.I)
ASKS_CONFIRM = re.compile(r"shall i proceed|should i (go ahead|proceed)|(want|like) me to (go ahead|proceed)|"
                          r"okay to proceed|can i go ahead|may i proceed", re.I)
THANKED = re.compile(r"\b(thanks?|thank you|thx|ty|cheers|ta|appreciated?|grateful)\b", re.I)
FAREWELL = re.compile(r"\b(bye|goodbye|take care|talk soon|have a \w+ (day|one|evening|night|week|weekend)|good day)\b",
                      re.I)
OFFERS_MORE = re.compile(r"anything else|something else", re.I)
ASKS_RECHECK = re.compile(r"double-check|double check|doesn't match|does not match|can't find|cannot find", re.I)


# -- the user -------------------------------------------------------------------------------------------------------


class ScriptedUser:
    def __init__(self, task: Task, rng: random.Random, env: Environment | None = None) -> None:
        self.task = task
        self.scenario = task.scenario
        self.rng = rng
        self.persona = persona_of(task.scenario.persona)
        self.style = self.persona.style
        self.voice: DeviceVoice | None = env.device_voice if env is not None else None
        self.intents = env.intents if env is not None else {}
        self.request = 0
        self.acted_on = -1  # index of the assistant message whose device instructions were carried out
        self.calls = 0
        self.wrong: dict[int, str] = {}  # request -> the details as first (wrongly) given, awaiting a re-check

    async def respond(self, messages: list[Message], actions: Sequence[UserAction] = ()) -> Message:
        at, last = next(((i, m.content or "") for i, m in reversed(list(enumerate(messages)))
                         if m.role == "assistant" and m.content), (-1, None))
        done = [a for a in actions if a.at == len(messages)]
        if done:  # just did what the assistant asked: say what happened
            return self._say(self._report(done))
        if last is None:
            return self._say(self._opening(0, first=True))
        if self.voice is not None and at != self.acted_on:
            wanted = self.voice.parse(last)
            if wanted:
                self.acted_on = at
                return Message(role="user", tool_calls=[self._call(a) for a in wanted])
        if ASKS_IDENTITY.search(last):
            return self._say(self._identity())
        if ASKS_CONFIRM.search(last):
            return self._say(consent(self.rng, self.style, self._restated(last)), styled_already=True)
        if ASKS_RECHECK.search(last) and self.request in self.wrong:
            del self.wrong[self.request]
            return self._say(self._corrected())
        if OFFERS_MORE.search(last):
            self.request += 1
            if self.request >= len(self.scenario.requests):
                return self._say(self._closing(), stop=True)
            return self._say(self._opening(self.request, first=False))
        return self._say(self._details())

    def _say(self, text: str, stop: bool = False, styled_already: bool = False) -> Message:
        if not styled_already:
            text = styled(text, self.style, self.rng)
        return Message(role="user", content=f"{text} {STOP}" if stop else text)

    def _call(self, action: Action) -> ToolCall:
        self.calls += 1
        return ToolCall.make(f"ucall_{content_hash([self.task.id, self.calls], 12)}", action.name, action.arguments)

    # -- the turns --------------------------------------------------------------------------------------------------
    def _extra(self) -> str:
        """A sentence of small talk or the persona's own aside, as chatty as the persona is."""
        if self.rng.random() >= self.style.chatty:
            return ""
        return small_talk(self.rng, self.persona.asides)

    def _opening(self, r: int, first: bool) -> str:
        request = self.scenario.requests[r]
        rng, style = self.rng, self.style
        core = request.opening
        if rng.random() < style.indirect:
            core = indirect(core, rng)
        volunteer = facts(request.details) and rng.random() < style.volunteer
        tail = self._with_correction(request.details, r, inline=True) if volunteer else \
            (self._story(request.intent) if rng.random() < style.chatty / 2 else "")
        if first:
            greeting = expand(rng.choice(self.persona.greetings), rng) if rng.random() < 0.85 else ""
            name = self._first_name()
            intro = pick(rng, "This is <n>.", "<N> here.", "My name's <n>.", "It's <n>.", n=name) \
                if name and rng.random() < 0.25 else ""
            extra = self._extra()
            parts = [greeting, intro, extra, core, tail] if rng.random() < 0.5 else [greeting, intro, core, extra, tail]
        else:
            parts = [expand(rng.choice(TRANSITIONS), rng), lower_first(core), tail]
        return " ".join(p for p in parts if p)

    def _identity(self) -> str:
        lead = pick(self.rng, "", "", "{Sure|Of course|Okay|Sure thing|No problem|Yes}{,|.|!| —}", "{Here you go|Here"
                    " it is}{:|.|,}")
        return " ".join(p for p in (lead, self.scenario.identity) if p)

    def _details(self) -> str:
        request = self.scenario.requests[self.request]
        rng = self.rng
        lead = pick(rng, "", "", "", "{Sure|Right|Okay|So|Of course|Yes}{,|.| —}", "{Let me see|Hmm|Well}{,|.|...}")
        details = shuffled(request.details, rng) if rng.random() < 0.35 else request.details
        body = self._with_correction(details, self.request, inline=False)
        if lead.endswith((",", "—")):
            body = lower_first(body)
        tail = self._story(request.intent) or (self._extra() if rng.random() < 0.5 else "")
        return " ".join(p for p in (lead, body, tail) if p)

    def _story(self, intent: str) -> str:
        known = self.intents.get(intent)
        if known is None or self.rng.random() >= 0.35 + self.style.chatty / 2:
            return ""
        return known.story(self.rng)

    def _with_correction(self, details: str, r: int, inline: bool) -> str:
        """The details, maybe with one fact first given wrong: fixed at once (``inline``), or left for the
        assistant to notice and ask about (then ``_corrected`` gives them right)."""
        found = sorted(facts(details))
        if not found or self.rng.random() >= self.style.correction:
            return details
        fact = self.rng.choice(found)
        wrong = _near_miss(fact, self.rng)
        if wrong == fact:
            return details
        mistaken = details.replace(fact, wrong, 1)
        if inline or self.rng.random() < 0.5:
            fix = pick(self.rng, "{Sorry|Oops|Wait|Sorry, typo}{,| —} {I mean|I meant|that should be|it's} <fact>.",
                       "{Actually|Hang on}, {make that|scratch that, it's|correction:} <fact>{.|, sorry.}", fact=fact)
            return f"{mistaken} {fix}"
        self.wrong[r] = mistaken
        return mistaken

    def _corrected(self) -> str:
        details = self.scenario.requests[self.request].details
        lead = pick(self.rng, "{Oh|Oops|Ah|Ugh}{,|!| —} {sorry|my bad|my mistake|you're right}{.|!|,}",
                    "{Sorry|Apologies}, I {mistyped|got that wrong|misread it}{.|!|,}",
                    "{Good catch|Thanks for checking}{.|!|,}")
        return f"{lead} {pick(self.rng, '{It should be|Here it is again|The right one is}:', 'So:', '')} {details}"

    def _restated(self, question: str) -> str | None:
        """A fact of the confirmation question, said back: 'go ahead with #W123'; None half the time."""
        mine = facts(" ".join(m for m in (r.details for r in self.scenario.requests)))
        shared = sorted(f for f in facts(question) if f in mine)
        if not shared or self.rng.random() < 0.3:
            return None
        return pick_fragment(self.rng, "{go ahead with|do it for|that's right for|yes to|go with|confirmed for} <f>",
                             "<f> {is right|is the one|sounds right|is correct|it is}", "<f>{, yes|, exactly|, please}",
                             "{that's|yes,} <f>", "{use|for} <f>", f=self.rng.choice(shared))

    def _first_name(self) -> str:
        """The user's first name, as the brief gives it ('You are Maya, ...'); empty when it does not."""
        m = re.match(r"^(?:You are|Play) ([A-Z][a-z]+)\b", self.scenario.instruction) or re.search(
            r"You are ([A-Z][a-z]+);", self.scenario.instruction)
        return m.group(1) if m else ""

    def _closing(self) -> str:
        """The persona's goodbye, sometimes with a thank-you and a last remark; never a second thank-you or a
        second farewell where the goodbye already has one ("perfect cheers cheers")."""
        rng = self.rng
        closing = self.scenario.closing
        thanked = THANKED.search(closing) is not None
        tail = expand(rng.choice(THANKS_TAIL), rng) if not thanked and rng.random() < 0.3 else ""
        mine = sorted(facts(" ".join(r.details for r in self.scenario.requests)))
        after = ""
        if mine and rng.random() < 0.4:  # people say back what got done: "so #W123 is sorted"
            after = pick(rng, "So <f> is {sorted|done|taken care of}{, great|}.", "{Good|Great}, {that's|so} <f> "
                         "{handled|done|dealt with}.", "{I'll|Let me} {note down|screenshot|remember} <f>.",
                         f=rng.choice(mine))
        elif rng.random() < 0.25:
            farewells = ("Have a {great|good|lovely|nice} <day>{!|.}", "{Take care|Bye for now|Talk soon}{!|.}")
            remarks = ("I'll {keep an eye on my email|check back if anything else comes up|let you know if it acts "
                       "up again}.", "{You've|You have} been {very|really|super} {helpful|patient|quick}{!|.}")
            said_bye = FAREWELL.search(closing) is not None
            after = pick(rng, *(remarks if said_bye else remarks + farewells),
                         day=rng.choice(["day", "evening", "weekend", "afternoon", "week", "night"]))
        parts = [p for p in (closing, tail, after) if p]
        return " ".join([_ended(p) for p in parts[:-1]] + parts[-1:])

    def _report(self, done: list[UserAction]) -> str:
        assert self.voice is not None
        rng = self.rng
        lead = pick(rng, "{Okay|Alright|Ok|Done|Right}{,|.|!| —}", "{Just did it|Did that|One sec... okay}{.|,| —}",
                    "", "{Hold on|Give me a second}... {okay|done}{.|,}")
        said = [self.voice.report(Action(name=a.call.function.name, arguments=a.call.parsed_arguments(),
                                          actor="user"), a.result, rng) for a in done]
        joined = said[0] if len(said) == 1 else " ".join(
            [said[0]] + [f"{pick(rng, '{Then|After that|And then|Now}', '')} {lower_first(s)}".strip()
                         for s in said[1:]])
        return " ".join(p for p in (lead, joined) if p)


def _ended(part: str) -> str:
    """A part of a turn that another follows, ended as a sentence ("Cheers. So #W1 is done", not "Cheers So")."""
    return part if part[-1:] in ".!?:)" else part + "."


def _resembles(a: str, b: str) -> bool:
    """A slip of ``b``: one character off, two neighbours swapped, or one dropped (as ``_near_miss`` makes)."""
    a, b = a.casefold(), b.casefold()
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    if len(a) + 1 == len(b):
        return any(b[:i] + b[i + 1:] == a for i in range(len(b)))
    return False


def _near_miss(fact: str, rng: random.Random) -> str:
    """The slip a person makes with a detail: two neighbouring digits swapped, or one digit off."""
    digits = [i for i, c in enumerate(fact) if c.isdigit()]
    swaps = [i for i in digits if i + 1 in digits and fact[i] != fact[i + 1]]
    if swaps and rng.random() < 0.7:
        i = rng.choice(swaps)
        return fact[:i] + fact[i + 1] + fact[i] + fact[i + 2:]
    if digits:
        i = rng.choice(digits)
        return fact[:i] + str((int(fact[i]) + rng.randrange(1, 9)) % 10) + fact[i + 1:]
    if "@" in fact and fact.index("@") > 2:
        i = rng.randrange(1, fact.index("@") - 1)
        return fact[:i] + fact[i + 1:]
    return fact


# -- the assistant --------------------------------------------------------------------------------------------------


@dataclass
class _Step:
    """One assistant move: a call, or text that waits for the user (``say`` returning None is skipped)."""

    action: Action | None = None
    say: Callable[[list[Message]], str | None] | None = None
    target: int | None = None  # for the request's target call: that request (its result feeds the report)


VERIFIED = ("{Thank you|Thanks|Great|Perfect}{,|!|.} {you're verified|I've found your account|that's you"
            "|I have your account{ here| up|}|you're all set on the verification}.",)


class ScriptedAssistant:
    def __init__(self, task: Task, env: Environment, rng: random.Random, perturbation: str | None = None) -> None:
        self.task = task
        self.env = env
        self.rng = rng
        self.perturbation = perturbation
        self.voice = env.device_voice
        self.target_ids: dict[int, str] = {}  # request -> id of its target call
        self.started: dict[int, int] = {0: 0}  # request -> where in the dialogue the user brought it up
        self.calls = 0
        self.voice_rate = rng.uniform(0.3, 0.8)  # how freely this dialogue's agent rewords its stock phrases
        self.steps = self._script()

    # -- the plan ---------------------------------------------------------------------------------------------------
    def _script(self) -> list[_Step]:
        task, rng, intents = self.task, self.rng, self.env.intents
        gold = task.gold_actions
        first = task.scenario.requests[0].actions[0]
        # Where nobody signs in, there is no identity step and no "you're verified".
        steps = [_Step(say=lambda _m: self.env.ask_identity(rng))] if self.env.authenticates else []
        steps += [_Step(action=a) for a in gold[:first]]
        planted = False
        for r, request in enumerate(task.scenario.requests):
            intent = intents[request.intent]
            target_at = _target_index(gold, request.actions, intent)
            target = gold[target_at]
            steps.append(_Step(say=lambda m, r=r, intent=intent: self._ask(m, r, intent)))
            steps.append(_Step(say=lambda m, r=r: self._recheck(m, r)))
            mistake = None if planted else self._applicable(intent, request.actions, target_at)
            planted = planted or mistake is not None
            steps += self._request_steps(r, intent, request.actions, target_at, mistake)
            steps.append(_Step(say=lambda m, r=r, i=intent, t=target, k=mistake: self._report(m, r, i, t, k)))
        return steps

    def _applicable(self, intent: Intent, indices: list[int], target_at: int) -> str | None:
        """The planted mistake, if this request is one it can be planted in."""
        mistake = self.perturbation
        if mistake is None:
            return None
        gold, target = self.task.gold_actions, self.task.gold_actions[target_at]
        spec = self.env.spec_of(target)
        user_writes = [i for i in indices if gold[i].actor == "user" and self.env.spec_of(gold[i]).writes]
        if mistake == "omit_outputs":
            ok = intent.tells_user
        elif mistake == "break_rule":
            ok = intent.forbidden(target, self.env.fresh()) is not None
        elif mistake == "wrong_device_step":
            ok = bool(user_writes) and self.voice is not None and self.voice.decoy(gold[user_writes[0]]) is not None
        elif mistake == "skip_device_check":
            ok = bool(user_writes) and any(gold[i].actor == "user" and i > user_writes[-1] for i in indices)
        else:
            ok = target.actor == "assistant" and spec is not None and spec.writes
            if mistake == "malformed_arguments":
                ok = ok and bool(target.arguments)  # a call without arguments has none to leave out
        return mistake if ok else None

    def _request_steps(self, r: int, intent: Intent, indices: list[int], target_at: int,
                       mistake: str | None) -> list[_Step]:
        gold, rng = self.task.gold_actions, self.rng
        last_fix = max((i for i in indices if gold[i].actor == "user" and self.env.spec_of(gold[i]).writes),
                       default=-1)
        actions = [i for i in indices if not (mistake == "skip_device_check" and gold[i].actor == "user"
                                              and not self.env.spec_of(gold[i]).writes and i > last_fix)]
        steps: list[_Step] = []
        run: list[Action] = []

        def flush() -> None:
            if run:
                guided = list(run)
                steps.append(_Step(say=lambda m, g=guided: self.voice.guide(g, rng, m)))
                run.clear()

        decoyed = False
        for i in actions:
            action = gold[i]
            spec = self.env.spec_of(action)
            if action.actor == "user":
                if mistake == "wrong_device_step" and not decoyed and spec.writes:
                    action, decoyed = self.voice.decoy(action), True
                if run and not self.env.spec_of(run[-1]).writes and spec.writes:
                    flush()  # a diagnosis is reported before the fix is asked for
                run.append(action)
                if mistake == "claim_without_call" and i == target_at:
                    run.pop()
                continue
            flush()
            is_target = i == target_at
            if spec.writes and not (is_target and mistake == "skip_confirmation"):
                steps.append(_Step(say=lambda _m, a=action: intent.confirm(a, rng)))
            if is_target and mistake == "claim_without_call":
                continue
            steps.append(_Step(action=self._mistaken(action, mistake) if is_target else action,
                               target=r if is_target else None))
            if is_target and mistake == "break_rule":
                forbidden = intent.forbidden(action, self.env.fresh())
                steps.append(_Step(say=lambda _m, a=forbidden: intent.confirm(a, rng)))
                steps.append(_Step(action=forbidden))
        flush()
        return steps

    def _mistaken(self, target: Action, mistake: str | None) -> Action:
        if mistake == "unknown_tool":
            return Action(name=f"{target.name}_now", arguments=target.arguments)
        if mistake == "malformed_arguments":
            args = dict(target.arguments)
            args.pop(sorted(args)[0])
            return Action(name=target.name, arguments=args)
        return target

    # -- what it says -----------------------------------------------------------------------------------------------
    def _said(self, messages: list[Message], r: int) -> set[str]:
        """The facts the user has stated since bringing up request ``r`` (case-folded)."""
        return {f.casefold() for m in messages[self.started.get(r, len(messages)):] if m.role == "user"
                for f in facts(m.content or "")}

    def _told(self, messages: list[Message], r: int) -> bool:
        """Whether the user has already given this request's specifics (every fact of them)."""
        wanted = {f.casefold() for f in facts(self.task.scenario.requests[r].details)}
        return bool(wanted) and wanted <= self._said(messages, r)

    def _ask(self, messages: list[Message], r: int, intent: Intent) -> str | None:
        if self._told(messages, r):
            return None  # the user gave the specifics up front: go straight to work
        ask = intent.ask(self.rng)
        if r == 0 and self.env.authenticates:
            return f"{expand(self.rng.choice(VERIFIED), self.rng)} {ask}"
        return ask

    def _recheck(self, messages: list[Message], r: int) -> str | None:
        """A detail that does not match what the user means (a slip): read it back and ask once."""
        if self._told(messages, r):
            return None
        last = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
        said = self._said(messages, r)
        missing = [f for f in facts(self.task.scenario.requests[r].details) if f.casefold() not in said]
        odd = sorted(f for f in facts(last) if any(_resembles(f, m) for m in missing))
        if not odd:
            return None
        return pick(self.rng, "{Hmm|Sorry|Thanks}{,|.} I can't find <odd> on your account. Could you double-check it?",
                    "{That|The} <odd> doesn't match what I have here{.|,} {could|would} you double-check it{?|, please?}",
                    "Could you double-check <odd>? {It doesn't match your account|I don't see it on file}.",
                    odd=odd[0])

    def _result_of(self, messages: list[Message], r: int) -> str:
        call_id = self.target_ids.get(r)
        return next((m.content or "" for m in messages if m.role == "tool" and m.tool_call_id == call_id), "")

    def _report(self, messages: list[Message], r: int, intent: Intent, target: Action, mistake: str | None) -> str:
        self.started[r + 1] = len(messages) + 1  # the user's next message brings up the next request
        closer = expand(self.rng.choice(CLOSERS), self.rng)
        if mistake == "claim_without_call":
            outputs = list(self.task.expected_outputs)  # asserts success it never checked
        elif mistake == "omit_outputs":
            outputs = []
        elif target.actor == "user":
            outputs = []
        else:
            result = self._result_of(messages, r)
            if is_error(result) or not result:
                return f"I'm sorry, that did not go through: {result or 'no result'} {closer}"
            outputs = intent.outputs(target, result_value(result))
        return f"{intent.report(target, outputs, self.rng).strip()} {closer}"

    async def respond(self, messages: list[Message], tools: list[Tool]) -> Message:
        while self.steps:
            step = self.steps.pop(0)
            if step.action is not None:
                self.calls += 1
                call_id = f"call_{content_hash([self.task.id, self.calls], 12)}"
                if step.target is not None:
                    self.target_ids[step.target] = call_id
                return Message(role="assistant", tool_calls=[ToolCall.make(call_id, step.action.name,
                                                                           step.action.arguments)])
            text = step.say(messages)
            if text is not None:
                return Message(role="assistant", content=agent_voice(text, self.rng, self.voice_rate))
        return Message(role="assistant", content=expand(self.rng.choice(CLOSERS), self.rng))


def _target_index(gold: list[Action], indices: list[int], intent: Intent) -> int:
    """The request's target: the last of its calls to the intent's target tool (the last call, for old tasks)."""
    return next((i for i in reversed(indices) if gold[i].name == intent.target_tool), indices[-1])
