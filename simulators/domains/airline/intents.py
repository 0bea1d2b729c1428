"""What an airline member can want, grounded in the airline's data.

Three intents are refusals (a cancellation the fare rules exclude, a flight
change on basic economy, compensation the member is not entitled to): the
right dialogue reads the facts and says no, and each names the write a
careless agent makes instead (``forbidden``), which the policy check rejects.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from schemas import Action
from simulators.domains.airline.data import AIRPORTS, CABIN_WORDS, TODAY
from simulators.domains.airline.rules import (
    COVERED_REASONS,
    airline_cancelled,
    booked_recently,
    cancel_grounds,
    compensation_amount,
    flown,
    free_bags,
    segment_statuses,
)
from simulators.environment import Environment
from simulators.intents import Grounding, Intent
from simulators.phrasing import PLACES, expand, pick, pick_fragment, price, refer, say_card, someone, when

CONFIRM_LEAD = "{To confirm|Just to confirm|Let me confirm|Before I go ahead|Here's the change|So, to be clear}:"
CONFIRM_ASK = "{Shall I proceed|Should I go ahead|Do you want me to go ahead|Would you like me to proceed" \
              "|Okay to proceed|Can I go ahead}?"
REASON_WORDS = {"change of plans": "my plans changed", "airline cancelled flight": "you cancelled my flight",
                "health": "I'm unwell and can't travel", "weather": "the weather makes it impossible to travel",
                "other": "something came up"}


def money(x: float) -> str:
    return f"${abs(x):.2f}"


def day_words(iso: str, rng: random.Random | None = None) -> str:
    """'March 14' (or 'Friday, March 14'): how people say a date; the day number survives every form."""
    d = date.fromisoformat(iso)
    if rng is not None and rng.random() < 0.3:
        return f"{d:%A}, {d:%B} {d.day}"
    return f"{d:%B} {d.day}"


def _active(env: Environment, user: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for rid in user["reservations"]:
        r = env.db.get("reservations", rid)
        if r["status"] == "active" and not flown(env.db, r):
            out.append(r)
    return out


def _ref(rng: random.Random, reservation: dict[str, Any]) -> tuple[str, dict[str, str], list[str]]:
    """How the member points at a reservation: by its code, or by where and when they fly."""
    if rng.random() < 0.6:
        ref = pick_fragment(rng, "reservation <id>", "my booking <id>", "confirmation code <id>", "reservation <id>",
                            "booking reference <id>", id=reservation["reservation_id"])
        return ref, {"reservation_id": reservation["reservation_id"]}, []
    seg = reservation["flights"][0]
    ref = pick_fragment(rng, "my flight from <o> to <d> on <day>", "the <o> to <d> trip on <day>",
                        "my <day> flight to <d>", "the booking for <o>-<d> on <day>", o=AIRPORTS[seg["origin"]],
                        d=AIRPORTS[seg["destination"]], day=day_words(seg["date"]))
    return ref, {"trip": ref}, ["the reservation code"]


def _its(rng: random.Random, ref: str) -> str:
    return refer(rng, ref)


def _card(user: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    cards = [m for m in user["payment_methods"].values() if m["kind"] == "credit_card"]
    return rng.choice(cards) if cards else None


def say_method(rng: random.Random, method: dict[str, Any]) -> str:
    return say_card(rng, method.get("brand", "card"), method["last_four"])


class CancelReservation(Intent):
    name = "cancel_reservation"
    target_tool = "cancel_reservation"

    def ground(self, env, rng, user):
        options = []
        for r in _active(env, user):
            for reason in ("change of plans", "airline cancelled flight", "health", "weather"):
                if reason == "airline cancelled flight" and not airline_cancelled(env.db, r):
                    continue
                if reason in COVERED_REASONS and not r["insurance"]:
                    continue
                if cancel_grounds(env.db, r, reason):
                    options.append((r, reason))
        if not options:
            return None
        r, reason = rng.choice(options)
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"reservation_id": r["reservation_id"], "reason": reason}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"You want to cancel {ref} because {REASON_WORDS[reason].replace('I', 'you', 1)}, and get "
                 "your money back.",
            opening=pick(rng, "I {need|want|would like} to cancel a {flight|booking|reservation}.",
                         "{Can|Could} you cancel {a trip|my flight|a reservation} for me?",
                         "I {won't be able to|can't} {fly|make my flight} and {need|want} to cancel.",
                         "{Is it possible|How do I go about it} to cancel a booking{ and get a refund|}?"),
            details=f"{_its(rng, ref)} " + pick(rng, "I need to cancel because <why>.", "<Why>, so please cancel it.",
                                                 "Please cancel it — <why>.", why=REASON_WORDS[reason],
                                                 Why=REASON_WORDS[reason][:1].upper() + REASON_WORDS[reason][1:]),
            known_info={**known, "reason": reason}, unknown_info=unknown)

    def story(self, rng):
        return pick(rng, "I was {supposed|going} to visit <someone>.", "It was for a trip to <place>.",
                    "I booked it <when>.", "I paid <price> for it, so I'd really like the money back.",
                    someone=someone(rng), place=rng.choice(PLACES), when=when(rng), price=price(rng))

    def outputs(self, target, result):
        return [money(result["refund_amount"])]

    def ask(self, rng):
        return pick(rng, "Which reservation would you like to cancel, and what's the reason?",
                    "{Sure|I can help with that}. Which booking is it, and why are you cancelling?",
                    "Could you tell me the reservation{ code|} and the reason for cancelling?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{CONFIRM_LEAD} I'll cancel reservation <id> (reason: <reason>) and refund every payment to "
                      f"its original method. {CONFIRM_ASK}", rng, id=a["reservation_id"], reason=a["reason"])

    def report(self, target, outputs, rng):
        refund = pick(rng, "<x> will go back to your original payment method within 5 to 7 business days.",
                      "You'll see <x> refunded to the original payment method{ in about a week|}.",
                      x=outputs[0]) if outputs else ""
        return pick(rng, "Reservation <id> is cancelled.", "{Done|All set}: reservation <id> is cancelled.",
                    "I've cancelled reservation <id>.", id=target.arguments["reservation_id"]) + " " + refund


class CancelRefused(Intent):
    """A cancellation the fare rules exclude: read the reservation, explain, do nothing."""

    name = "cancel_refused"
    target_tool = "get_reservation_details"

    def ground(self, env, rng, user):
        options = [r for r in _active(env, user) if r["cabin"] != "business" and not booked_recently(r)
                   and not airline_cancelled(env.db, r)]
        if not options:
            return None
        r = rng.choice(options)
        reason = "change of plans" if r["insurance"] or rng.random() < 0.6 else rng.choice(["health", "weather"])
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"reservation_id": r["reservation_id"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"You want to cancel {ref} because {REASON_WORDS[reason].replace('I', 'you', 1)}. If the agent "
                 "says it cannot be cancelled, accept it.",
            opening=pick(rng, "I'd like to cancel my flight and get a refund.", "I {need|want} to cancel a booking.",
                         "{Can|Could} I get my money back for a flight I can't take?"),
            details=f"{_its(rng, ref)} " + pick(rng, "I want to cancel it because <why>.", "<Why>, so I'd like a "
                                                 "refund.", why=REASON_WORDS[reason],
                                                 Why=REASON_WORDS[reason][:1].upper() + REASON_WORDS[reason][1:]),
            known_info={**known, "reason": reason}, unknown_info=unknown)

    def forbidden(self, target, env):
        return Action(name="cancel_reservation",
                      arguments={"reservation_id": target.arguments["reservation_id"], "reason": "change of plans"})

    def outputs(self, target, result):
        return [CABIN_WORDS[result["cabin"]]]

    def ask(self, rng):
        return pick(rng, "Which reservation is it, and why do you need to cancel?",
                    "{Sure|Let me check}. Which booking, and what's the reason?")

    def report(self, target, outputs, rng):
        cabin = outputs[0] if outputs else "this"
        return pick(rng, "I've looked at reservation <id>: it's a <c> fare booked more than 24 hours ago, with no "
                    "airline cancellation{ and no insurance cover for this reason|}, so under our fare rules I "
                    "{can't|am not able to} cancel it. I'm sorry.",
                    "{Unfortunately|I'm sorry}, reservation <id> is <c>, and the fare rules only allow a refund "
                    "within 24 hours of booking, for business fares, airline cancellations or insured health and "
                    "weather reasons. I can't cancel it.", id=target.arguments["reservation_id"], c=cabin)


def _another_day(env: Environment, rng: random.Random, seg: dict[str, Any], cabin: str, pax: int
                 ) -> tuple[str, str] | None:
    """Another date (and flight) on the segment's route with seats in the cabin: (flight number, date)."""
    days = [(TODAY + timedelta(days=k)).isoformat() for k in range(1, 22)]
    rng.shuffle(days)
    for day in days:
        if day == seg["date"]:
            continue
        for number, f in sorted(env.db.scan("flights")):
            if (f["origin"], f["destination"]) != (seg["origin"], seg["destination"]):
                continue
            inst = f["dates"].get(day, {})
            if inst.get("status") in ("scheduled", "delayed") and inst["seats"][cabin] >= pax:
                return number, day
    return None


class ChangeFlight(Intent):
    name = "change_flight"
    target_tool = "update_reservation_flights"

    def ground(self, env, rng, user):
        card = _card(user, rng)
        options = [r for r in _active(env, user) if r["cabin"] != "basic_economy" and r["trip_type"] == "one_way"]
        if card is None or not options:
            return None
        r = rng.choice(options)
        seg = r["flights"][0]
        new = _another_day(env, rng, seg, r["cabin"], len(r["passengers"]))
        if new is None:
            return None
        number, day = new
        departure = env.db.get("flights", number)["departure"]
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "reservation_id": r["reservation_id"], "flights": [{"flight_number": number, "date": day}],
                "payment_method_id": card["id"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            before=[Action(name="search_direct_flights", arguments={
                "origin": seg["origin"], "destination": seg["destination"], "date": day})],
            goal=f"You want to move {ref} to {day_words(day)}, on the {departure} departure (flight {number}); pay "
                 f"any difference with your card ending in {card['last_four']}.",
            opening=pick(rng, "I {need|want|would like} to change the date of my flight.",
                         "{Can|Could} I move my flight to another day?",
                         "{My plans shifted|Something came up} and I need to fly on a different day.",
                         "I'd like to rebook a flight for a different date."),
            details=f"{_its(rng, ref)} " + pick(
                rng, "I'd like to fly on <day> instead, the <time> departure. Use my <m> for any difference.",
                "Can you move it to <day>, flight <n> at <time>? {Charge|Put} any difference on my <m>.",
                "<Day> would work, the one leaving at <time>. {The|Any} fare difference can go on my <m>.",
                day=day_words(day, rng), Day=day_words(day, rng), time=departure, n=number, m=say_method(rng, card)),
            known_info={**known, "new_date": day, "new_departure": departure, "payment": f"card {card['last_four']}"},
            unknown_info=unknown + ["the flight number"])

    def story(self, rng):
        return pick(rng, "{My meeting|The conference|The wedding} got moved.", "<Someone> can't pick me up that day.",
                    "I'd rather not fly on a {weekday|Monday|Friday}.", "My {meeting|appointment} moved to <h>:<mm>.",
                    someone=someone(rng), h=str(rng.randint(7, 18)), mm=f"{rng.randrange(0, 60, 15):02d}")

    def outputs(self, target, result):
        return [money(result["price_difference"])]

    def ask(self, rng):
        return pick(rng, "Which reservation would you like to change, and to which date?",
                    "{Sure|Happy to help}. Which booking is it, and when would you like to fly instead?",
                    "Could you tell me the reservation and the new date you have in mind?")

    def confirm(self, target, rng):
        a = target.arguments
        f = a["flights"][0]
        return expand(f"{CONFIRM_LEAD} reservation <id> moves to flight <n> on <d>, and any fare difference goes on "
                      f"<m>. {CONFIRM_ASK}", rng, id=a["reservation_id"], n=f["flight_number"], d=f["date"],
                      m=a["payment_method_id"])

    def report(self, target, outputs, rng):
        diff = pick(rng, "The fare difference is <x>.", "That comes to a difference of <x>.", x=outputs[0]) \
            if outputs else ""
        return pick(rng, "Your reservation <id> is now on flight <n>.", "{Done|All set}: <id> is rebooked on "
                    "<n>.", id=target.arguments["reservation_id"],
                    n=target.arguments["flights"][0]["flight_number"]) + " " + diff


class ChangeRefusedBasic(Intent):
    """Basic economy cannot change flights: read the reservation and say so."""

    name = "change_refused_basic"
    target_tool = "get_reservation_details"

    def ground(self, env, rng, user):
        card = _card(user, rng)
        options = [r for r in _active(env, user) if r["cabin"] == "basic_economy" and r["trip_type"] == "one_way"]
        if card is None or not options:
            return None
        r = rng.choice(options)
        new = _another_day(env, rng, r["flights"][0], r["cabin"], len(r["passengers"]))
        if new is None:
            return None
        number, day = new
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"reservation_id": r["reservation_id"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"You want to move {ref} to {day_words(day)}. If the agent says your fare does not allow it, "
                 "accept that.",
            opening=pick(rng, "I need to move my flight to a different day.", "{Can|Could} you change my flight date?"),
            details=f"{_its(rng, ref)} " + pick(rng, "I'd like to fly on <day> instead.", "Can I switch to <day>?",
                                                 day=day_words(day, rng)),
            known_info={**known, "new_date": day}, unknown_info=unknown)

    def forbidden(self, target, env):
        r = env.db.get("reservations", target.arguments["reservation_id"])
        card = _card(env.db.get("users", r["user_id"]), random.Random(r["reservation_id"]))
        new = _another_day(env, random.Random(r["reservation_id"]), r["flights"][0], r["cabin"], len(r["passengers"]))
        if card is None or new is None:
            return None
        return Action(name="update_reservation_flights", arguments={
            "reservation_id": r["reservation_id"], "flights": [{"flight_number": new[0], "date": new[1]}],
            "payment_method_id": card["id"]})

    def outputs(self, target, result):
        return [CABIN_WORDS[result["cabin"]]]

    def ask(self, rng):
        return pick(rng, "Which reservation would you like to change, and to when?",
                    "{Sure|Let me look}. Which booking is it?")

    def report(self, target, outputs, rng):
        return pick(rng, "I've checked reservation <id>: it's a <c> fare, and <c> tickets can't change flights. "
                    "{I'm sorry|Sorry about that}. {The cabin can still be upgraded if that helps.|}",
                    "{Unfortunately|I'm afraid} reservation <id> is <c>, which doesn't allow flight changes.",
                    id=target.arguments["reservation_id"], c=outputs[0] if outputs else "basic economy")


class AddBags(Intent):
    name = "add_bags"
    target_tool = "update_reservation_baggages"

    def ground(self, env, rng, user):
        card = _card(user, rng)
        options = _active(env, user)
        if card is None or not options:
            return None
        r = rng.choice(options)
        extra = rng.choice([1, 1, 2])
        total = r["total_baggages"] + extra
        nonfree = max(r["nonfree_baggages"], total - free_bags(user["membership"], r))
        ref, known, unknown = _ref(rng, r)
        bags = "one more checked bag" if extra == 1 else "two more checked bags"
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "reservation_id": r["reservation_id"], "total_baggages": total, "nonfree_baggages": nonfree,
                "payment_method_id": card["id"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"You want to add {bags} to {ref}; pay with your card ending in {card['last_four']}.",
            opening=pick(rng, "I {need|want} to add {a bag|luggage|checked bags} to my booking.",
                         "{Can|Could} I add {a suitcase|another bag|checked luggage} to a reservation?",
                         "I'm bringing more luggage than planned."),
            details=f"{_its(rng, ref)} " + pick(rng, "I'd like <bags>. Use my <m> if there's a fee.",
                                                 "Please add <bags>{,|;} {charge|bill} any fee to my <m>.",
                                                 "<Bags>, please{.|,} {card|payment}: my <m>.", bags=bags,
                                                 Bags=bags[:1].upper() + bags[1:], m=say_method(rng, card)),
            known_info={**known, "extra_bags": str(extra), "payment": f"card {card['last_four']}"},
            unknown_info=unknown + ["how many bags are free"])

    def story(self, rng):
        return pick(rng, "<Someone> is coming {along|with me} after all.", "I'm bringing gifts back from <place>.",
                    "{Ski|Golf|Camping} gear, don't ask.", Someone=someone(rng), place=rng.choice(PLACES))

    def outputs(self, target, result):
        return [money(result["fee"])] if result["fee"] else ["free"]

    def ask(self, rng):
        return pick(rng, "Which reservation, and how many bags would you like to add?",
                    "{Sure|No problem}. Which booking is it, and how many extra bags?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{CONFIRM_LEAD} reservation <id> goes to <t> checked bags, <n> of them paid, billed to <m>. "
                      f"{CONFIRM_ASK}", rng, id=a["reservation_id"], t=str(a["total_baggages"]),
                      n=str(a["nonfree_baggages"]), m=a["payment_method_id"])

    def report(self, target, outputs, rng):
        if outputs == ["free"]:
            return pick(rng, "{Done|All set}: the bags are added, and they're free within your allowance.",
                        "I've added the bags; they fall within your free allowance.")
        return pick(rng, "{Done|All set}: the bags are added for a fee of <x>.", "I've added the bags; the fee is "
                    "<x>.", x=outputs[0] if outputs else "")


class UpgradeCabin(Intent):
    name = "upgrade_cabin"
    target_tool = "update_reservation_cabin"

    def ground(self, env, rng, user):
        card = _card(user, rng)
        if card is None:
            return None
        options = []
        for r in _active(env, user):
            if r["cabin"] == "business":
                continue
            up = "economy" if r["cabin"] == "basic_economy" else "business"
            pax = len(r["passengers"])
            if all(s.get("status") in ("scheduled", "delayed") and s["seats"][up] >= pax
                   for s in segment_statuses(env.db, r)):
                options.append((r, up))
        if not options:
            return None
        r, up = rng.choice(options)
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={
                "reservation_id": r["reservation_id"], "cabin": up, "payment_method_id": card["id"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"You want to upgrade {ref} to {CABIN_WORDS[up]}, paid with your card ending in {card['last_four']}.",
            opening=pick(rng, "I'd like to upgrade my seat.", "{Can|Could} I upgrade a booking to <up>?",
                         "How much would it cost to move up to <up>?{ I'd like to do it.|}", up=CABIN_WORDS[up]),
            details=f"{_its(rng, ref)} " + pick(rng, "I'd like <up>, please. Put it on my <m>.",
                                                 "Upgrade it to <up>{ please|}; use my <m>.", up=CABIN_WORDS[up],
                                                 m=say_method(rng, card)),
            known_info={**known, "cabin": up, "payment": f"card {card['last_four']}"}, unknown_info=unknown)

    def story(self, rng):
        return pick(rng, "It's a long flight and my back isn't great.", "It's {our anniversary|a special trip}.",
                    "I need to work on the plane.")

    def outputs(self, target, result):
        return [money(result["price_difference"])]

    def ask(self, rng):
        return pick(rng, "Which reservation would you like to upgrade?", "{Sure|Happy to}. Which booking is it?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{CONFIRM_LEAD} every flight in reservation <id> moves to <c> at today's prices, charged to "
                      f"<m>. {CONFIRM_ASK}", rng, id=a["reservation_id"], c=CABIN_WORDS[a["cabin"]],
                      m=a["payment_method_id"])

    def report(self, target, outputs, rng):
        return pick(rng, "{Done|All set}: reservation <id> is now <c>. The difference was <x>.",
                    "You're upgraded to <c> on <id>; the fare difference came to <x>.",
                    id=target.arguments["reservation_id"], c=CABIN_WORDS[target.arguments["cabin"]],
                    x=outputs[0] if outputs else "")


def _respelled(name: str, rng: random.Random) -> str:
    """The right spelling of a name the booking got wrong: one letter doubled, dropped or changed."""
    i = rng.randrange(1, len(name))
    kind = rng.randrange(3)
    if kind == 0:
        return name[:i] + name[i - 1] + name[i:]
    if kind == 1 and len(name) > 3:
        return name[:i] + name[i + 1:]
    return name[:i] + rng.choice("aeiouy") + name[i + 1:]


class FixPassenger(Intent):
    name = "fix_passenger"
    target_tool = "update_reservation_passengers"

    def ground(self, env, rng, user):
        options = [r for r in _active(env, user) if len(r["passengers"]) > 1]
        if not options:
            return None
        r = rng.choice(options)
        k = rng.randrange(1, len(r["passengers"]))  # a companion's details (the member's own match the profile)
        old = r["passengers"][k]
        fixed = dict(old)
        if rng.random() < 0.6:
            fixed["first_name"] = _respelled(old["first_name"], rng)
            change = f"the first name should be {fixed['first_name']}, not {old['first_name']}"
        else:
            d = date.fromisoformat(old["date_of_birth"])
            new = d.replace(day=d.day % 28 + 1)
            fixed["date_of_birth"] = new.isoformat()
            change = f"the date of birth should be {fixed['date_of_birth']}, not {old['date_of_birth']}"
        if fixed == old:
            return None
        passengers = [fixed if i == k else p for i, p in enumerate(r["passengers"])]
        who = f"{old['first_name']} {old['last_name']}'s details"
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"reservation_id": r["reservation_id"],
                                                            "passengers": passengers}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"On {ref}, {who} are wrong: {change}. You want it corrected.",
            opening=pick(rng, "There's a mistake in a passenger's details on my booking.",
                         "{A name|Some details} on my reservation {are|is} wrong.",
                         "I {need|want} to fix a typo on a ticket."),
            details=f"{_its(rng, ref)} " + pick(rng, "For <who>, <change>.", "It's <who>: <change>.",
                                                 who=who, change=change),
            known_info={**known, "correction": change}, unknown_info=unknown)

    def story(self, rng):
        return pick(rng, "I typed it in a hurry.", "{Autocorrect|My phone} changed it.", "<Someone> booked it for us.",
                    Someone=someone(rng))

    def ask(self, rng):
        return pick(rng, "Which reservation, and what needs correcting?", "{Sure|Of course}. Which booking, and "
                    "which passenger's details are wrong?")

    def confirm(self, target, rng):
        a = target.arguments
        people = "; ".join(f"{p['first_name']} {p['last_name']} ({p['date_of_birth']})" for p in a["passengers"])
        return expand(f"{CONFIRM_LEAD} the passengers on reservation <id> become: <people>. {CONFIRM_ASK}", rng,
                      id=a["reservation_id"], people=people)

    def report(self, target, outputs, rng):
        return pick(rng, "{Done|Fixed}: the passenger details on <id> are corrected.",
                    "I've updated the passengers on reservation <id>.", id=target.arguments["reservation_id"])


class FlightStatus(Intent):
    name = "flight_status"
    target_tool = "get_flight_status"

    def ground(self, env, rng, user):
        options = [(r, s) for r in _active(env, user) for s in r["flights"] if s["date"] >= TODAY.isoformat()]
        if not options:
            return None
        r, seg = rng.choice(options)
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"flight_number": seg["flight_number"],
                                                            "date": seg["date"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            goal=f"You want to know whether your flight on {day_words(seg['date'])} ({ref}) is on time.",
            opening=pick(rng, "Is my flight on time?", "{Can|Could} you check the status of my flight?",
                         "I want to know if my flight is delayed.", "Any news on my flight?"),
            details=f"{_its(rng, ref)} " + pick(rng, "The one on <day>.", "I fly on <day>.", "It's the <day> flight.",
                                                 day=day_words(seg["date"], rng)),
            known_info={**known, "date": seg["date"]}, unknown_info=unknown + ["the flight status"])

    def story(self, rng):
        return pick(rng, "<Someone> is picking me up.", "I have a connection to <place> after.",
                    "I don't want to get to the airport too early.", "My {taxi|ride} is booked for <h>:<mm>.",
                    Someone=someone(rng), place=rng.choice(PLACES), h=str(rng.randint(4, 11)),
                    mm=f"{rng.randrange(0, 60, 5):02d}")

    def outputs(self, target, result):
        out = [result["status"]]
        if result["status"] == "delayed":
            out.append(f"{result['delay_minutes']} minutes")
        elif result["status"] == "scheduled":
            out.append(result["departure"])
        return out

    def ask(self, rng):
        return pick(rng, "Which flight would you like me to check?", "{Sure|Of course}. Which booking or flight?")

    def report(self, target, outputs, rng):
        a = target.arguments
        if not outputs:
            return f"Flight {a['flight_number']} on {a['date']} is listed."
        if outputs[0] == "delayed" and len(outputs) > 1:
            return pick(rng, "Flight <n> on <d> is delayed by <m>.", "{I'm sorry|Unfortunately}, <n> on <d> is "
                        "delayed, by about <m>.", n=a["flight_number"], d=a["date"], m=outputs[1])
        if outputs[0] == "scheduled" and len(outputs) > 1:
            return pick(rng, "Flight <n> on <d> is scheduled and on time, departing at <t>.",
                        "{Good news|All good}: <n> on <d> is scheduled for <t>.", n=a["flight_number"], d=a["date"],
                        t=outputs[1])
        return pick(rng, "Flight <n> on <d> is <s>.", "The status of <n> on <d>: <s>.", n=a["flight_number"],
                    d=a["date"], s=outputs[0])


_COMPLAINTS = {  # every one asks for compensation in so many words: the policy grants it only to those who ask
    "cancelled": ("My flight {was|got} cancelled and I'd like {some|} compensation.",
                  "{You|The airline} cancelled my flight. {What compensation can I get|Can I get compensated}?",
                  "I {want|expect} compensation for a cancelled flight.",
                  "{A flight of mine|My flight} {was|got} scrapped{ last minute|}; {is there|I'd like} compensation?"),
    "delayed": ("My flight is {badly|really} delayed. {Is there any compensation|Can I get compensation}?",
                "I'd like {some|} compensation for a delay.",
                "The delay on my flight {ruined|messed up} my plans. {What compensation do you offer|Do I get "
                "compensation for that}?"),
}


def _troubled(env: Environment, r: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The segment a member complains about and how (cancelled first, as the policy reads it), if any."""
    statuses = segment_statuses(env.db, r)
    for want in ("cancelled", "delayed"):
        for seg, st in zip(r["flights"], statuses, strict=True):
            if st.get("status") == want:
                return seg, want
    return None


class Compensation(Intent):
    name = "compensation"
    target_tool = "send_certificate"

    def ground(self, env, rng, user):
        options = []
        for r in _active(env, user):
            trouble = _troubled(env, r)
            amount = compensation_amount(env.db, user, r)
            if trouble and amount:
                options.append((r, trouble, amount))
        if not options:
            return None
        r, (seg, what), amount = rng.choice(options)
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"reservation_id": r["reservation_id"], "amount": amount}),
            bindings={"reservation_id": [r["reservation_id"]]},
            before=[Action(name="get_flight_status", arguments={"flight_number": seg["flight_number"],
                                                                "date": seg["date"]})],
            goal=f"Your flight on {day_words(seg['date'])} ({ref}) was {what}. You want compensation.",
            opening=pick(rng, *_COMPLAINTS[what]),
            details=f"{_its(rng, ref)} " + pick(rng, "The <day> flight, <n>.", "It's flight <n> on <day>.",
                                                 "Flight <n>, <day>.", n=seg["flight_number"],
                                                 day=day_words(seg["date"], rng)),
            known_info={**known, "flight": seg["flight_number"], "date": seg["date"]},
            unknown_info=unknown + ["what compensation the policy allows"])

    def story(self, rng):
        return pick(rng, "I {missed|almost missed} <someone>'s {birthday|wedding|graduation}.",
                    "I had to {rebook a hotel|pay for a taxi|wait for hours}.", "This is the {second|third} time this "
                    "{month|year}.", "I spent <price> on {a hotel|a taxi|food} because of it.", "I waited <n> hours "
                    "at the gate.", someone=someone(rng), price=price(rng), n=str(rng.randint(2, 9)))

    def outputs(self, target, result):
        return [money(result["amount"])]

    def ask(self, rng):
        return pick(rng, "I'm sorry to hear that. Which reservation and flight was it?",
                    "{That's frustrating, I'm sorry|Sorry about that}. Which booking is it?")

    def confirm(self, target, rng):
        a = target.arguments
        return expand(f"{{I've checked the flight|The flight status confirms it}}. {CONFIRM_LEAD} I'll issue a "
                      f"travel certificate of <x> for reservation <id>. {CONFIRM_ASK}", rng,
                      x=money(a["amount"]), id=a["reservation_id"])

    def report(self, target, outputs, rng):
        return pick(rng, "{Done|All set}: a travel certificate of <x> is now in your profile.",
                    "I've issued a <x> travel certificate; you'll find it in your profile for your next booking.",
                    x=outputs[0] if outputs else "")


class CompensationRefused(Intent):
    """A member the policy does not compensate: check the flight, explain, issue nothing."""

    name = "compensation_refused"
    target_tool = "get_reservation_details"

    def ground(self, env, rng, user):
        options = []
        for r in _active(env, user):
            trouble = _troubled(env, r)
            if trouble and not compensation_amount(env.db, user, r):
                options.append((r, trouble))
        if not options:
            return None
        r, (seg, what) = rng.choice(options)
        ref, known, unknown = _ref(rng, r)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"reservation_id": r["reservation_id"]}),
            bindings={"reservation_id": [r["reservation_id"]]},
            after=[Action(name="get_flight_status", arguments={"flight_number": seg["flight_number"],
                                                               "date": seg["date"]})],
            goal=f"Your flight on {day_words(seg['date'])} ({ref}) was {what}. You want compensation; if the agent "
                 "explains you are not eligible, accept it.",
            opening=pick(rng, *_COMPLAINTS[what]),
            details=f"{_its(rng, ref)} " + pick(rng, "Flight <n> on <day>.", "The <day> one, <n>.",
                                                 n=seg["flight_number"], day=day_words(seg["date"], rng)),
            known_info={**known, "flight": seg["flight_number"], "date": seg["date"]}, unknown_info=unknown)

    def forbidden(self, target, env):
        r = env.db.get("reservations", target.arguments["reservation_id"])
        trouble = _troubled(env, r)
        if trouble is None:
            return None
        amount = (100.0 if trouble[1] == "cancelled" else 50.0) * len(r["passengers"])
        return Action(name="send_certificate", arguments={"reservation_id": r["reservation_id"], "amount": amount})

    def ask(self, rng):
        return pick(rng, "I'm sorry about that. Which reservation and flight?", "Which booking is it?")

    def report(self, target, outputs, rng):
        return pick(rng, "I've checked the flight on reservation <id>, and I'm sorry about the disruption. "
                    "{Unfortunately|However}, compensation is only for silver and gold members, insured trips or "
                    "business fares, so I can't issue a certificate here.",
                    "I can confirm the disruption on <id>. Under our policy this booking isn't eligible for "
                    "compensation (regular membership, no insurance, not business). I'm sorry.",
                    id=target.arguments["reservation_id"])


INTENTS: dict[str, Intent] = {i.name: i for i in (
    CancelReservation(), CancelRefused(), ChangeFlight(), ChangeRefusedBasic(), AddBags(), UpgradeCabin(),
    FixPassenger(), FlightStatus(), Compensation(), CompensationRefused())}
