"""Phrasing for the offline agents: templates with alternatives, and how a person's typing changes them.

Offline dialogues are built by scripted agents, so whatever variety they have
comes from here. Two tools:

- ``expand`` turns a template into one phrasing: ``{a|b|c}`` picks one
  alternative (groups nest), ``[...]`` is optional, ``<name>`` is a slot filled
  verbatim (``<Name>``: the same slot with a capital first letter). A sentence
  with four groups of four reads 256 ways, which is what keeps one stock turn
  from appearing in hundreds of dialogues.
- ``Style`` is how one persona writes (register, length, typos, lower case,
  punctuation), applied by ``styled`` to everything the user says. Facts (ids,
  amounts, emails, anything with a digit) and the first word of a consent are
  never touched, so verification reads the same details and the same "yes".

All randomness comes from the ``random.Random`` passed in: a task and a seed
always give the same dialogue.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from simulators.text import facts

# -- templates ------------------------------------------------------------------------------------------------------

_Node = str | tuple  # text, ("alt", [sequences]), ("opt", sequence), ("slot", name)


@lru_cache(maxsize=4096)
def _parse(template: str) -> tuple:
    """A template as a tree (cached: templates are constants, expansions are not)."""

    def seq(i: int, stop: str) -> tuple[list, int]:
        out: list = []
        buf: list[str] = []
        while i < len(template):
            c = template[i]
            if c in stop:
                break
            if c in "{[<":
                if buf:
                    out.append("".join(buf))
                    buf = []
                if c == "<":
                    end = template.index(">", i)
                    out.append(("slot", template[i + 1:end]))
                    i = end + 1
                elif c == "[":
                    inner, i = seq(i + 1, "]")
                    out.append(("opt", inner))
                    i += 1
                else:
                    options = []
                    i += 1
                    while True:
                        inner, i = seq(i, "|}")
                        options.append(inner)
                        if template[i] == "}":
                            i += 1
                            break
                        i += 1
                    out.append(("alt", options))
                continue
            buf.append(c)
            i += 1
        if buf:
            out.append("".join(buf))
        return out, i

    tree, end = seq(0, "")
    if end != len(template):
        raise ValueError(f"unbalanced template: {template!r}")
    return tuple(tree)


def _render(nodes: list | tuple, rng: random.Random, slots: dict[str, str], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "slot":
            name = node[1]
            if name in slots:
                out.append(slots[name])
            else:  # <Name> is <name> starting with a capital
                value = slots[name[:1].lower() + name[1:]]
                out.append(value[:1].upper() + value[1:])
        elif node[0] == "opt":
            if rng.random() < 0.5:
                _render(node[1], rng, slots, out)
        else:
            _render(rng.choice(node[1]), rng, slots, out)


def expand(template: str, rng: random.Random, **slots: str) -> str:
    """One phrasing of ``template``, as a sentence: spaces tidied, so optional parts leave no gaps; capitalized."""
    out: list[str] = []
    _render(_parse(template), rng, slots, out)
    return tidy("".join(out))


def fragment(template: str, rng: random.Random, **slots: str) -> str:
    """``expand`` for a phrase that goes inside a sentence: tidied, not capitalized."""
    out: list[str] = []
    _render(_parse(template), rng, slots, out)
    return tidy("".join(out), capitalize=False)


def tidy(text: str, capitalize: bool = True) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r"([,;:])(?=[,.!?])", "", text)
    text = re.sub(r"^[,;:]\s*", "", text)
    if capitalize:  # every sentence starts with a capital, however the alternatives fell
        text = re.sub(r"(^|[.!?]\s+)([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text


def pick(rng: random.Random, *templates: str, **slots: str) -> str:
    """``expand`` of one of several templates."""
    return expand(rng.choice(templates), rng, **slots)


def pick_fragment(rng: random.Random, *templates: str, **slots: str) -> str:
    """``fragment`` of one of several templates."""
    return fragment(rng.choice(templates), rng, **slots)


def lower_first(text: str) -> str:
    """For a sentence that continues another: 'I need ...' keeps its 'I', 'Can you' becomes 'can you'."""
    if not text or text.startswith(("I ", "I'", "#")) or (len(text) > 1 and text[1].isupper()):
        return text
    return text[:1].lower() + text[1:]


# -- how a person writes --------------------------------------------------------------------------------------------

Register = Literal["formal", "neutral", "casual", "terse"]


@dataclass(frozen=True)
class Style:
    """How one persona writes; every rate is a chance per turn (``typos``: per word)."""

    register: Register = "neutral"
    chatty: float = 0.3  # an extra sentence: small talk, a bit of backstory
    typos: float = 0.0
    lowercase: bool = False
    punctuation: Literal["full", "light", "excited"] = "full"
    indirect: float = 0.2  # "I was wondering if ..." rather than "I need to ..."
    correction: float = 0.1  # a detail first given wrong, then corrected
    volunteer: float = 0.2  # gives the specifics before being asked (out of order)


_CONTRACTIONS = [("I would like", "I'd like"), ("I am ", "I'm "), ("do not", "don't"), ("it is ", "it's "),
                 ("that is ", "that's "), ("I have been", "I've been"), ("cannot", "can't"), ("I will ", "I'll "),
                 ("does not", "doesn't"), ("is not", "isn't"), ("What is", "What's"), ("you are", "you're")]
_CASUAL = [(r"\bplease\b", "pls"), (r"\bthanks\b", "thx"), (r"\byou\b", "u"), (r"\bokay\b", "ok"),
           (r"\bbecause\b", "cuz")]
_FUNCTION_WORDS = frozenset("""a about after all also am an and any are as at be been but by can could did do does for
from get go had has have he her here him his how i if in into is it its just know let like me more my no not now of
on one or our out please so some that the their them then there these they this to up us want was we were what when
where which who will with would yes you your yeah yep sure okay""".split())
_KEYS = "qwertyuiopasdfghjklzxcvbnm"
# Words a policy check reads in the user's text (a request for compensation): a slip there changes the meaning.
_KEYWORDS = ("compens", "voucher", "certificate")


def styled(text: str, style: Style, rng: random.Random, keep_first_word: bool = False) -> str:
    """``text`` as this persona types it. Facts and (for consents) the first word stay exactly as they are."""
    protected = facts(text)
    if style.register == "formal":
        for short, long in ((b, a) for a, b in _CONTRACTIONS):
            text = text.replace(short, long)
    elif style.register in ("casual", "terse"):
        for long, short in _CONTRACTIONS:
            text = text.replace(long, short)
        if style.register == "casual" and rng.random() < 0.3:
            pattern, short = rng.choice(_CASUAL)
            text = re.sub(pattern, short, text, count=1)
    if style.typos:
        text = _typos(text, style.typos, rng, protected, keep_first_word)
    if style.lowercase:
        text = _lowercase(text, protected, keep_first_word)
    if style.punctuation == "light":
        text = text.rstrip(".")
    elif style.punctuation == "excited" and text.endswith(".") and rng.random() < 0.4:
        text = text[:-1] + rng.choice(["!", "!!", " :)"])
    return text


def _typos(text: str, rate: float, rng: random.Random, protected: set[str], keep_first_word: bool) -> str:
    """Slips in plain words only: a token with a digit, an '@' or any protected fact is never touched; with
    ``keep_first_word``, nor the first two words ("go ahead" is a consent as much as "yes")."""
    tokens = re.split(r"(\s+)", text)
    opening = [i for i, t in enumerate(tokens) if t.strip()][:2]
    for i, token in enumerate(tokens):
        m = _PLAIN.match(token)
        if (m is None or (keep_first_word and i in opening) or token in protected
                or any(f in token for f in protected)):
            continue
        lead, word, trail = m.groups()
        if (len(word) >= 4 and word.lower() not in _FUNCTION_WORDS and not word.lower().startswith(_KEYWORDS)
                and rng.random() < rate):
            tokens[i] = lead + _typo(word, rng) + trail
    return "".join(tokens)


_PLAIN = re.compile(r"^([\"'(]*)([A-Za-z]+)([.,!?;:)\"']*)$")


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]  # swapped neighbours
    if kind == 1:
        return word[:i] + word[i + 1:]  # a letter dropped
    if kind == 2:
        return word[:i] + word[i] + word[i:]  # a letter doubled
    return word[:i] + rng.choice(_KEYS) + word[i + 1:]  # a wrong key


def _lowercase(text: str, protected: set[str], keep_first_word: bool) -> str:
    out = []
    for token in re.split(r"(\s+)", text):
        out.append(token if token in protected or any(c.isdigit() for c in token) or "@" in token
                   else token.lower())
    return "".join(out)


# -- stock sentences any domain's user and assistant use ------------------------------------------------------------

CONSENT = (
    "{Yes|Yes|Yeah|Yep|Sure|Okay|OK|Correct|Confirmed|Go ahead}{,| —|.|!} {please {go ahead|do it|do that|proceed}"
    "|that's {right|correct|what I want|it}|go for it|{that all|all of that} sounds {right|good}|{do it|proceed}"
    "[ please]|{exactly|perfect}, thanks|you can go ahead|that's fine}[{.| —| then.}"
    " {thanks|thank you|appreciate it|cheers|much appreciated}]{.|!|}",
    "{Yes|Yeah|Sure|Okay|Yep|Correct}, {that's {right|correct}|sounds right|all good}. {Please {go ahead|proceed"
    "|do it}|Go ahead and {do it|proceed}|You can go ahead}{.|!}",
    "{Yes|Sure|Yep|Okay}[ please], <restated>{.|!| please.}",
    "{Yes|Yeah|Correct|Okay}{,| —} <restated>, {that's {right|correct}|exactly|like I said}{.|!}",
)
"""A customer's yes: always starts with a consent word (the policy checks that), then a wide tail."""

TRANSITIONS = (
    "{Yes|Actually, yes|Oh, yes|Yeah|There is, actually|Actually|Now that you mention it|One more thing, actually"
    "|Yes, while I have you|Oh right, one more thing|Yes, sorry, one more|Hmm, yes|Since I have you}{,|.| —}",
)

SMALL_TALK = (
    "{Hope|I hope} your {day|shift|morning|afternoon|week} is going {well|okay|alright|smoothly}.",
    "{Sorry|Apologies}, it's been {{a long|a crazy|a hectic} {day|week|morning}|one of those {days|weeks|mornings}}.",
    "I'm {on my lunch break|between meetings|in a bit of a rush|on the bus|waiting for a call}, so "
    "{I'll keep this short|bear with me|sorry if I'm brief}.",
    "{Thanks|Thank you} for {getting back to me|being here|the quick reply|taking this}{ so fast|}.",
    "{I've|I have} {been meaning to sort this out|put this off for a while|tried the website already}"
    "{ for a few days| all week|}.",
    "{First time|This is my first time} {using this chat|contacting support|doing this}, {so|and} "
    "{bear with me|hopefully this works|I'm not sure how it works}.",
    "{Quick question|Hopefully this is quick|This should be simple}{, I think|}.",
)

THANKS_TAIL = ("{Thanks|Thank you|Thanks a lot|Much appreciated|Cheers|Thanks so much}{.|!|}",)

CLOSERS = (
    "Is there anything else I can help you with?",
    "{Is there|Was there} anything else {I can help with|you need|I can do for you}{ today|}?",
    "Anything else {I can do for you|you need|I can help with}{ today|}?",
    "{Can|May} I help with anything else{ today|}?",
    "Is there something else {I can help you with|you'd like to sort out}{ while you're here|}?",
)
"""Every closer says "anything else" or "something else": the scripted user listens for exactly that."""


def consent(rng: random.Random, style: Style, restated: str | None = None) -> str:
    """A yes to a confirmation question; ``restated`` is the change in the customer's words, when there is one."""
    templates = CONSENT if restated else CONSENT[:2]
    return styled(expand(rng.choice(templates), rng, restated=restated or ""), style, rng, keep_first_word=True)


def indirect(core: str, rng: random.Random) -> str:
    """A direct request made indirect, where it starts the usual way ('I need to X' -> 'Would it be possible to X')."""
    m = re.match(r"^(I need to|I want to|I'd like to|I would like to|Can you|Could you|Please) (.*)$", core)
    if not m:
        return core
    rest = m.group(2).rstrip(".!?")
    return expand("{I was wondering if {I could|it's possible to|you could help me}|Would it be possible to"
                  "|Is there any way {I could|to}|I'm hoping {I can|to}|Any chance I could} <rest>{?|.}", rng,
                  rest=rest)


# -- the small facts of a person's life, which make two customers' stories differ -----------------------------------

NAMES = ("Maya", "Leo", "Ines", "Theo", "Ruth", "Omar", "Jess", "Ari", "Dana", "Sam", "Nina", "Raul", "Keiko", "Ben",
         "Lila", "Marco", "Tess", "Jamal", "Wren", "Petra", "Hollis", "Anya", "Cleo", "Dev", "Rosa", "Eli", "Freya",
         "Gus", "Ivo", "June", "Kofi", "Lars", "Mina", "Nico", "Oona", "Pia", "Quinn", "Remy", "Sana", "Tariq")
RELATIONS = ("sister", "brother", "mom", "dad", "son", "daughter", "partner", "neighbor", "coworker", "friend",
             "roommate", "aunt", "uncle", "cousin", "grandma", "grandpa", "niece", "nephew", "boss", "husband", "wife")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
PLACES = ("Lisbon", "Chicago", "the coast", "my parents' place", "Denver", "the lake", "Montreal", "a conference",
          "Seattle", "Mexico City", "a wedding", "the mountains", "Boston", "Tokyo", "a work trip", "Berlin")


def someone(rng: random.Random) -> str:
    """'my sister Maya', 'my coworker', 'Theo (my neighbor)': a person in the customer's story."""
    return pick_fragment(rng, "my <rel> <name>", "my <rel>", "<name> (my <rel>)", "my <rel> <name>",
                         rel=rng.choice(RELATIONS), name=rng.choice(NAMES))


def when(rng: random.Random) -> str:
    """A past moment, as people say it: 'last Tuesday', '3 days ago', 'on March 14'."""
    return pick_fragment(rng, "{last|this past} <day>", "<n> days ago", "on <month> <d>", "{a couple of|two|a few} weeks ago",
                "{over|on} the weekend", "on <day>", "<n> or <m> days ago", "{earlier|at the start of} this week",
                         day=rng.choice(DAYS), n=str(rng.randint(2, 12)), m=str(rng.randint(13, 15)),
                         month=rng.choice(MONTHS), d=str(rng.randint(1, 28)))
