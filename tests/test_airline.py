"""The airline domain: data, the write tools' happy and refused paths, the fare and compensation rules the policy
checks in code, and offline dialogues for every intent (refusals included) with their planted mistakes."""

from __future__ import annotations

import json

import pytest
from domain_helpers import first_failure, make_task, simulate

from schemas import Message, ToolCall
from simulators.domains.airline import AirlineEnv
from simulators.domains.airline.data import TODAY
from simulators.domains.airline.intents import INTENTS
from simulators.domains.airline.rules import cancel_grounds, compensation_amount, flown, free_bags
from simulators.environment import is_error


@pytest.fixture(scope="module")
def env() -> AirlineEnv:
    return AirlineEnv(0)


def reservations(env, pred):
    return [r for _, r in env.db.scan("reservations") if pred(r)]


def card(env, r):
    user = env.db.get("users", r["user_id"])
    return next(m for m in sorted(user["payment_methods"]) if user["payment_methods"][m]["kind"] == "credit_card")


def test_data_and_tool_inventory(env):
    assert len(list(env.db.scan("users"))) == 300 and len(list(env.db.scan("reservations"))) > 500
    assert sum(len(f["dates"]) for _, f in env.db.scan("flights")) > 1000
    assert len(env.specs()) >= 12 and sum(s.writes for s in env.specs().values()) >= 5
    assert AirlineEnv(0).state_hash() == env.state_hash() != AirlineEnv(1).state_hash()


def test_cancel_refunds_every_payment_and_refuses_flown_reservations(env):
    e = env.fresh()
    r = next(iter(reservations(env, lambda r: not flown(env.db, r) and r["status"] == "active")))
    result = json.loads(e.execute("cancel_reservation", {"reservation_id": r["reservation_id"], "reason": "other"}))
    assert result["refund_amount"] == r["payment_history"][0]["amount"]
    assert e.db.get("reservations", r["reservation_id"])["status"] == "cancelled"
    done = next(iter(reservations(env, lambda r: flown(env.db, r))))
    assert "flown segment" in e.execute("cancel_reservation", {"reservation_id": done["reservation_id"],
                                                                 "reason": "other"})


def test_flight_change_reprices_and_refuses_a_wrong_route_or_a_full_flight(env):
    e = env.fresh()
    r = next(iter(reservations(env, lambda r: not flown(env.db, r) and r["trip_type"] == "one_way"
                               and r["cabin"] == "economy")))
    seg = r["flights"][0]
    same_route = [n for n, f in env.db.scan("flights") if (f["origin"], f["destination"]) == (seg["origin"],
                                                                                            seg["destination"])]
    other_route = next(n for n, f in env.db.scan("flights") if f["origin"] != seg["origin"])
    day = next(d for d, inst in env.db.get("flights", same_route[0])["dates"].items()
               if d > TODAY.isoformat() and d != seg["date"] and inst.get("seats", {}).get("economy", 0) >= 3)
    args = {"reservation_id": r["reservation_id"], "payment_method_id": card(env, r)}
    bad = e.execute("update_reservation_flights", {**args, "flights": [{"flight_number": other_route, "date": day}]})
    assert is_error(bad) and ("flies" in bad or "does not fly" in bad)
    result = json.loads(e.execute("update_reservation_flights",
                                  {**args, "flights": [{"flight_number": same_route[0], "date": day}]}))
    price = env.db.get("flights", same_route[0])["dates"][day]["prices"]["economy"]
    assert result["price_difference"] == round((price - seg["price"]) * len(r["passengers"]), 2)
    assert e.execute("update_reservation_flights", {**args, "flights": [{"flight_number": "X1"}]}).startswith(
        "Error: invalid arguments")


def test_bags_only_added_and_certificates_do_not_pay(env):
    e = env.fresh()
    r = next(iter(reservations(env, lambda r: not flown(env.db, r) and r["total_baggages"] > 0)))
    args = {"reservation_id": r["reservation_id"], "payment_method_id": card(env, r)}
    assert "only be added" in e.execute("update_reservation_baggages", {**args, "total_baggages": 0,
                                                                         "nonfree_baggages": 0})
    result = json.loads(e.execute("update_reservation_baggages", {
        **args, "total_baggages": r["total_baggages"] + 1, "nonfree_baggages": r["nonfree_baggages"] + 1}))
    assert result["fee"] == 50.0
    holders = {u["user_id"]: next(m for m in u["payment_methods"] if m.startswith("certificate"))
               for _, u in env.db.scan("users") if any(m["kind"] == "certificate" for m in u["payment_methods"].values())}
    r2 = next(x for x in reservations(env, lambda x: x["user_id"] in holders and not flown(env.db, x)
                                      and x["status"] == "active" and x["cabin"] == "economy"))
    assert "certificate cannot pay" in e.execute("update_reservation_cabin", {
        "reservation_id": r2["reservation_id"], "cabin": "basic_economy", "payment_method_id": holders[r2["user_id"]]})


def _dialogue(env, r, calls, said="I'd like some compensation please."):
    user = env.db.get("users", r["user_id"])
    auth = ToolCall.make("a", "find_user_id_by_email", {"email": user["email"]})
    messages = [Message(role="system", content=""), Message(role="user", content=said),
                Message(role="assistant", tool_calls=[auth]), Message(role="tool", tool_call_id="a",
                                                                      content=f'"{r["user_id"]}"')]
    for n, (name, args) in enumerate(calls):
        call = ToolCall.make(f"c{n}", name, args)
        messages += [Message(role="assistant", content="Shall I proceed?"), Message(role="user", content="Yes."),
                     Message(role="assistant", tool_calls=[call]), Message(role="tool", tool_call_id=call.id,
                                                                           content="")]
    return env.check_policy(messages)


def test_the_fare_rules_are_checked_in_code(env):
    refusable = next(iter(reservations(env, lambda r: r["status"] == "active" and not flown(env.db, r)
                                       and not cancel_grounds(env.db, r, "change of plans"))))
    violations = _dialogue(env, refusable, [("cancel_reservation", {"reservation_id": refusable["reservation_id"],
                                                                    "reason": "change of plans"})])
    assert any("breaks the fare rules" in v for v in violations)
    business = next(iter(reservations(env, lambda r: r["cabin"] == "business" and not flown(env.db, r))))
    assert "business cabin" in cancel_grounds(env.db, business, "change of plans")
    assert _dialogue(env, business, [("cancel_reservation", {"reservation_id": business["reservation_id"],
                                                             "reason": "change of plans"})]) == []
    basic = next(iter(reservations(env, lambda r: r["cabin"] == "basic_economy" and not flown(env.db, r))))
    violations = _dialogue(env, basic, [("update_reservation_flights", {
        "reservation_id": basic["reservation_id"], "payment_method_id": card(env, basic),
        "flights": [{"flight_number": s["flight_number"], "date": s["date"]} for s in basic["flights"]]})])
    assert any("basic economy cannot change flights" in v for v in violations)


def test_bag_allowance_and_compensation_amounts(env):
    r = next(iter(reservations(env, lambda r: not flown(env.db, r))))
    user = env.db.get("users", r["user_id"])
    total = r["total_baggages"] + 2
    right = max(0, total - free_bags(user["membership"], r))
    args = {"reservation_id": r["reservation_id"], "total_baggages": total, "payment_method_id": card(env, r)}
    assert _dialogue(env, r, [("update_reservation_baggages", {**args, "nonfree_baggages": right})]) == []
    wrong = _dialogue(env, r, [("update_reservation_baggages", {**args, "nonfree_baggages": right + 1})])
    assert any("allowance makes it" in v for v in wrong)

    owed = next(x for x in reservations(env, lambda x: not flown(env.db, x)) if compensation_amount(
        env.db, env.db.get("users", x["user_id"]), x))
    amount = compensation_amount(env.db, env.db.get("users", owed["user_id"]), owed)
    send = ("send_certificate", {"reservation_id": owed["reservation_id"], "amount": amount})
    assert _dialogue(env, owed, [send]) == []
    assert any("never asked" in v for v in _dialogue(env, owed, [send], said="Hello."))
    assert any("grants" in v for v in _dialogue(env, owed, [("send_certificate", {
        "reservation_id": owed["reservation_id"], "amount": amount + 50})]))
    assert any("already issued" in v for v in _dialogue(env, owed, [send, send]))


@pytest.mark.parametrize("intent", sorted(INTENTS))
def test_clean_dialogues_pass_every_filter(env, intent):
    for seed in range(2):
        task = make_task(env, [intent], seed)
        trajectory = simulate(env, task, seed=seed)
        assert first_failure(env, trajectory, task) is None, (intent, seed)


@pytest.mark.parametrize("intent", ["cancel_refused", "change_refused_basic", "compensation_refused"])
def test_a_refusal_writes_nothing_and_breaking_the_rule_is_caught(env, intent):
    task = make_task(env, [intent], seed=1)
    clean = simulate(env, task, seed=1)
    assert first_failure(env, clean, task) is None
    assert clean.final_state_hash == env.fresh().state_hash()  # the right answer is no
    verdict = first_failure(env, simulate(env, task, "break_rule", seed=1), task)
    assert verdict is not None and verdict.stage == "policy", verdict
