"""Blueprint synthesis: grounded, executable, reproducible tasks; the tool graph they walk."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from generators import GENERATORS, Generator, SynthesisError
from generators.blueprints import tool_graph
from schemas import Action, ConfigError, Task
from simulators.domains.store import StoreEnv
from simulators.environment import is_error
from simulators.intents import Grounding, Intent

N_SEEDS = 200
AUTH_TOOLS = {"find_customer_id_by_email", "find_customer_id_by_name_zip"}


@pytest.fixture(scope="module")
def env() -> StoreEnv:
    return StoreEnv(0)


@pytest.fixture(scope="module")
def blueprint():
    return GENERATORS.get("blueprint")


@pytest.fixture(scope="module")
def generator(env, blueprint) -> Generator:
    return blueprint(env, blueprint.Params())


@pytest.fixture(scope="module")
def tasks(generator) -> list[Task]:
    return [generator.generate(random.Random(i)) for i in range(N_SEEDS)]


# -- tasks ---------------------------------------------------------------------------------------


def test_generator_is_registered_and_makes_tasks(tasks, env):
    assert len(tasks) == N_SEEDS
    for task in tasks:
        assert isinstance(task, Task)
        assert task.kind == "blueprint" and task.generator == "blueprint"
        assert task.domain == "store" and task.env_seed == env.seed
        assert task.gold_actions and task.expected_state_hash


def test_gold_actions_execute_cleanly_and_reach_expected_state(tasks, env):
    specs = StoreEnv.specs()
    for task in tasks:
        fresh = env.fresh(task.env_seed)
        for action in task.gold_actions:
            assert action.name in specs, action
            before = fresh.state_hash()
            result = fresh.execute(action.name, action.arguments)
            assert not is_error(result), (task.id, action, result)
            if specs[action.name].writes:
                assert fresh.state_hash() != before, (task.id, action)
            else:
                assert fresh.state_hash() == before, (task.id, action)
        assert fresh.state_hash() == task.expected_state_hash, task.id
        # and replaying through run_actions on another fresh copy gives the same
        replay = env.fresh(task.env_seed)
        assert not any(is_error(r) for r in replay.run_actions(task.gold_actions))
        assert replay.state_hash() == task.expected_state_hash


def test_generation_does_not_touch_the_base_env(env, generator):
    before = env.state_hash()
    generator.generate(random.Random(12345))
    assert env.state_hash() == before == StoreEnv(0).state_hash()


def test_expected_outputs_present_whenever_an_intent_tells_the_user(tasks, env):
    with_outputs = [t for t in tasks if t.expected_outputs]
    for task in tasks:
        tells = any(env.intents[r.intent].tells_user for r in task.scenario.requests)
        assert bool(task.expected_outputs) == tells, task.scenario.requests
    assert len(with_outputs) >= 0.5 * len(tasks)
    for task in with_outputs:
        assert all(isinstance(o, str) and o for o in task.expected_outputs)
        assert len(set(task.expected_outputs)) == len(task.expected_outputs)


def test_outputs_match_target_results(tasks, env):
    """The expected outputs are what the intents read off the targets' real results."""
    for task in tasks[:50]:
        fresh = env.fresh(task.env_seed)
        results = fresh.run_actions(task.gold_actions)
        wanted = []
        for request in task.scenario.requests:
            intent = env.intents[request.intent]
            target = task.gold_actions[request.actions[-1]]
            wanted += [o for o in intent.outputs(target, json.loads(results[request.actions[-1]])) if o not in wanted]
        assert task.expected_outputs == wanted


def test_scenario_is_complete(tasks, env):
    for task in tasks:
        s = task.scenario
        assert s.persona and s.instruction and s.identity and s.closing
        assert s.known_info and all(isinstance(v, str) and v for v in s.known_info.values())
        assert 1 <= len(s.requests) <= 2
        assert len({r.intent for r in s.requests}) == len(s.requests)
        for r in s.requests:
            assert r.intent in env.intents
            assert r.opening and r.details and r.actions
        # the identity the user gives is what the first gold call looks up
        first = task.gold_actions[0]
        assert first.name in AUTH_TOOLS
        assert all(str(v) in s.identity or str(v).lower() in s.identity.lower() for v in first.arguments.values())


def test_request_indices_are_valid_and_end_on_the_target(tasks, env):
    for task in tasks:
        gold = task.gold_actions
        seen: list[int] = []
        for request in task.scenario.requests:
            idx = request.actions
            assert idx == sorted(idx) and len(set(idx)) == len(idx)
            assert all(0 < i < len(gold) for i in idx), (task.id, idx, len(gold))
            target = gold[idx[-1]]
            assert target.name == env.intents[request.intent].target_tool, (task.id, request.intent, target)
            # lookups before the target are reads
            assert not any(StoreEnv.specs()[gold[i].name].writes for i in idx[:-1])
            seen += idx
        # every call after authentication belongs to exactly one request
        assert sorted(seen) == list(range(1, len(gold)))


def test_same_seed_same_task(generator, env, blueprint):
    for seed in (0, 7, 199):
        a = generator.generate(random.Random(seed))
        b = generator.generate(random.Random(seed))
        c = blueprint(env.fresh(), blueprint.Params()).generate(random.Random(seed))
        assert a.id == b.id == c.id
        assert a == b == c
        assert a.model_dump_json() == c.model_dump_json()


def test_different_seeds_give_distinct_tasks(tasks):
    ids = {t.id for t in tasks}
    assert len(ids) >= 0.95 * len(tasks)
    intents = {r.intent for t in tasks for r in t.scenario.requests}
    assert len(intents) >= 7, intents
    assert len({t.gold_actions[0].arguments.get("email") or t.gold_actions[0].arguments.get("zip") for t in tasks}) >= 100


def test_intents_parameter_limits_tasks(env, blueprint):
    gen = blueprint(env, blueprint.Params(intents=["cancel_order", "return_items"], max_requests=1))
    for i in range(30):
        task = gen.generate(random.Random(i))
        assert len(task.scenario.requests) == 1
        assert task.scenario.requests[0].intent in {"cancel_order", "return_items"}
        assert task.gold_actions[-1].name in {"cancel_pending_order", "return_delivered_order_items"}


@pytest.mark.parametrize("low,high", [(3, 3), (2, 2), (1, 3), (2, 4)])
def test_min_requests_is_honoured(env, blueprint, low, high):
    """A minimum is a minimum: every task has between min and max requests, each of its own intent, and every
    count in between is drawn (a repeated intent used to be dropped, so 3/3 gave tasks of 1 or 2 requests)."""
    gen = blueprint(env, blueprint.Params(min_requests=low, max_requests=high))
    counts = Counter()
    for seed in range(N_SEEDS):
        requests = gen.generate(random.Random(seed)).scenario.requests
        assert low <= len(requests) <= high, (seed, [r.intent for r in requests])
        assert len({r.intent for r in requests}) == len(requests), seed
        counts[len(requests)] += 1
    assert set(counts) == set(range(low, high + 1)), counts
    assert min(counts.values()) >= 0.5 * N_SEEDS / (high - low + 1), counts  # drawn near-uniformly


def test_min_requests_that_cannot_be_met_is_a_config_error(env, blueprint, small_config):
    from pipelines.steps import build_steps

    two = ["cancel_order", "return_items"]
    assert len(blueprint(env, blueprint.Params(intents=two, min_requests=2, max_requests=2))
               .generate(random.Random(0)).scenario.requests) == 2
    with pytest.raises(ValueError, match=r"^min_requests: 3 distinct requests cannot fit in one task of domain "
                                         r"'store': at most 2 of its intents \(cancel_order, return_items\)"):
        blueprint(env, blueprint.Params(intents=two, min_requests=3, max_requests=3))
    capped = blueprint(env, blueprint.Params(intents=two, min_requests=1, max_requests=5))  # a maximum is a bound
    assert {len(capped.generate(random.Random(i)).scenario.requests) for i in range(30)} == {1, 2}
    config = small_config(generators=[{"name": "blueprint", "params": {"intents": two, "min_requests": 3,
                                                                       "max_requests": 4}}])
    with pytest.raises(ConfigError) as err:
        build_steps(config, "c.yaml")
    assert str(err.value).startswith("c.yaml: generators[0].params: min_requests: 3 distinct requests cannot fit")
    assert "\n" not in str(err.value)


def test_params_validation(env, blueprint):
    with pytest.raises(ValueError, match="no_such_intent"):
        blueprint(env, blueprint.Params(intents=["cancel_order", "no_such_intent"]))
    with pytest.raises(ValueError, match="max_requests"):
        blueprint(env, blueprint.Params(min_requests=3, max_requests=1))
    with pytest.raises(ValidationError):
        blueprint.Params(min_requests=0)
    with pytest.raises(ValidationError):
        blueprint.Params(max_request=2)  # typo: extra="forbid"


class _NoopAddress(Intent):
    """Grounds an address update on the address the customer already has: a write that changes nothing."""

    name = "noop_address"
    target_tool = "update_customer_address"

    def ground(self, env, rng, customer):
        return Grounding(target=Action(name=self.target_tool, arguments={"customer_id": customer["customer_id"],
                                                                         **customer["address"]}),
                         bindings={}, goal="g", opening="o", details="d")


class _CancelAnything(Intent):
    """Grounds a cancellation on any order, pending or not: a write that often errors."""

    name = "cancel_anything"
    target_tool = "cancel_pending_order"

    def ground(self, env, rng, customer):
        orders = [env.db.get("orders", order_id) for order_id in customer["orders"]]
        order = next((o for o in orders if o["status"] != "pending"), None)
        if order is None:
            return None
        return Grounding(target=Action(name=self.target_tool, arguments={"order_id": order["order_id"],
                                                                         "reason": "no longer needed"}),
                         bindings={"order_id": [order["order_id"]]}, goal="g", opening="o", details="d")


class _NoopStore(StoreEnv):
    intents = {"noop_address": _NoopAddress()}


class _BrokenStore(StoreEnv):
    intents = {"cancel_anything": _CancelAnything()}


def test_blueprint_whose_write_changes_nothing_is_refused(blueprint):
    gen = blueprint(_NoopStore(0), blueprint.Params(max_attempts=3))
    with pytest.raises(SynthesisError, match="left the state unchanged"):
        gen.generate(random.Random(0))


def test_blueprint_whose_gold_errors_is_refused(blueprint):
    gen = blueprint(_BrokenStore(0), blueprint.Params(max_attempts=5))
    messages = []
    for seed in range(5):
        with pytest.raises(SynthesisError, match="in 5 attempts") as err:
            gen.generate(random.Random(seed))
        messages.append(str(err.value))
    assert any("(cancel_pending_order) failed: Error: " in m and "not pending" in m for m in messages), messages


# -- the tool graph ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return tool_graph(StoreEnv)


TARGETS = {i.target_tool for i in StoreEnv.intents.values()}


def test_graph_edges(graph):
    g = graph.graph
    assert set(g.nodes) == set(StoreEnv.specs())
    assert g.has_edge("find_customer_id_by_email", "get_customer_details")
    assert g.has_edge("find_customer_id_by_name_zip", "get_customer_details")
    assert g.has_edge("get_order_details", "get_product_details")
    assert g.has_edge("get_customer_details", "get_order_details")
    assert "customer_id" in g.edges["find_customer_id_by_email", "get_customer_details"]["via"]
    assert "product_id" in g.edges["get_order_details", "get_product_details"]["via"]
    # no edge into tools whose inputs nobody produces, none backwards
    assert not g.has_edge("get_customer_details", "find_customer_id_by_email")
    assert not g.has_edge("get_product_details", "get_order_details")
    assert g.in_degree("find_customer_id_by_email") == 0
    assert tool_graph(StoreEnv) is graph  # cached per environment class


def test_walk_always_ends_on_a_target(graph):
    g = graph.graph
    ends = set()
    for i in range(300):
        start = sorted(AUTH_TOOLS)[i % 2]
        path = graph.walk(random.Random(i), start, TARGETS)
        assert path is not None and len(path) >= 2
        assert path[0] == start and path[-1] in TARGETS
        assert len(set(path)) == len(path) and len(path) <= 6
        assert all(g.has_edge(a, b) for a, b in zip(path, path[1:], strict=False))
        ends.add(path[-1])
    assert len(ends) >= 7, ends


@pytest.mark.parametrize("max_len", [2, 3, 4])
def test_short_walks_still_end_on_a_target(graph, max_len):
    results = [graph.walk(random.Random(i), "find_customer_id_by_email", TARGETS, max_len=max_len) for i in range(100)]
    for path in results:
        assert path is None or (path[-1] in TARGETS and 2 <= len(path) <= max_len)
    assert any(p is not None for p in results)


def test_walk_with_unreachable_target_is_none(graph):
    assert graph.walk(random.Random(0), "transfer_to_human_agent", TARGETS) is None
    assert graph.walk(random.Random(0), "get_product_details", {"cancel_pending_order"}) is None
    path = graph.walk(random.Random(0), "find_customer_id_by_email", {"get_product_details"})
    assert path is not None and path[-1] == "get_product_details"


def test_walk_is_deterministic(graph):
    a = [graph.walk(random.Random(i), "find_customer_id_by_email", TARGETS) for i in range(20)]
    b = [graph.walk(random.Random(i), "find_customer_id_by_email", TARGETS) for i in range(20)]
    assert a == b
    assert len({tuple(p) for p in a}) > 3


def _assert_valid_plan(plan, target, have):
    specs = StoreEnv.specs()
    have = set(have)
    for name in plan:
        assert specs[name].consumes <= have, (name, specs[name].consumes - have)
        have |= specs[name].produces
    assert specs[target].consumes <= have


def test_plan_exchange_from_email(graph):
    plan = graph.plan("exchange_delivered_order_items", {"email"})
    for name in ("find_customer_id_by_email", "get_customer_details", "get_order_details", "get_product_details"):
        assert name in plan
    assert plan.index("find_customer_id_by_email") < plan.index("get_customer_details") < \
        plan.index("get_order_details") < plan.index("get_product_details")
    assert "exchange_delivered_order_items" not in plan
    _assert_valid_plan(plan, "exchange_delivered_order_items", {"email"})


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_plan_every_target(graph, target):
    plan = graph.plan(target, {"customer_id"})
    _assert_valid_plan(plan, target, {"customer_id"})
    assert not AUTH_TOOLS & set(plan)  # already authenticated: no lookup by email or name
    assert len(plan) == len(set(plan))


def test_plan_without_inputs_raises(graph):
    with pytest.raises(ValueError, match="email"):
        graph.plan("find_customer_id_by_email", set())
