"""Who the simulated users are and how they sound."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Persona:
    description: str
    greetings: tuple[str, ...]
    closings: tuple[str, ...]


PERSONAS: tuple[Persona, ...] = (
    Persona("a busy nurse coming off a night shift; short, direct messages",
            ("Hi.", "Hey,"), ("That's it, thanks.", "Great, that's all.")),
    Persona("a retired teacher who is polite and a little formal",
            ("Good morning.", "Hello there,"), ("Thank you kindly, that will be all.", "That's everything, thank you.")),
    Persona("a college student, casual and friendly",
            ("hey!", "yo, hi"), ("cool, that's all, thx!", "awesome, thanks!")),
    Persona("a small-business owner who values efficiency",
            ("Hello,", "Hi there."), ("Perfect. Nothing else.", "Good, that's all I needed.")),
    Persona("a first-time online shopper, slightly anxious",
            ("Hi, I hope you can help me.", "Hello, um,"), ("Oh good, thank you so much!", "Phew, thanks, that's all.")),
    Persona("a software engineer who is precise and expects exact answers",
            ("Hi.", "Hello."), ("Confirmed, thanks. Done here.", "That covers it, thanks.")),
    Persona("a parent juggling kids, writes in quick bursts",
            ("hi sorry, quick one", "Hi!"), ("ok great thanks!!", "perfect thank you, gotta run")),
    Persona("a frequent shopper who knows the store well and is a bit impatient",
            ("Hi again.", "Hey."), ("Fine, that's all.", "Okay. That's it.")),
)

INSTRUCTION_TEMPLATES: tuple[str, ...] = (
    "You are {name}, {persona}. {goals} {identity} {unknown}",
    "Play {name}, {persona}, contacting the store's support chat. {goals} {identity} {unknown}",
    "{goals} You are {name}; {persona}. {identity} {unknown}",
)
