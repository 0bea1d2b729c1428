"""Mobile carrier support with dual control (as in tau2-bench's telecom domain).

The assistant has the account: customers, lines, plans, bills. The *user* has
the phone: its settings live in the ``devices`` table, which only the user's
own tools (``@user_tool``) read and change. Most problems can only be fixed
by the user acting on the phone while the assistant diagnoses and guides, and
some need both sides in order (pay the bill, resume the line, then restart
the phone). The state that verification hashes is the account and the device
together.
"""

from __future__ import annotations

import random
from typing import Annotated, Any, Literal

from schemas import Action, Message, UserAction
from simulators.domains.telecom.data import PLANS, TODAY, build_telecom
from simulators.domains.telecom.device import NETWORK_LABEL, mms_blocker, speed, status_bar
from simulators.domains.telecom.intents import INTENTS, VOICE
from simulators.domains.telecom.policy import POLICY, check_policy
from simulators.environment import DOMAINS, Environment, Param, ToolError, name_dob, tool, user_tool
from simulators.intents import Identity
from simulators.phrasing import pick

LineId = Annotated[str, Param("The line id, such as 'L12345'.", "line_id")]
CustomerId = Annotated[str, Param("The customer id, such as 'C100037'.", "customer_id")]
PaymentId = Annotated[str, Param("A payment method id of the customer's, such as 'credit_card_1234567'.",
                                 "payment_method_id")]


def _money(x: float) -> float:
    return round(x + 1e-9, 2)


@DOMAINS.register("telecom")
class TelecomEnv(Environment):
    policy = POLICY
    intents = INTENTS
    device_voice = VOICE
    user_tables = frozenset({"devices"})
    user_knows = frozenset({"phone", "name", "dob"})

    @classmethod
    def build_data(cls, seed: int) -> dict[str, dict[str, Any]]:
        return build_telecom(seed)

    def check_policy(self, messages: list[Message], user_actions: list[UserAction] = (),
                     user: str | None = None) -> list[str]:
        return check_policy(self.fresh(), messages, user_actions, user)

    # -- the task-synthesis hooks -------------------------------------------------------------------------------
    def users(self) -> list[str]:
        return [key for key, _ in self.db.scan("customers")]

    def user_record(self, user_id: str) -> dict[str, Any]:
        return self._customer(user_id)

    def identify(self, rng: random.Random, user_id: str) -> Identity:
        c = self._customer(user_id)
        first, last, dob, phone = c["name"]["first_name"], c["name"]["last_name"], c["date_of_birth"], \
            c["phone_in_hand"]
        if rng.random() < 0.6:
            action = Action(name="find_customer_by_phone", arguments={"phone_number": phone})
            says = pick(rng, "My number is <p>.", "It's <p>.", "<p>", "The line is <p>.", "{My|This} phone is <p>.",
                        "<p>, that's the phone with the problem.", p=phone)
            known = {"phone_number": phone}
        else:
            action = Action(name="find_customer_by_name_dob",
                            arguments={"first_name": first, "last_name": last, "date_of_birth": dob})
            says = pick(rng, "I'm <f> <l>, born <d>.", "<f> <l>, {date of birth|DOB|born on|birthday} <d>.",
                        "{My name is|It's} <f> <l>{,| and} {I was born on|my birthday is} <d>.", f=first, l=last,
                        d=dob)
            known = {"name": f"{first} {last}", "date_of_birth": dob}
        return Identity(user_id=user_id, first_name=first, action=action, says=says, known_info=known,
                        bindings={"customer_id": [user_id]})

    def ask_identity(self, rng: random.Random) -> str:
        return pick(rng, "{I can help with that|Happy to help|Let's get that sorted}. {First|Before we start}, I "
                    "need to {verify your identity|confirm who you are}: what's the phone number on the account, or "
                    "your full name and date of birth?",
                    "{Sorry to hear that|That sounds annoying}. To {verify your identity|confirm who you are}, could "
                    "you give me your phone number, or your name and date of birth?",
                    "{Sure|Okay}! Let me {find|pull up} your account first: the phone number, or your name and date "
                    "of birth?")

    # -- helpers ------------------------------------------------------------------------------------------------
    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer = self.db.get("customers", customer_id)
        if customer is None:
            raise ToolError(f"customer {customer_id} not found")
        return customer

    def _line(self, line_id: str) -> dict[str, Any]:
        line = self.db.get("lines", line_id)
        if line is None:
            raise ToolError(f"line {line_id} not found")
        return line

    def _bill(self, bill_id: str) -> dict[str, Any]:
        bill = self.db.get("bills", bill_id)
        if bill is None:
            raise ToolError(f"bill {bill_id} not found")
        return bill

    def _method(self, customer: dict[str, Any], payment_method_id: str) -> dict[str, Any]:
        method = customer["payment_methods"].get(payment_method_id)
        if method is None:
            raise ToolError(f"payment method {payment_method_id} not found for this customer")
        return method

    def _charge(self, line: dict[str, Any], amount: float, what: str) -> dict[str, Any]:
        """A one-time charge, billed on the customer's next bill."""
        charges = self.db.get("charges", line["customer_id"]) or {"customer_id": line["customer_id"], "items": []}
        charges["items"].append({"line_id": line["line_id"], "what": what, "amount": _money(amount)})
        self.db.put("charges", line["customer_id"], charges)
        return charges

    # -- the phone in the user's hand ---------------------------------------------------------------------------
    def _phone(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(device, its line, the line's plan) of the user running a user-side tool."""
        customer = self._customer(self.holder or "")
        device = self.db.get("devices", customer["phone_in_hand"])
        line = self.db.get("lines", self.db.get("phones", customer["phone_in_hand"])["line_id"])
        return device, line, PLANS[line["plan_id"]]

    def _set(self, device: dict[str, Any], **changes: Any) -> dict[str, Any]:
        device.update(changes)
        self.db.put("devices", device["phone_number"], device)
        return device

    # -- assistant: read tools ----------------------------------------------------------------------------------
    @tool(produces=("customer_id",))
    def find_customer_by_phone(
        self, phone_number: Annotated[str, Param("A phone number on the account, such as '512-555-0134'.", "phone")]
    ) -> str:
        """Find a customer's id by one of their phone numbers; this authenticates the customer."""
        digits = "".join(c for c in phone_number if c.isdigit())
        hit = self.db.get("phones", f"{digits[-10:-7]}-{digits[-7:-4]}-{digits[-4:]}" if len(digits) >= 10 else "")
        if hit is None:
            raise ToolError("no customer with that phone number")
        return hit["customer_id"]

    @tool(produces=("customer_id",))
    def find_customer_by_name_dob(
        self,
        first_name: Annotated[str, Param("First name.", "name")],
        last_name: Annotated[str, Param("Last name.", "name")],
        date_of_birth: Annotated[str, Param("Date of birth, YYYY-MM-DD.", "dob")],
    ) -> str:
        """Find a customer's id by full name and date of birth; this authenticates the customer."""
        key = self.db.find("customers", name_dob, (first_name.strip().lower(), last_name.strip().lower(),
                                              date_of_birth.strip()))
        if key is not None:
            return key
        raise ToolError("no customer with that name and date of birth")

    @tool(produces=("line_id", "payment_method_id"))
    def get_customer_details(self, customer_id: CustomerId) -> dict[str, Any]:
        """A customer's profile: name, email, payment methods, line ids and bill ids."""
        c = self._customer(customer_id)
        return {k: v for k, v in c.items() if k != "phone_in_hand"}

    @tool(produces=("line_status", "plan_id"))
    def get_line_details(self, line_id: LineId) -> dict[str, Any]:
        """A line: phone number, status (and why it is suspended), plan, data used this month, data added,
        whether roaming is enabled, and when its contract ends."""
        line = self._line(line_id)
        plan = PLANS[line["plan_id"]]
        return {**line, "plan_data_gb": plan["data_gb"],
                "data_remaining_gb": _money(max(0.0, plan["data_gb"] + line["data_refueled_gb"]
                                                - line["data_used_gb"]))}

    @tool(produces=("bill_id",))
    def get_bills(self, customer_id: CustomerId) -> list[dict[str, Any]]:
        """A customer's bills, newest last: period, amount, due date and status (paid, issued, overdue)."""
        customer = self._customer(customer_id)
        return [self._bill(b) for b in customer["bills"]]

    @tool(produces=("plan_id",))
    def list_plans(self) -> list[dict[str, Any]]:
        """Every plan: data allowance, monthly price, price per extra GB, daily roaming fee."""
        return [p for _, p in sorted(self.db.scan("plans"))]

    @tool()
    def transfer_to_human_agent(
        self, summary: Annotated[str, Param("A short summary of the customer's issue.")]
    ) -> str:
        """Hand the conversation to a human agent when the request is outside the policy."""
        return "Transfer successful"

    # -- assistant: write tools ---------------------------------------------------------------------------------
    @tool(writes=True)
    def pay_bill(self, bill_id: Annotated[str, Param("The bill id, such as 'B12345'.", "bill_id")],
                 payment_method_id: PaymentId) -> dict[str, Any]:
        """Pay an issued or overdue bill in full with one of the customer's payment methods."""
        bill = self._bill(bill_id)
        if bill["status"] == "paid":
            raise ToolError(f"bill {bill_id} is already paid")
        self._method(self._customer(bill["customer_id"]), payment_method_id)
        bill.update(status="paid", paid_with=payment_method_id)
        self.db.put("bills", bill_id, bill)
        return {"bill_id": bill_id, "status": "paid", "amount": bill["amount"]}

    @tool(writes=True)
    def resume_line(self, line_id: LineId) -> dict[str, Any]:
        """Lift a line's suspension. The phone gets service back only after it is restarted. The policy says
        when a suspension may be lifted; this tool does not check it."""
        line = self._line(line_id)
        if line["status"] != "suspended":
            raise ToolError(f"line {line_id} is {line['status']}, not suspended")
        line.update(status="active", suspension_reason=None)
        self.db.put("lines", line_id, line)
        return {"line_id": line_id, "status": "active", "note": "the customer must restart the phone"}

    @tool(writes=True)
    def suspend_line(self, line_id: LineId, reason: Annotated[Literal["lost or stolen", "customer request"],
                                                              Param("Why the line is suspended.")]) -> dict[str, Any]:
        """Suspend a line at the customer's request (a lost or stolen phone)."""
        line = self._line(line_id)
        if line["status"] != "active":
            raise ToolError(f"line {line_id} is {line['status']}")
        line.update(status="suspended", suspension_reason=reason)
        self.db.put("lines", line_id, line)
        return {"line_id": line_id, "status": "suspended", "reason": reason}

    @tool(writes=True)
    def enable_roaming(self, line_id: LineId) -> dict[str, Any]:
        """Allow a line to use networks abroad; the plan's daily roaming fee applies on days it is used."""
        line = self._line(line_id)
        if line["roaming_enabled"]:
            raise ToolError(f"roaming is already enabled on line {line_id}")
        line["roaming_enabled"] = True
        self.db.put("lines", line_id, line)
        return {"line_id": line_id, "roaming_enabled": True,
                "daily_fee": PLANS[line["plan_id"]]["roaming_daily_fee"]}

    @tool(writes=True)
    def refuel_data(self, line_id: LineId,
                    gb: Annotated[float, Param("Extra data in GB for this month (0.5 to 5).")]) -> dict[str, Any]:
        """Add data to a line for the rest of the month, charged at the plan's price per GB."""
        line = self._line(line_id)
        if not 0.5 <= gb <= 5:
            raise ToolError("gb must be between 0.5 and 5")
        if line["status"] != "active":
            raise ToolError(f"line {line_id} is {line['status']}")
        price = _money(gb * PLANS[line["plan_id"]]["refuel_price_per_gb"])
        line["data_refueled_gb"] = _money(line["data_refueled_gb"] + gb)
        self.db.put("lines", line_id, line)
        self._charge(line, price, f"{gb:g} GB data refuel")
        return {"line_id": line_id, "added_gb": gb, "charge": price}

    @tool(writes=True)
    def change_plan(self, line_id: LineId,
                    plan_id: Annotated[str, Param("The new plan's id, such as 'max_20'.", "plan_id")]) -> dict[str, Any]:
        """Move a line to another plan from the next billing day."""
        line = self._line(line_id)
        if plan_id not in PLANS:
            raise ToolError(f"no plan {plan_id}")
        if line["plan_id"] == plan_id:
            raise ToolError(f"line {line_id} is already on {plan_id}")
        line["plan_id"] = plan_id
        self.db.put("lines", line_id, line)
        return {"line_id": line_id, "plan_id": plan_id, "monthly_price": PLANS[plan_id]["monthly_price"],
                "starts": (TODAY.replace(day=1).replace(month=TODAY.month % 12 + 1)).isoformat()}

    # -- the user's phone: checks -------------------------------------------------------------------------------
    @user_tool(needs=("line_status",))
    def check_status_bar(self) -> dict[str, Any]:
        """What the status bar at the top of your screen shows: airplane icon, signal bars, network, data."""
        return status_bar(self._phone()[0])

    @user_tool(needs=("line_status",))
    def check_network_status(self) -> dict[str, Any]:
        """Settings > Network: airplane mode, signal, network type, mobile data, data roaming, data saver, VPN, and
        whether you are abroad."""
        device, _line, _plan = self._phone()
        bar = status_bar(device)
        return {**{k: bar[k] for k in ("airplane_mode", "signal", "network")}, "mobile_data": device["mobile_data"],
                "data_roaming": device["data_roaming"], "data_saver": device["data_saver"], "vpn": device["vpn"],
                "preferred_network": NETWORK_LABEL[device["network_mode"]], "abroad": device["abroad"]}

    @user_tool(needs=("line_status",))
    def check_sim_status(self) -> dict[str, Any]:
        """Whether your SIM card is detected and working."""
        return {"sim": self._phone()[0]["sim"]}

    @user_tool(needs=("line_status",))
    def run_speed_test(self) -> dict[str, Any]:
        """Measure your mobile data connection: no connection, or the download speed and its quality."""
        return speed(*self._phone())

    @user_tool(needs=("line_status",))
    def check_apn_settings(self) -> dict[str, Any]:
        """Settings > Mobile network > Access point names: the APN in use and whether it is the carrier default."""
        device = self._phone()[0]
        return {"apn": "carrier default" if device["apn"] == "default" else "custom (edited)",
                "pending_after_restart": device["apn_pending"]}

    @user_tool(needs=("line_status",))
    def can_send_mms(self) -> dict[str, Any]:
        """Try sending a picture message: whether it goes through."""
        problem = mms_blocker(*self._phone())
        return {"sent": problem is None} | ({"error": "message not sent"} if problem else {})

    @user_tool(needs=("line_status",))
    def check_app_permissions(self, app: Annotated[Literal["messages", "camera"], Param("The app.")]
                              ) -> dict[str, Any]:
        """The permissions an app has."""
        return {"app": app, "permissions": sorted(self._phone()[0]["permissions"].get(app, []))}

    # -- the user's phone: changes ------------------------------------------------------------------------------
    @user_tool(writes=True, needs=("line_status",))
    def toggle_airplane_mode(self) -> dict[str, Any]:
        """Switch Airplane Mode on or off."""
        device = self._phone()[0]
        return {"airplane_mode": self._set(device, airplane_mode=not device["airplane_mode"])["airplane_mode"]}

    @user_tool(writes=True, needs=("line_status",))
    def toggle_mobile_data(self) -> dict[str, Any]:
        """Switch Mobile Data on or off."""
        device = self._phone()[0]
        return {"mobile_data": self._set(device, mobile_data=not device["mobile_data"])["mobile_data"]}

    @user_tool(writes=True, needs=("line_status",))
    def toggle_data_roaming(self) -> dict[str, Any]:
        """Switch Data Roaming on or off."""
        device = self._phone()[0]
        return {"data_roaming": self._set(device, data_roaming=not device["data_roaming"])["data_roaming"]}

    @user_tool(writes=True, needs=("line_status",))
    def toggle_data_saver(self) -> dict[str, Any]:
        """Switch Data Saver on or off."""
        device = self._phone()[0]
        return {"data_saver": self._set(device, data_saver=not device["data_saver"])["data_saver"]}

    @user_tool(writes=True, needs=("line_status",))
    def toggle_wifi_calling(self) -> dict[str, Any]:
        """Switch Wi-Fi Calling on or off."""
        device = self._phone()[0]
        return {"wifi_calling": self._set(device, wifi_calling=not device["wifi_calling"])["wifi_calling"]}

    @user_tool(writes=True, needs=("line_status",))
    def set_network_mode(self, mode: Annotated[Literal["2g", "3g", "4g_5g"], Param("Preferred network type.")]
                         ) -> dict[str, Any]:
        """Settings > Mobile network > Preferred network type."""
        device = self._phone()[0]
        if device["network_mode"] == mode:
            raise ToolError(f"the preferred network type already is {NETWORK_LABEL[mode]}")
        return {"preferred_network": NETWORK_LABEL[self._set(device, network_mode=mode)["network_mode"]]}

    @user_tool(writes=True, needs=("line_status",))
    def reseat_sim_card(self) -> dict[str, Any]:
        """Take the SIM card out and put it back in."""
        device = self._phone()[0]
        return {"sim": self._set(device, sim="active")["sim"]}

    @user_tool(writes=True, needs=("line_status",))
    def reset_apn_settings(self) -> dict[str, Any]:
        """Reset the access point (APN) settings to the carrier default; takes effect after a restart."""
        device = self._phone()[0]
        self._set(device, apn_pending="default")
        return {"apn": "reset to default", "takes_effect": "after restart"}

    @user_tool(writes=True, needs=("line_status",))
    def reboot_device(self) -> dict[str, Any]:
        """Restart the phone: it registers on the network again and applies pending settings."""
        device, line, _plan = self._phone()
        changes: dict[str, Any] = {"registered": line["status"] == "active"}
        if device["apn_pending"]:
            changes.update(apn=device["apn_pending"], apn_pending=None)
        self._set(device, **changes)
        return {"restarted": True, **{k: v for k, v in status_bar(device).items() if k in ("signal", "network")}}

    @user_tool(writes=True, needs=("line_status",))
    def disconnect_vpn(self) -> dict[str, Any]:
        """Disconnect the VPN app's connection."""
        device = self._phone()[0]
        if not device["vpn"]:
            raise ToolError("no VPN is connected")
        return {"vpn": self._set(device, vpn=False)["vpn"]}

    @user_tool(writes=True, needs=("line_status",))
    def grant_app_permission(self, app: Annotated[Literal["messages", "camera"], Param("The app.")],
                             permission: Annotated[Literal["sms", "storage", "camera"], Param("The permission.")]
                             ) -> dict[str, Any]:
        """Give an app a permission (Settings > Apps > permissions)."""
        device = self._phone()[0]
        granted = sorted(set(device["permissions"].get(app, [])) | {permission})
        if granted == sorted(device["permissions"].get(app, [])):
            raise ToolError(f"{app} already has the {permission} permission")
        self._set(device, permissions={**device["permissions"], app: granted})
        return {"app": app, "permissions": granted}

