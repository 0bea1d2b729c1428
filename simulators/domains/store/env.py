"""An online store: customers, orders, products with variants, payments, returns.

Tools are plain methods; ``Param.entity`` names the entity type a parameter
carries and ``produces`` the types a result carries, from which the generators
build the tool-dependency graph.
"""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal

from schemas import Action, Message
from simulators.domains.store.data import build_store
from simulators.domains.store.intents import INTENTS
from simulators.domains.store.policy import POLICY, check_policy
from simulators.environment import DOMAINS, Environment, Param, ToolError, tool
from simulators.intents import Identity
from simulators.phrasing import pick

OrderId = Annotated[str, Param("The order id, starting with '#W', such as '#W1234567'.", "order_id")]
CustomerId = Annotated[str, Param("The customer id, such as 'ava_kim_1013'.", "customer_id")]
ItemIds = Annotated[list[str], Param("Ids of the order's items, such as ['1234567-1'].", "item_id")]
VariantIds = Annotated[
    list[str], Param("Ids of the new variants, one per item, in the same order as item_ids.", "variant_id")
]
PaymentId = Annotated[str, Param("A payment method id of the customer's, such as 'credit_card_1234567'.", "payment_method_id")]
Address1 = Annotated[str, Param("Street address, first line.", "address")]
Address2 = Annotated[str, Param("Street address, second line; may be empty.", "address")]
City = Annotated[str, Param("City.", "address")]
State = Annotated[str, Param("Two-letter state code.", "address")]
Zip = Annotated[str, Param("Five-digit zip code.", "address")]


def _name_zip(customer: dict[str, Any]) -> tuple[str, str, str]:
    """What ``find_customer_id_by_name_zip`` looks a customer up by."""
    return customer["name"]["first_name"].lower(), customer["name"]["last_name"].lower(), customer["address"]["zip"]


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


@DOMAINS.register("store")
class StoreEnv(Environment):
    policy = POLICY

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        return build_store(seed)

    def check_policy(self, messages: list[Message]) -> list[str]:
        return check_policy(self.fresh(), messages)

    intents = INTENTS
    user_knows = frozenset({"email", "name", "zip", "address"})

    def ask_identity(self, rng: random.Random) -> str:
        return pick(rng, "{I'd be glad to help|Happy to help with that|I can help with that|Sure, I can help}. "
                    "{First|Before we start}, I need to {verify your identity|confirm who you are}: could you "
                    "{give me|share} your email, or your full name and zip code?",
                    "{Happy to help|Of course}. To {confirm who you are|verify your identity}, please share your "
                    "email, or your name and zip code.",
                    "{Sure|Okay}! Let me {find|pull up} your account first: what's your email, or your name and "
                    "zip code?")

    def users(self) -> list[str]:
        return [key for key, _ in self.db.scan("customers")]

    def user_record(self, user_id: str) -> dict[str, Any]:
        return self._customer(user_id)

    def identify(self, rng: random.Random, user_id: str) -> Identity:
        c = self._customer(user_id)
        first, last, zip_code = c["name"]["first_name"], c["name"]["last_name"], c["address"]["zip"]
        if rng.random() < 0.5:
            action = Action(name="find_customer_id_by_email", arguments={"email": c["email"]})
            says = pick(rng, "My email is <e>.", "It's <e>.", "<e>", "{My|The} email {on the account|I use} is <e>.",
                        "You can find me under <e>.", "{Try|Use} <e>.", e=c["email"])
            known = {"email": c["email"]}
        else:
            action = Action(name="find_customer_id_by_name_zip",
                            arguments={"first_name": first, "last_name": last, "zip": zip_code})
            says = pick(rng, "I'm <f> <l>, zip code <z>.", "Name's <f> <l>, and my zip is <z>.",
                        "<f> <l>, <z>.", "{My name is|It's} <f> <l>{,| and} {my|the} zip {code |}is <z>.",
                        "<f> <l> — zip <z>.", f=first, l=last, z=zip_code)
            known = {"name": f"{first} {last}", "zip": zip_code}
        return Identity(user_id=user_id, first_name=first, action=action, says=says, known_info=known,
                        bindings={"customer_id": [user_id]})

    # -- helpers -------------------------------------------------------------
    def _order(self, order_id: str) -> dict[str, Any]:
        order = self.db.get("orders", order_id)
        if order is None:
            raise ToolError(f"order {order_id} not found")
        return order

    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer = self.db.get("customers", customer_id)
        if customer is None:
            raise ToolError(f"customer {customer_id} not found")
        return customer

    def _product(self, product_id: str) -> dict[str, Any]:
        product = self.db.get("products", product_id)
        if product is None:
            raise ToolError(f"product {product_id} not found")
        return product

    def _require_status(self, order: dict[str, Any], status: str) -> None:
        if order["status"] != status:
            raise ToolError(f"order {order['order_id']} is {order['status']}, not {status}")

    def _method(self, customer: dict[str, Any], payment_method_id: str) -> dict[str, Any]:
        method = customer["payment_methods"].get(payment_method_id)
        if method is None:
            raise ToolError(f"payment method {payment_method_id} not found for this customer")
        return method

    def _pick_items(self, order: dict[str, Any], item_ids: list[str]) -> list[dict[str, Any]]:
        if not item_ids:
            raise ToolError("item_ids is empty")
        if len(set(item_ids)) != len(item_ids):
            raise ToolError("item_ids has duplicates")
        by_id = {i["item_id"]: i for i in order["items"]}
        missing = [i for i in item_ids if i not in by_id]
        if missing:
            raise ToolError(f"items {missing} not in order {order['order_id']}")
        return [by_id[i] for i in item_ids]

    def _new_variants(self, items: list[dict[str, Any]], new_variant_ids: list[str]) -> list[dict[str, Any]]:
        if len(items) != len(new_variant_ids):
            raise ToolError("item_ids and new_variant_ids must have the same length")
        out = []
        for item, vid in zip(items, new_variant_ids, strict=False):
            product = self._product(item["product_id"])
            variant = product["variants"].get(vid)
            if variant is None:
                raise ToolError(f"variant {vid} is not a variant of {product['name']}")
            if vid == item["variant_id"]:
                raise ToolError(f"item {item['item_id']} already is variant {vid}")
            if not variant["available"]:
                raise ToolError(f"variant {vid} is not available")
            out.append({**item, "variant_id": vid, "options": variant["options"], "price": variant["price"]})
        return out

    def _swap(self, order_id: str, status: str, item_ids: list[str], new_variant_ids: list[str],
              payment_method_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
        """Check a variant swap and settle its price difference; the caller records it on the order."""
        order = self._order(order_id)
        self._require_status(order, status)
        customer = self._customer(order["customer_id"])
        items = self._pick_items(order, item_ids)
        new_items = self._new_variants(items, new_variant_ids)
        diff = _money(sum(n["price"] for n in new_items) - sum(i["price"] for i in items))
        self._charge(customer, payment_method_id, diff)
        return order, new_items, diff

    def _charge(self, customer: dict[str, Any], method_id: str, amount: float) -> None:
        """Charge (amount > 0) or refund (amount < 0) a payment method, checking gift balances."""
        method = self._method(customer, method_id)
        if method["kind"] == "gift_card":
            if amount > method["balance"] + 1e-9:
                raise ToolError(f"gift card balance {method['balance']:.2f} is not enough for {amount:.2f}")
            method["balance"] = _money(method["balance"] - amount)
            self.db.put("customers", customer["customer_id"], customer)

    # -- read tools ----------------------------------------------------------
    @tool(produces=("customer_id",))
    def find_customer_id_by_email(self, email: Annotated[str, Param("The customer's email.", "email")]) -> str:
        """Find a customer's id by email; this authenticates the customer."""
        hit = self.db.get("emails", email.strip().lower())
        if hit is None:
            raise ToolError("no customer with that email")
        return hit["customer_id"]

    @tool(produces=("customer_id",))
    def find_customer_id_by_name_zip(
        self,
        first_name: Annotated[str, Param("First name.", "name")],
        last_name: Annotated[str, Param("Last name.", "name")],
        zip: Annotated[str, Param("Zip code of the customer's default address.", "zip")],
    ) -> str:
        """Find a customer's id by first name, last name and zip; this authenticates the customer."""
        key = self.db.find("customers", _name_zip, (first_name.strip().lower(), last_name.strip().lower(), zip.strip()))
        if key is None:
            raise ToolError("no customer with that name and zip code")
        return key

    @tool(produces=("order_id", "payment_method_id", "address"))
    def get_customer_details(self, customer_id: CustomerId) -> str:
        """Profile of a customer: name, email, default address, payment methods and order ids."""
        return self.stored("customers", customer_id)

    @tool(produces=("item_id", "product_id", "payment_method_id"))
    def get_order_details(self, order_id: OrderId) -> str:
        """Status, items, address, payments and tracking of an order."""
        return self.stored("orders", order_id)

    @tool(produces=("variant_id",))
    def get_product_details(
        self, product_id: Annotated[str, Param("The product id, such as 'P1003'.", "product_id")]
    ) -> str:
        """A product with all its variants, their options, prices and availability."""
        return self.stored("products", product_id)

    @tool(produces=("product_id",))
    def list_product_types(self) -> dict[str, str]:
        """Every product name with its product id."""
        return {p["name"]: key for key, p in self.db.scan("products")}

    @tool(produces=("product_id",))
    def search_products(
        self, query: Annotated[str, Param("Words to look for in product names and categories.")]
    ) -> list[dict[str, str]]:
        """Products whose name or category contains every word of the query."""
        words = query.lower().split()
        if not words:
            raise ToolError("query is empty")
        hits = []
        for key, p in self.db.scan("products"):
            text = f"{p['name']} {p['category']}".lower()
            if all(w in text for w in words):
                hits.append({"product_id": key, "name": p["name"], "category": p["category"]})
        return hits

    @tool()
    def check_refund_eligibility(self, order_id: OrderId, item_ids: ItemIds) -> dict[str, Any]:
        """Whether items of an order can be returned, and the refund they would bring."""
        order = self._order(order_id)
        items = self._pick_items(order, item_ids)
        eligible = order["status"] == "delivered"
        refund = _money(sum(i["price"] for i in items)) if eligible else 0.0
        return {"order_id": order_id, "eligible": eligible, "refund_amount": refund,
                "reason": "" if eligible else f"order is {order['status']}; only delivered orders can be returned"}

    @tool()
    def transfer_to_human_agent(
        self, summary: Annotated[str, Param("A short summary of the customer's issue.")]
    ) -> str:
        """Hand the conversation to a human agent when the request is outside the policy."""
        return "Transfer successful"

    # -- write tools ---------------------------------------------------------
    @tool(writes=True)
    def cancel_pending_order(
        self,
        order_id: OrderId,
        reason: Annotated[Literal["no longer needed", "ordered by mistake"], Param("Why the order is cancelled.")],
    ) -> dict[str, Any]:
        """Cancel a pending order and refund its payments to the original methods."""
        order = self._order(order_id)
        self._require_status(order, "pending")
        customer = self._customer(order["customer_id"])
        net: dict[str, float] = {}
        for p in order["payment_history"]:
            net[p["payment_method_id"]] = net.get(p["payment_method_id"], 0.0) + (
                p["amount"] if p["kind"] == "payment" else -p["amount"])
        refund = 0.0
        for method_id, amount in sorted(net.items()):
            amount = _money(amount)
            if amount <= 0:
                continue
            self._charge(customer, method_id, -amount)
            customer = self._customer(order["customer_id"])
            order["payment_history"].append({"kind": "refund", "payment_method_id": method_id, "amount": amount})
            refund += amount
        order["status"] = "cancelled"
        order["cancel_reason"] = reason
        self.db.put("orders", order_id, order)
        refund = _money(refund)
        return {"order_id": order_id, "status": "cancelled", "refund_amount": refund}

    @tool(writes=True)
    def modify_pending_order_address(
        self, order_id: OrderId, address1: Address1, address2: Address2, city: City, state: State, zip: Zip
    ) -> dict[str, Any]:
        """Change the shipping address of a pending order."""
        order = self._order(order_id)
        self._require_status(order, "pending")
        order["address"] = {"address1": address1, "address2": address2, "city": city, "state": state, "zip": zip}
        self.db.put("orders", order_id, order)
        return {"order_id": order_id, "address": order["address"]}

    @tool(writes=True)
    def modify_pending_order_payment(self, order_id: OrderId, payment_method_id: PaymentId) -> dict[str, Any]:
        """Pay a pending order with another payment method; the old one is refunded."""
        order = self._order(order_id)
        self._require_status(order, "pending")
        customer = self._customer(order["customer_id"])
        self._method(customer, payment_method_id)
        paid = [p for p in order["payment_history"] if p["kind"] == "payment"]
        if len(paid) != 1:
            raise ToolError("only an order paid with a single method can change payment")
        old = paid[0]
        if old["payment_method_id"] == payment_method_id:
            raise ToolError("the order is already paid with that method")
        self._charge(customer, payment_method_id, old["amount"])
        customer = self._customer(order["customer_id"])
        self._charge(customer, old["payment_method_id"], -old["amount"])
        order["payment_history"] += [
            {"kind": "payment", "payment_method_id": payment_method_id, "amount": old["amount"]},
            {"kind": "refund", "payment_method_id": old["payment_method_id"], "amount": old["amount"]},
        ]
        self.db.put("orders", order_id, order)
        return {"order_id": order_id, "payment_method_id": payment_method_id, "amount": old["amount"]}

    @tool(writes=True)
    def modify_pending_order_items(
        self, order_id: OrderId, item_ids: ItemIds, new_variant_ids: VariantIds, payment_method_id: PaymentId
    ) -> dict[str, Any]:
        """Swap items of a pending order for other variants of the same product; settles the price difference."""
        order, new_items, diff = self._swap(order_id, "pending", item_ids, new_variant_ids, payment_method_id)
        replaced = {n["item_id"]: n for n in new_items}
        order["items"] = [replaced.get(i["item_id"], i) for i in order["items"]]
        kind = "payment" if diff >= 0 else "refund"
        order["payment_history"].append({"kind": kind, "payment_method_id": payment_method_id, "amount": abs(diff)})
        self.db.put("orders", order_id, order)
        return {"order_id": order_id, "price_difference": diff, "items": new_items}

    @tool(writes=True)
    def return_delivered_order_items(
        self, order_id: OrderId, item_ids: ItemIds, payment_method_id: PaymentId
    ) -> dict[str, Any]:
        """Request a return of delivered items; the refund goes to the original method or a gift card."""
        order = self._order(order_id)
        self._require_status(order, "delivered")
        customer = self._customer(order["customer_id"])
        method = self._method(customer, payment_method_id)
        original = {p["payment_method_id"] for p in order["payment_history"] if p["kind"] == "payment"}
        if payment_method_id not in original and method["kind"] != "gift_card":
            raise ToolError("refunds go to the original payment method or a gift card")
        items = self._pick_items(order, item_ids)
        refund = _money(sum(i["price"] for i in items))
        self._charge(customer, payment_method_id, -refund)
        order["status"] = "return requested"
        order["return_items"] = sorted(item_ids)
        order["payment_history"].append({"kind": "refund", "payment_method_id": payment_method_id, "amount": refund})
        self.db.put("orders", order_id, order)
        return {"order_id": order_id, "status": order["status"], "refund_amount": refund}

    @tool(writes=True)
    def exchange_delivered_order_items(
        self, order_id: OrderId, item_ids: ItemIds, new_variant_ids: VariantIds, payment_method_id: PaymentId
    ) -> dict[str, Any]:
        """Request an exchange of delivered items for other variants of the same product."""
        order, _, diff = self._swap(order_id, "delivered", item_ids, new_variant_ids, payment_method_id)
        order["status"] = "exchange requested"
        order["exchange"] = {"items": {i: v for i, v in sorted(zip(item_ids, new_variant_ids, strict=True))},
                             "price_difference": diff, "payment_method_id": payment_method_id}
        self.db.put("orders", order_id, order)
        return {"order_id": order_id, "status": order["status"], "price_difference": diff}

    @tool(writes=True)
    def update_customer_address(
        self, customer_id: CustomerId, address1: Address1, address2: Address2, city: City, state: State, zip: Zip
    ) -> dict[str, Any]:
        """Change a customer's default address (existing orders keep theirs)."""
        customer = self._customer(customer_id)
        customer["address"] = {"address1": address1, "address2": address2, "city": city, "state": state, "zip": zip}
        self.db.put("customers", customer_id, customer)
        return {"customer_id": customer_id, "address": customer["address"]}
