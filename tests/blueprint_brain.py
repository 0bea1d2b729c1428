"""A scripted blueprint writer, reviewer committee and combiner, served by the loopback server.

It reads the context the model-blueprint generator sends (the user's goals
with their calls, and the data of the read calls) and writes the blueprint a
careful model would: authentication, each goal's call, outputs read off the
executed results. Tests choose users for whom it misbehaves, so every branch
of the funnel is taken by real HTTP round trips:

- ``faults[user] = kind``: the first draft is broken (``wrong_id``: a goal call
  on an order that does not exist; ``no_auth``: no authentication;
  ``bad_json``; ``ungrounded``: an output no result contains); a rewrite that
  received the rule's feedback is correct;
- ``demanding``: reviewers reject until the instruction states a deadline, which
  the writer adds once the feedback asks for it (approve after feedback);
- ``hopeless``: reviewers always reject (dropped after K rounds);
- reviewer seeds in ``grumpy`` always vote no with low scores (majority vs mean).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from loopback import Reply

DEADLINE = "I need this sorted out today."


class BlueprintBrain:
    def __init__(self, config: Any, faults: dict[str, str] | None = None, demanding: set[str] | None = None,
                 hopeless: set[str] | None = None, grumpy: set[int] | None = None, jitter_s: float = 0.0) -> None:
        from pipelines.steps import build_steps

        self.env = build_steps(config).env
        self.faults = faults or {}
        self.demanding = demanding or set()
        self.hopeless = hopeless or set()
        self.grumpy = grumpy or set()
        self.jitter_s = jitter_s
        self.intent_for = {i.target_tool: i for _, i in sorted(self.env.intents.items())}
        self.users = self.env.users()
        self.seen: list[str] = []  # users of first-round writer prompts, in arrival order
        self.examples: list[list[str]] = []  # the few-shot examples each of those prompts carried

    def handles(self, body: dict[str, Any]) -> bool:
        fmt = body.get("response_format") or {}
        return fmt.get("json_schema", {}).get("name") in ("blueprint", "review", "combined_instruction")

    def __call__(self, body: dict[str, Any]) -> Reply:
        name = body["response_format"]["json_schema"]["name"]
        messages = body["messages"]
        # A delay that differs per request reorders completions: the pool must not care.
        delay = int(hashlib.sha1(json.dumps(messages).encode()).hexdigest()[:4], 16) / 65535 * self.jitter_s
        if name == "blueprint":
            return Reply(content=self._write(messages), delay_s=delay)
        if name == "review":
            return Reply(content=self._review(messages[-1]["content"], body.get("seed")), delay_s=delay)
        tasks = re.findall(r"<task>(.*?)</task>", messages[-1]["content"], re.S)
        words = [json.loads(t)["instruction"] for t in tasks]
        return Reply(content=json.dumps({"instruction": " After that, ".join(words), "known_info": {},
                                         "unknown_info": []}), delay_s=delay)

    # -- the writer -------------------------------------------------------------------------------------
    def _write(self, messages: list[dict[str, Any]]) -> str:
        context = json.loads(re.search(r"<context>(.*?)</context>", messages[1]["content"], re.S).group(1))
        feedback = " ".join(m["content"] for m in messages[3::2])
        user = context["user_id"]
        if len(messages) == 2:
            self.seen.append(user)
            self.examples.append(re.findall(r"<example>(.*?)</example>", messages[1]["content"], re.S))
        blueprint = self._blueprint(context)
        fault = self.faults.get(user) if len(messages) == 2 else None
        if fault == "bad_json":
            return '{"instruction": "cut off'
        if fault == "wrong_id":
            call = blueprint["requests"][-1]["actions"][-1]
            call["arguments"] = {k: ("#W0000000" if k == "order_id" else v) for k, v in call["arguments"].items()}
        if fault == "no_auth":
            blueprint["authentication"] = []
        if fault == "ungrounded":
            blueprint["outputs"].append("$123456.78")
        if "deadline" in feedback:
            blueprint["instruction"] += " " + DEADLINE
        return json.dumps(blueprint)

    def _blueprint(self, context: dict[str, Any]) -> dict[str, Any]:
        data = [d["call"] for d in context["data"]]
        goals = [g["call"] for g in context["goals"]]
        auth, lookups = data[0], [c for c in data[1:] if c not in goals]
        requests = [{"opening": "Hi, " + _first_person(g["goal"]), "details": "Yes: " + _first_person(g["goal"]),
                     "actions": ([*lookups] if n == 0 else []) + [g["call"]]}
                    for n, g in enumerate(context["goals"])]
        env = self.env.fresh()
        outputs: list[str] = []
        for call in [auth, *[a for r in requests for a in r["actions"]]]:
            result = env.execute(call["name"], call["arguments"])
            if call in goals and not result.startswith("Error"):
                outputs += self.intent_for[call["name"]].outputs(_action(call), json.loads(result))
        says = ("My email is " + auth["arguments"]["email"] if "email" in auth["arguments"]
                else "I'm {first_name} {last_name}, zip {zip}".format(**auth["arguments"]))
        return {"instruction": f"You are {context['persona']}. " + " ".join(g["goal"] for g in context["goals"]),
                "identity": says + ".", "known_info": {k: str(v) for k, v in auth["arguments"].items()},
                "unknown_info": [], "authentication": [auth], "requests": requests, "outputs": outputs}

    # -- the reviewers ----------------------------------------------------------------------------------
    def _review(self, prompt: str, seed: int | None) -> str:
        user = next((u for u in self.users if f'"{u}"' in prompt), None)
        instruction = prompt.split("## Instruction given to the simulated user\n", 1)[1].split("\n", 1)[0]
        if seed in self.grumpy or user in self.hopeless:
            return _review(2, False, "The instruction is vague about why the user wants this.")
        if user in self.demanding and DEADLINE not in instruction:
            return _review(3, False, "Give the user a deadline, so the urgency is realistic.")
        return _review(5, True, "")


def _review(score: int, approve: bool, feedback: str) -> str:
    return json.dumps({"correctness": score, "completeness": score, "realism": score, "approve": approve,
                       "feedback": feedback})


def _first_person(goal: str) -> str:
    return re.sub(r"\byour\b", "my", re.sub(r"^You want", "I want", goal))


def _action(call: dict[str, Any]):
    from schemas import Action

    return Action(name=call["name"], arguments=call["arguments"])


class Router:
    """Several brains behind one server: the first that ``handles`` a request answers it."""

    def __init__(self, *brains: Any) -> None:
        self.brains = brains

    def __call__(self, body: dict[str, Any]) -> Reply:
        for brain in self.brains:
            if not hasattr(brain, "handles") or brain.handles(body):
                return brain(body)
        return Reply(status=400, error="no brain handles this request")
