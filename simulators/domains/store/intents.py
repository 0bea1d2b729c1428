"""What a store customer can want, grounded in the store's data."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from schemas import Action
from simulators.domains.store.data import CITIES, STREETS
from simulators.environment import Environment
from simulators.intents import Grounding, Intent


def money(x: float) -> str:
    return f"${abs(x):.2f}"


def describe_item(item: dict[str, Any]) -> str:
    opts = ", ".join(f"{k} {v}" for k, v in item["options"].items())
    return f"{item['name']} ({opts})"


def describe_method(method: dict[str, Any]) -> str:
    if method["kind"] == "credit_card":
        return f"{method['brand']} card ending in {method['last_four']}"
    return method["kind"].replace("_", " ")


def _orders(env: Environment, customer: dict[str, Any], status: str) -> list[dict[str, Any]]:
    orders = [env.db.get("orders", o) for o in customer["orders"]]
    return [o for o in orders if o["status"] == status]


def _order_ref(rng: random.Random, order: dict[str, Any]) -> tuple[str, dict[str, str], list[str]]:
    """How the user points at an order: by id, or only by what is in it."""
    if rng.random() < 0.6:
        return f"order {order['order_id']}", {"order_id": order["order_id"]}, []
    names = " and ".join(sorted({i["name"] for i in order["items"]}))
    return f"the order with the {names}", {"order_contents": names}, [f"the id of the order with the {names}"]


def _pick(rng: random.Random, seq: list[Any], k_max: int) -> list[Any]:
    return rng.sample(seq, rng.randint(1, min(k_max, len(seq))))


def _other_variant(env: Environment, rng: random.Random, item: dict[str, Any]) -> tuple[str, dict] | None:
    product = env.db.get("products", item["product_id"])
    options = [(vid, v) for vid, v in product["variants"].items() if v["available"] and vid != item["variant_id"]]
    return rng.choice(options) if options else None


def _diff_words(old: dict[str, str], new: dict[str, str]) -> str:
    return ", ".join(f"{k} {new[k]}" for k in new if new[k] != old.get(k)) or "another variant"


def _new_address(rng: random.Random) -> dict[str, str]:
    city, state, zip3 = rng.choice(CITIES)
    return {"address1": f"{rng.randrange(10, 9999)} {rng.choice(STREETS)}",
            "address2": rng.choice(["", f"Apt {rng.randrange(1, 40)}", f"Suite {rng.randrange(100, 500)}"]),
            "city": city, "state": state, "zip": f"{zip3}{rng.randrange(100):02d}"}


def _address_words(a: dict[str, str]) -> str:
    line = a["address1"] + (f", {a['address2']}" if a["address2"] else "")
    return f"{line}, {a['city']}, {a['state']} {a['zip']}"


class CancelOrder(Intent):
    name = "cancel_order"
    target_tool = "cancel_pending_order"

    def ground(self, env, rng, customer):
        orders = _orders(env, customer, "pending")
        if not orders:
            return None
        order = rng.choice(orders)
        ref, known, unknown = _order_ref(rng, order)
        reason = rng.choice(["no longer needed", "ordered by mistake"])
        why = {"no longer needed": "you no longer need it", "ordered by mistake": "you ordered it by mistake"}[reason]
        return Grounding(
            target=Action(name=self.target_tool, arguments={"order_id": order["order_id"], "reason": reason}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"You want to cancel {ref} because {why}.",
            opening=rng.choice(["I need to cancel an order.", "I'd like to cancel something I ordered.",
                                "Can you help me cancel an order?"]),
            details=f"It's {ref}. Please cancel it, I {why.split('you ', 1)[1]}.",
            known_info={**known, "reason": reason}, unknown_info=unknown)

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def ask(self, rng):
        return rng.choice(["Which order would you like to cancel, and why?",
                           "Sure. Which order is it, and what is the reason for cancelling?"])

    def confirm(self, target, rng):
        a = target.arguments
        return (f"To confirm: I will cancel order {a['order_id']} (reason: {a['reason']}), and the payment will "
                f"be refunded to the original method. Shall I proceed?")

    def report(self, target, outputs, rng):
        refund = f" A refund of {outputs[0]} is on its way to your original payment method." if outputs else ""
        return f"Order {target.arguments['order_id']} is now cancelled.{refund}"


class ChangeOrderAddress(Intent):
    name = "change_order_address"
    target_tool = "modify_pending_order_address"

    def ground(self, env, rng, customer):
        orders = _orders(env, customer, "pending")
        if not orders:
            return None
        order = rng.choice(orders)
        ref, known, unknown = _order_ref(rng, order)
        addr = _new_address(rng)
        words = _address_words(addr)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"order_id": order["order_id"], **addr}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"You want {ref} shipped to {words} instead.",
            opening=rng.choice(["I need to change where an order is being shipped.",
                                "I moved and one of my orders has the old address."]),
            details=f"It's {ref}. The new address is {words}.",
            known_info={**known, "new_address": words}, unknown_info=unknown)

    def ask(self, rng):
        return "Which order should go to a new address, and what is the new address?"

    def confirm(self, target, rng):
        return (f"To confirm: order {target.arguments['order_id']} will ship to "
                f"{_address_words(target.arguments)}. Shall I proceed?")

    def report(self, target, outputs, rng):
        where = f" to zip code {outputs[0]}" if outputs else ""
        return f"Done: order {target.arguments['order_id']} will now ship{where}."


class ChangeOrderPayment(Intent):
    name = "change_order_payment"
    target_tool = "modify_pending_order_payment"

    def ground(self, env, rng, customer):
        for order in rng.sample(_orders(env, customer, "pending"), len(_orders(env, customer, "pending"))):
            paid = [p for p in order["payment_history"] if p["kind"] == "payment"]
            if len(paid) != 1:
                continue
            methods = [m for m in customer["payment_methods"].values() if m["id"] != paid[0]["payment_method_id"]
                       and (m["kind"] != "gift_card" or m["balance"] >= paid[0]["amount"])]
            if not methods:
                continue
            method = rng.choice(methods)
            ref, known, unknown = _order_ref(rng, order)
            return Grounding(
                target=Action(name=self.target_tool,
                              arguments={"order_id": order["order_id"], "payment_method_id": method["id"]}),
                bindings={"order_id": [order["order_id"]]},
                goal=f"You want to pay for {ref} with your {describe_method(method)} instead.",
                opening="I'd like to change how I'm paying for an order.",
                details=f"It's {ref}. Please charge my {describe_method(method)} instead.",
                known_info={**known, "payment": describe_method(method)}, unknown_info=unknown + ["payment method id"])
        return None

    def outputs(self, target, result):
        return [money(result["amount"])]

    def ask(self, rng):
        return "Which order is it, and which payment method would you like to use?"

    def confirm(self, target, rng):
        a = target.arguments
        return f"To confirm: order {a['order_id']} will be paid with {a['payment_method_id']}. Shall I proceed?"

    def report(self, target, outputs, rng):
        amount = f" {outputs[0]} has been charged to the new method and" if outputs else ""
        return f"Done:{amount} the previous method will be refunded."


class _VariantSwap(Intent):
    """Shared grounding for swapping items for other variants (pending or delivered orders)."""

    status: ClassVar[str]
    verb: ClassVar[str]

    def ground(self, env, rng, customer):
        for order in rng.sample(_orders(env, customer, self.status), len(_orders(env, customer, self.status))):
            swaps = [(i, _other_variant(env, rng, i)) for i in order["items"]]
            swaps = [(i, v) for i, v in swaps if v is not None]
            if not swaps:
                continue
            chosen = _pick(rng, swaps, 2)
            methods = [m for m in customer["payment_methods"].values() if m["kind"] != "gift_card"]
            if not methods:
                continue
            method = rng.choice(methods)
            ref, known, unknown = _order_ref(rng, order)
            wants = "; ".join(f"the {describe_item(i)} to {_diff_words(i['options'], v[1]['options'])}"
                              for i, v in chosen)
            return Grounding(
                target=Action(name=self.target_tool, arguments={
                    "order_id": order["order_id"], "item_ids": [i["item_id"] for i, _ in chosen],
                    "new_variant_ids": [v[0] for _, v in chosen], "payment_method_id": method["id"]}),
                bindings={"order_id": [order["order_id"]], "product_id": sorted({i["product_id"] for i, _ in chosen})},
                goal=f"You want to {self.verb} items of {ref}: {wants}. Any price difference should go "
                     f"through your {describe_method(method)}.",
                opening=rng.choice([f"I want to {self.verb} some items in an order.",
                                    f"I need to {self.verb} a couple of things I ordered."]),
                details=f"It's {ref}. I'd like to change {wants}. Use my {describe_method(method)} for any "
                        f"difference.",
                known_info={**known, "changes": wants, "payment": describe_method(method)},
                unknown_info=unknown + ["item ids", "variant ids"])
        return None

    def outputs(self, target, result):
        return [money(result["price_difference"])]

    def ask(self, rng):
        return f"Which order and items would you like to {self.verb}, and to which options?"

    def confirm(self, target, rng):
        a = target.arguments
        pairs = ", ".join(f"item {i} to variant {v}" for i, v in zip(a["item_ids"], a["new_variant_ids"], strict=False))
        return (f"To confirm: in order {a['order_id']} I will {self.verb} {pairs}, settling any price "
                f"difference with {a['payment_method_id']}. Shall I proceed?")

    def report(self, target, outputs, rng):
        diff = f" The price difference is {outputs[0]}." if outputs else ""
        return f"Your {self.verb} request for order {target.arguments['order_id']} is placed.{diff}"


class ModifyItems(_VariantSwap):
    name = "modify_items"
    target_tool = "modify_pending_order_items"
    status = "pending"
    verb = "modify"


class ExchangeItems(_VariantSwap):
    name = "exchange_items"
    target_tool = "exchange_delivered_order_items"
    status = "delivered"
    verb = "exchange"


class ReturnItems(Intent):
    name = "return_items"
    target_tool = "return_delivered_order_items"

    def ground(self, env, rng, customer):
        orders = _orders(env, customer, "delivered")
        if not orders:
            return None
        order = rng.choice(orders)
        items = _pick(rng, order["items"], 3)
        original = order["payment_history"][0]["payment_method_id"]
        gifts = [m["id"] for m in customer["payment_methods"].values() if m["kind"] == "gift_card"]
        method_id = rng.choice(gifts) if gifts and rng.random() < 0.4 else original
        method = customer["payment_methods"][method_id]
        ref, known, unknown = _order_ref(rng, order)
        names = "; ".join(describe_item(i) for i in items)
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "order_id": order["order_id"], "item_ids": sorted(i["item_id"] for i in items),
                "payment_method_id": method_id}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"You want to return from {ref}: {names}. The refund should go to your {describe_method(method)}.",
            opening=rng.choice(["I'd like to return some things.", "I need to send back part of an order.",
                                "I want to make a return."]),
            details=f"It's {ref}. I want to return the {names}. Refund to my {describe_method(method)}, please.",
            known_info={**known, "items": names, "refund_to": describe_method(method)},
            unknown_info=unknown + ["item ids"])

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def ask(self, rng):
        return rng.choice(["Which order and items would you like to return, and where should the refund go?",
                           "Happy to help with a return. Which order and which items?"])

    def confirm(self, target, rng):
        a = target.arguments
        return (f"To confirm: I will request a return of items {', '.join(a['item_ids'])} from order "
                f"{a['order_id']}, refunding to {a['payment_method_id']}. Shall I proceed?")

    def report(self, target, outputs, rng):
        refund = f" You will be refunded {outputs[0]} once we receive the items." if outputs else ""
        return f"Your return for order {target.arguments['order_id']} is requested.{refund}"


class UpdateAddress(Intent):
    name = "update_address"
    target_tool = "update_customer_address"

    def ground(self, env, rng, customer):
        addr = _new_address(rng)
        words = _address_words(addr)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"customer_id": customer["customer_id"], **addr}),
            bindings={},
            goal=f"You moved and want your default address changed to {words}.",
            opening="I moved recently and need to update my address.",
            details=f"My new address is {words}.",
            known_info={"new_address": words}, unknown_info=["customer id"])

    def ask(self, rng):
        return "What is your new address?"

    def confirm(self, target, rng):
        return f"To confirm: your default address becomes {_address_words(target.arguments)}. Shall I proceed?"

    def report(self, target, outputs, rng):
        return "Your default address is updated" + (f" (zip code {outputs[0]})." if outputs else ".")


class RefundQuote(Intent):
    name = "refund_quote"
    target_tool = "check_refund_eligibility"

    def ground(self, env, rng, customer):
        orders = _orders(env, customer, "delivered")
        if not orders:
            return None
        order = rng.choice(orders)
        items = _pick(rng, order["items"], 2)
        ref, known, unknown = _order_ref(rng, order)
        names = "; ".join(describe_item(i) for i in items)
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "order_id": order["order_id"], "item_ids": sorted(i["item_id"] for i in items)}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"Before deciding anything, you want to know how much you would get back for returning the "
                 f"{names} from {ref}. You do not want to start a return yet.",
            opening="How much would I get back if I returned something?",
            details=f"It's the {names} from {ref}. Just tell me the amount, I'm not returning it yet.",
            known_info={**known, "items": names}, unknown_info=unknown + ["item ids"])

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def ask(self, rng):
        return "Which order and items are you thinking of returning?"

    def report(self, target, outputs, rng):
        amount = f" you would get {outputs[0]} back" if outputs else " they can be returned"
        return f"Those items are eligible for return:{amount}. Let me know if you want to go ahead later."


class OrderStatus(Intent):
    name = "order_status"
    target_tool = "get_order_details"

    def ground(self, env, rng, customer):
        orders = _orders(env, customer, "shipped")
        if not orders:
            return None
        order = rng.choice(orders)
        ref, known, unknown = _order_ref(rng, order)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"order_id": order["order_id"]}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"You want to know where {ref} is and its tracking number.",
            opening=rng.choice(["Where is my order?", "I'm waiting on a package, can you check on it?"]),
            details=f"It's {ref}. Can I get the tracking number?",
            known_info=known, unknown_info=unknown + ["tracking number"])

    def outputs(self, target, result):
        f = result["fulfillment"]
        return [f["tracking_number"], f["carrier"]]

    def ask(self, rng):
        return "Which order would you like me to check?"

    def report(self, target, outputs, rng):
        if len(outputs) < 2:
            return f"Order {target.arguments['order_id']} has shipped."
        return (f"Order {target.arguments['order_id']} has shipped with {outputs[1]}; the tracking number "
                f"is {outputs[0]}.")


INTENTS: dict[str, Intent] = {i.name: i for i in (
    CancelOrder(), ChangeOrderAddress(), ChangeOrderPayment(), ModifyItems(), ExchangeItems(), ReturnItems(),
    UpdateAddress(), RefundQuote(), OrderStatus())}
