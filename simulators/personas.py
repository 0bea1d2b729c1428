"""Who the simulated users are and how they write.

A persona is a description (what a model user simulator is told to play) and
a ``Style`` (what the scripted user does with its words). The task stores
only the description, so ``style_of`` finds the style again from it; a
description this module does not know (a model-written blueprint's, a
plug-in's) gets a style derived from its hash, never an error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from simulators.phrasing import Style


@dataclass(frozen=True)
class Persona:
    description: str
    style: Style
    greetings: tuple[str, ...]  # templates (see ``simulators.phrasing.expand``)
    closings: tuple[str, ...]
    asides: tuple[str, ...] = ()  # persona-specific small talk


_FORMAL_HI = ("{Good {morning|afternoon|day}|Hello}{.|,}", "Hello there{.|,}", "Good {morning|afternoon}, {I hope "
              "you can assist me|I hope you are well}.")
_NEUTRAL_HI = ("{Hi|Hello|Hey there}{.|,|!}", "Hi{,| —} {thanks for {taking|answering} my chat|hope you can help}.",
               "Hello{,|!} {quick question|I need a hand with something}.")
_CASUAL_HI = ("{hey|hi|heyy|hiya|yo}{!|,| there|}", "{hey|hi} {hope ur good|how's it going|so}{!|,}")
_TERSE_HI = ("{Hi.|Hello.|Hi,|Hey.}",)

_FORMAL_BYE = ("Thank you {kindly|very much|for your patience}{, that will be all| — that is everything}.",
               "{That is|That's} {everything|all}{, thank you|. Thank you for your help}{.|!}",
               "{Splendid|Wonderful|Excellent}, {thank you|many thanks}. {Goodbye|Have a pleasant day}.")
_NEUTRAL_BYE = ("{Great|Perfect|Awesome|Good}, {that's {all|everything}|that covers it}{, thanks|. Thanks}{.|!}",
                "{That's it|That's all I needed|Nothing else}{, thanks| for now, thanks}{!|.}",
                "{Thanks|Thank you} {for the help|so much|for sorting that out}{, bye|. Have a good one|}{.|!}")
_CASUAL_BYE = ("{cool|sweet|awesome|nice}{,| —} {that's all|thats it|all good}{ thx| thanks|}{!|!!|}",
               "{perfect|great} {ty|thx|thanks}{, bye|, gotta run|}{!|}")
_TERSE_BYE = ("{Fine|Okay|Good}. {That's all|That's it|Done}.", "{Thanks.|That's it.|Nothing else.}")

PERSONAS: tuple[Persona, ...] = (
    Persona("a busy nurse coming off a night shift; short, direct messages",
            Style("terse", chatty=0.2, typos=0.05, punctuation="light", volunteer=0.4, correction=0.1),
            _TERSE_HI, _TERSE_BYE, ("{Just got off a night shift|Long shift}, so {quick please|keep it short}.",)),
    Persona("a retired teacher who is polite and a little formal",
            Style("formal", chatty=0.6, typos=0.01, indirect=0.5, correction=0.05), _FORMAL_HI, _FORMAL_BYE,
            ("I do apologise for the trouble.", "I am not terribly good with computers, I am afraid.")),
    Persona("a college student, casual and friendly",
            Style("casual", chatty=0.5, typos=0.08, lowercase=True, punctuation="excited", volunteer=0.3),
            _CASUAL_HI, _CASUAL_BYE, ("{sorry|srry} im between classes lol", "my roommate said this is easy to fix")),
    Persona("a small-business owner who values efficiency",
            Style("neutral", chatty=0.25, typos=0.02, volunteer=0.5, indirect=0.05), _NEUTRAL_HI, _NEUTRAL_BYE,
            ("I run a shop, so time is tight.",)),
    Persona("a first-time online shopper, slightly anxious",
            Style("neutral", chatty=0.6, typos=0.03, indirect=0.6, correction=0.2, volunteer=0.05),
            ("Hi, I hope you can help me.", "Hello, um,", "Hi{,|!} {I'm a bit nervous about this|I've never done this"
             " before}."), _NEUTRAL_BYE, ("I'm worried I did something wrong.", "Sorry if this is a silly question.")),
    Persona("a software engineer who is precise and expects exact answers",
            Style("neutral", chatty=0.15, typos=0.01, volunteer=0.6, indirect=0.0, correction=0.05), ("Hi.", "Hello."),
            ("{Confirmed|Understood|Noted}, {thanks|thank you}. {Done here|That's all|Closing this out}.",
             "That covers it{, thanks|. Thank you|}.", "{Good|Fine}. {That's all|Nothing else|We're done}."),
            ("I'd like exact figures, please.",)),
    Persona("a parent juggling kids, writes in quick bursts",
            Style("casual", chatty=0.5, typos=0.07, punctuation="excited", correction=0.2, volunteer=0.2),
            ("hi sorry, quick one", "Hi!", "hi{!|,} {kids are yelling|toddler on my lap}, {sorry|bear with me}"),
            ("ok {great|perfect|awesome} {thanks|thx}{!!|!|}", "{perfect|great|ok} {thank you|thanks|ty}, {gotta run|got to "
             "go|kids calling|bye}{!|}", "{amazing|great|lifesaver}, {thx|thanks} so much!"),
            ("sorry, the kids keep interrupting", "typing one-handed, sorry")),
    Persona("a frequent shopper who knows the store well and is a bit impatient",
            Style("terse", chatty=0.15, typos=0.03, volunteer=0.5, punctuation="light"), ("Hi again.", "Hey."),
            ("{Fine|Okay|Right}, {that's all|that's it|done}.", "{Okay|Good}. {That's it|Nothing else}{.|, thanks.}",
             "{Right|Good}. {Done|Thanks|Bye}."),
            ("I've done this before, let's be quick.",)),
    Persona("a traveling salesperson typing on a phone between meetings",
            Style("casual", chatty=0.3, typos=0.09, lowercase=True, punctuation="light", volunteer=0.4),
            _CASUAL_HI, _CASUAL_BYE, ("{on my phone|typing on my phone} so excuse typos",)),
    Persona("an elderly customer who writes long, careful messages",
            Style("formal", chatty=0.8, typos=0.02, indirect=0.6, correction=0.15, volunteer=0.1), _FORMAL_HI, _FORMAL_BYE,
            ("My grandson usually helps me with these things.", "Please excuse my slowness with the computer.")),
    Persona("a graduate student who is friendly and a little scattered",
            Style("casual", chatty=0.6, typos=0.06, correction=0.25, volunteer=0.3),
            _CASUAL_HI + _NEUTRAL_HI, _CASUAL_BYE + _NEUTRAL_BYE, ("sorry, my brain is fried from studying",)),
    Persona("an office manager handling this for the team, businesslike",
            Style("neutral", chatty=0.3, typos=0.02, volunteer=0.5, indirect=0.1), _NEUTRAL_HI, _NEUTRAL_BYE,
            ("I handle this for our office.",)),
    Persona("a frustrated customer who has had a bad week and says so",
            Style("neutral", chatty=0.6, typos=0.05, punctuation="light", correction=0.1),
            ("Hi. {I'm having a bad week|This has been a frustrating week}.", "Hello. {Honestly|Look}, I'm "
             "{annoyed|frustrated}."), ("{Fine|Okay}, thanks.", "{Good|Okay}, that's all{ for now|}."),
            ("{This is the third thing to go wrong this week|I really don't have time for this}.",)),
    Persona("a cheerful retiree who likes a bit of small talk",
            Style("neutral", chatty=0.8, typos=0.02, punctuation="excited", indirect=0.4),
            ("Hello{!|,} {lovely day, isn't it|hope you're having a nice day}!", "Hi there!"),
            ("{Wonderful|Lovely}, {thank you dear|thanks so much}! {Have a great day|Take care}!",),
            ("My garden is keeping me busy these days.", "I just got back from my walk.")),
    Persona("a non-native English speaker, polite and careful with words",
            Style("formal", chatty=0.4, typos=0.05, indirect=0.3, correction=0.15),
            ("Hello, {good day|I hope you are fine}.", "Hello."),
            ("Thank you very much for {your help|helping|the assistance}{.|!}", "{Okay|Good|Very good}, thank you. "
             "That is {all|everything}{.| for today.}"),
            ("Sorry, my English is not perfect.",)),
    Persona("a tech-savvy teenager, very informal",
            Style("casual", chatty=0.3, typos=0.1, lowercase=True, punctuation="light", volunteer=0.3),
            ("{yo|hey|sup}", "hii"), ("{k|ok} thx", "{cool|bet} ty"), ("ngl this is annoying",)),
    Persona("a night-shift security guard chatting during a quiet hour",
            Style("neutral", chatty=0.6, typos=0.04, volunteer=0.2), _NEUTRAL_HI, _NEUTRAL_BYE,
            ("{Quiet night here|It's a slow night at work}, so I finally have time for this.",)),
    Persona("a busy lawyer who writes crisply and expects the same",
            Style("formal", chatty=0.1, typos=0.01, volunteer=0.6, indirect=0.0), ("Good afternoon.", "Hello."),
            ("{That is all|Understood|Very well}. Thank you{.| for your time.}", "{Noted|Understood}, thank you{.|"
             " — goodbye.}"), ("I have a call in five minutes.",)),
    Persona("a home cook who is chatty and easily distracted",
            Style("casual", chatty=0.7, typos=0.06, correction=0.2, indirect=0.3),
            _NEUTRAL_HI + _CASUAL_HI, _NEUTRAL_BYE, ("I've got something in the oven, so I'll be quick!",
                                                     "sorry, just stirring a pot here")),
    Persona("a freelance designer working odd hours, relaxed tone",
            Style("casual", chatty=0.4, typos=0.05, lowercase=True, volunteer=0.35),
            _CASUAL_HI, _CASUAL_BYE, ("working late on a project, figured I'd sort this now",)),
    Persona("a nurse-practitioner on a lunch break, kind but hurried",
            Style("neutral", chatty=0.3, typos=0.04, volunteer=0.4, correction=0.15),
            ("Hi{!|,} {on my lunch break|quick one from work}{,| —} {hope that's ok|bear with me}.",),
            ("{Thanks so much|Thank you}, {back to work|lunch is over}{!|.}", "{Perfect|Great}, {thanks|ta}{.|!}"),
            ("I have {ten|fifteen|twenty} minutes before my next patient.",)),
    Persona("a retired engineer who double-checks every number",
            Style("formal", chatty=0.4, typos=0.01, correction=0.3, volunteer=0.3, indirect=0.2),
            ("Good {day|afternoon}. {I have a query|I wish to raise something}.",),
            ("{Very good|Excellent}. I have noted {everything|the figures}. {Good day|Thank you}.",),
            ("I like to keep my records exact.", "I keep a spreadsheet of all this.")),
    Persona("a busy single dad typing from the school pickup line",
            Style("casual", chatty=0.4, typos=0.08, punctuation="light", correction=0.2, volunteer=0.3),
            ("{hey|hi} {in the pickup line|waiting for the kids}{,| so} {quick|fast} one",),
            ("{ok|great} {thanks|thx} {gotta go|kids are out|here they come}", "{cheers|ta} mate"),
            ("the kids get out in {five|ten} minutes", "sorry, typing with one thumb")),
    Persona("an exchange student still learning the local terms, very polite",
            Style("formal", chatty=0.5, typos=0.06, indirect=0.5, correction=0.2),
            ("Hello{,| —} {excuse me|sorry to bother you}.", "Good {morning|evening}, {please help|I need help}."),
            ("Thank you {so much|very much}{, you are very kind|, have a nice day}.",),
            ("I am new in this country, sorry.", "In my country this works differently.")),
    Persona("a small online seller who deals with this often and is matter-of-fact",
            Style("terse", chatty=0.2, typos=0.03, volunteer=0.6, punctuation="light"),
            ("{Hi|Hello}.{| Straight to it.}",), ("{Done|Sorted}. {Thanks|Cheers}.", "{Good|Fine}. Next time I'll "
                                                 "{know|remember}."), ("I sell online, I know the drill.",)),
    Persona("an anxious grandparent who apologises a lot",
            Style("neutral", chatty=0.7, typos=0.04, indirect=0.7, correction=0.2, volunteer=0.05),
            ("{Hello|Hi}, {sorry|I'm so sorry} to bother you.", "Oh hello, {I hope I'm doing this right|is this the "
             "help chat}?"), ("Oh thank you{, dear| so much}! {Bless you|You've been so patient}.",),
            ("Sorry, I'm not good with these things.", "My grandchildren usually do this for me.")),
    Persona("a gamer who types fast and skips capital letters",
            Style("casual", chatty=0.3, typos=0.09, lowercase=True, punctuation="light", volunteer=0.4),
            ("{yo|hey|sup} {support|there}", "{hi|hey} {quick|small} {thing|issue}"), ("{gg|nice} {ty|thx}",
                                                                                     "{ok|cool} {ttyl|cya}"),
            ("brb if i go quiet", "in the middle of a match lol")),
    Persona("a teacher grading papers, organised and clear",
            Style("neutral", chatty=0.3, typos=0.02, volunteer=0.5, indirect=0.2),
            ("{Hello|Hi}{,|.} {I'll be brief|Thanks for helping}.",), ("{Thank you|Thanks}, that's {all|everything} "
                                                                         "{for today|I needed}.",),
            ("I have a pile of essays waiting.",)),
    Persona("a startup founder juggling three things at once",
            Style("casual", chatty=0.3, typos=0.06, punctuation="light", volunteer=0.5, correction=0.15),
            ("{hey|hi} — {multitasking|between calls}, {sorry|bear with me}",), ("{great|perfect}, {thanks|ty}. "
                                                                               "{back to it|next}",),
            ("I'm on {three|two} calls at once", "investors meeting in {10|20} min")),
    Persona("a hospital porter on a night shift, friendly and chatty",
            Style("neutral", chatty=0.7, typos=0.05, punctuation="excited", correction=0.1),
            ("Evening{!|,} {hope your night's quiet|how's it going}?", "Hiya{!|,}"),
            ("Cheers{, you're a star|, have a good one}!", "{Lovely|Brilliant}, thanks!"),
            ("It's a quiet night on the wards.", "I'm on my break between runs.")),
)

INSTRUCTION_TEMPLATES: tuple[str, ...] = (
    "You are {name}, {persona}. {goals} {identity} {unknown}",
    "Play {name}, {persona}, contacting the support chat. {goals} {identity} {unknown}",
    "{goals} You are {name}; {persona}. {identity} {unknown}",
)

_BY_DESCRIPTION = {p.description: p for p in PERSONAS}


def persona_of(description: str) -> Persona:
    """The persona a task's description names; an unknown one is mapped to a known persona by hash."""
    known = _BY_DESCRIPTION.get(description)
    if known is not None:
        return known
    digest = int(hashlib.sha256(description.encode()).hexdigest(), 16)
    return PERSONAS[digest % len(PERSONAS)]
