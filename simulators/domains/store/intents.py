"""What a store customer can want, grounded in the store's data.

Openings and details are drawn from templates (``simulators.phrasing``) when a
task is made; questions, confirmations and reports when a dialogue is
played. Every confirmation ends in a question the policy reads as asking for
permission, and every report contains the outputs the user must hear.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from schemas import Action
from simulators.domains.store.data import CITIES, STREETS
from simulators.environment import Environment
from simulators.intents import Grounding, Intent
from simulators.phrasing import PLACES, expand, pick, pick_fragment, price, refer, say_card, someone, when

CONFIRM_LEAD = "{To confirm|Just to confirm|Let me confirm|Before I do that|Here's what I'll do|So, to be clear}:"
CONFIRM_ASK = "{Shall I proceed|Should I go ahead|Do you want me to go ahead|Would you like me to proceed" \
              "|Okay to proceed|Can I go ahead}?"
DONE = "{Done|All set|That's done|Okay, that's taken care of|It's done}{.|!|:}"


def money(x: float) -> str:
    return f"${abs(x):.2f}"


def describe_item(item: dict[str, Any]) -> str:
    opts = ", ".join(f"{k} {v}" for k, v in item["options"].items())
    return f"{item['name']} ({opts})"


def describe_method(method: dict[str, Any]) -> str:
    if method["kind"] == "credit_card":
        return f"{method['brand']} card ending in {method['last_four']}"
    return method["kind"].replace("_", " ")


def say_method(rng: random.Random, method: dict[str, Any]) -> str:
    """A payment method as a customer names it (the last four digits survive every form)."""
    if method["kind"] == "credit_card":
        return say_card(rng, method["brand"], method["last_four"])
    if method["kind"] == "gift_card":
        return pick_fragment(rng, "gift card", "store gift card", "gift card balance", "gift card on the account",
                             "store credit card", "gift card I got")
    return pick_fragment(rng, "PayPal", "PayPal account", "paypal", "PayPal wallet")


def say_item(rng: random.Random, item: dict[str, Any]) -> str:
    """An item as a customer names it: its product name and its options, in one of a few shapes."""
    opts = ", ".join(f"{k} {v}" for k, v in item["options"].items())
    values = "/".join(item["options"].values())
    return pick_fragment(rng, "<name> (<opts>)", "<name> (<opts>)", "<name> in <values>", "<name>, the <values> one",
                         "<name> — <opts>", name=item["name"], opts=opts, values=values)


def _orders(env: Environment, customer: dict[str, Any], status: str) -> list[dict[str, Any]]:
    orders = [env.db.view("orders", o) for o in customer["orders"]]
    return [o for o in orders if o["status"] == status]


def _order_ref(rng: random.Random, order: dict[str, Any]) -> tuple[str, dict[str, str], list[str]]:
    """How the user points at an order: by id, or only by what is in it."""
    if rng.random() < 0.6:
        ref = pick_fragment(rng, "order <id>", "my order <id>", "order number <id>", "order <id>",
                            id=order["order_id"])
        return ref, {"order_id": order["order_id"]}, []
    names = " and ".join(sorted({i["name"] for i in order["items"]}))
    ref = pick_fragment(rng, "the order with the <names>", "my order with the <names> in it",
                        "the one with the <names>", "the order that has the <names>", "the <names> order",
                        "my <names> order", "the order containing the <names>", "the one where I got the <names>",
                        "that order of mine with the <names>", names=names)
    return ref, {"order_contents": names}, [f"the id of the order with the {names}"]


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


def _its(rng: random.Random, ref: str) -> str:
    return refer(rng, ref)


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
        because = pick(rng, "I {don't need it anymore|no longer need it|changed my mind and don't need it}",
                       "{it turns out|turns out} I {don't need it|won't need it after all}") \
            if reason == "no longer needed" else pick(
            rng, "I ordered it by mistake", "{it was|that was} {a mistake|an accident}, I ordered it by mistake",
            "I {clicked the wrong thing|hit order by accident} and ordered it by mistake")
        return Grounding(
            target=Action(name=self.target_tool, arguments={"order_id": order["order_id"], "reason": reason}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"You want to cancel {ref} because {why}.",
            opening=pick(rng, "{I need|I'd like|I want} to cancel {an order|one of my orders|something I ordered}"
                         "[ {please|if it's not too late|before it ships}].",
                         "Can you {help me cancel|cancel} {an order|an order for me|something I ordered}?",
                         "{Is it too late|Am I still in time} to cancel an order?",
                         "I {placed an order|ordered something} {yesterday|recently|the other day} and "
                         "{want|need} to cancel it."),
            details=f"{_its(rng, ref)} {pick(rng, 'Please cancel it,', 'Cancel it please —', 'I want it cancelled,')}"
                    f" {because}.",
            known_info={**known, "reason": reason}, unknown_info=unknown)

    def story(self, rng):
        return pick(rng, "I placed it <when>.", "<Someone> already {got|bought} me one.",
                    "It was <price> and I {found|saw} it for less <when>.", "I {ordered|placed it} at <h>am by "
                    "mistake, half asleep.",
                    "I found it cheaper {elsewhere|at another shop} <when>.", "I ordered it <when> without thinking.",
                    "{We|I} {won't be home|am away} {for a while|next month}, so there's no point.",
                    when=when(rng), Someone=someone(rng), price=price(rng), h=str(rng.randint(1, 6)))

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def ask(self, rng):
        return pick(rng, "Which order would you like to cancel, and why?",
                    "{Sure|Of course|Happy to help}. Which order is it, and what is the reason for cancelling?",
                    "Could you tell me which order{ it is|} and why you'd like to cancel it?",
                    "{Okay|Alright}. {Which order|What's the order} and {what's the reason|why are you cancelling}?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{CONFIRM_LEAD} I will cancel order <id> (reason: <reason>){{,| and}} the payment "
                      f"{{will be|gets}} refunded to the original method. {CONFIRM_ASK}", rng,
                      id=a["order_id"], reason=a["reason"])

    def report(self, target, outputs, rng):
        refund = pick(rng, " A refund of <x> is on its way to your original payment method.",
                      " You'll get <x> back on your original payment method{ in a few days|}.",
                      " <x> will be refunded to the card or account you paid with.", x=outputs[0]) if outputs else ""
        return pick(rng, "Order <id> is now cancelled.", "{Done|All set}: order <id> is cancelled.",
                    "I've cancelled order <id>.", id=target.arguments["order_id"]) + " " + refund.strip()


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
            opening=pick(rng, "I need to change where an order is being shipped.",
                         "I moved and one of my orders has the old address.",
                         "{Can|Could} you {change|update} the {shipping|delivery} address on {an order|my order}?",
                         "{One of my orders|An order} is going to the wrong address{, I think|}.",
                         "I {gave|put in} the wrong address for an order{, oops|}."),
            details=f"{_its(rng, ref)} " + pick(rng, "The new address is <w>.", "{Please|Can you} send it to <w>.",
                                                 "It should go to <w> instead.", "Ship it to <w>{ please|}.", w=words),
            known_info={**known, "new_address": words}, unknown_info=unknown)

    def story(self, rng):
        return pick(rng, "I'm staying with <someone> for a while.", "We moved <when>.",
                    "I'll be in <place> {for a few weeks|until next month}.", "It's a gift, so it should go to "
                    "<someone> directly.", someone=someone(rng), when=when(rng), place=rng.choice(PLACES))

    def ask(self, rng):
        return pick(rng, "Which order should go to a new address, and what is the new address?",
                    "{Sure|No problem}. Which order is it, and where should it ship instead?",
                    "Could you give me the order and the full new address?")

    def confirm(self, target, rng):
        return expand(f"{CONFIRM_LEAD} order <id> will ship to <w>. {CONFIRM_ASK}", rng,
                      id=target.arguments["order_id"], w=_address_words(target.arguments))

    def report(self, target, outputs, rng):
        where = f" to zip code {outputs[0]}" if outputs else ""
        return expand(f"{DONE} order <id> will now ship<where>.", rng, id=target.arguments["order_id"], where=where)


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
                opening=pick(rng, "I'd like to change how I'm paying for an order.",
                             "{Can|Could} I {switch|change} the payment method on {an order|my order}?",
                             "I {want|need} to pay for an order with a different {card|method}.",
                             "{I used the wrong card|I paid with the wrong method} on an order."),
                details=f"{_its(rng, ref)} " + pick(rng, "Please charge my <m> instead.",
                                                     "I'd rather pay with my <m>.", "Put it on my <m>{ please|}.",
                                                     "Use my <m> for it instead.", m=say_method(rng, method)),
                known_info={**known, "payment": describe_method(method)}, unknown_info=unknown + ["payment method id"])
        return None

    def story(self, rng):
        return pick(rng, "{My|That} card {expired|got replaced} <when>.", "I'd rather keep that card for bills.",
                    "<Someone> {usually|normally} pays for these, sorry.", when=when(rng),
                    Someone=someone(rng))

    def outputs(self, target, result):
        return [money(result["amount"])]

    def ask(self, rng):
        return pick(rng, "Which order is it, and which payment method would you like to use?",
                    "{Sure|Of course}. Which order, and what should I charge instead?",
                    "Could you tell me the order and the payment method you'd like to switch to?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{CONFIRM_LEAD} order <id> will be paid with <m>{{ and the old method refunded|}}. "
                      f"{CONFIRM_ASK}", rng, id=a["order_id"], m=a["payment_method_id"])

    def report(self, target, outputs, rng):
        amount = f" {outputs[0]} has been charged to the new method and" if outputs else ""
        return expand(f"{DONE}<amount> the previous method will be refunded{{| shortly| within a few days}}.", rng,
                      amount=amount)


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
            said = "; ".join(pick_fragment(rng, "the <item> to <new>", "the <item> over to <new>",
                                           "the <item> to <new> instead",
                                           item=say_item(rng, i), new=_diff_words(i["options"], v[1]["options"]))
                             for i, v in chosen)
            verb = self.verb
            return Grounding(
                target=Action(name=self.target_tool, arguments={
                    "order_id": order["order_id"], "item_ids": [i["item_id"] for i, _ in chosen],
                    "new_variant_ids": [v[0] for _, v in chosen], "payment_method_id": method["id"]}),
                bindings={"order_id": [order["order_id"]], "product_id": sorted({i["product_id"] for i, _ in chosen})},
                goal=f"You want to {verb} items of {ref}: {wants}. Any price difference should go "
                     f"through your {describe_method(method)}.",
                opening=pick(rng, "I {want|need|would like} to <verb> {some items|a couple of things|an item} "
                             "{in an order|I ordered|from an order}.",
                             "{Can|Could} I <verb> {something|a few things} {I bought|I ordered|from my order}?",
                             "I got the wrong {size|color|version} of something and want to <verb> it.",
                             "{Is it possible|Am I able} to <verb> items {in|from} an order?", verb=verb),
                details=f"{_its(rng, ref)} " + pick(
                    rng, "I'd like to change <wants>. Use my <m> for any difference.",
                    "{Please|Can you} change <wants>{.|;} {any|the} price difference {can go|should go} on my <m>.",
                    "I want to switch <wants>, and {charge|refund} any difference {to|on} my <m>.",
                    wants=said, m=say_method(rng, method)),
                known_info={**known, "changes": wants, "payment": describe_method(method)},
                unknown_info=unknown + ["item ids", "variant ids"])
        return None

    def story(self, rng):
        return pick(rng, "It was {a gift|meant} for <someone> and {it doesn't fit|they wanted another one}.",
                    "I {picked|ordered} the wrong one <when>.", "<Someone> {said|thinks} the other one is better.",
                    "I {checked|measured} again and need the other option.", someone=someone(rng), when=when(rng),
                    Someone=someone(rng))

    def outputs(self, target, result):
        return [money(result["price_difference"])]

    def ask(self, rng):
        return pick(rng, "Which order and items would you like to <verb>, and to which options?",
                    "{Sure|Happy to help}. Which order is it, which items, and what would you like instead?",
                    "Could you tell me the order, the items to <verb> and the options you want?", verb=self.verb)

    def confirm(self, target, rng):
        a = target.arguments
        pairs = ", ".join(f"item {i} to variant {v}" for i, v in zip(a["item_ids"], a["new_variant_ids"], strict=False))
        return expand(f"{CONFIRM_LEAD} in order <id> I will <verb> <pairs>, settling any price difference with "
                      f"<m>. {CONFIRM_ASK}", rng, id=a["order_id"], verb=self.verb, pairs=pairs,
                      m=a["payment_method_id"])

    def report(self, target, outputs, rng):
        diff = pick(rng, " The price difference is <x>.", " The difference comes to <x>.",
                    " That works out to a price difference of <x>.", x=outputs[0]) if outputs else ""
        return pick(rng, "Your <verb> request for order <id> is placed.", "{Done|All set}: the <verb> for order "
                    "<id> is in.", "I've put in the <verb> for order <id>.", verb=self.verb,
                    id=target.arguments["order_id"]) + " " + diff.strip()


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
        said = "; ".join(say_item(rng, i) for i in items)
        why = pick(rng, "", "", "{It doesn't fit|It wasn't what I expected|I don't need it anymore|"
                   "It arrived damaged|I found something better}.")
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "order_id": order["order_id"], "item_ids": sorted(i["item_id"] for i in items),
                "payment_method_id": method_id}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"You want to return from {ref}: {names}. The refund should go to your {describe_method(method)}.",
            opening=pick(rng, "I'd like to return some things.", "I need to send back part of an order.",
                         "I want to make a return.", "{How do I|Can I} return {something|a few things} I bought?",
                         "{Some stuff|Something} I ordered {didn't work out|isn't right}, I want to return it."),
            details=f"{_its(rng, ref)} " + pick(rng, "I want to return the <names>. Refund to my <m>, please.",
                                                 "{Please|I'd like to} return the <names>{,|;} and put the refund on "
                                                 "my <m>.", "The <names>{ need to go back|}. {Refund|Money back} to "
                                                 "my <m>{ please|}.", names=said, m=say_method(rng, method))
            + (f" {why}" if why else ""),
            known_info={**known, "items": names, "refund_to": describe_method(method)},
            unknown_info=unknown + ["item ids"])

    def story(self, rng):
        return pick(rng, "It arrived <when> {and|but} {it's not what I expected|doesn't fit}.",
                    "I paid <price> and {it broke|it stopped working} after <n> days.",
                    "<Someone> got me the same thing.", "I {tried it out|used it once} and {it's not for me|didn't "
                    "like it}.", when=when(rng), Someone=someone(rng), price=price(rng), n=str(rng.randint(2, 20)))

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def ask(self, rng):
        return pick(rng, "Which order and items would you like to return, and where should the refund go?",
                    "Happy to help with a return. Which order and which items?",
                    "{Sure|Of course}. Could you tell me the order, the items, and where the refund should go?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{CONFIRM_LEAD} I will request a return of items <items> from order <id>, refunding to "
                      f"<m>. {CONFIRM_ASK}", rng, items=", ".join(a["item_ids"]), id=a["order_id"],
                      m=a["payment_method_id"])

    def report(self, target, outputs, rng):
        refund = pick(rng, " You will be refunded <x> once we receive the items.",
                      " Once the items arrive back with us, <x> will be refunded.",
                      " Your refund of <x> goes out when the items reach us.", x=outputs[0]) if outputs else ""
        return pick(rng, "Your return for order <id> is requested.", "{Done|All set}: the return for order <id> is"
                    " in.", "I've started the return for order <id>.", id=target.arguments["order_id"]) + " " + \
            refund.strip()


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
            opening=pick(rng, "I moved recently and need to update my address.",
                         "{Can|Could} you update {my address|the address on my account}?",
                         "I {just|recently} moved{, so|.} {my account needs the new address|I need to change my "
                         "address}.", "{My address changed|I have a new address} and I want it on my account."),
            details=pick(rng, "My new address is <w>.", "It's <w>.", "The new one is <w>.",
                         "{Please|Can you} change it to <w>{?|.}", w=words),
            known_info={"new_address": words}, unknown_info=["customer id"])

    def story(self, rng):
        return pick(rng, "We moved <when>.", "I moved {in with|closer to} <someone>.", "Just got back from <place> "
                    "and {finally|} have a new place.", when=when(rng), someone=someone(rng), place=rng.choice(PLACES))

    def ask(self, rng):
        return pick(rng, "What is your new address?", "{Sure|Of course}. What's the new address?",
                    "Could you give me the full new address?")

    def confirm(self, target, rng):
        return expand(f"{CONFIRM_LEAD} your default address becomes <w>. {CONFIRM_ASK}", rng,
                      w=_address_words(target.arguments))

    def report(self, target, outputs, rng):
        return expand("{Your default address is updated|I've updated your default address|Your address on file "
                      "is changed}<x>.", rng, x=f" (zip code {outputs[0]})" if outputs else "")


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
        said = "; ".join(say_item(rng, i) for i in items)
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "order_id": order["order_id"], "item_ids": sorted(i["item_id"] for i in items)}),
            bindings={"order_id": [order["order_id"]]},
            goal=f"Before deciding anything, you want to know how much you would get back for returning the "
                 f"{names} from {ref}. You do not want to start a return yet.",
            opening=pick(rng, "How much would I get back if I returned something?",
                         "I'm {thinking about|considering} a return{,|.} {how much would I get back|what would the "
                         "refund be}?", "{Can|Could} you tell me {what|how much} I'd get refunded for a return?"),
            details=pick(rng, "It's the <names> from <ref>. Just tell me the amount, I'm not returning it yet.",
                         "The <names>, from <ref>. {I only want the number|Just the amount} for now.",
                         "I mean the <names> in <ref>. {Not returning yet|I'm not starting a return yet}, just "
                         "curious.", names=said, ref=ref),
            known_info={**known, "items": names}, unknown_info=unknown + ["item ids"])

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def story(self, rng):
        return pick(rng, "I'm {still deciding|trying to decide|thinking it over}.", "<Someone> might want it "
                    "instead.", "I bought it <when> and I'm not sure yet.", when=when(rng),
                    Someone=someone(rng))

    def ask(self, rng):
        return pick(rng, "Which order and items are you thinking of returning?",
                    "{Sure|Happy to check}. Which order and which items?",
                    "Could you tell me which items, and from which order?")

    def report(self, target, outputs, rng):
        amount = f" you would get {outputs[0]} back" if outputs else " they can be returned"
        return expand("Those items are eligible for return:<a>. {Let me know if you want to go ahead later|You can "
                      "start the return whenever you like|Nothing has been changed yet}.", rng, a=amount)


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
            opening=pick(rng, "Where is my order?", "I'm waiting on a package, can you check on it?",
                         "{Has|Did} my order {shipped|ship} yet?", "{Can|Could} you {track|check on} an order for me?",
                         "My package {hasn't arrived|is taking a while}{, can you look|}."),
            details=f"{_its(rng, ref)} " + pick(rng, "Can I get the tracking number?", "What's the tracking number?",
                                                 "I'd like the tracking number{ please|}.",
                                                 "{Where is it|Has it shipped}, and what's the tracking number?"),
            known_info=known, unknown_info=unknown + ["tracking number"])

    def story(self, rng):
        return pick(rng, "I ordered it <when> and it's still not here.", "It's a gift for <someone>, so I'm a bit "
                    "anxious.", "I need it before {my trip to <place>|the weekend}.", "{The site|The email} said it "
                    "would come in <n> days, and it's been <m>.", when=when(rng), someone=someone(rng),
                    place=rng.choice(PLACES), n=str(rng.randint(2, 5)), m=str(rng.randint(6, 14)))

    def outputs(self, target, result):
        f = result["fulfillment"]
        return [f["tracking_number"], f["carrier"]]

    def ask(self, rng):
        return pick(rng, "Which order would you like me to check?", "{Sure|Of course}. Which order is it?",
                    "Could you tell me which order?")

    def report(self, target, outputs, rng):
        if len(outputs) < 2:
            return f"Order {target.arguments['order_id']} has shipped."
        return pick(rng, "Order <id> has shipped with <c>; the tracking number is <t>.",
                    "{Good news|Okay}: order <id> is on its way with <c>. Tracking number: <t>.",
                    "Order <id> went out with <c>{,|;} you can track it with <t>.",
                    id=target.arguments["order_id"], c=outputs[1], t=outputs[0])


INTENTS: dict[str, Intent] = {i.name: i for i in (
    CancelOrder(), ChangeOrderAddress(), ChangeOrderPayment(), ModifyItems(), ExchangeItems(), ReturnItems(),
    UpdateAddress(), RefundQuote(), OrderStatus())}
