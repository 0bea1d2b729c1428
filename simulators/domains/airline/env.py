"""An airline: members, reservations of dated flights in three cabins, baggage, cancellations and
compensation.

As in tau2-bench's airline, the write tools refuse only what cannot happen
(a flown segment, a full flight, a route that does not match); the fare rules
(who may cancel, that basic economy cannot change flights, how many bags are
free, which certificate a delay earns) are the *agent's* job, written in the
policy and checked by code in ``policy.py``, so a model that ignores them
is caught.
"""

from __future__ import annotations

import hashlib
import random
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas import Action, Message
from simulators.domains.airline.data import BAG_FEE, build_airline
from simulators.domains.airline.intents import INTENTS
from simulators.domains.airline.policy import POLICY, check_policy
from simulators.domains.airline.rules import flown
from simulators.environment import DOMAINS, Environment, Param, ToolError, name_dob, tool
from simulators.intents import Identity
from simulators.phrasing import pick


class FlightRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flight_number: str
    date: str


class Passenger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first_name: str
    last_name: str
    date_of_birth: str


ReservationId = Annotated[str, Param("The six-character reservation code, such as 'ZK3P9Q'.", "reservation_id")]
UserId = Annotated[str, Param("The user id, such as 'ava_kim_2007'.", "user_id")]
PaymentId = Annotated[str, Param("A payment method id from the user's profile, such as 'credit_card_1234567'.",
                                 "payment_method_id")]
Cabin = Annotated[Literal["basic_economy", "economy", "business"], Param("The cabin class.")]


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


@DOMAINS.register("airline")
class AirlineEnv(Environment):
    policy = POLICY
    intents = INTENTS
    user_knows = frozenset({"email", "name", "dob"})

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        return build_airline(seed)

    def check_policy(self, messages: list[Message]) -> list[str]:
        return check_policy(self.fresh(), messages)

    # -- the task-synthesis hooks -------------------------------------------------------------------------------
    def users(self) -> list[str]:
        return [key for key, _ in self.db.scan("users")]

    def user_record(self, user_id: str) -> dict[str, Any]:
        return self._user(user_id)

    def identify(self, rng: random.Random, user_id: str) -> Identity:
        u = self._user(user_id)
        first, last, dob = u["name"]["first_name"], u["name"]["last_name"], u["date_of_birth"]
        if rng.random() < 0.5:
            action = Action(name="find_user_id_by_email", arguments={"email": u["email"]})
            says = pick(rng, "My email is <e>.", "It's <e>.", "<e>", "{The|My} email on {the|my} profile is <e>.",
                        "You'll find me under <e>.", "{Try|Use} <e>{.|, that's my frequent flyer email.}",
                        e=u["email"])
            known = {"email": u["email"]}
        else:
            action = Action(name="find_user_id_by_name_dob",
                            arguments={"first_name": first, "last_name": last, "date_of_birth": dob})
            says = pick(rng, "I'm <f> <l>, born <d>.", "<f> <l>, {date of birth|DOB|born on|birthday} <d>.",
                        "{My name is|It's} <f> <l>{,| and} {I was born on|my birthday is|DOB} <d>.",
                        "<f> <l> — <d>.", f=first, l=last, d=dob)
            known = {"name": f"{first} {last}", "date_of_birth": dob}
        return Identity(user_id=user_id, first_name=first, action=action, says=says, known_info=known,
                        bindings={"user_id": [user_id]})

    def ask_identity(self, rng: random.Random) -> str:
        return pick(rng, "{I can help with that|Happy to help|Sure, I can look into it}. {First|Before we start}, I "
                    "need to {verify your identity|confirm who you are}: could you give me the email on your profile, "
                    "or your full name and date of birth?",
                    "{Of course|Certainly}. To {verify your identity|confirm who you are}, please share your email, "
                    "or your name and date of birth.",
                    "{Sure|Okay}! Let me {find|pull up} your account first: what's your email, or your name and date "
                    "of birth?")

    # -- helpers ------------------------------------------------------------------------------------------------
    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.db.get("users", user_id)
        if user is None:
            raise ToolError(f"user {user_id} not found")
        return user

    def _reservation(self, reservation_id: str) -> dict[str, Any]:
        reservation = self.db.get("reservations", reservation_id.strip().upper())
        if reservation is None:
            raise ToolError(f"reservation {reservation_id} not found")
        return reservation

    def _instance(self, flight_number: str, day: str) -> dict[str, Any]:
        flight = self.db.get("flights", flight_number)
        if flight is None:
            raise ToolError(f"flight {flight_number} not found")
        instance = flight["dates"].get(day)
        if instance is None:
            raise ToolError(f"flight {flight_number} does not fly on {day}")
        return {**instance, "flight_number": flight_number, "origin": flight["origin"],
                "destination": flight["destination"], "departure": flight["departure"], "date": day}

    def _changeable(self, reservation: dict[str, Any]) -> None:
        if reservation["status"] != "active":
            raise ToolError(f"reservation {reservation['reservation_id']} is {reservation['status']}")
        if flown(self.db, reservation):
            raise ToolError(f"reservation {reservation['reservation_id']} has a flown segment; it cannot be changed")

    def _settle(self, reservation: dict[str, Any], payment_method_id: str, amount: float) -> None:
        """Charge (amount > 0) or refund (< 0) one of the owner's methods, and record it on the reservation."""
        amount = _money(amount)
        if amount == 0:
            return
        user = self._user(reservation["user_id"])
        method = user["payment_methods"].get(payment_method_id)
        if method is None:
            raise ToolError(f"payment method {payment_method_id} not found in the user's profile")
        if method["kind"] == "certificate":
            raise ToolError("a travel certificate cannot pay for or receive changes")
        if method["kind"] == "gift_card":
            if amount > method["balance"] + 1e-9:
                raise ToolError(f"gift card {payment_method_id} holds {method['balance']:.2f}, less than "
                                f"{amount:.2f}")
            method["balance"] = _money(method["balance"] - amount)
            self.db.put("users", user["user_id"], user)
        reservation["payment_history"].append({"payment_method_id": payment_method_id, "amount": amount})

    def _priced(self, flight_number: str, day: str, cabin: str, passengers: int) -> float:
        instance = self._instance(flight_number, day)
        if instance["status"] not in ("scheduled", "delayed"):
            raise ToolError(f"flight {flight_number} on {day} is {instance['status']} and cannot be booked")
        if instance["seats"][cabin] < passengers:
            raise ToolError(f"flight {flight_number} on {day} has {instance['seats'][cabin]} {cabin} seats left")
        return instance["prices"][cabin]

    # -- read tools ---------------------------------------------------------------------------------------------
    @tool(produces=("user_id",))
    def find_user_id_by_email(self, email: Annotated[str, Param("The email on the user's profile.", "email")]) -> str:
        """Find a user's id by email; this authenticates the user."""
        hit = self.db.get("emails", email.strip().lower())
        if hit is None:
            raise ToolError("no user with that email")
        return hit["user_id"]

    @tool(produces=("user_id",))
    def find_user_id_by_name_dob(
        self,
        first_name: Annotated[str, Param("First name.", "name")],
        last_name: Annotated[str, Param("Last name.", "name")],
        date_of_birth: Annotated[str, Param("Date of birth, YYYY-MM-DD.", "dob")],
    ) -> str:
        """Find a user's id by full name and date of birth; this authenticates the user."""
        key = self.db.find("users", name_dob, (first_name.strip().lower(), last_name.strip().lower(),
                                              date_of_birth.strip()))
        if key is not None:
            return key
        raise ToolError("no user with that name and date of birth")

    @tool(produces=("reservation_id", "payment_method_id"))
    def get_user_details(self, user_id: UserId) -> str:
        """A user's profile: name, email, date of birth, membership, payment methods and reservation codes."""
        return self.stored("users", user_id)

    @tool(produces=("flight_number", "travel_date", "origin", "destination", "passenger"))
    def get_reservation_details(self, reservation_id: ReservationId) -> str:
        """A reservation: route, trip type, cabin, flights with dates and prices, passengers, bags, insurance,
        payments and when it was booked."""
        return self.stored("reservations", reservation_id.strip().upper(), shown=reservation_id)

    @tool(produces=("flight_status",))
    def get_flight_status(
        self,
        flight_number: Annotated[str, Param("The flight number, such as 'TF123'.", "flight_number")],
        date: Annotated[str, Param("The date of the flight, YYYY-MM-DD.", "travel_date")],
    ) -> dict[str, Any]:
        """The status of one dated flight: scheduled, delayed (with minutes), cancelled or landed."""
        instance = self._instance(flight_number, date)
        return {k: instance[k] for k in ("flight_number", "date", "origin", "destination", "departure", "status")
                } | ({"delay_minutes": instance["delay_minutes"]} if "delay_minutes" in instance else {})

    @tool(produces=("flight_number",))
    def search_direct_flights(
        self,
        origin: Annotated[str, Param("Origin airport code, such as 'SEA'.", "origin")],
        destination: Annotated[str, Param("Destination airport code, such as 'JFK'.", "destination")],
        date: Annotated[str, Param("Travel date, YYYY-MM-DD.", "new_date")],
    ) -> list[dict[str, Any]]:
        """Direct flights on a route and date that can still be booked, with seats left and price per cabin."""
        hits = []
        for number, f in self.db.scan("flights"):
            if f["origin"] != origin.strip().upper() or f["destination"] != destination.strip().upper():
                continue
            instance = f["dates"].get(date)
            if instance and instance["status"] in ("scheduled", "delayed"):
                hits.append({"flight_number": number, "date": date, "departure": f["departure"],
                             "status": instance["status"], "seats": instance["seats"], "prices": instance["prices"]})
        return sorted(hits, key=lambda h: h["departure"])

    @tool()
    def list_airports(self) -> dict[str, str]:
        """Every airport code the airline serves, with its city."""
        return {code: a["city"] for code, a in self.db.scan("airports")}

    @tool()
    def transfer_to_human_agent(
        self, summary: Annotated[str, Param("A short summary of the user's issue.")]
    ) -> str:
        """Hand the conversation to a human agent when the request is outside the policy."""
        return "Transfer successful"

    # -- write tools --------------------------------------------------------------------------------------------
    @tool(writes=True)
    def cancel_reservation(
        self, reservation_id: ReservationId,
        reason: Annotated[Literal["change of plans", "airline cancelled flight", "health", "weather", "other"],
                          Param("Why the user cancels.")],
    ) -> dict[str, Any]:
        """Cancel a whole reservation and refund every payment to its original method. Checks that nothing
        was flown; the fare rules (who may cancel) are for the agent to apply first."""
        reservation = self._reservation(reservation_id)
        self._changeable(reservation)
        refund = 0.0
        for payment in list(reservation["payment_history"]):
            if payment["amount"] > 0:
                self._settle(reservation, payment["payment_method_id"], -payment["amount"])
                refund += payment["amount"]
        reservation["status"] = "cancelled"
        reservation["cancel_reason"] = reason
        self.db.put("reservations", reservation["reservation_id"], reservation)
        return {"reservation_id": reservation["reservation_id"], "status": "cancelled", "refund_amount": _money(refund)}

    @tool(writes=True)
    def update_reservation_flights(
        self, reservation_id: ReservationId,
        flights: Annotated[list[FlightRef], Param("Every segment of the new itinerary in order, same route and "
                                                  "trip type; unchanged segments keep their price.", "flight_number")],
        payment_method_id: PaymentId,
    ) -> dict[str, Any]:
        """Change the flights (dates or departures) of a reservation, keeping its cabin; the fare difference
        is charged to or refunded on the payment method."""
        reservation = self._reservation(reservation_id)
        self._changeable(reservation)
        old = reservation["flights"]
        if len(flights) != len(old):
            raise ToolError(f"the reservation has {len(old)} segment(s); {len(flights)} given")
        pax = len(reservation["passengers"])
        new_segments, diff = [], 0.0
        for ref, seg in zip(flights, old, strict=True):
            instance = self._instance(ref["flight_number"], ref["date"])
            if (instance["origin"], instance["destination"]) != (seg["origin"], seg["destination"]):
                raise ToolError(f"flight {ref['flight_number']} flies {instance['origin']}-{instance['destination']},"
                                f" not {seg['origin']}-{seg['destination']}")
            if (ref["flight_number"], ref["date"]) == (seg["flight_number"], seg["date"]):
                new_segments.append(seg)
                continue
            price = self._priced(ref["flight_number"], ref["date"], reservation["cabin"], pax)
            new_segments.append({**seg, "flight_number": ref["flight_number"], "date": ref["date"], "price": price})
            diff += (price - seg["price"]) * pax
        if new_segments == old:
            raise ToolError("the new flights are the reservation's current flights")
        reservation["flights"] = new_segments
        self._settle(reservation, payment_method_id, diff)
        self.db.put("reservations", reservation["reservation_id"], reservation)
        return {"reservation_id": reservation["reservation_id"], "flights": new_segments,
                "price_difference": _money(diff)}

    @tool(writes=True)
    def update_reservation_cabin(self, reservation_id: ReservationId, cabin: Cabin,
                                 payment_method_id: PaymentId) -> dict[str, Any]:
        """Move every segment of a reservation to another cabin at today's prices; the difference is charged
        to or refunded on the payment method."""
        reservation = self._reservation(reservation_id)
        self._changeable(reservation)
        if cabin == reservation["cabin"]:
            raise ToolError(f"the reservation already is {cabin}")
        pax = len(reservation["passengers"])
        diff, segments = 0.0, []
        for seg in reservation["flights"]:
            price = self._priced(seg["flight_number"], seg["date"], cabin, pax)
            diff += (price - seg["price"]) * pax
            segments.append({**seg, "price": price})
        reservation["flights"], reservation["cabin"] = segments, cabin
        self._settle(reservation, payment_method_id, diff)
        self.db.put("reservations", reservation["reservation_id"], reservation)
        return {"reservation_id": reservation["reservation_id"], "cabin": cabin, "price_difference": _money(diff)}

    @tool(writes=True)
    def update_reservation_baggages(
        self, reservation_id: ReservationId,
        total_baggages: Annotated[int, Param("Checked bags for the whole reservation after the change.")],
        nonfree_baggages: Annotated[int, Param("How many of them are paid for (beyond the free allowance).")],
        payment_method_id: PaymentId,
    ) -> dict[str, Any]:
        """Add checked bags (never remove); each newly paid bag costs $50 on the payment method."""
        reservation = self._reservation(reservation_id)
        self._changeable(reservation)
        if total_baggages < reservation["total_baggages"] or nonfree_baggages < reservation["nonfree_baggages"]:
            raise ToolError("checked bags can only be added, not removed")
        if total_baggages == reservation["total_baggages"]:
            raise ToolError(f"the reservation already has {total_baggages} checked bags")
        if not 0 <= nonfree_baggages <= total_baggages:
            raise ToolError("nonfree_baggages must be between 0 and total_baggages")
        fee = (nonfree_baggages - reservation["nonfree_baggages"]) * BAG_FEE
        reservation["total_baggages"], reservation["nonfree_baggages"] = total_baggages, nonfree_baggages
        self._settle(reservation, payment_method_id, fee)
        self.db.put("reservations", reservation["reservation_id"], reservation)
        return {"reservation_id": reservation["reservation_id"], "total_baggages": total_baggages,
                "nonfree_baggages": nonfree_baggages, "fee": _money(fee)}

    @tool(writes=True)
    def update_reservation_passengers(
        self, reservation_id: ReservationId,
        passengers: Annotated[list[Passenger], Param("Every passenger, corrected, in the reservation's order; "
                                                     "the number of passengers cannot change.", "passenger")],
    ) -> dict[str, Any]:
        """Correct the passengers' names or dates of birth (the number of passengers stays the same)."""
        reservation = self._reservation(reservation_id)
        self._changeable(reservation)
        if len(passengers) != len(reservation["passengers"]):
            raise ToolError(f"the reservation has {len(reservation['passengers'])} passenger(s); the number cannot "
                            "change")
        if [dict(p) for p in passengers] == reservation["passengers"]:
            raise ToolError("the passengers are unchanged")
        reservation["passengers"] = [dict(p) for p in passengers]
        self.db.put("reservations", reservation["reservation_id"], reservation)
        return {"reservation_id": reservation["reservation_id"], "passengers": reservation["passengers"]}

    @tool(writes=True)
    def send_certificate(
        self, reservation_id: ReservationId,
        amount: Annotated[float, Param("The certificate's value in dollars.")],
    ) -> dict[str, Any]:
        """Issue a travel certificate to the reservation's owner, as compensation under the policy."""
        reservation = self._reservation(reservation_id)
        if amount <= 0:
            raise ToolError("amount must be positive")
        user = self._user(reservation["user_id"])
        digest = hashlib.sha256(f"{reservation['reservation_id']}:{len(user['payment_methods'])}".encode())
        cert = f"certificate_{int(digest.hexdigest()[:8], 16) % 9_000_000 + 1_000_000}"
        user["payment_methods"][cert] = {"id": cert, "kind": "certificate", "amount": _money(amount)}
        self.db.put("users", user["user_id"], user)
        return {"certificate_id": cert, "user_id": user["user_id"], "amount": _money(amount)}

