"""The store's database, built by code from a seed.

Code-built rather than shipped so every seed gives a different but fully
reproducible world, and the world can be as large as a test needs.
"""

from __future__ import annotations

import random
from typing import Any

FIRST = ["Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Ivy", "Omar", "Lena", "Raj", "Sofia", "Mateo",
         "Chloe", "Yusuf", "Hana", "Diego", "Nora", "Kai", "Amara", "Felix", "Priya", "Jonas", "Elif", "Tomas",
         "Mei", "Samir", "Greta", "Luca", "Aisha", "Hugo"]
LAST = ["Kim", "Patel", "Garcia", "Nguyen", "Okafor", "Rossi", "Schmidt", "Silva", "Cohen", "Tanaka",
        "Moreau", "Kowalski", "Haddad", "Larsen", "Ito", "Mendes", "Novak", "Ahmed", "Fischer", "Lopez"]
STREETS = ["Maple Ave", "Oak St", "Pine Rd", "Cedar Ln", "Elm St", "Birch Way", "Lakeview Dr", "Hill St",
           "River Rd", "Sunset Blvd", "Park Pl", "Mill Ln"]
CITIES = [("Austin", "TX", "787"), ("Denver", "CO", "802"), ("Portland", "OR", "972"), ("Columbus", "OH", "432"),
          ("Raleigh", "NC", "276"), ("Madison", "WI", "537"), ("Tucson", "AZ", "857"), ("Boise", "ID", "837"),
          ("Richmond", "VA", "232"), ("Omaha", "NE", "681")]

# product name -> (category, option name -> values, base price)
CATALOG: dict[str, tuple[str, dict[str, list[str]], float]] = {
    "Wireless Headphones": ("audio", {"color": ["black", "white", "blue"], "noise cancelling": ["yes", "no"]}, 129.0),
    "Bluetooth Speaker": ("audio", {"color": ["black", "red", "green"], "battery": ["10h", "20h"]}, 79.0),
    "Earbuds": ("audio", {"color": ["black", "white"], "case": ["standard", "wireless charging"]}, 59.0),
    "Running Shoes": ("apparel", {"size": ["8", "9", "10", "11"], "color": ["grey", "navy"]}, 95.0),
    "Rain Jacket": ("apparel", {"size": ["S", "M", "L", "XL"], "color": ["yellow", "olive"]}, 110.0),
    "Wool Socks": ("apparel", {"size": ["M", "L"], "pack": ["3", "6"]}, 18.0),
    "Hiking Backpack": ("outdoor", {"capacity": ["30L", "45L"], "color": ["orange", "black"]}, 139.0),
    "Camping Tent": ("outdoor", {"capacity": ["2-person", "4-person"], "material": ["polyester", "nylon"]}, 219.0),
    "Water Bottle": ("outdoor", {"capacity": ["500ml", "1000ml"], "material": ["steel", "glass"]}, 24.0),
    "Desk Lamp": ("home", {"color": ["white", "black"], "brightness": ["400 lumens", "800 lumens"]}, 39.0),
    "Coffee Maker": ("kitchen", {"capacity": ["4 cups", "8 cups", "12 cups"], "type": ["drip", "pour-over"]}, 89.0),
    "Chef Knife": ("kitchen", {"length": ["6 inch", "8 inch"], "handle": ["wood", "plastic"]}, 64.0),
    "Blender": ("kitchen", {"power": ["600W", "1000W"], "color": ["silver", "black"]}, 99.0),
    "Yoga Mat": ("fitness", {"thickness": ["4mm", "6mm"], "color": ["purple", "teal", "black"]}, 35.0),
    "Dumbbell Set": ("fitness", {"weight": ["20 lb", "40 lb"], "material": ["iron", "rubber"]}, 85.0),
    "Smart Watch": ("electronics", {"color": ["black", "silver"], "strap": ["silicone", "leather"]}, 249.0),
    "Phone Case": ("electronics", {"model": ["A15", "A16"], "color": ["clear", "black", "pink"]}, 22.0),
    "Mechanical Keyboard": ("electronics", {"switch": ["linear", "tactile", "clicky"], "layout": ["full", "compact"]}, 119.0),
    "Office Chair": ("home", {"color": ["grey", "black"], "armrests": ["fixed", "adjustable"]}, 289.0),
    "Throw Blanket": ("home", {"material": ["cotton", "fleece"], "color": ["beige", "charcoal"]}, 45.0),
}

STATUSES = ["pending", "pending", "processed", "shipped", "delivered", "delivered", "delivered", "cancelled"]
CARRIERS = ["UPS", "FedEx", "USPS", "DHL"]


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


def build_store(seed: int, customers: int = 300) -> dict[str, dict[str, Any]]:
    rng = random.Random(f"store-db-{seed}")
    products: dict[str, Any] = {}
    for p_index, (pname, (category, options, base)) in enumerate(CATALOG.items()):
        product_id = f"P{1000 + p_index * 7 + rng.randrange(7)}"
        variants: dict[str, Any] = {}
        combos: list[dict[str, str]] = [{}]
        for opt, values in options.items():
            combos = [{**c, opt: v} for c in combos for v in values]
        for v_index, combo in enumerate(combos):
            variant_id = f"{product_id[1:]}{v_index:02d}{rng.randrange(10)}"
            variants[variant_id] = {
                "options": combo,
                "price": _money(base * rng.uniform(0.85, 1.2)),
                "available": rng.random() > 0.2,
            }
        products[product_id] = {"product_id": product_id, "name": pname, "category": category, "variants": variants}

    all_variants = [(pid, vid) for pid, p in products.items() for vid in p["variants"]]
    people: dict[str, Any] = {}
    orders: dict[str, Any] = {}
    emails: dict[str, str] = {}
    used_names: set[tuple[str, str, str]] = set()
    order_numbers = rng.sample(range(1_000_000, 9_999_999), customers * 5)
    for c_index in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, state, zip3 = rng.choice(CITIES)
        zip_code = f"{zip3}{rng.randrange(100):02d}"
        while (first, last, zip_code) in used_names:
            zip_code = f"{zip3}{rng.randrange(100):02d}"
        used_names.add((first, last, zip_code))
        customer_id = f"{first.lower()}_{last.lower()}_{1000 + c_index * 13 % 9000}"
        email = f"{first.lower()}.{last.lower()}{rng.randrange(10, 99)}@example.com"
        while email in emails:
            email = f"{first.lower()}.{last.lower()}{rng.randrange(100, 999)}@example.com"
        emails[email] = customer_id
        address = {"address1": f"{rng.randrange(10, 9999)} {rng.choice(STREETS)}", "address2": "",
                   "city": city, "state": state, "zip": zip_code}
        methods: dict[str, Any] = {}
        card = f"credit_card_{rng.randrange(1_000_000, 9_999_999)}"
        methods[card] = {"id": card, "kind": "credit_card", "brand": rng.choice(["visa", "mastercard", "amex"]),
                         "last_four": f"{rng.randrange(10_000):04d}"}
        if rng.random() < 0.5:
            gift = f"gift_card_{rng.randrange(1_000_000, 9_999_999)}"
            methods[gift] = {"id": gift, "kind": "gift_card", "balance": _money(rng.uniform(0, 300))}
        if rng.random() < 0.3:
            paypal = f"paypal_{rng.randrange(1_000_000, 9_999_999)}"
            methods[paypal] = {"id": paypal, "kind": "paypal"}
        order_ids = []
        for _ in range(rng.randint(1, 4)):
            order_id = f"#W{order_numbers.pop()}"
            status = rng.choice(STATUSES)
            items = []
            for i_index, (pid, vid) in enumerate(rng.sample(all_variants, rng.randint(1, 4))):
                v = products[pid]["variants"][vid]
                items.append({"item_id": f"{order_id[2:]}-{i_index + 1}", "product_id": pid, "variant_id": vid,
                              "name": products[pid]["name"], "options": v["options"], "price": v["price"]})
            total = _money(sum(i["price"] for i in items))
            pay_with = rng.choice([m for m in methods if not m.startswith("gift_card")] or list(methods))
            order = {"order_id": order_id, "customer_id": customer_id, "status": status, "items": items,
                     "address": dict(address), "payment_history": [
                         {"kind": "payment", "payment_method_id": pay_with, "amount": total}]}
            if status in ("shipped", "delivered"):
                order["fulfillment"] = {"carrier": rng.choice(CARRIERS),
                                        "tracking_number": f"{rng.randrange(10**11, 10**12)}"}
            if status == "cancelled":
                order["cancel_reason"] = rng.choice(["no longer needed", "ordered by mistake"])
                order["payment_history"].append({"kind": "refund", "payment_method_id": pay_with, "amount": total})
            orders[order_id] = order
            order_ids.append(order_id)
        people[customer_id] = {"customer_id": customer_id, "name": {"first_name": first, "last_name": last},
                               "email": email, "address": address, "payment_methods": methods, "orders": order_ids}
    return {"products": products, "customers": people, "orders": orders,
            "emails": {e: {"customer_id": c} for e, c in emails.items()}}
