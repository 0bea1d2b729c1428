"""The airline's database, built by code from a seed: airports, scheduled flights with dated instances
(status, seats, prices per cabin), members with payment methods, and reservations.

The clock is fixed (``NOW``) so fare rules that depend on time (24-hour
cancellation, flown segments) are reproducible.
"""

from __future__ import annotations

import random
import string
from datetime import date, datetime, timedelta
from typing import Any

from simulators.domains.store.data import FIRST, LAST

NOW = datetime(2025, 3, 10, 15, 0)
TODAY = NOW.date()
DAYS_BEFORE, DAYS_AFTER = 4, 24  # flight instances exist from TODAY-4 to TODAY+24

AIRPORTS = {
    "SEA": "Seattle", "SFO": "San Francisco", "LAX": "Los Angeles", "DEN": "Denver", "ORD": "Chicago",
    "ATL": "Atlanta", "JFK": "New York", "BOS": "Boston", "MIA": "Miami", "DFW": "Dallas", "PHX": "Phoenix",
    "LAS": "Las Vegas", "MSP": "Minneapolis", "DTW": "Detroit", "PHL": "Philadelphia", "IAH": "Houston",
    "SLC": "Salt Lake City", "PDX": "Portland", "AUS": "Austin", "BNA": "Nashville", "CLT": "Charlotte",
    "MCO": "Orlando", "SAN": "San Diego", "DCA": "Washington",
}
CABINS = ("basic_economy", "economy", "business")
CABIN_WORDS = {"basic_economy": "basic economy", "economy": "economy", "business": "business"}
MEMBERSHIPS = ("regular", "regular", "regular", "silver", "silver", "gold")
# free checked bags per passenger, by membership and cabin (the policy's table)
FREE_BAGS = {"regular": {"basic_economy": 0, "economy": 1, "business": 2},
             "silver": {"basic_economy": 1, "economy": 2, "business": 3},
             "gold": {"basic_economy": 2, "economy": 3, "business": 3}}
BAG_FEE = 50
INSURANCE_PER_PASSENGER = 30


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


def iso(d: date) -> str:
    return d.isoformat()


def build_airline(seed: int, users: int = 300) -> dict[str, dict[str, Any]]:
    rng = random.Random(f"airline-db-{seed}")
    codes = sorted(AIRPORTS)
    routes: set[tuple[str, str]] = set()
    while len(routes) < 36:
        a, b = rng.sample(codes, 2)
        routes |= {(a, b), (b, a)}  # every route flies both ways
    flights: dict[str, Any] = {}
    numbers = rng.sample(range(100, 999), len(routes) * 2)
    for origin, destination in sorted(routes):
        for _ in range(2):  # two departures a day on each route
            number = f"TF{numbers.pop()}"
            hour, minutes = rng.randrange(6, 21), rng.choice([0, 15, 30, 45])
            duration = rng.randrange(70, 330)
            base = {"basic_economy": rng.randrange(60, 180)}
            base["economy"] = base["basic_economy"] + rng.randrange(40, 120)
            base["business"] = base["economy"] * 2 + rng.randrange(50, 300)
            dates: dict[str, Any] = {}
            for offset in range(-DAYS_BEFORE, DAYS_AFTER + 1):
                day = TODAY + timedelta(days=offset)
                if offset < 0 or (offset == 0 and hour < NOW.hour):
                    status = {"status": "landed"}
                else:
                    roll = rng.random()
                    status = ({"status": "cancelled"} if roll < 0.05 else
                              {"status": "delayed", "delay_minutes": rng.randrange(45, 300, 5)} if roll < 0.13 else
                              {"status": "scheduled"})
                    status["seats"] = {c: rng.randrange(0, 12) if c == "business" else rng.randrange(0, 40)
                                       for c in CABINS}
                    status["prices"] = {c: _money(base[c] * rng.uniform(0.8, 1.35)) for c in CABINS}
                dates[iso(day)] = status
            flights[number] = {"flight_number": number, "origin": origin, "destination": destination,
                               "departure": f"{hour:02d}:{minutes:02d}", "duration_minutes": duration, "dates": dates}
    by_route: dict[tuple[str, str], list[str]] = {}
    for number, f in flights.items():
        by_route.setdefault((f["origin"], f["destination"]), []).append(number)

    people: dict[str, Any] = {}
    reservations: dict[str, Any] = {}
    emails: dict[str, Any] = {}
    codes_used: set[str] = set()
    for u in range(users):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        user_id = f"{first.lower()}_{last.lower()}_{2000 + u * 7 % 8000}"
        email = f"{first.lower()}{last.lower()[:3]}{rng.randrange(10, 99)}@example.org"
        while email in emails:
            email = f"{first.lower()}{last.lower()[:3]}{rng.randrange(100, 999)}@example.org"
        dob = date(rng.randrange(1950, 2004), rng.randrange(1, 13), rng.randrange(1, 29))
        membership = rng.choice(MEMBERSHIPS)
        methods: dict[str, Any] = {}
        for _ in range(rng.randint(1, 2)):
            card = f"credit_card_{rng.randrange(1_000_000, 9_999_999)}"
            methods[card] = {"id": card, "kind": "credit_card", "brand": rng.choice(["visa", "mastercard", "amex"]),
                             "last_four": f"{rng.randrange(10_000):04d}"}
        if rng.random() < 0.4:
            gift = f"gift_card_{rng.randrange(1_000_000, 9_999_999)}"
            methods[gift] = {"id": gift, "kind": "gift_card", "balance": _money(rng.uniform(50, 400))}
        if rng.random() < 0.25:
            cert = f"certificate_{rng.randrange(1_000_000, 9_999_999)}"
            methods[cert] = {"id": cert, "kind": "certificate", "amount": rng.choice([100.0, 150.0, 250.0])}
        companions = [{"first_name": rng.choice(FIRST), "last_name": rng.choice([last, rng.choice(LAST)]),
                       "date_of_birth": iso(date(rng.randrange(1950, 2020), rng.randrange(1, 13),
                                                 rng.randrange(1, 29)))} for _ in range(3)]
        own = []
        for _ in range(rng.randint(1, 4)):
            code = "".join(rng.choices(string.ascii_uppercase + string.digits, k=6))
            while code in codes_used or not any(c.isdigit() for c in code):
                code = "".join(rng.choices(string.ascii_uppercase + string.digits, k=6))
            codes_used.add(code)
            origin, destination = rng.choice(sorted(routes))
            round_trip = rng.random() < 0.4
            out_day = TODAY + timedelta(days=rng.randrange(-DAYS_BEFORE, DAYS_AFTER - 6))
            legs = [(origin, destination, out_day)]
            if round_trip:
                legs.append((destination, origin, out_day + timedelta(days=rng.randrange(2, 6))))
            cabin = rng.choices(CABINS, weights=[3, 5, 2])[0]
            passengers = [{"first_name": first, "last_name": last, "date_of_birth": iso(dob)}]
            passengers += companions[:rng.choices([0, 1, 2], weights=[6, 3, 1])[0]]
            segs = []
            for o, d, day in legs:
                number = rng.choice(by_route[(o, d)])
                inst = flights[number]["dates"][iso(day)]
                price = inst.get("prices", {}).get(cabin) or _money(rng.uniform(80, 600))
                segs.append({"flight_number": number, "origin": o, "destination": d, "date": iso(day),
                             "price": price})
            insurance = rng.random() < 0.35
            total = _money(sum(s["price"] for s in segs) * len(passengers)
                           + (INSURANCE_PER_PASSENGER * len(passengers) if insurance else 0))
            pay_with = rng.choice([m for m in methods if methods[m]["kind"] == "credit_card"])
            booked = min(NOW - timedelta(hours=rng.choice([2, 5, 12, 20])), datetime.combine(out_day, NOW.time())) \
                if rng.random() < 0.15 else NOW - timedelta(days=rng.randrange(2, 60), hours=rng.randrange(24))
            free = FREE_BAGS[membership][cabin] * len(passengers)
            bags = rng.randrange(0, free + 2)
            reservations[code] = {
                "reservation_id": code, "user_id": user_id, "origin": origin, "destination": destination,
                "trip_type": "round_trip" if round_trip else "one_way", "cabin": cabin, "flights": segs,
                "passengers": passengers, "payment_history": [{"payment_method_id": pay_with, "amount": total}],
                "created_at": booked.isoformat(timespec="minutes"), "total_baggages": bags,
                "nonfree_baggages": max(0, bags - free), "insurance": insurance, "status": "active"}
            own.append(code)
        emails[email] = {"user_id": user_id}
        people[user_id] = {"user_id": user_id, "name": {"first_name": first, "last_name": last}, "email": email,
                           "date_of_birth": iso(dob), "membership": membership, "payment_methods": methods,
                           "reservations": own}
    return {"airports": {c: {"code": c, "city": AIRPORTS[c]} for c in codes}, "flights": flights,
            "users": people, "reservations": reservations, "emails": emails}
