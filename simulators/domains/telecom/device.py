"""What a phone shows, derived from its settings and the line it is on.

One place computes service, mobile data, speed and picture messaging, so the
user's checks, the fault the data seeds and the tests agree. The phone reads
the account only through what a real one sees: the line's status at the time
it last registered (a restart), whether roaming is allowed, and whether the
data allowance is used up.
"""

from __future__ import annotations

import hashlib
from typing import Any

NETWORK_LABEL = {"2g": "2G", "3g": "3G", "4g_5g": "5G"}


def has_service(device: dict[str, Any]) -> bool:
    return not device["airplane_mode"] and device["sim"] == "active" and device["registered"]


def data_blocker(device: dict[str, Any], line: dict[str, Any], plan: dict[str, Any]) -> str | None:
    """Why mobile data does not work, or None when it does."""
    if not has_service(device):
        return "no service"
    if not device["mobile_data"]:
        return "mobile data is off"
    if device["apn"] != "default":
        return "the APN settings are wrong"
    if device["abroad"] and not device["data_roaming"]:
        return "data roaming is off"
    if device["abroad"] and not line["roaming_enabled"]:
        return "roaming is not enabled on the line"
    if line["data_used_gb"] >= plan["data_gb"] + line["data_refueled_gb"]:
        return "the data allowance is used up"
    return None


def speed(device: dict[str, Any], line: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """A speed test: no connection, or a download rate and a quality word (excellent only when nothing slows it)."""
    if data_blocker(device, line, plan):
        return {"result": "no connection"}
    if device["network_mode"] == "2g":
        quality, base = "very poor", 0.2
    elif device["network_mode"] == "3g":
        quality, base = "fair", 3.0
    elif device["vpn"]:
        quality, base = "poor", 1.5
    elif device["data_saver"]:
        quality, base = "poor", 2.0
    else:
        quality, base = "excellent", 140.0
    # A stable jitter: the same phone in the same state measures the same.
    jitter = int(hashlib.sha256(repr(sorted(device.items())).encode()).hexdigest()[:6], 16) % 1000 / 1000
    return {"download_mbps": round(base * (0.8 + 0.5 * jitter), 1), "quality": quality}


def mms_blocker(device: dict[str, Any], line: dict[str, Any], plan: dict[str, Any]) -> str | None:
    if data_blocker(device, line, plan):
        return "mobile data does not work"
    if device["network_mode"] == "2g":
        return "2G cannot carry picture messages"
    if device["wifi_calling"]:
        return "Wi-Fi Calling is on"
    if not {"sms", "storage"} <= set(device["permissions"].get("messages", [])):
        return "the Messages app lacks a permission"
    return None


def status_bar(device: dict[str, Any]) -> dict[str, Any]:
    service = has_service(device)
    return {"airplane_mode": device["airplane_mode"],
            "signal": "4 bars" if service else "no signal",
            "network": NETWORK_LABEL[device["network_mode"]] if service else None,
            "mobile_data": device["mobile_data"], "data_saver": device["data_saver"], "vpn": device["vpn"],
            "battery_percent": device["battery"]}
