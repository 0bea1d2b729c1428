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
                    end = template.find(">", i)
                    if end < 0:
                        raise ValueError(f"unbalanced template: {template!r}")
                    out.append(("slot", template[i + 1:end]))
                    i = end + 1
                elif c == "[":
                    inner, i = seq(i + 1, "]")
                    if i >= len(template):
                        raise ValueError(f"unbalanced template: {template!r}")
                    out.append(("opt", inner))
                    i += 1
                else:
                    options = []
                    i += 1
                    while True:
                        inner, i = seq(i, "|}")
                        options.append(inner)
                        if i >= len(template):
                            raise ValueError(f"unbalanced template: {template!r}")
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


_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_MARK = re.compile(r"\s+([,.!?;:])")
_DOUBLE_MARK = re.compile(r"([,;:])(?=[,.!?])")
_LEADING_MARK = re.compile(r"^[,;:]\s*")
_SENTENCE_START = re.compile(r"(^|[.!?]\s+)([a-z])")


def _capital(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2).upper()


def tidy(text: str, capitalize: bool = True) -> str:
    # compiled once: phrasing runs several times per turn, and ``re.sub``'s cache lookup cost more than the match
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_MARK.sub(r"\1", text)
    text = _DOUBLE_MARK.sub("", text)
    text = _LEADING_MARK.sub("", text)
    if capitalize:  # every sentence starts with a capital, however the alternatives fell
        text = _SENTENCE_START.sub(_capital, text)
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
    paraphrase: float = 0.8  # per swappable phrase: said with other words ("I'd like to" -> "I'm hoping to")
    fillers: float = 0.35  # a discourse marker at a sentence start ("So,", "tbh")


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
    text = paraphrase(text, rng, style.paraphrase, keep_first_words=2 if keep_first_word else 0)
    if not keep_first_word and rng.random() < style.fillers:
        text = with_filler(text, rng, style.register)
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
    "|that's {right|correct|what I want|it|the one|what I asked for}|go for it|{that all|all of that|everything}"
    " {sounds|looks|seems} {right|good|fine|spot on}|{do it|proceed|make it happen}[ please]|{exactly|perfect|great}"
    ", thanks|{please|} {go|carry} on|that's fine|{sounds|looks} like a plan|{let's|let's just} do it|"
    "{that works|works for me|fine by me}}[{.| —| then.} {thanks|thank you|appreciate it|cheers|much appreciated"
    "|thanks for checking|ty}]{.|!|}",
    "{Yes|Yeah|Sure|Okay|Yep|Correct}, {that's {right|correct|it}|{sounds|looks} {right|good}|all good|"
    "{exactly|precisely}|spot on}. {Please {go ahead|proceed|do it|continue}|Go ahead and {do it|proceed|make the "
    "change}|{Do|Make} the change|Proceed{ please|}|{Let's|We can} do that}{.|!}",
    "{Yes|Sure|Yep|Okay}[ please], <restated>{.|!| please.}",
    "{Yes|Yeah|Correct|Okay}{,| —} <restated>, {that's {right|correct}|exactly|like I said|as discussed}{.|!}",
    "{Yes|Yep|Sure}{,|.} <restated>[ — {thanks|cheers}].",
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
    "{Thanks|Thank you} for {getting back to me{ so fast|}|being here|the quick reply|taking this}.",
    "{I've|I have} {been meaning to sort this out|put this off for a while|tried the website already}"
    "{ for a few days| all week|}.",
    "{First time|This is my first time} {using this chat|contacting support|doing this}, {so|and} "
    "{bear with me|hopefully this works|I'm not sure how it works}.",
    "{Quick question|Hopefully this is quick|This should be simple}{, I think|}.",
    "I've been {on hold|waiting} for <n> minutes {already|on the phone line|before trying chat}.",
    "It's <h>:<mm> {here|where I am} and I'm {exhausted|still at work|about to head out}.",
    "{My|Our} {dog|cat|kid|neighbour's dog} {is|has been} {barking|demanding attention|climbing on me} the whole time.",
    "I {got your email|saw a notification|read the FAQ} {this morning|last night|<when>} {but|and} {it didn't help|I'm "
    "still confused}.",
    "{This is|It's} my {second|third|fourth} time {reaching out|writing in|asking} about this.",
    "I {spent|wasted} <n> minutes on the {website|app|FAQ} before {trying|opening} this chat.",
    "{Sorry|Excuse me} if I'm slow, I'm {on a train|at the airport|in a queue} {to|in} <place>.",
    "{My|Our} {internet|laptop|other phone} died at <h>:<mm> so I'm {on my tablet|borrowing a phone}.",
    "{I paid|I've already paid} <price> {for shipping|in fees|for this} {alone|already|}{.|, ugh.}",
    "{<Name>|My friend <Name>} said you {were helpful|sorted hers out|fixed theirs} in <n> minutes.",
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
PLACES = ("Lisbon", "Chicago", "Porto", "Denver", "Madrid", "Montreal", "Vienna", "Seattle", "Mexico City", "Dublin",
          "Boston", "Tokyo", "Berlin", "Prague", "Oslo", "Athens", "Toronto", "Seoul", "Lima", "Edinburgh")
"""Cities only: every template says "in <place>", "to <place>" or "from <place>" (no "I'm in the lake")."""


def small_talk(rng: random.Random, extra: tuple[str, ...] = ()) -> str:
    """A sentence of small talk (or one of ``extra``, a persona's own), with its small facts filled in."""
    return expand(rng.choice(SMALL_TALK + extra), rng, n=str(rng.randint(3, 45)), h=str(rng.randint(1, 12)),
                  mm=f"{rng.randrange(0, 60, 5):02d}", when=when(rng), price=price(rng), place=rng.choice(PLACES),
                  name=rng.choice(NAMES))


def price(rng: random.Random) -> str:
    """An amount as people quote it from memory: '$40', 'about $12.50'."""
    return pick_fragment(rng, "${n}", "about ${n}", "${n}.{c}", "like ${n}", n=str(rng.randint(5, 400)),
                         c=f"{rng.randrange(0, 100, 5):02d}")


def shuffled(text: str, rng: random.Random) -> str:
    """The sentences of ``text`` in another order, the way people give details out of order."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(sentences) < 2:
        return text
    rng.shuffle(sentences)
    return " ".join(sentences)


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


# -- saying the same thing with other words ---------------------------------------------------------------------------

# Phrase-level swaps that are grammatical wherever the phrase stands (so no context is needed); the first entry
# of a group is only a pattern, every entry is a possible replacement. Matched whole-word, case-insensitively.
SWAPS: tuple[tuple[str, ...], ...] = (
    ("I'd like to", "I want to", "I would like to", "I need to", "I'd love to", "I'm hoping to", "I'm trying to"),
    ("I want to", "I'd like to", "I need to", "I wanna", "I'm looking to"),
    ("I need to", "I have to", "I've got to", "I need to", "I must"),
    ("Can you", "Could you", "Would you", "Can you please", "Would you be able to", "Any chance you could"),
    ("Could you", "Can you", "Could you please", "Is it possible for you to", "Would you"),
    ("please", "please", "if you can", "if possible", "if that's okay"),
    ("I think", "I believe", "I guess", "I'm pretty sure", "I suppose", "it seems", "I reckon"),
    ("really", "very", "super", "so", "truly", "quite"),
    ("right now", "at the moment", "currently", "as we speak"),
    ("a couple of", "two or so", "a few", "a couple"),
    ("help me with", "help me out with", "give me a hand with", "assist me with"),
    ("problem", "issue", "trouble", "glitch"),
    ("fix", "sort out", "resolve", "fix up", "deal with"),
    # whole thanks phrases first, so their "thanks" is never swapped on its own ("Thanks a ton heaps")
    ("thanks a lot", "thanks a lot", "thanks a ton", "thanks heaps", "thanks a bunch", "many thanks"),
    ("thanks a ton", "thanks a ton", "thanks a lot", "thanks heaps", "thanks a bunch"),
    ("thanks heaps", "thanks heaps", "thanks a lot", "thanks a ton", "thanks a bunch"),
    ("thanks a bunch", "thanks a bunch", "thanks a lot", "thanks heaps", "many thanks"),
    ("many thanks", "many thanks", "thanks a lot", "thank you so much", "thanks a bunch"),
    ("have a good one", "have a good one", "have a great one", "take care", "have a nice one"),
    ("thanks", "thank you", "cheers", "many thanks", "thanks a bunch"),
    ("Thanks", "Thank you", "Cheers", "Many thanks", "Thanks a ton"),
    ("Okay", "OK", "Alright", "All right", "Right"),
    ("actually", "in fact", "to be honest", "honestly", "as it happens"),
    ("instead", "instead", "in its place"),
    ("again", "once more", "again"),
    ("anymore", "any longer", "anymore"),
    ("by mistake", "by accident", "accidentally", "in error"),
    ("don't need", "have no use for", "don't want", "don't really need"),
    ("doesn't work", "isn't working", "won't work", "has stopped working", "is broken"),
    ("won't load", "doesn't load", "never loads", "refuses to load"),
    ("slow", "slow", "sluggish", "crawling", "laggy"),
    ("quick question", "small question", "quick one", "brief question"),
    ("I'm not sure", "I don't know", "I have no idea", "no clue", "I'm unsure"),
    ("just", "just", "simply", "only"),
    ("right away", "straight away", "immediately", "asap"),
    ("a lot", "loads", "plenty", "heaps", "a ton"),
    ("for a while", "for some time", "for ages", "for a bit"),
    ("recently", "lately", "not long ago", "the other day"),
    ("tell me", "let me know", "give me", "share"),
    ("the amount", "the total", "the figure", "the number"),
    ("the new address", "the new one", "my new address", "the updated address"),
    ("I'm worried", "I'm concerned", "I'm nervous", "it worries me"),
    ("it's fine", "that's fine", "no worries", "all good"),
    ("that's all", "that's everything", "that's it", "nothing more"),
    ("phone", "phone", "mobile", "cell"),
    ("trip", "trip", "journey"),
    ("booking", "booking", "reservation", "ticket"),
    ("want it cancelled", "need it cancelled", "want to cancel it", "would like it cancelled"),
    ("charge", "bill", "charge"),
    ("I'm talking about", "I mean", "I'm referring to", "this is about", "it concerns"),
    ("I ordered", "I bought", "I purchased", "I got"),
    ("I got the wrong", "I ended up with the wrong", "they sent me the wrong", "I received the wrong"),
    ("something", "something", "an item", "a thing"),
    ("my card", "my card", "the card"),
    ("any difference", "any difference", "the difference", "whatever the difference is"),
    ("Is it possible", "Would it be possible", "Is there a way", "Can I"),
    ("I was wondering if", "I'm wondering if", "I wondered if", "Just wondering if"),
    ("as soon as possible", "asap", "soon", "quickly"),
    ("to be honest", "honestly", "tbh", "frankly"),
    ("for me", "for me", "on my behalf"),
    ("no idea", "no clue", "not a clue"),
    ("sounds right", "sounds good", "looks right", "is right", "seems right"),
    ("go ahead", "go ahead", "go on", "carry on"),
    ("all good", "all fine", "good", "fine"),
    ("put it on", "charge it to", "stick it on", "bill it to", "use"),
    ("one more thing", "another thing", "one other thing", "a second thing"),
    ("while I have you", "since you're here", "while we're at it", "since I've got you"),
    ("thank you for", "thanks for", "appreciate", "grateful for"),
    ("I would like", "I'd like", "I'd love", "I'd prefer"),
    ("Now that you mention it", "Come to think of it", "Actually", "Oh, wait"),
    ("my name is", "my name's", "I'm", "I am"),
    ("have a good", "have a great", "enjoy your", "have a nice"),
    ("give me", "send me", "tell me", "get me"),
    ("want to", "want to", "wish to", "hope to", "plan to"),
    ("would like", "would like", "would love", "want"),
    ("the one with", "the one that has", "the one containing"),
    ("you'll find it under", "it's listed under", "look under", "search for"),
    ("doesn't fit", "doesn't fit", "is the wrong size", "doesn't suit me"),
    ("my flight", "my flight", "my trip", "the flight"),
    ("stopped working", "quit working", "died", "went dead", "stopped"),
    ("the tracking number", "the tracking number", "the tracking code", "the tracking info", "a tracking number"),
    ("my order", "my order", "my purchase", "the order I placed"),
    ("a different day", "another day", "some other day", "a later day"),
    ("how much would", "what would", "how much will", "roughly how much would"),
    ("can I switch", "could I swap", "can I change", "is it possible to switch"),
    ("Would it be possible", "Is it possible", "Could I", "Any way"),
    ("I'd love to", "I'd like to", "I'd really like to", "I'd be happy to"),
    ("the line is", "the number is", "the line's", "it's the line"),
    ("I have a", "I've got a", "there's a", "I have this"),
    ("it's only", "it's just", "it's only ever", "only"),
    ("from home", "from the house", "from my place"),
    ("pay it with", "pay with", "settle it with", "cover it with"),
    ("thanks so much", "thanks so much", "thank you so much", "many thanks", "thanks a lot"),
    ("thank you so much", "thanks so much", "thank you very much", "many thanks", "thanks heaps"),
    ("here you go", "here it is", "there you go", "here"),
    # the store's most repeated phrases in `make demo` (its user-turn trigrams, most frequent first)
    ("to change the", "to change the", "to alter the", "to update the", "to edit the", "to adjust the"),
    ("to switch the", "to swap the", "to exchange the", "to trade in the", "to switch out the"),
    ("go on my", "go on my", "go onto my", "land on my", "be put on my", "go back on my"),
    ("my zip is", "my zip is", "my zip code is", "my postcode is", "the zip is", "zip is"),
    ("and my zip", "and my zip", "and the zip", "plus my zip", "and zip"),
    ("refund to my", "refund to my", "refund back to my", "money back to my", "refund onto my"),
    ("to return the", "to return the", "to send back the", "to give back the", "to ship back the"),
    ("my email is", "my email is", "my email address is", "my e-mail is", "the email is", "the address is"),
    ("would I get back", "would I get back", "would I receive", "would come back to me", "would I be refunded"),
    ("it should go to", "it should go to", "it needs to go to", "it has to go to", "it ought to go to"),
    ("what's the tracking", "what's the tracking", "where's the tracking", "can I get the tracking",
     "could I have the tracking"),
    ("the one where I got", "the one where I got", "the one in which I got", "the one where I ordered"),
    ("order with the", "order with the", "order that included the", "order featuring the", "order that had the"),
    ("that has the", "that has the", "that includes the", "that contains the", "that had the"),
    ("order I placed", "order I placed", "order I made", "order I put in", "order I submitted"),
    ("you can find me under", "you can find me under", "I'm listed under", "look me up under",
     "I'm registered under", "search for me under"),
    ("new address is", "new address is", "new address will be", "new address should be", "updated address is"),
    ("difference can go", "difference can go", "difference should go", "balance can go", "difference may go"),
    ("in its place", "in its place", "as a replacement", "in exchange", "in place of it"),
    ("I mean the", "I mean the", "I'm referring to the", "I meant the", "I'm thinking of the"),
    ("and need to", "and need to", "and have to", "and want to", "and would like to"),
    ("if you can", "if you can", "if you could", "if that's possible", "if it's no trouble"),
    ("can go on", "can go on", "can be put on", "can land on", "may go on"),
    ("is the one", "is the one", "is the right one", "is it", "is the one I mean"),
    ("This is about", "This is about", "This concerns", "This relates to", "My question is about"),
)
FILLERS = {  # one word each: a filler's value is the new neighbours it gives the words after it
    "formal": ("Incidentally,", "Additionally,", "Admittedly,", "Frankly,", "Regrettably,", "Naturally,", "Indeed,"),
    "neutral": ("So,", "Basically,", "Honestly,", "Anyway,", "Well,", "Look,", "Okay,", "Right,", "Hmm,", "Oh,",
                "Also,", "Actually,", "Ah,", "Um,", "Now,", "Plus,"),
    "casual": ("so", "like,", "tbh", "basically", "lol", "ngl,", "anyway", "btw,", "idk,", "welp,", "ugh,", "omg",
               "yeah,", "hmm", "ok,", "literally"),
    "terse": ("Note:", "FYI,", "Also:", "Again:", "Re:"),
}
# The assistant's swaps stay clear of every phrase something reads in its text: the user's cues (verify your
# identity, proceed / go ahead, anything else, double-check, the device steps), the policy's question words, and
# the facts of required outputs (no pattern has a digit).
ASSISTANT_SWAPS: tuple[tuple[str, ...], ...] = (
    ("I'd be glad to help", "I'm happy to help", "Glad to help", "I can certainly help", "Happy to assist"),
    ("Happy to help", "Glad to help", "I'd be happy to help", "Certainly"),
    ("Thank you", "Thanks", "Much appreciated", "Thanks a lot", "Thank you kindly"),
    ("Of course", "Certainly", "Absolutely", "Sure thing", "No problem"),
    ("I'm sorry", "Sorry", "My apologies", "I apologise"),
    ("Unfortunately", "I'm afraid", "Regrettably", "Sadly"),
    ("Let me", "I'll", "Allow me to", "Let me just"),
    ("Done", "All done", "Completed", "That's done"),
    ("All set", "You're all set", "Everything's set", "That's all set"),
    ("Great", "Excellent", "Perfect", "Wonderful"),
    ("could you", "can you", "would you"),
    ("Could you", "Can you", "Would you"),
    ("I've", "I have"),
    ("is on its way", "is heading your way", "is being sent"),
    ("within a few days", "in a few days", "shortly", "within a couple of days"),
    ("Sorry about that", "Apologies for that", "Sorry for the trouble", "I apologise for that"),
    ("once we receive", "when we receive", "as soon as we receive"),
    ("right away", "straight away", "immediately"),
    ("Good news", "Happily", "Good news here"),
    ("explains it", "would explain it", "is the cause"),
)


Swaps = tuple[re.Pattern, dict[str, tuple[str, ...]]]


def _compiled(groups: tuple[tuple[str, ...], ...], openers_anywhere: bool = False) -> Swaps:
    """Every phrase of a table in one pattern, longest first, with its replacements. One pass swaps each phrase of
    a text at most once, so a replacement is never swapped again ("Thanks" -> "Many thanks" stays so).

    A phrase written capitalized (other than one starting with "I") is a sentence opener: it matches, as
    written, only at the start of a sentence ("Done." but not "That's done"; "All set" but not "You're all set").
    Other phrases match anywhere, in any case; groups whose phrase differs only in case are merged. With
    ``openers_anywhere`` (the user's table: "so can you ..." reads as well as "Can you ...") an opener matches
    in lower case anywhere too.
    """
    table: dict[str, tuple[str, ...]] = {}
    for group in groups:
        keys = [group[0]] if _opener(group[0]) else []
        if not keys or openers_anywhere:
            keys.append(group[0].lower())
        for key in keys:
            known = table.get(key, (group[0],))
            table[key] = known + tuple(g for g in group[1:] if g not in known[1:])
    keys = sorted(table, key=lambda k: (-len(k), not _opener(k)))
    phrases = "|".join(r"(?:^|(?<=[.!?:] ))(?-i:" + re.escape(k) + ")" if _opener(k) else re.escape(k) for k in keys)
    return re.compile(r"(?<![\w'])(?:" + phrases + r")(?![\w'])", re.I), table


def _opener(phrase: str) -> bool:
    return phrase[:1].isupper() and not phrase.startswith(("I ", "I'"))


_SWAPS = _compiled(SWAPS, openers_anywhere=True)
_ASSISTANT_SWAPS = _compiled(ASSISTANT_SWAPS)


def agent_voice(text: str, rng: random.Random, rate: float) -> str:
    """The assistant's text in this dialogue's agent's words (``ASSISTANT_SWAPS``)."""
    return paraphrase(text, rng, rate, swaps=_ASSISTANT_SWAPS)


def paraphrase(text: str, rng: random.Random, rate: float, keep_first_words: int = 0,
               swaps: Swaps | None = None) -> str:
    """Each swappable phrase replaced, with chance ``rate``, by another way of saying it (case kept at the start).

    The first ``keep_first_words`` words stay as they are (the "yes" of a consent); facts are never matched,
    since no swap pattern contains a digit.
    """
    if rate <= 0:
        return text
    floor = 0
    if keep_first_words:
        words = list(re.finditer(r"\S+", text))
        floor = words[min(keep_first_words, len(words)) - 1].end() if words else 0
    pattern, table = swaps or _SWAPS

    def swap(m: re.Match) -> str:
        if m.start() < floor or rng.random() >= rate:
            return m.group(0)
        new = rng.choice((table.get(m.group(0)) or table[m.group(0).lower()])[1:])
        if m.group(0)[:1].isupper():
            return new[:1].upper() + new[1:]
        keep = new.startswith(("I ", "I'")) or new[:2].isupper()  # "I", and acronyms ("OK")
        return new if keep else new[:1].lower() + new[1:]

    return pattern.sub(swap, text)


def with_filler(text: str, rng: random.Random, register: str) -> str:
    """A discourse marker ("So,", "tbh", "Basically,") at a sentence start, as people pad their typing."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    i = rng.randrange(len(sentences))
    filler = rng.choice(FILLERS.get(register, FILLERS["neutral"]))
    s = sentences[i]
    if not s or not s[0].isalpha() or s.split()[0].strip(",.!?:").lower() == filler.strip(",.!?:").lower():
        return text  # no "hmm hmm" / "Okay, okay"
    first = s[0].lower() + s[1:] if not s.startswith(("I ", "I'")) else s
    sentences[i] = f"{filler} {first}"
    return " ".join(sentences)


def refer(rng: random.Random, ref: str) -> str:
    """The sentence that names what the request is about ('It's order #W123.'), in one of many ways."""
    return pick(rng, "It's <ref>.", "<Ref>.", "That's <ref>.", "I'm talking about <ref>.", "This is about <ref>.",
                "{Okay|So}, it's <ref>.", "The one I mean is <ref>.", "You'll find it under <ref>.",
                "{It should be|That'd be|That would be} <ref>.", "{Regarding|About} <ref>:", "{Look up|Check} <ref>.",
                "<Ref> is the one.", "{For|With} <ref>.", "{We're talking|I'm asking} about <ref>.",
                "{My question is about|This concerns} <ref>.", "{Reference|Ref}: <ref>.", "Got it here: <ref>.",
                "{Pulling it up|Checking my email}... <ref>.", "{It's listed as|On my end it says} <ref>.", ref=ref)


_BRANDS = {"visa": "Visa", "mastercard": "Mastercard", "amex": "Amex"}


def say_card(rng: random.Random, brand: str, last_four: str) -> str:
    """A card as its owner names it; the last four digits survive every form."""
    return pick_fragment(rng, "<b> card ending in <l4>", "<B> ending <l4>", "card ending in <l4>", "<B> that ends in "
                         "<l4>", "credit card ending <l4>", "<B> (last four <l4>)", "<B> card, the one ending <l4>",
                         "<B> with the last digits <l4>", "card that ends <l4>", "<l4> card", "<B> *<l4>",
                         "<B> — ends in <l4>", "usual <B>, <l4>", b=brand, B=_BRANDS.get(brand, brand.title()),
                         l4=last_four)
