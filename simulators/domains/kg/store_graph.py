"""A KG derived from the store domain's database: customers, orders, products, categories, cities.

The same seeded records the store environment serves, seen as entities and
relations, so questions can be asked about one world in both styles.
"""

from __future__ import annotations

from simulators.domains.kg.graph import KnowledgeGraph
from simulators.domains.store.data import build_store


def store_graph(seed: int) -> KnowledgeGraph:
    data = build_store(seed)
    kg = KnowledgeGraph(name=f"store-{seed}")
    kg.identifiers |= {"email", "zip"}
    for pid, p in data["products"].items():
        kg.add_entity(f"product:{pid}", name=p["name"], type="product", product_id=pid,
                      variants=len(p["variants"]))
        kg.add_entity(f"category:{p['category']}", name=p["category"], type="category")
        kg.add_edge(f"product:{pid}", "category", f"category:{p['category']}")
    for cid, c in data["customers"].items():
        name = f"{c['name']['first_name']} {c['name']['last_name']}"
        kg.add_entity(f"customer:{cid}", name=name, type="customer", email=c["email"], zip=c["address"]["zip"],
                      payment_methods=len(c["payment_methods"]))
        city = f"city:{c['address']['city']}"
        kg.add_entity(city, name=c["address"]["city"], type="city", state=c["address"]["state"])
        kg.add_edge(f"customer:{cid}", "home city", city)
    for oid, o in data["orders"].items():
        total = round(sum(i["price"] for i in o["items"]), 2)
        attrs = {"status": o["status"], "total": total, "item_count": len(o["items"])}
        if "fulfillment" in o:
            attrs["carrier"] = o["fulfillment"]["carrier"]
        kg.add_entity(f"order:{oid}", name=oid, type="order", **attrs)
        kg.add_edge(f"customer:{o['customer_id']}", "order", f"order:{oid}")
        for item in o["items"]:
            if not kg.linked(f"order:{oid}", "product", "out", f"product:{item['product_id']}"):
                kg.add_edge(f"order:{oid}", "product", f"product:{item['product_id']}")
    return kg
