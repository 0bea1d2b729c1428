"""A lending library: members borrow books; loans can be renewed or returned, late returns cost a fee.

Written only against trajforge's public API. The entry point
``library = "trajforge_library.domain:LibraryEnv"`` in group
``trajforge.domains`` is all it takes for ``domain: {name: library}`` to work.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Annotated, Any

from pydantic import Field

from schemas import Action, Message
from simulators import DomainParams, Environment, Grounding, Identity, Intent, Param, ToolError, is_error, tool

TODAY = date(2025, 3, 1)
FEE_PER_DAY = 0.25
FIRST = ("Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lia")
LAST = ("Abe", "Brandt", "Costa", "Diaz", "Eng", "Fox", "Grant", "Holm", "Ito", "Jovic")
TITLES = ("The Quiet Orbit", "Salt and Cedar", "A Map of Rain", "The Last Lighthouse", "Nine Small Fires",
          "Paper Harbor", "The Glass Orchard", "Winter Arithmetic", "North of Nowhere", "The Borrowed Sky",
          "Seven Bridges", "Lanterns at Noon")

POLICY = """# Library desk policy
- Authenticate the member by email with find_member_by_email before anything else.
- Act only on the authenticated member's own loans.
- Before renewing or returning, state what you will do and get an explicit yes. One yes covers one change.
- A loan can be renewed once, and only if it is not overdue. Returns of overdue loans cost $0.25 per day late."""

Email = Annotated[str, Param("The member's email address.", "email")]
MemberId = Annotated[str, Param("The member id, such as 'm0012'.", "member_id")]
LoanId = Annotated[str, Param("The loan id, such as 'L00123'.", "loan_id")]


class LibraryParams(DomainParams):
    members: int = Field(default=40, ge=5, le=1000, description="how many members the seeded library has")


def build_library(seed: int, members: int) -> dict[str, dict[str, Any]]:
    rng = random.Random(f"library:{seed}")
    books = {f"b{i:03d}": {"book_id": f"b{i:03d}", "title": t, "copies": rng.randint(1, 4)} for i, t in enumerate(TITLES)}
    people: dict[str, Any] = {}
    loans: dict[str, Any] = {}
    for m in range(members):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        member_id = f"m{m:04d}"
        person = {"member_id": member_id, "name": f"{first} {last}",
                  "email": f"{first.lower()}.{last.lower()}{m}@example.org", "loans": []}
        for book_id in rng.sample(sorted(books), rng.randint(0, 3)):
            loan_id = f"L{len(loans):05d}"
            due = TODAY + timedelta(days=rng.randint(-20, 20))
            loans[loan_id] = {"loan_id": loan_id, "member_id": member_id, "book_id": book_id, "due": due.isoformat(),
                              "renewed": rng.random() < 0.2, "status": "active"}
            person["loans"].append(loan_id)
        people[member_id] = person
    return {"members": people, "books": books, "loans": loans}


def days_late(loan: dict[str, Any]) -> int:
    return max(0, (TODAY - date.fromisoformat(loan["due"])).days)


class LibraryEnv(Environment):
    name = "library"
    policy = POLICY
    Params = LibraryParams
    user_knows = frozenset({"email"})

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        return build_library(seed, (cls.params or cls.Params()).members)

    # -- tools ----------------------------------------------------------------
    @tool(produces=("member_id",))
    def find_member_by_email(self, email: Email) -> str:
        """Find a member's id by their email address."""
        for member_id, member in self.db.scan("members"):
            if member["email"] == email.strip().lower():
                return member_id
        raise ToolError("no member with that email")

    @tool(produces=("loan_id",))
    def get_member(self, member_id: MemberId) -> dict[str, Any]:
        """A member's name and the ids of their loans."""
        return self._member(member_id)

    @tool()
    def get_loan(self, loan_id: LoanId) -> dict[str, Any]:
        """A loan: the book, its title, due date, status, days late, and whether it was renewed."""
        loan = self._loan(loan_id)
        return {**loan, "title": self.db.get("books", loan["book_id"])["title"], "days_late": days_late(loan)}

    @tool(writes=True)
    def renew_loan(self, loan_id: LoanId) -> dict[str, Any]:
        """Extend an active, not overdue, never renewed loan by 14 days."""
        loan = self._loan(loan_id)
        if loan["status"] != "active" or loan["renewed"] or days_late(loan):
            raise ToolError(f"loan {loan_id} cannot be renewed")
        loan.update(due=(date.fromisoformat(loan["due"]) + timedelta(days=14)).isoformat(), renewed=True)
        self.db.put("loans", loan_id, loan)
        return {"loan_id": loan_id, "due": loan["due"]}

    @tool(writes=True)
    def return_book(self, loan_id: LoanId) -> dict[str, Any]:
        """Check a borrowed book back in; returns the late fee owed, if any."""
        loan = self._loan(loan_id)
        if loan["status"] != "active":
            raise ToolError(f"loan {loan_id} is already closed")
        book = self.db.get("books", loan["book_id"])
        book["copies"] += 1
        self.db.put("books", book["book_id"], book)
        loan["status"] = "returned"
        self.db.put("loans", loan_id, loan)
        return {"loan_id": loan_id, "late_fee": round(days_late(loan) * FEE_PER_DAY, 2)}

    def _member(self, member_id: str) -> dict[str, Any]:
        member = self.db.get("members", member_id)
        if member is None:
            raise ToolError(f"member {member_id} not found")
        return member

    def _loan(self, loan_id: str) -> dict[str, Any]:
        loan = self.db.get("loans", loan_id)
        if loan is None:
            raise ToolError(f"loan {loan_id} not found")
        return loan

    # -- task synthesis hooks ------------------------------------------------------
    def users(self) -> list[str]:
        return [member_id for member_id, _ in self.db.scan("members")]

    def user_record(self, user_id: str) -> dict[str, Any]:
        return self._member(user_id)

    def identify(self, rng: random.Random, user_id: str) -> Identity:
        member = self._member(user_id)
        return Identity(user_id=user_id, first_name=member["name"].split()[0],
                        action=Action(name="find_member_by_email", arguments={"email": member["email"]}),
                        says=f"My email is {member['email']}.", known_info={"email": member["email"]},
                        bindings={"member_id": [user_id]})

    def active_loans(self, member: dict[str, Any]) -> list[dict[str, Any]]:
        return [loan for loan in (self.db.get("loans", i) for i in member["loans"]) if loan["status"] == "active"]

    # -- the checkable part of the policy --------------------------------------------
    def check_policy(self, messages: list[Message]) -> list[str]:
        """Authenticated before any other call; every write right after a confirmation and a user reply."""
        problems: list[str] = []
        authenticated = False
        for n, msg in enumerate(messages):
            for call in msg.tool_calls or []:
                name = call.function.name
                if name == "find_member_by_email":
                    result = next((m.content for m in messages[n + 1:] if m.tool_call_id == call.id), "")
                    authenticated = authenticated or not is_error(result or "Error: ")
                elif not authenticated:
                    problems.append(f"message {n}: {name} before the member was authenticated")
                if name in ("renew_loan", "return_book"):
                    asked = n >= 2 and messages[n - 1].role == "user" and "proceed" in (messages[n - 2].content or "")
                    if not asked:
                        problems.append(f"message {n}: {name} without an explicit confirmation")
        return problems


def _title(env: Environment, loan: dict[str, Any]) -> str:
    return env.db.get("books", loan["book_id"])["title"]


class RenewLoan(Intent):
    name = "renew_loan"
    target_tool = "renew_loan"

    def ground(self, env, rng, customer):
        loans = [loan for loan in env.active_loans(customer) if not loan["renewed"] and not days_late(loan)]
        if not loans:
            return None
        loan = rng.choice(loans)
        title = _title(env, loan)
        return Grounding(target=Action(name=self.target_tool, arguments={"loan_id": loan["loan_id"]}),
                         bindings={"loan_id": [loan["loan_id"]]}, goal=f"You want to renew your loan of '{title}'.",
                         opening="I'd like to keep a book a bit longer.", details=f"It's loan {loan['loan_id']}, '{title}'.",
                         known_info={"loan_id": loan["loan_id"], "title": title})

    def outputs(self, target, result):
        return [result["due"]]

    def ask(self, rng):
        return "Which loan would you like to renew?"

    def confirm(self, target, rng):
        return f"To confirm: I will renew loan {target.arguments['loan_id']} by 14 days. Shall I proceed?"

    def report(self, target, outputs, rng):
        return f"Loan {target.arguments['loan_id']} is renewed" + (f"; it is now due {outputs[0]}." if outputs else ".")


class ReturnBook(Intent):
    name = "return_book"
    target_tool = "return_book"

    def ground(self, env, rng, customer):
        loans = env.active_loans(customer)
        if not loans:
            return None
        loan = rng.choice(loans)
        title = _title(env, loan)
        return Grounding(target=Action(name=self.target_tool, arguments={"loan_id": loan["loan_id"]}),
                         bindings={"loan_id": [loan["loan_id"]]}, goal=f"You are returning '{title}'.",
                         opening="I'm bringing a book back.", details=f"It's loan {loan['loan_id']}, '{title}'.",
                         known_info={"loan_id": loan["loan_id"], "title": title})

    def outputs(self, target, result):
        return [f"${result['late_fee']:.2f}"]

    def ask(self, rng):
        return "Which loan are you returning?"

    def confirm(self, target, rng):
        return f"To confirm: I will check in loan {target.arguments['loan_id']}. Shall I proceed?"

    def report(self, target, outputs, rng):
        return f"Loan {target.arguments['loan_id']} is checked in" + (f"; the late fee is {outputs[0]}." if outputs else ".")


LibraryEnv.intents = {i.name: i for i in (RenewLoan(), ReturnBook())}
