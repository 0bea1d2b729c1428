"""The store environment: data, every tool's happy and error paths, state hashing, copies, policy."""

from __future__ import annotations

import json

import pytest

from schemas import Message, ToolCall, canonical_json
from simulators.domains.store import StoreEnv
from simulators.environment import ERROR_PREFIX, Tables, is_error

SEED = 0


@pytest.fixture(scope="module")
def base() -> StoreEnv:
    return StoreEnv(SEED)


@pytest.fixture
def env(base) -> StoreEnv:
    return base.fresh()


# -- finding entities by reading the data ------------------------------------------------


def orders(env, status=None):
    return [o for _, o in env.db.scan("orders") if status is None or o["status"] == status]


def customer(env, customer_id):
    return env.db.get("customers", customer_id)


def paid(order):
    return [p for p in order["payment_history"] if p["kind"] == "payment"]


def alternative_variant(env, item, available=True):
    """Another variant of the item's product, available or not; None when there is none."""
    product = env.db.get("products", item["product_id"])
    for vid, v in sorted(product["variants"].items()):
        if vid != item["variant_id"] and v["available"] is available:
            return vid
    return None


def foreign_variant(env, item):
    """A variant id of some other product."""
    for key, product in env.db.scan("products"):
        if key != item["product_id"]:
            return sorted(product["variants"])[0]
    raise AssertionError("only one product")


def card_of(cust):
    return next(m for m in cust["payment_methods"] if cust["payment_methods"][m]["kind"] == "credit_card")


def pending_with_other_method(env):
    """A pending order paid once, whose customer has another non-gift method."""
    for o in orders(env, "pending"):
        c = customer(env, o["customer_id"])
        others = [m for m, v in c["payment_methods"].items()
                  if v["kind"] != "gift_card" and m != paid(o)[0]["payment_method_id"]]
        if len(paid(o)) == 1 and others:
            return o, others[0]
    raise AssertionError("no pending order with another payment method")


def pending_with_gift_card(env, enough: bool):
    """A pending order whose customer has a gift card that can (or cannot) pay its total."""
    for o in orders(env, "pending"):
        c = customer(env, o["customer_id"])
        amount = paid(o)[0]["amount"]
        for m, v in c["payment_methods"].items():
            if v["kind"] == "gift_card" and (v["balance"] >= amount) is enough and len(paid(o)) == 1:
                return o, m
    raise AssertionError("no matching pending order")


def order_with_swappable_item(env, status, available=True):
    for o in orders(env, status):
        for item in o["items"]:
            vid = alternative_variant(env, item, available)
            if vid:
                return o, item, vid
    raise AssertionError(f"no {status} order with a swappable item")


def delivered_with_foreign_non_gift_method(env):
    """A delivered order whose customer has a non-gift method that did not pay for it."""
    for o in orders(env, "delivered"):
        c = customer(env, o["customer_id"])
        original = {p["payment_method_id"] for p in paid(o)}
        others = [m for m, v in c["payment_methods"].items() if v["kind"] != "gift_card" and m not in original]
        if others:
            return o, others[0]
    raise AssertionError("no delivered order with a foreign non-gift method")


def delivered_with_gift_card(env):
    for o in orders(env, "delivered"):
        c = customer(env, o["customer_id"])
        gifts = [m for m, v in c["payment_methods"].items() if v["kind"] == "gift_card"]
        if gifts:
            return o, gifts[0]
    raise AssertionError("no delivered order of a gift-card holder")


def customer_of_other(env, cust_id):
    return next(k for k, _ in env.db.scan("customers") if k != cust_id)


NEW_ADDRESS = {"address1": "12 Test St", "address2": "Apt 3", "city": "Austin", "state": "TX", "zip": "78701"}


def parse(result: str):
    assert not is_error(result), result
    return json.loads(result)


# -- tools, data, determinism ---------------------------------------------------------------


def test_tool_inventory():
    specs = StoreEnv.specs()
    writes = {n for n, s in specs.items() if s.writes}
    assert len(specs) >= 12
    assert len(writes) >= 5
    assert {"cancel_pending_order", "update_customer_address", "exchange_delivered_order_items"} <= writes
    assert "get_order_details" not in writes
    assert [t.name for t in StoreEnv.tools()] == list(specs)
    for spec in specs.values():
        params = spec.schema.function.parameters
        assert params["type"] == "object" and params["additionalProperties"] is False
        assert spec.schema.function.description
        assert set(params.get("required", [])) <= set(params["properties"])
        for prop in params["properties"].values():
            assert prop["description"]


def test_same_seed_same_data_different_seed_different_data():
    a, b = StoreEnv(3), StoreEnv(3)
    assert a.state_hash() == b.state_hash()
    # built twice from scratch, not only shared from a cache
    assert canonical_json(StoreEnv.build_data(3)) == canonical_json(StoreEnv.build_data(3))
    assert canonical_json(StoreEnv.build_data(3)) != canonical_json(StoreEnv.build_data(4))
    assert StoreEnv(4).state_hash() != a.state_hash()
    assert a.fresh(4).state_hash() == StoreEnv(4).state_hash()


def test_hundreds_of_entities(base):
    customers = list(base.db.scan("customers"))
    all_orders = orders(base)
    products = list(base.db.scan("products"))
    assert len(customers) >= 200
    assert len(all_orders) >= 300
    assert len(products) >= 10
    assert sum(len(p["variants"]) for _, p in products) >= 50
    statuses = {o["status"] for o in all_orders}
    assert {"pending", "processed", "shipped", "delivered", "cancelled"} <= statuses
    # referential integrity: every order belongs to a customer who lists it
    for o in all_orders[:100]:
        assert o["order_id"] in customer(base, o["customer_id"])["orders"]


# -- happy path for every tool -----------------------------------------------------------------


def happy_calls(env) -> dict[str, dict]:
    """One valid call per tool, grounded in the data."""
    pending = orders(env, "pending")[0]
    pend_cust = customer(env, pending["customer_id"])
    pay_order, other_method = pending_with_other_method(env)
    mod_order, mod_item, mod_vid = order_with_swappable_item(env, "pending")
    ex_order, ex_item, ex_vid = order_with_swappable_item(env, "delivered")
    ret_order, ret_gift = delivered_with_gift_card(env)
    shipped = orders(env, "shipped")[0]
    return {
        "find_customer_id_by_email": {"email": pend_cust["email"]},
        "find_customer_id_by_name_zip": {"first_name": pend_cust["name"]["first_name"],
                                         "last_name": pend_cust["name"]["last_name"], "zip": pend_cust["address"]["zip"]},
        "get_customer_details": {"customer_id": pend_cust["customer_id"]},
        "get_order_details": {"order_id": shipped["order_id"]},
        "get_product_details": {"product_id": mod_item["product_id"]},
        "list_product_types": {},
        "search_products": {"query": "audio"},
        "check_refund_eligibility": {"order_id": ret_order["order_id"], "item_ids": [ret_order["items"][0]["item_id"]]},
        "transfer_to_human_agent": {"summary": "customer wants a price match"},
        "cancel_pending_order": {"order_id": pending["order_id"], "reason": "no longer needed"},
        "modify_pending_order_address": {"order_id": pending["order_id"], **NEW_ADDRESS},
        "modify_pending_order_payment": {"order_id": pay_order["order_id"], "payment_method_id": other_method},
        "modify_pending_order_items": {"order_id": mod_order["order_id"], "item_ids": [mod_item["item_id"]],
                                       "new_variant_ids": [mod_vid],
                                       "payment_method_id": card_of(customer(env, mod_order["customer_id"]))},
        "return_delivered_order_items": {"order_id": ret_order["order_id"],
                                         "item_ids": [ret_order["items"][0]["item_id"]], "payment_method_id": ret_gift},
        "exchange_delivered_order_items": {"order_id": ex_order["order_id"], "item_ids": [ex_item["item_id"]],
                                           "new_variant_ids": [ex_vid],
                                           "payment_method_id": card_of(customer(env, ex_order["customer_id"]))},
        "update_customer_address": {"customer_id": pend_cust["customer_id"], **NEW_ADDRESS},
    }


def test_happy_calls_cover_every_tool(base):
    assert set(happy_calls(base)) == set(StoreEnv.specs())


@pytest.mark.parametrize("name", sorted(StoreEnv.specs()))
def test_every_tool_happy_path_and_state_effect(base, name):
    env = base.fresh()
    args = happy_calls(env)[name]
    before = env.state_hash()
    result = env.execute(name, args)
    assert not is_error(result), result
    if StoreEnv.specs()[name].writes:
        assert env.state_hash() != before, f"write {name} left the state unchanged"
    else:
        assert env.state_hash() == before, f"read {name} changed the state"
    # arguments given as a JSON string (as a model sends them) work the same way
    env2 = base.fresh()
    assert env2.execute(name, json.dumps(args)) == result
    assert env2.state_hash() == env.state_hash()


def test_lookup_tools(env):
    c = customer(env, orders(env, "pending")[0]["customer_id"])
    assert env.execute("find_customer_id_by_email", {"email": c["email"]}) == c["customer_id"]
    assert env.execute("find_customer_id_by_email", {"email": f"  {c['email'].upper()} "}) == c["customer_id"]
    by_name = {"first_name": c["name"]["first_name"].upper(), "last_name": c["name"]["last_name"].lower(),
               "zip": c["address"]["zip"]}
    assert env.execute("find_customer_id_by_name_zip", by_name) == c["customer_id"]
    details = parse(env.execute("get_customer_details", {"customer_id": c["customer_id"]}))
    assert details["email"] == c["email"] and details["orders"] == c["orders"]


def test_read_tools_return_the_data(env):
    shipped = orders(env, "shipped")[0]
    details = parse(env.execute("get_order_details", {"order_id": shipped["order_id"]}))
    assert details["order_id"] == shipped["order_id"] and details["status"] == "shipped"
    assert details["fulfillment"]["tracking_number"]

    product_id = shipped["items"][0]["product_id"]
    product = parse(env.execute("get_product_details", {"product_id": product_id}))
    assert product["product_id"] == product_id and shipped["items"][0]["variant_id"] in product["variants"]

    types = parse(env.execute("list_product_types", {}))
    assert types[product["name"]] == product_id
    assert len(types) == len(list(env.db.scan("products")))

    hits = parse(env.execute("search_products", {"query": "AUDIO"}))
    assert hits and all(h["category"] == "audio" for h in hits)
    named = parse(env.execute("search_products", {"query": product["name"].split()[0]}))
    assert product_id in {h["product_id"] for h in named}
    assert parse(env.execute("search_products", {"query": "zzz-no-such-thing"})) == []

    assert env.execute("transfer_to_human_agent", {"summary": "x"}) == "Transfer successful"


def test_check_refund_eligibility(env):
    delivered = orders(env, "delivered")[0]
    items = delivered["items"]
    quote = parse(env.execute("check_refund_eligibility",
                              {"order_id": delivered["order_id"], "item_ids": [i["item_id"] for i in items]}))
    assert quote["eligible"] is True
    assert quote["refund_amount"] == pytest.approx(sum(i["price"] for i in items), abs=0.01)

    pending = orders(env, "pending")[0]
    quote = parse(env.execute("check_refund_eligibility",
                              {"order_id": pending["order_id"], "item_ids": [pending["items"][0]["item_id"]]}))
    assert quote["eligible"] is False and quote["refund_amount"] == 0.0 and "pending" in quote["reason"]


def test_cancel_pending_order_effects(env):
    order = orders(env, "pending")[0]
    result = parse(env.execute("cancel_pending_order", {"order_id": order["order_id"], "reason": "ordered by mistake"}))
    assert result["status"] == "cancelled"
    assert result["refund_amount"] == pytest.approx(sum(p["amount"] for p in paid(order)), abs=0.01)
    after = env.db.get("orders", order["order_id"])
    assert after["status"] == "cancelled" and after["cancel_reason"] == "ordered by mistake"
    assert [p["kind"] for p in after["payment_history"]].count("refund") == len(paid(order))
    # a second cancel is refused: it is no longer pending
    again = env.execute("cancel_pending_order", {"order_id": order["order_id"], "reason": "ordered by mistake"})
    assert is_error(again) and "cancelled" in again


def test_modify_payment_to_gift_card_debits_balance(env):
    order, gift = pending_with_gift_card(env, enough=True)
    amount = paid(order)[0]["amount"]
    balance = customer(env, order["customer_id"])["payment_methods"][gift]["balance"]
    parse(env.execute("modify_pending_order_payment", {"order_id": order["order_id"], "payment_method_id": gift}))
    assert customer(env, order["customer_id"])["payment_methods"][gift]["balance"] == pytest.approx(balance - amount, abs=0.01)
    history = env.db.get("orders", order["order_id"])["payment_history"]
    assert history[-2] == {"kind": "payment", "payment_method_id": gift, "amount": amount}
    assert history[-1]["kind"] == "refund" and history[-1]["payment_method_id"] == paid(order)[0]["payment_method_id"]


def test_modify_items_swaps_variant_and_settles_difference(env):
    order, item, vid = order_with_swappable_item(env, "pending")
    method = card_of(customer(env, order["customer_id"]))
    new_price = env.db.get("products", item["product_id"])["variants"][vid]["price"]
    result = parse(env.execute("modify_pending_order_items", {"order_id": order["order_id"], "item_ids": [item["item_id"]],
                                                              "new_variant_ids": [vid], "payment_method_id": method}))
    assert result["price_difference"] == pytest.approx(new_price - item["price"], abs=0.01)
    after = {i["item_id"]: i for i in env.db.get("orders", order["order_id"])["items"]}
    assert after[item["item_id"]]["variant_id"] == vid and after[item["item_id"]]["price"] == new_price
    assert len(after) == len(order["items"])


def test_return_to_gift_card_credits_balance(env):
    order, gift = delivered_with_gift_card(env)
    item = order["items"][0]
    balance = customer(env, order["customer_id"])["payment_methods"][gift]["balance"]
    result = parse(env.execute("return_delivered_order_items", {"order_id": order["order_id"], "item_ids": [item["item_id"]],
                                                                "payment_method_id": gift}))
    assert result["status"] == "return requested" and result["refund_amount"] == item["price"]
    assert customer(env, order["customer_id"])["payment_methods"][gift]["balance"] == pytest.approx(
        balance + item["price"], abs=0.01)


def test_return_to_original_method(env):
    order = orders(env, "delivered")[0]
    result = parse(env.execute("return_delivered_order_items", {
        "order_id": order["order_id"], "item_ids": [order["items"][0]["item_id"]],
        "payment_method_id": paid(order)[0]["payment_method_id"]}))
    assert result["status"] == "return requested"
    assert env.db.get("orders", order["order_id"])["status"] == "return requested"


def base_order_address(env, order_id):
    return env.fresh().db.get("orders", order_id)["address"]


def test_exchange_and_address_updates(env):
    order, item, vid = order_with_swappable_item(env, "delivered")
    method = card_of(customer(env, order["customer_id"]))
    parse(env.execute("exchange_delivered_order_items", {"order_id": order["order_id"], "item_ids": [item["item_id"]],
                                                         "new_variant_ids": [vid], "payment_method_id": method}))
    after = env.db.get("orders", order["order_id"])
    assert after["status"] == "exchange requested"
    assert after["exchange"]["items"] == {item["item_id"]: vid}

    pending = orders(env, "pending")[0]
    parse(env.execute("modify_pending_order_address", {"order_id": pending["order_id"], **NEW_ADDRESS}))
    assert env.db.get("orders", pending["order_id"])["address"] == NEW_ADDRESS
    cust_id = pending["customer_id"]
    parse(env.execute("update_customer_address", {"customer_id": cust_id, **NEW_ADDRESS}))
    assert customer(env, cust_id)["address"] == NEW_ADDRESS
    # updating the default address leaves the customer's other orders alone
    others = [o for o in customer(env, cust_id)["orders"] if o != pending["order_id"]]
    for order_id in others:
        assert env.db.get("orders", order_id)["address"] == base_order_address(env, order_id)


# -- error paths -----------------------------------------------------------------------------


def error_calls(env) -> list[tuple[str, object, str]]:
    """(tool, arguments, expected words in the error) — several per tool."""
    pending = orders(env, "pending")[0]
    pend_cust = customer(env, pending["customer_id"])
    delivered = orders(env, "delivered")[0]
    shipped = orders(env, "shipped")[0]
    processed = orders(env, "processed")[0]
    pay_order, _ = pending_with_other_method(env)
    poor_order, poor_gift = pending_with_gift_card(env, enough=False)
    mod_order, mod_item, mod_vid = order_with_swappable_item(env, "pending")
    mod_card = card_of(customer(env, mod_order["customer_id"]))
    _, un_item, un_vid = order_with_swappable_item(env, "pending", available=False)
    un_order = next(o for o in orders(env, "pending") if un_item in o["items"])
    un_card = card_of(customer(env, un_order["customer_id"]))
    ex_order, ex_item, ex_vid = order_with_swappable_item(env, "delivered")
    ex_card = card_of(customer(env, ex_order["customer_id"]))
    ret_order, foreign = delivered_with_foreign_non_gift_method(env)
    other_cust = customer_of_other(env, pending["customer_id"])
    other_card = card_of(customer(env, other_cust))
    return [
        ("no_such_tool", {}, "unknown tool"),
        ("get_order_details", "{not json", "not valid JSON"),
        ("get_order_details", "[1, 2]", "JSON object"),
        ("find_customer_id_by_email", {"email": "nobody@nowhere.test"}, "no customer"),
        ("find_customer_id_by_email", {}, "must contain ['email'] properties"),
        ("find_customer_id_by_name_zip", {"first_name": pend_cust["name"]["first_name"],
                                          "last_name": pend_cust["name"]["last_name"], "zip": "00000"}, "no customer"),
        ("get_customer_details", {"customer_id": "nobody_0"}, "customer nobody_0 not found"),
        ("get_customer_details", {"customer_id": 1013}, "must be string"),
        ("get_order_details", {"order_id": "#W0000000"}, "order #W0000000 not found"),
        ("get_order_details", {"order_id": pending["order_id"], "verbose": True}, "must not contain"),
        ("get_product_details", {"product_id": "P0"}, "product P0 not found"),
        ("list_product_types", {"category": "audio"}, "must not contain"),
        ("search_products", {"query": "   "}, "query is empty"),
        ("search_products", {"query": ["audio"]}, "must be string"),
        ("check_refund_eligibility", {"order_id": delivered["order_id"], "item_ids": ["0-1"]}, "not in order"),
        ("check_refund_eligibility", {"order_id": delivered["order_id"], "item_ids": []}, "item_ids is empty"),
        ("check_refund_eligibility", {"order_id": delivered["order_id"], "item_ids": delivered["items"][0]["item_id"]},
         "must be array"),
        ("transfer_to_human_agent", {}, "must contain ['summary'] properties"),
        ("cancel_pending_order", {"order_id": delivered["order_id"], "reason": "no longer needed"}, "not pending"),
        ("cancel_pending_order", {"order_id": pending["order_id"], "reason": "too expensive"}, "must be one of"),
        ("cancel_pending_order", {"order_id": "#W0000000", "reason": "no longer needed"}, "not found"),
        ("modify_pending_order_address", {"order_id": shipped["order_id"], **NEW_ADDRESS}, "is shipped, not pending"),
        ("modify_pending_order_address", {"order_id": pending["order_id"], **{k: v for k, v in NEW_ADDRESS.items()
                                                                              if k != "zip"}}, "must contain ['zip'] properties"),
        ("modify_pending_order_payment", {"order_id": processed["order_id"],
                                          "payment_method_id": paid(processed)[0]["payment_method_id"]}, "not pending"),
        ("modify_pending_order_payment", {"order_id": pay_order["order_id"],
                                          "payment_method_id": paid(pay_order)[0]["payment_method_id"]}, "already paid"),
        ("modify_pending_order_payment", {"order_id": pending["order_id"], "payment_method_id": other_card},
         "not found for this customer"),
        ("modify_pending_order_payment", {"order_id": poor_order["order_id"], "payment_method_id": poor_gift},
         "is not enough"),
        ("modify_pending_order_items", {"order_id": un_order["order_id"], "item_ids": [un_item["item_id"]],
                                        "new_variant_ids": [un_vid], "payment_method_id": un_card}, "is not available"),
        ("modify_pending_order_items", {"order_id": mod_order["order_id"], "item_ids": [mod_item["item_id"]],
                                        "new_variant_ids": [foreign_variant(env, mod_item)], "payment_method_id": mod_card},
         "is not a variant of"),
        ("modify_pending_order_items", {"order_id": mod_order["order_id"], "item_ids": [mod_item["item_id"]],
                                        "new_variant_ids": [mod_item["variant_id"]], "payment_method_id": mod_card},
         "already is variant"),
        ("modify_pending_order_items", {"order_id": mod_order["order_id"], "item_ids": [mod_item["item_id"]] * 2,
                                        "new_variant_ids": [mod_vid] * 2, "payment_method_id": mod_card}, "duplicates"),
        ("modify_pending_order_items", {"order_id": mod_order["order_id"], "item_ids": [mod_item["item_id"]],
                                        "new_variant_ids": [mod_vid, mod_vid], "payment_method_id": mod_card}, "same length"),
        ("modify_pending_order_items", {"order_id": delivered["order_id"], "item_ids": [delivered["items"][0]["item_id"]],
                                        "new_variant_ids": [mod_vid], "payment_method_id": mod_card}, "not pending"),
        ("return_delivered_order_items", {"order_id": ret_order["order_id"], "item_ids": [ret_order["items"][0]["item_id"]],
                                          "payment_method_id": foreign}, "original payment method or a gift card"),
        ("return_delivered_order_items", {"order_id": pending["order_id"], "item_ids": [pending["items"][0]["item_id"]],
                                          "payment_method_id": paid(pending)[0]["payment_method_id"]}, "not delivered"),
        ("return_delivered_order_items", {"order_id": ret_order["order_id"], "item_ids": [ret_order["items"][0]["item_id"]],
                                          "payment_method_id": "gift_card_0"}, "not found for this customer"),
        ("exchange_delivered_order_items", {"order_id": shipped["order_id"], "item_ids": [shipped["items"][0]["item_id"]],
                                            "new_variant_ids": [ex_vid], "payment_method_id": ex_card}, "not delivered"),
        ("exchange_delivered_order_items", {"order_id": ex_order["order_id"], "item_ids": [ex_item["item_id"]],
                                            "new_variant_ids": [foreign_variant(env, ex_item)],
                                            "payment_method_id": ex_card}, "is not a variant of"),
        ("exchange_delivered_order_items", {"order_id": ex_order["order_id"], "item_ids": [ex_item["item_id"]],
                                            "new_variant_ids": [ex_vid]}, "must contain ['payment_method_id'] properties"),
        ("update_customer_address", {"customer_id": "nobody_0", **NEW_ADDRESS}, "customer nobody_0 not found"),
        ("update_customer_address", {"customer_id": pend_cust["customer_id"], **NEW_ADDRESS, "zip": 78701},
         "must be string"),
        ("update_customer_address", {"customer_id": pend_cust["customer_id"], **NEW_ADDRESS, "country": "US"},
         "must not contain"),
    ]


def test_error_cases_cover_every_tool(base):
    assert {name for name, _, _ in error_calls(base)} >= set(StoreEnv.specs())


def test_errors_are_strings_and_leave_state_unchanged(base):
    for name, args, words in error_calls(base):
        env = base.fresh()
        before = env.state_hash()
        result = env.execute(name, args)  # must not raise
        assert isinstance(result, str)
        assert result.startswith(ERROR_PREFIX) and is_error(result), (name, args, result)
        assert words in result, (name, args, result)
        assert env.state_hash() == before, (name, args, result)


def test_failed_write_after_successful_write_keeps_state(env):
    order = orders(env, "pending")[0]
    parse(env.execute("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"}))
    after_write = env.state_hash()
    assert is_error(env.execute("modify_pending_order_address", {"order_id": order["order_id"], **NEW_ADDRESS}))
    assert env.state_hash() == after_write


def test_execute_call_accepts_tool_calls(env):
    order = orders(env, "pending")[0]
    ok = env.execute_call(ToolCall.make("c1", "get_order_details", {"order_id": order["order_id"]}))
    assert json.loads(ok)["order_id"] == order["order_id"]
    bad = ToolCall(id="c2", function={"name": "get_order_details", "arguments": '{"order_id": '})
    assert is_error(env.execute_call(bad))


# -- copies and hashing ----------------------------------------------------------------------


def test_fresh_copies_are_independent(base):
    original = base.state_hash()
    a, b = base.fresh(), base.fresh()
    order = orders(a, "pending")[0]
    parse(a.execute("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"}))
    assert a.state_hash() != original
    assert b.state_hash() == original
    assert base.state_hash() == original
    assert b.db.get("orders", order["order_id"])["status"] == "pending"
    assert base.db.get("orders", order["order_id"])["status"] == "pending"
    c = base.fresh()
    assert c.state_hash() == original
    assert c.db.get("orders", order["order_id"])["status"] == "pending"


def test_tables_reads_are_private_copies(env):
    order_id = orders(env, "pending")[0]["order_id"]
    record = env.db.get("orders", order_id)
    record["status"] = "hacked"
    record["items"].clear()
    again = env.db.get("orders", order_id)
    assert again["status"] == "pending" and again["items"]
    assert env.state_hash() == env.fresh().state_hash()


def test_tables_overlay_and_diff():
    base = {"t": {"a": {"x": 1}, "b": {"x": 2}}}
    tables = Tables(base)
    tables.put("t", "a", {"x": 1})  # same as base: no difference
    tables.put("t", "c", {"x": 3})
    rec = {"x": 20}
    tables.put("t", "b", rec)
    rec["x"] = 99  # put copies
    assert tables.diff() == {"t": {"b": {"x": 20}, "c": {"x": 3}}}
    assert dict(tables.scan("t")) == {"a": {"x": 1}, "b": {"x": 20}, "c": {"x": 3}}
    assert base == {"t": {"a": {"x": 1}, "b": {"x": 2}}}


def _scan_find(tables: Tables, table: str, key_of, wanted):
    return next((key for key, record in tables.scan(table) if key_of(record) == wanted), None)


def test_tables_find_agrees_with_a_scan_through_overlay_changes():
    """The index is built on the shared base; the overlay (a moved customer, a new one, a twin) is seen per call."""
    zip_of = lambda r: r["zip"]  # noqa: E731 - one function object for the index, as a domain's module-level one
    base = {"people": {f"p{i}": {"zip": f"{i % 5:05d}"} for i in range(20)}}
    tables, other = Tables(base), Tables(base)
    wanted = ["00000", "00003", "00004", "99999", "77777"]
    assert [tables.find("people", zip_of, w) for w in wanted] == ["p0", "p3", "p4", None, None]
    tables.put("people", "p0", {"zip": "99999"})  # the first 00000 moved away: the next one is found
    tables.put("people", "p13", {"zip": "00004"})  # a later base record now matches too: base order still wins
    tables.put("people", "p4", {"zip": "77777"})
    tables.put("people", "new", {"zip": "00000"})  # overlay-only records come after every base record
    tables.put("people", "twin", {"zip": "55555"})
    for w in [*wanted, "55555"]:
        assert tables.find("people", zip_of, w) == _scan_find(tables, "people", zip_of, w), w
    assert [tables.find("people", zip_of, w) for w in ["00000", "00004", "99999", "55555"]] == ["p5", "p9", "p0", "twin"]
    assert other.find("people", zip_of, "00000") == "p0"  # another copy of the same base sees none of it


def test_tables_diff_json_is_the_canonical_json_of_the_diff():
    base = {"t": {"a": {"x": 1}, "b": {"x": 2, "é": [1.5, None]}}, "u": {"k": {"y": "z"}}}
    tables = Tables(base)
    assert tables.diff_json() == canonical_json(tables.diff()) == "{}"
    tables.put("t", "b", {"é": [1.5, None], "x": 2})  # the base record again: no difference
    assert tables.diff_json() == "{}"
    tables.put("u", "k", {"y": "ü\n", "n": 1e-7})
    tables.put("t", "c", {"x": 3})
    tables.put("t", "a", {"x": 10})
    assert tables.diff_json() == canonical_json(tables.diff())
    assert json.loads(tables.diff_json()) == {"t": {"a": {"x": 10}, "c": {"x": 3}}, "u": {"k": {"y": "ü\n", "n": 1e-7}}}
    tables.put("t", "a", {"x": 1})  # changed back: gone from both
    assert tables.diff_json() == canonical_json(tables.diff()) and "a" not in tables.diff()["t"]


def test_revert_to_original_restores_fresh_hash(env):
    fresh_hash = env.state_hash()
    cust_id = orders(env, "pending")[0]["customer_id"]
    original = customer(env, cust_id)["address"]
    parse(env.execute("update_customer_address", {"customer_id": cust_id, **NEW_ADDRESS}))
    assert env.state_hash() != fresh_hash
    parse(env.execute("update_customer_address", {"customer_id": cust_id, **original}))
    assert env.state_hash() == fresh_hash

    order = orders(env, "pending")[0]
    parse(env.execute("modify_pending_order_address", {"order_id": order["order_id"], **NEW_ADDRESS}))
    assert env.state_hash() != fresh_hash
    parse(env.execute("modify_pending_order_address", {"order_id": order["order_id"], **order["address"]}))
    assert env.state_hash() == fresh_hash


def test_independent_writes_commute(base):
    pending = orders(base, "pending")[0]
    cust_id = customer_of_other(base, pending["customer_id"])
    cancel = ("cancel_pending_order", {"order_id": pending["order_id"], "reason": "no longer needed"})
    move = ("update_customer_address", {"customer_id": cust_id, **NEW_ADDRESS})
    a, b = base.fresh(), base.fresh()
    for name, args in (cancel, move):
        parse(a.execute(name, args))
    for name, args in (move, cancel):
        parse(b.execute(name, args))
    assert a.state_hash() == b.state_hash() != base.state_hash()


def test_return_hash_ignores_item_order(base):
    order = next(o for o in orders(base, "delivered") if len(o["items"]) >= 2)
    ids = [i["item_id"] for i in order["items"][:2]]
    method = paid(order)[0]["payment_method_id"]
    a, b = base.fresh(), base.fresh()
    parse(a.execute("return_delivered_order_items", {"order_id": order["order_id"], "item_ids": ids,
                                                     "payment_method_id": method}))
    parse(b.execute("return_delivered_order_items", {"order_id": order["order_id"], "item_ids": ids[::-1],
                                                     "payment_method_id": method}))
    assert a.state_hash() == b.state_hash()


def _exchange_two(base):
    for o in orders(base, "delivered"):
        pairs = [(i, alternative_variant(base, i)) for i in o["items"]]
        by_product = {i["product_id"]: (i, v) for i, v in pairs if v}
        if len(by_product) >= 2:
            return o, list(by_product.values())[:2]
    raise AssertionError("no delivered order with two swappable items")


def test_exchange_record_pairs_items_with_their_variants(base):
    order, ((i1, v1), (i2, v2)) = _exchange_two(base)
    method = card_of(customer(base, order["customer_id"]))
    a, b = base.fresh(), base.fresh()
    parse(a.execute("exchange_delivered_order_items", {"order_id": order["order_id"], "item_ids": [i1["item_id"], i2["item_id"]],
                                                       "new_variant_ids": [v1, v2], "payment_method_id": method}))
    parse(b.execute("exchange_delivered_order_items", {"order_id": order["order_id"], "item_ids": [i2["item_id"], i1["item_id"]],
                                                       "new_variant_ids": [v2, v1], "payment_method_id": method}))
    for e in (a, b):
        record = e.db.get("orders", order["order_id"])["exchange"]
        assert record["items"] == {i1["item_id"]: v1, i2["item_id"]: v2}
    assert a.state_hash() == b.state_hash()


def test_cancel_after_payment_change_refunds_once(base):
    env = base.fresh()
    order, other = pending_with_other_method(env)
    total = paid(order)[0]["amount"]
    parse(env.execute("modify_pending_order_payment", {"order_id": order["order_id"], "payment_method_id": other}))
    result = parse(env.execute("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"}))
    history = env.db.get("orders", order["order_id"])["payment_history"]
    charged = sum(p["amount"] for p in history if p["kind"] == "payment")
    refunded = sum(p["amount"] for p in history if p["kind"] == "refund")
    assert refunded == pytest.approx(charged, abs=0.01)
    assert result["refund_amount"] == pytest.approx(total, abs=0.01)


# -- policy ------------------------------------------------------------------------------------


class Dialogue:
    """Builds message lists with real tool results from an environment."""

    def __init__(self, env):
        self.env = env
        self.messages = [Message(role="system", content=env.policy)]
        self.n = 0

    def user(self, text):
        self.messages.append(Message(role="user", content=text))
        return self

    def say(self, text):
        self.messages.append(Message(role="assistant", content=text))
        return self

    def call(self, name, args):
        self.n += 1
        call = ToolCall.make(f"call_{self.n}", name, args)
        self.messages.append(Message(role="assistant", tool_calls=[call]))
        self.messages.append(Message(role="tool", tool_call_id=call.id, content=self.env.execute_call(call)))
        return self


def _two_pending_orders_of_different_customers(env):
    first = orders(env, "pending")[0]
    second = next(o for o in orders(env, "pending") if o["customer_id"] != first["customer_id"])
    return first, second


def test_policy_write_before_authentication(base):
    order, _ = _two_pending_orders_of_different_customers(base)
    d = Dialogue(base.fresh()).user(f"Cancel {order['order_id']}, yes please do.")
    d.call("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"})
    violations = base.check_policy(d.messages)
    assert len(violations) == 1
    assert "before the customer was authenticated" in violations[0]
    assert "cancel_pending_order" in violations[0]


def test_policy_failed_authentication_does_not_count(base):
    order, _ = _two_pending_orders_of_different_customers(base)
    d = Dialogue(base.fresh()).user("It's nobody@nowhere.test")
    d.call("find_customer_id_by_email", {"email": "nobody@nowhere.test"})
    d.say("Shall I proceed?").user("Yes.")
    d.call("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"})
    assert any("before the customer was authenticated" in v for v in base.check_policy(d.messages))


def test_policy_write_without_confirmation(base):
    order, _ = _two_pending_orders_of_different_customers(base)
    c = customer(base, order["customer_id"])
    d = Dialogue(base.fresh()).user(f"My email is {c['email']}")
    d.call("find_customer_id_by_email", {"email": c["email"]})
    d.user(f"Please cancel order {order['order_id']}, I no longer need it.")
    d.call("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"})
    violations = base.check_policy(d.messages)
    assert len(violations) == 1 and "without an explicit confirmation" in violations[0]


def test_policy_one_confirmation_covers_one_write(base):
    order, _ = _two_pending_orders_of_different_customers(base)
    c = customer(base, order["customer_id"])
    d = Dialogue(base.fresh()).user(f"My email is {c['email']}")
    d.call("find_customer_id_by_email", {"email": c["email"]})
    d.say("Shall I proceed?").user("Yes.")
    d.call("modify_pending_order_address", {"order_id": order["order_id"], **NEW_ADDRESS})
    d.call("update_customer_address", {"customer_id": c["customer_id"], **NEW_ADDRESS})
    violations = base.check_policy(d.messages)
    assert len(violations) == 1
    assert violations[0].startswith("update_customer_address") and "confirmation" in violations[0]


def test_policy_write_on_another_customers_order(base):
    mine, theirs = _two_pending_orders_of_different_customers(base)
    c = customer(base, mine["customer_id"])
    d = Dialogue(base.fresh()).user(f"I'm {c['name']['first_name']} {c['name']['last_name']}, zip {c['address']['zip']}")
    d.call("find_customer_id_by_name_zip", {"first_name": c["name"]["first_name"], "last_name": c["name"]["last_name"],
                                            "zip": c["address"]["zip"]})
    d.say(f"To confirm: cancel {theirs['order_id']}. Shall I proceed?").user("Yes, go ahead.")
    d.call("cancel_pending_order", {"order_id": theirs["order_id"], "reason": "no longer needed"})
    violations = base.check_policy(d.messages)
    assert len(violations) == 1
    assert theirs["customer_id"] in violations[0] and "not the authenticated customer's" in violations[0]

    d2 = Dialogue(base.fresh()).user(c["email"])
    d2.call("find_customer_id_by_email", {"email": c["email"]})
    d2.say("Shall I proceed?").user("yes")
    d2.call("update_customer_address", {"customer_id": theirs["customer_id"], **NEW_ADDRESS})
    assert any(theirs["customer_id"] in v for v in base.check_policy(d2.messages))


def test_policy_compliant_dialogue(base):
    order, _ = _two_pending_orders_of_different_customers(base)
    c = customer(base, order["customer_id"])
    d = Dialogue(base.fresh()).user("I need to cancel an order.").say("Your email, please?").user(c["email"])
    d.call("find_customer_id_by_email", {"email": c["email"]})
    d.call("get_order_details", {"order_id": order["order_id"]})
    d.say(f"To confirm: cancel order {order['order_id']}. Shall I proceed?").user("Yes, please go ahead.")
    d.call("cancel_pending_order", {"order_id": order["order_id"], "reason": "no longer needed"})
    d.say("Done. Shall I also update your address?").user("Sure.")
    d.call("update_customer_address", {"customer_id": c["customer_id"], **NEW_ADDRESS})
    d.say("All done.")
    assert not any(is_error(m.content or "") for m in d.messages if m.role == "tool")
    assert base.check_policy(d.messages) == []
    # reads need no confirmation at all
    reads = Dialogue(base.fresh()).user("hi")
    reads.call("get_order_details", {"order_id": order["order_id"]})
    assert base.check_policy(reads.messages) == []


def test_policy_option_value_yes_is_not_a_confirmation(base):
    order, _ = _two_pending_orders_of_different_customers(base)
    c = customer(base, order["customer_id"])
    d = Dialogue(base.fresh()).user(c["email"])
    d.call("find_customer_id_by_email", {"email": c["email"]})
    d.user(f"Please ship order {order['order_id']}, the one with the Wireless Headphones (color black, "
           "noise cancelling yes), to 12 Test St, Austin instead.")
    d.call("modify_pending_order_address", {"order_id": order["order_id"], **NEW_ADDRESS})
    assert any("confirmation" in v for v in base.check_policy(d.messages))
