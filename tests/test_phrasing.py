"""Offline phrasing: templates, persona styles, and the promises the variety must keep (facts and consents
intact, every assistant phrasing recognized by the scripted user, corrections and out-of-order details read)."""

from __future__ import annotations

import random

import pytest
from domain_helpers import make_task, simulate

from simulators.domains.airline import AirlineEnv
from simulators.domains.store import StoreEnv
from simulators.domains.telecom import TelecomEnv
from simulators.personas import PERSONAS, persona_of
from simulators.phrasing import CLOSERS, Style, consent, expand, fragment, paraphrase, styled
from simulators.policy_checks import ASKED, CONSENT
from simulators.scripted import ASKS_CONFIRM, ASKS_IDENTITY, ASKS_RECHECK, OFFERS_MORE, _near_miss, _resembles
from simulators.text import facts

ENVS = [StoreEnv(0), AirlineEnv(0), TelecomEnv(0)]


def test_templates_alternatives_options_and_slots():
    seen = {expand("{Hi|Hello}[ there], <name>{!|.}", random.Random(i), name="Maya") for i in range(200)}
    assert seen == {f"{a}{b}, Maya{c}" for a in ("Hi", "Hello") for b in ("", " there") for c in ("!", ".")}
    assert expand("<Who> said {{yes|yep}|no}.", random.Random(1), who="my sister") .startswith("My sister said ")
    assert fragment("the {one|order}", random.Random(0)).startswith("the ")
    with pytest.raises(ValueError, match="unbalanced"):
        expand("{a|b", random.Random(0))


def test_styles_never_touch_facts_and_consents_stay_consents():
    text = "My email is ava.kim12@example.com, order #W1234567, zip 78701, and I'd like to cancel please."
    for i, persona in enumerate(PERSONAS * 20):
        rng = random.Random(i)
        out = styled(text, persona.style, rng)
        assert facts(text) <= facts(out), (persona.description, out)
        yes = consent(rng, persona.style, "go ahead with #W1234567" if i % 2 else None)
        assert CONSENT.search(yes), (persona.description, yes)
    wild = Style("casual", typos=1.0, lowercase=True, paraphrase=1.0, fillers=1.0)
    for i in range(200):
        out = styled("Can I get compensation for the delay? It was order #W7654321.", wild, random.Random(i))
        assert "compensation" in out and "#W7654321" in out


def test_paraphrase_keeps_the_first_words_it_is_told_to():
    for i in range(100):
        out = paraphrase("Okay go ahead, I'd like to see it right now", random.Random(i), 1.0, keep_first_words=2)
        assert out.startswith("Okay go ahead,") and out != "Okay go ahead, I'd like to see it right now"


def test_every_assistant_phrasing_is_heard_as_what_it_is():
    """The scripted user reads the assistant by cue phrases: each kind of message must carry its own, only its own."""
    rng = random.Random(7)
    for env in ENVS:
        for _ in range(60):
            ask = env.ask_identity(rng)
            assert ASKS_IDENTITY.search(ask) and not ASKS_CONFIRM.search(ask) and not OFFERS_MORE.search(ask), ask
    for i in range(300):
        closer = expand(CLOSERS[i % len(CLOSERS)], random.Random(i))
        assert OFFERS_MORE.search(closer) and not ASKS_CONFIRM.search(closer) and not ASKED.search(closer), closer
    for env in ENVS:
        for seed in range(4):
            task = make_task(env, None, seed, max_requests=2)
            trajectory = simulate(env, task, seed=seed)
            texts = [m.content for m in trajectory.messages if m.role == "assistant" and m.content]
            writes = sum(1 for m in trajectory.messages for c in m.tool_calls or []
                         if (s := env.specs().get(c.function.name)) is not None and s.writes)
            assert sum(bool(ASKS_CONFIRM.search(t)) for t in texts) == writes, texts
            assert all(ASKED.search(t) for t in texts if ASKS_CONFIRM.search(t))


def test_a_detail_given_wrong_is_read_back_and_corrected():
    assert _resembles(_near_miss("#W1234567", random.Random(0)), "#W1234567")
    assert not _resembles("#W7654321", "#W1234567")
    env = StoreEnv(0)
    corrected = volunteered = 0
    for seed in range(150):
        task = make_task(env, ["cancel_order"], seed)
        if "order #W" not in task.scenario.requests[0].details:
            continue
        trajectory = simulate(env, task, seed=seed)
        said = [m.content for m in trajectory.messages if m.role == "assistant" and m.content]
        if any(ASKS_RECHECK.search(t) for t in said):
            corrected += 1
        users = [m.content for m in trajectory.messages if m.role == "user"]
        order = task.gold_actions[-1].arguments["order_id"]
        if order in users[0]:
            volunteered += 1  # out of order: the specifics came with the opening, so no question asked them
            assert not any("Which order" in t for t in said), said
    assert corrected and volunteered


def test_unknown_personas_get_a_style_and_the_same_one_every_time():
    assert persona_of(PERSONAS[3].description) is PERSONAS[3]
    assert persona_of("a pirate who speaks only in riddles") is persona_of("a pirate who speaks only in riddles")
