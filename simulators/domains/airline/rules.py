"""The fare and compensation rules, as functions of a reservation: one definition for the policy check,
the intents that ground tasks in them, and the tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from simulators.domains.airline.data import FREE_BAGS, NOW, TODAY

COVERED_REASONS = ("health", "weather")  # what travel insurance refunds
REASONS = ("change of plans", "airline cancelled flight", "health", "weather", "other")


def segment_statuses(db: Any, reservation: dict[str, Any]) -> list[dict[str, Any]]:
    """The dated flight instance of every segment (``{}`` where the schedule has none)."""
    out = []
    for seg in reservation["flights"]:
        flight = db.get("flights", seg["flight_number"]) or {}
        out.append(flight.get("dates", {}).get(seg["date"], {}))
    return out


def flown(db: Any, reservation: dict[str, Any]) -> bool:
    """Any segment already flown (a date before today, or landed): nothing can be changed or cancelled any more."""
    return any(seg["date"] < TODAY.isoformat() or status.get("status") == "landed"
               for seg, status in zip(reservation["flights"], segment_statuses(db, reservation), strict=True))


def booked_recently(reservation: dict[str, Any]) -> bool:
    return NOW - datetime.fromisoformat(reservation["created_at"]) <= timedelta(hours=24)


def airline_cancelled(db: Any, reservation: dict[str, Any]) -> bool:
    return any(s.get("status") == "cancelled" for s in segment_statuses(db, reservation))


def airline_delayed(db: Any, reservation: dict[str, Any]) -> bool:
    return any(s.get("status") == "delayed" for s in segment_statuses(db, reservation))


def cancel_grounds(db: Any, reservation: dict[str, Any], reason: str) -> list[str]:
    """Why the fare rules allow cancelling (empty: they do not)."""
    if reservation["status"] != "active" or flown(db, reservation):
        return []
    grounds = []
    if booked_recently(reservation):
        grounds.append("booked within the last 24 hours")
    if airline_cancelled(db, reservation):
        grounds.append("a flight was cancelled by the airline")
    if reservation["cabin"] == "business":
        grounds.append("business cabin")
    if reservation["insurance"] and reason in COVERED_REASONS:
        grounds.append(f"travel insurance covers {reason}")
    return grounds


def free_bags(membership: str, reservation: dict[str, Any]) -> int:
    return FREE_BAGS[membership][reservation["cabin"]] * len(reservation["passengers"])


def compensation_eligible(user: dict[str, Any], reservation: dict[str, Any]) -> bool:
    return user["membership"] in ("silver", "gold") or reservation["insurance"] or reservation["cabin"] == "business"


def compensation_amount(db: Any, user: dict[str, Any], reservation: dict[str, Any]) -> float:
    """The certificate the policy allows: $100 per passenger for a cancelled flight, $50 for a delayed one, else 0."""
    if not compensation_eligible(user, reservation):
        return 0.0
    passengers = len(reservation["passengers"])
    if airline_cancelled(db, reservation):
        return 100.0 * passengers
    if airline_delayed(db, reservation):
        return 50.0 * passengers
    return 0.0
