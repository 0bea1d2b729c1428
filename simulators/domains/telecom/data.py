"""The carrier's database and its customers' phones, built by code from a seed.

Account side: plans, customers, lines (status, plan, data used, roaming,
contract end), bills. Device side (``devices``, owned by the user): the phone
each customer holds, keyed by its number, with its settings. Most customers
have exactly one thing wrong, on the phone or on the account; a fault on one
side is never hidden by another, so every symptom has one cause to find.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from simulators.domains.store.data import FIRST, LAST

TODAY = date(2025, 3, 10)

PLANS = {
    "basic_2": {"plan_id": "basic_2", "name": "Basic 2 GB", "data_gb": 2.0, "monthly_price": 25.0,
                "refuel_price_per_gb": 5.0, "roaming_daily_fee": 12.0},
    "plus_8": {"plan_id": "plus_8", "name": "Plus 8 GB", "data_gb": 8.0, "monthly_price": 40.0,
               "refuel_price_per_gb": 4.0, "roaming_daily_fee": 10.0},
    "max_20": {"plan_id": "max_20", "name": "Max 20 GB", "data_gb": 20.0, "monthly_price": 60.0,
               "refuel_price_per_gb": 3.0, "roaming_daily_fee": 8.0},
    "travel_15": {"plan_id": "travel_15", "name": "Travel 15 GB", "data_gb": 15.0, "monthly_price": 55.0,
                  "refuel_price_per_gb": 3.5, "roaming_daily_fee": 5.0},
    "unlimited": {"plan_id": "unlimited", "name": "Unlimited", "data_gb": 100.0, "monthly_price": 80.0,
                  "refuel_price_per_gb": 2.0, "roaming_daily_fee": 5.0},
}
MODELS = ("Pixel 8", "Galaxy S23", "iPhone 14", "iPhone 15", "Moto G Power", "OnePlus 12", "Galaxy A54", "Pixel 7a")
AREA_CODES = ("512", "303", "503", "614", "919", "608", "520", "208", "804", "402")

DEVICE_FAULTS = ("airplane_on", "sim_missing", "data_off", "roaming_off_abroad", "network_2g", "network_3g",
                 "data_saver_on", "vpn_on", "apn_broken", "mms_permission", "wifi_calling_mms")
ACCOUNT_FAULTS = ("suspended_overdue", "suspended_contract", "line_roaming_off_abroad", "data_exhausted")


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


def healthy_device(phone: str, model: str, rng: random.Random) -> dict[str, Any]:
    return {"phone_number": phone, "model": model, "airplane_mode": False, "mobile_data": True,
            "data_roaming": False, "data_saver": False, "wifi_calling": False, "network_mode": "4g_5g",
            "apn": "default", "apn_pending": None, "sim": "active", "vpn": False,
            "permissions": {"messages": ["sms", "storage"], "camera": ["camera", "storage"]},
            "abroad": False, "registered": True, "battery": rng.randrange(18, 100)}


def build_telecom(seed: int, customers: int = 300) -> dict[str, dict[str, Any]]:
    rng = random.Random(f"telecom-db-{seed}")
    people: dict[str, Any] = {}
    lines: dict[str, Any] = {}
    bills: dict[str, Any] = {}
    devices: dict[str, Any] = {}
    phones: dict[str, Any] = {}
    emails: dict[str, Any] = {}
    numbers = rng.sample(range(10_000, 100_000), customers * 6)  # line and bill ids
    suffixes = rng.sample(range(10_000), customers * 3)  # the last four digits of phone numbers
    for c in range(customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        customer_id = f"C{100_000 + c * 37 % 900_000}"
        dob = date(rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29))
        email = f"{first.lower()}_{last.lower()}{rng.randrange(10, 99)}@example.net"
        while email in emails:
            email = f"{first.lower()}_{last.lower()}{rng.randrange(100, 999)}@example.net"
        methods: dict[str, Any] = {}
        for _ in range(rng.randint(1, 2)):
            card = f"credit_card_{rng.randrange(1_000_000, 9_999_999)}"
            methods[card] = {"id": card, "kind": "credit_card", "brand": rng.choice(["visa", "mastercard", "amex"]),
                             "last_four": f"{rng.randrange(10_000):04d}"}
        if rng.random() < 0.3:
            bank = f"bank_account_{rng.randrange(1_000_000, 9_999_999)}"
            methods[bank] = {"id": bank, "kind": "bank_account", "last_four": f"{rng.randrange(10_000):04d}"}
        area = rng.choice(AREA_CODES)
        fault = rng.choice(DEVICE_FAULTS + ACCOUNT_FAULTS) if rng.random() < 0.75 else None
        own_lines = []
        for k in range(rng.choices([1, 2, 3], weights=[6, 3, 1])[0]):
            line_id = f"L{numbers.pop()}{k}"
            phone = f"{area}-555-{suffixes.pop():04d}"
            plan = rng.choice(sorted(PLANS))
            data_used = _money(rng.uniform(0.1, 0.9) * PLANS[plan]["data_gb"])
            lines[line_id] = {
                "line_id": line_id, "customer_id": customer_id, "phone_number": phone, "plan_id": plan,
                "status": "active", "suspension_reason": None, "data_used_gb": data_used, "data_refueled_gb": 0.0,
                "roaming_enabled": plan == "travel_15" or rng.random() < 0.2,
                "contract_end": (TODAY + timedelta(days=rng.randrange(30, 700))).isoformat(),
                "device_model": rng.choice(MODELS)}
            phones[phone] = {"customer_id": customer_id, "line_id": line_id}
            own_lines.append(line_id)
        primary = lines[own_lines[0]]
        device = healthy_device(primary["phone_number"], primary["device_model"], rng)
        own_bills = []
        for month in range(3, 0, -1):
            bill_id = f"B{numbers.pop()}{month}"
            start = TODAY.replace(day=1) - timedelta(days=31 * month)
            amount = _money(sum(PLANS[lines[x]["plan_id"]]["monthly_price"] for x in own_lines)
                            + rng.choice([0, 0, 4.99, 9.5, 12.25]))
            bills[bill_id] = {"bill_id": bill_id, "customer_id": customer_id, "period": start.strftime("%Y-%m"),
                              "amount": amount, "due_date": (start + timedelta(days=45)).isoformat(),
                              "status": "paid"}
            own_bills.append(bill_id)
        newest = bills[own_bills[-1]]
        newest["status"] = "issued" if rng.random() < 0.4 else "paid"
        if fault == "suspended_overdue":
            bills[own_bills[-2]]["status"] = "overdue"
            primary.update(status="suspended", suspension_reason="overdue bill")
            device["registered"] = False
        elif fault == "suspended_contract":
            primary.update(status="suspended", suspension_reason="contract ended",
                           contract_end=(TODAY - timedelta(days=rng.randrange(3, 60))).isoformat())
            device["registered"] = False
        elif fault == "line_roaming_off_abroad":
            primary["roaming_enabled"] = False
            primary["plan_id"] = rng.choice([p for p in sorted(PLANS) if p != "travel_15"])
            device.update(abroad=True, data_roaming=True)
        elif fault == "data_exhausted":
            primary["data_used_gb"] = _money(PLANS[primary["plan_id"]]["data_gb"] + rng.uniform(0.05, 0.8))
        elif fault == "airplane_on":
            device["airplane_mode"] = True
        elif fault == "sim_missing":
            device["sim"] = "missing"
        elif fault == "data_off":
            device["mobile_data"] = False
        elif fault == "roaming_off_abroad":
            primary["roaming_enabled"] = True
            device.update(abroad=True, data_roaming=False)
        elif fault == "network_2g":
            device["network_mode"] = "2g"
        elif fault == "network_3g":
            device["network_mode"] = "3g"
        elif fault == "data_saver_on":
            device["data_saver"] = True
        elif fault == "vpn_on":
            device["vpn"] = True
        elif fault == "apn_broken":
            device["apn"] = "broken"
        elif fault == "mms_permission":
            device["permissions"]["messages"] = ["sms"]
        elif fault == "wifi_calling_mms":
            device["wifi_calling"] = True
        devices[device["phone_number"]] = device
        emails[email] = {"customer_id": customer_id}
        people[customer_id] = {
            "customer_id": customer_id, "name": {"first_name": first, "last_name": last},
            "date_of_birth": dob.isoformat(), "email": email, "payment_methods": methods, "lines": own_lines,
            "bills": own_bills, "phone_in_hand": primary["phone_number"]}
    return {"plans": dict(PLANS), "customers": people, "lines": lines, "bills": bills, "phones": phones,
            "emails": emails, "devices": devices}
