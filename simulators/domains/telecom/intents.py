"""What a carrier's customer can want: most of it a symptom on the phone in their hand.

A device intent grounds in a customer whose phone (or line) has exactly its
fault, and its gold chain crosses sides: the assistant looks the line up,
the user checks the phone (``before``), the user changes a setting (the
target), the user checks again (``after``). Account intents are the store's
shape; two need both sides (a suspension lifted, then the phone restarted).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from schemas import Action
from simulators.domains.telecom.data import PLANS
from simulators.domains.telecom.device import data_blocker, has_service, mms_blocker
from simulators.domains.telecom.voice import TelecomVoice
from simulators.environment import Environment
from simulators.intents import Grounding, Intent
from simulators.phrasing import PLACES, expand, pick, pick_fragment, say_card, someone, when

VOICE = TelecomVoice()
CONFIRM_LEAD = "{To confirm|Just to confirm|Let me confirm|Before I do that|So, to be clear}:"
CONFIRM_ASK = "{Shall I proceed|Should I go ahead|Do you want me to go ahead|Would you like me to proceed" \
              "|Okay to proceed|Can I go ahead}?"
SINCE = ("{It started|This started|It's been like this since|It's been happening since|I noticed it} {this morning|"
         "yesterday|last night|after I got back from a trip|a couple of days ago|after an update|over the weekend|"
         "when I woke up|after lunch|on my commute}.",
         "{I haven't changed anything|I don't think I changed anything|I might have pressed something by accident|"
         "{My kid|Someone} was playing with the phone|I was fiddling with the settings {earlier|yesterday}|Nothing "
         "changed that I know of}.",
         "{Wi-Fi works fine|It works on Wi-Fi|At home on Wi-Fi it's okay|Wi-Fi is fine though}{, just not outside|"
         "|, it's only away from home}.")


FAULT = "fault"
"""The exclusive group of the intents that need the one thing wrong a customer has (data.py gives each one)."""


def money(x: float) -> str:
    return f"${abs(x):.2f}"


def U(name: str, **arguments: Any) -> Action:  # noqa: N802 (reads as a constructor)
    """A user-side action (on the phone)."""
    return Action(name=name, arguments=arguments, actor="user")


def _phone(env: Environment, customer: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    phone = customer["phone_in_hand"]
    line = env.db.get("lines", env.db.get("phones", phone)["line_id"])
    return env.db.get("devices", phone), line, PLANS[line["plan_id"]]


def say_method(rng: random.Random, method: dict[str, Any]) -> str:
    if method["kind"] == "bank_account":
        return pick_fragment(rng, "bank account ending <l4>", "checking account ending in <l4>", l4=method["last_four"])
    return say_card(rng, method["brand"], method["last_four"])


class DeviceFix(Intent):
    """A symptom whose one cause is a setting on the phone: diagnose, fix, check (all by the user)."""

    fault: ClassVar[str]
    exclusive = FAULT
    diagnose: ClassVar[tuple[Action, ...]]
    fix: ClassVar[Action]
    verify: ClassVar[tuple[Action, ...]]
    openings: ClassVar[tuple[str, ...]]
    symptom: ClassVar[str]

    @property
    def target_tool(self) -> str:  # type: ignore[override]
        return self.fix.name

    def has_fault(self, device: dict[str, Any], line: dict[str, Any], plan: dict[str, Any]) -> bool:
        raise NotImplementedError

    def ground(self, env, rng, customer):
        device, line, plan = _phone(env, customer)
        if line["status"] != "active" or not self.has_fault(device, line, plan):
            return None
        return Grounding(
            target=self.fix, bindings={"line_id": [line["line_id"]]},
            before=list(self.diagnose), after=list(self.verify),
            goal=f"{self.symptom} on your phone ({line['phone_number']}). You do not know why. Do what the agent "
                 "asks on your phone and say what you see; you want it working again.",
            opening=pick(rng, *self.openings),
            details=" ".join(expand(t, rng) for t in rng.sample(SINCE, rng.randint(1, 2))),
            known_info={"symptom": self.symptom.lower()}, unknown_info=["what is wrong with the phone"])

    def ask(self, rng):
        return pick(rng, "{Sorry about that|That's annoying, sorry}. When did it start, and have you changed anything "
                    "on the phone?", "Let's figure it out. {Since when|How long} has it been like this?",
                    "Thanks. Could you tell me a bit more: when did it start, and did anything change?")

    def story(self, rng):
        return pick(rng, "I need my phone for work{ tomorrow|}.", "<Someone> has been trying to reach me.",
                    "I'm {travelling|away} in <place>{ this week|}.", "I already tried turning it off and on.",
                    "I have a {call|meeting|flight} at <h>{ pm| am|} and need it working.",
                    "<Someone> {texted|messaged} me <when> and I couldn't {see|open} it.",
                    "I've had this phone for <n> years and never had this.", someone=someone(rng),
                    place=rng.choice(PLACES), h=str(rng.randint(1, 11)), when=when(rng), n=str(rng.randint(2, 6)))

    def report(self, target, outputs, rng):
        return pick(rng, "{Great|Perfect|Excellent}, {that's|it's} working again{ now|}.",
                    "{Good|Great} — that confirms it's fixed.", "That looks right now; the problem is solved.",
                    "{Brilliant|Wonderful}, you're all set.")


class NoServiceAirplane(DeviceFix):
    name = "no_service_airplane"
    fault = "airplane_on"
    diagnose = (U("check_status_bar"),)
    fix = U("toggle_airplane_mode")
    verify = (U("check_status_bar"),)
    symptom = "You have no signal at all"
    openings = ("My phone has no signal{ at all|}.", "I can't make calls, {there's no service|no bars}.",
                "{My phone|The phone} says no service.", "I've had no {signal|reception} since {this morning|today}.")

    def has_fault(self, device, line, plan):
        return device["airplane_mode"]


class NoServiceSim(DeviceFix):
    name = "no_service_sim"
    fault = "sim_missing"
    diagnose = (U("check_status_bar"), U("check_sim_status"))
    fix = U("reseat_sim_card")
    verify = (U("check_status_bar"),)
    symptom = "Your phone shows no service"
    openings = ("My phone {says|shows} no service.", "I {have|get} no signal on my phone.",
                "{Calls|Texts} aren't working, {no service|no bars}.")

    def has_fault(self, device, line, plan):
        return not device["airplane_mode"] and device["sim"] == "missing"


class MobileDataOff(DeviceFix):
    name = "mobile_data_off"
    fault = "data_off"
    diagnose = (U("check_network_status"),)
    fix = U("toggle_mobile_data")
    verify = (U("run_speed_test"),)
    symptom = "The internet does not work on your phone unless you are on Wi-Fi"
    openings = ("My {internet|data} doesn't work {unless I'm on Wi-Fi|away from Wi-Fi}.",
                "{Apps|Websites} won't load on mobile data.", "I have signal but no internet.")

    def has_fault(self, device, line, plan):
        return has_service(device) and data_blocker(device, line, plan) == "mobile data is off"


class RoamingDevice(DeviceFix):
    name = "roaming_device"
    fault = "roaming_off_abroad"
    diagnose = (U("check_network_status"),)
    fix = U("toggle_data_roaming")
    verify = (U("run_speed_test"),)
    symptom = "You are abroad and mobile data does not work"
    openings = ("I'm abroad and my {data|internet} doesn't work.", "I'm travelling and can't get online {on my "
                "phone|without Wi-Fi}.", "{No|There's no} mobile data since I {landed|arrived} abroad.")

    def has_fault(self, device, line, plan):
        return data_blocker(device, line, plan) == "data roaming is off"


class _Slow(DeviceFix):
    diagnose = (U("check_network_status"),)
    verify = (U("run_speed_test"),)
    symptom = "Mobile data on your phone is painfully slow"
    openings = ("My {data|internet} is {really|painfully|super} slow.", "Everything loads {so slowly|forever} on "
                "mobile data.", "My phone's internet {crawls|is slow} away from Wi-Fi.")


class SlowNetworkMode(_Slow):
    name = "slow_network_mode"
    fault = "network_2g"
    fix = U("set_network_mode", mode="4g_5g")

    def has_fault(self, device, line, plan):
        return data_blocker(device, line, plan) is None and device["network_mode"] in ("2g", "3g")


class SlowDataSaver(_Slow):
    name = "slow_data_saver"
    fault = "data_saver_on"
    fix = U("toggle_data_saver")

    def has_fault(self, device, line, plan):
        return (data_blocker(device, line, plan) is None and device["network_mode"] == "4g_5g" and not device["vpn"]
                and device["data_saver"])


class SlowVpn(_Slow):
    name = "slow_vpn"
    fault = "vpn_on"
    fix = U("disconnect_vpn")

    def has_fault(self, device, line, plan):
        return data_blocker(device, line, plan) is None and device["network_mode"] == "4g_5g" and device["vpn"]


class ApnBroken(DeviceFix):
    name = "apn_broken"
    fault = "apn_broken"
    diagnose = (U("run_speed_test"), U("check_apn_settings"))
    fix = U("reset_apn_settings")
    verify = (U("reboot_device"), U("run_speed_test"))
    symptom = "Mobile data stopped working on your phone (you have signal)"
    openings = ("My mobile data {stopped working|died}, but I have signal.", "I have bars but no internet.",
                "Data {isn't working|won't connect} {since I messed with some settings|for some reason}.")

    def has_fault(self, device, line, plan):
        return data_blocker(device, line, plan) == "the APN settings are wrong"


class _Mms(DeviceFix):
    verify = (U("can_send_mms"),)
    symptom = "You cannot send picture messages"
    openings = ("I can't send {picture|photo} messages.", "{Pictures|Photos} won't send by text.",
                "MMS {isn't working|keeps failing} on my phone.")


class MmsPermission(_Mms):
    name = "mms_permission"
    fault = "mms_permission"
    diagnose = (U("can_send_mms"), U("check_app_permissions", app="messages"))
    fix = U("grant_app_permission", app="messages", permission="storage")

    def has_fault(self, device, line, plan):
        return mms_blocker(device, line, plan) == "the Messages app lacks a permission"


class MmsWifiCalling(_Mms):
    name = "mms_wifi_calling"
    fault = "wifi_calling_mms"
    diagnose = (U("can_send_mms"), U("check_status_bar"))
    fix = U("toggle_wifi_calling")

    def has_fault(self, device, line, plan):
        return mms_blocker(device, line, plan) == "Wi-Fi Calling is on"


def _overdue(env: Environment, customer: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in (env.db.get("bills", x) for x in customer["bills"]) if b["status"] == "overdue"]


def _payable(customer: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return rng.choice(sorted(customer["payment_methods"].values(), key=lambda m: m["id"]))


class SuspendedOverdue(Intent):
    """Both sides in order: pay the overdue bill, resume the line, the user restarts the phone and checks."""

    name = "suspended_overdue"
    exclusive = FAULT
    target_tool = "pay_bill"

    def ground(self, env, rng, customer):
        device, line, plan = _phone(env, customer)
        overdue = _overdue(env, customer)
        if line["status"] != "suspended" or line["suspension_reason"] != "overdue bill" or len(overdue) != 1:
            return None
        bill, method = overdue[0], _payable(customer, rng)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"bill_id": bill["bill_id"],
                                                            "payment_method_id": method["id"]}),
            bindings={"line_id": [line["line_id"]], "bill_id": [bill["bill_id"]]},
            after=[Action(name="resume_line", arguments={"line_id": line["line_id"]}), U("reboot_device"),
                   U("check_status_bar")],
            goal=f"Your phone ({line['phone_number']}) has had no service for a few days. You may have missed a "
                 f"bill; you are happy to pay it with your {say_method(random.Random(0), method)} and want service back.",
            opening=pick(rng, "My phone has {had no service|been cut off} for {days|a few days}.",
                         "{I think|I'm worried} my line {got|was} suspended.", "{Calls|Nothing} work{s|} on my phone "
                         "and I got a message about my account.", "{I got|There was} {a letter|an email} saying "
                         "{my service is on hold|you'd suspend me} and now {I can't call out|there's no service}."),
            details=pick(rng, "I think I missed a payment. {You can|Please} charge my <m>.",
                         "{If it's a bill|If I owe something}, {pay it with|use} my <m>.",
                         "I might be behind on a bill. Put it on my <m>{ please|}.", m=say_method(rng, method)),
            known_info={"payment": say_method(random.Random(0), method)}, unknown_info=["the bill id", "the line id"])

    def story(self, rng):
        return pick(rng, "I was {away|in hospital|moving} and forgot about it.", "My card {expired|changed} recently.",
                    "<Someone> usually handles the bills.", someone=someone(rng))

    def outputs(self, target, result):
        return [money(result["amount"])]

    def ask(self, rng):
        return pick(rng, "I'm sorry about that. Let me check your line. How would you like to pay if a bill is due?",
                    "{Sorry|Apologies} for the trouble. If there's a balance, which payment method should I use?")

    def confirm(self, target, rng):
        if target.name == "resume_line":
            return expand(f"The bill is paid. {CONFIRM_LEAD} I'll lift the suspension on line <l>. {CONFIRM_ASK}", rng,
                          l=target.arguments["line_id"])
        return expand(f"{{I see|There's}} an overdue bill, <b>, and it suspended your line. {CONFIRM_LEAD} I'll pay "
                      f"bill <b> with <m>. {CONFIRM_ASK}", rng, b=target.arguments["bill_id"],
                      m=target.arguments["payment_method_id"])

    def report(self, target, outputs, rng):
        paid = f"The payment of {outputs[0]} went through" if outputs else "The bill is paid"
        return expand(f"{paid}, your line is active again, and the phone is back on the network. {{You're all "
                      "set|Sorry again for the trouble}.", rng)


class SuspendedContract(Intent):
    """A suspension the agent may not lift: read the line, explain, hand over to a human."""

    name = "suspended_contract"
    exclusive = FAULT
    target_tool = "get_line_details"

    def ground(self, env, rng, customer):
        device, line, plan = _phone(env, customer)
        if line["status"] != "suspended" or line["suspension_reason"] != "contract ended":
            return None
        return Grounding(
            target=Action(name=self.target_tool, arguments={"line_id": line["line_id"]}),
            bindings={"line_id": [line["line_id"]]},
            after=[Action(name="transfer_to_human_agent", arguments={
                "summary": f"Line {line['line_id']} suspended: contract ended {line['contract_end']}; customer wants "
                           "service back."})],
            goal=f"Your phone ({line['phone_number']}) has no service. You want it back; if the agent says a human "
                 "must handle it, accept the transfer.",
            opening=pick(rng, "My phone {suddenly|} has no service.", "{My line|The phone} stopped working.",
                         "I can't call anyone, it says no service.", "{Calls|Outgoing calls} {fail|don't go "
                         "through} and {the phone|it} says my line {is|might be} {inactive|suspended}."),
            details=pick(rng, "{It stopped|It's been off} since {last week|a few days ago}.", "I didn't change "
                         "anything, it just stopped."),
            known_info={"symptom": "no service"}, unknown_info=["why the line is suspended"])

    def forbidden(self, target, env):
        return Action(name="resume_line", arguments={"line_id": target.arguments["line_id"]})

    def outputs(self, target, result):
        return [result["contract_end"]]

    def ask(self, rng):
        return pick(rng, "I'm sorry. Since when has it been like this?", "Let me look at your line. When did it stop?")

    def report(self, target, outputs, rng):
        ended = outputs[0] if outputs else "recently"
        return pick(rng, "Your line is suspended because its contract ended on <e>, and only a human agent can renew "
                    "it. I've transferred you; they'll pick it up from here.",
                    "The suspension is because the contract ended on <e>. I can't lift that myself, so I've passed "
                    "you to a human agent.", e=ended)


class RoamingLine(Intent):
    """Abroad with roaming on the phone but not allowed on the line: fix the account, the user checks."""

    name = "roaming_line"
    exclusive = FAULT
    target_tool = "enable_roaming"

    def ground(self, env, rng, customer):
        device, line, plan = _phone(env, customer)
        if data_blocker(device, line, plan) != "roaming is not enabled on the line":
            return None
        place = rng.choice(PLACES)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"line_id": line["line_id"]}),
            bindings={"line_id": [line["line_id"]]}, after=[U("run_speed_test")],
            before=[Action(name="get_line_details", arguments={"line_id": line["line_id"]}), U("check_network_status")],
            goal=f"You are abroad ({place}) and mobile data does not work on your phone ({line['phone_number']}). "
                 "You accept the roaming fee.",
            opening=pick(rng, "I'm abroad and {can't get any data|have no internet}.", "My data {doesn't work|is dead}"
                         " {here|since I arrived} abroad.", "{Just|I} landed {overseas|abroad} and {my phone won't get "
                         "online|I can't load anything}.", "{I'm on holiday|I'm travelling for work} {abroad|overseas} "
                         "and {the maps|my email} won't load without Wi-Fi."),
            details=pick(rng, "I'm in <p>{ for work| on holiday|}. Roaming is on on my phone, I checked.",
                         "{Currently|Right now} in <p>. I {thought|assumed} roaming would just work.",
                         "{We're|I'm} in <p>{ this week|}. {Roaming is switched on|I turned roaming on} in the "
                         "settings{ already|}.", p=place),
            known_info={"where": place}, unknown_info=["whether roaming is enabled on the line"])

    def outputs(self, target, result):
        return [money(result["daily_fee"])]

    def ask(self, rng):
        return pick(rng, "Where are you at the moment?", "Let me check. Where are you travelling?")

    def confirm(self, target, rng):
        return expand(f"Roaming isn't enabled on your line. {CONFIRM_LEAD} I'll enable roaming on line <l>; the "
                      f"plan's daily roaming fee applies on days you use it. {CONFIRM_ASK}", rng,
                      l=target.arguments["line_id"])

    def report(self, target, outputs, rng):
        fee = f" Roaming costs {outputs[0]} per day you use it." if outputs else ""
        return expand(f"{{Great|Good}}, your data works abroad now.{fee}", rng)


class DataExhausted(Intent):
    name = "data_exhausted"
    exclusive = FAULT
    target_tool = "refuel_data"

    def ground(self, env, rng, customer):
        device, line, plan = _phone(env, customer)
        if data_blocker(device, line, plan) != "the data allowance is used up":
            return None
        gb = rng.choice([1.0, 1.0, 1.5, 2.0])
        return Grounding(
            target=Action(name=self.target_tool, arguments={"line_id": line["line_id"], "gb": gb}),
            bindings={"line_id": [line["line_id"]]}, after=[U("run_speed_test")],
            before=[Action(name="get_line_details", arguments={"line_id": line["line_id"]})],
            goal=f"Mobile data stopped working on your phone ({line['phone_number']}). If it is your allowance, "
                 f"you want {gb:g} GB more for this month.",
            opening=pick(rng, "My data {stopped|quit} working{ out of nowhere|}.", "{I think|Maybe} I ran out of data?",
                         "No internet on my phone, {but|and} I have signal.", "{I got a text|The app says} "
                         "{something about|that I hit} my data limit{, I think|}.", "{I've been streaming a lot|My kids "
                         "used my hotspot} and now {nothing loads|the data's gone}."),
            details=pick(rng, "If I'm out of data, {can you add|I'd like} <g> GB.", "{Could you|Can you} top me up with "
                         "<g> GB{ for the month|}?", g=f"{gb:g}"),
            known_info={"extra_data": f"{gb:g} GB"}, unknown_info=["how much data is left"])

    def story(self, rng):
        return pick(rng, "I've been streaming a lot{ lately|}.", "<Someone> used my hotspot all weekend.",
                    someone=someone(rng))

    def outputs(self, target, result):
        return [money(result["charge"])]

    def ask(self, rng):
        return pick(rng, "Let me look at your usage. How much data would you like to add if you're out?",
                    "I'll check your data. If it's used up, how much should I add?")

    def confirm(self, target, rng):
        return expand(f"You've used your whole allowance. {CONFIRM_LEAD} I'll add <g> GB to line <l> at the plan's "
                      f"price per GB. {CONFIRM_ASK}", rng, g=f"{target.arguments['gb']:g}",
                      l=target.arguments["line_id"])

    def report(self, target, outputs, rng):
        charge = f" It's {outputs[0]} on your next bill." if outputs else ""
        return expand(f"{{Done|All set}}, the extra data is on your line and working.{charge}", rng)


class ChangePlan(Intent):
    name = "change_plan"
    target_tool = "change_plan"

    def ground(self, env, rng, customer):
        line = env.db.get("lines", rng.choice(customer["lines"]))
        if line["status"] != "active":
            return None
        bigger = [p for p in PLANS.values() if p["data_gb"] > PLANS[line["plan_id"]]["data_gb"]]
        if not bigger:
            return None
        plan = rng.choice(bigger)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"line_id": line["line_id"], "plan_id": plan["plan_id"]}),
            bindings={"line_id": [line["line_id"]]}, before=[Action(name="list_plans")],
            goal=f"You want the line {line['phone_number']} on the {plan['name']} plan.",
            opening=pick(rng, "I'd like to change my plan.", "{Can|Could} I switch to a plan with more data?",
                         "I want {a bigger|another} data plan.", "{My|The} plan {isn't enough|runs out too fast}"
                         "{ anymore| these days|}, I {keep hitting|always hit} the {data|monthly} limit.", "{I'm "
                         "thinking of upgrading|I'd like to upgrade|I want to move up to a bigger plan}{ on one line|}."),
            details=pick(rng, "For <p>: I'd like the <n> plan.", "The line is <p>. {Move it to|Switch it to} <n>.",
                         "<p>, please put it on <n>.",
                         "{The number|It's the line} <p>; {the <n> plan looks right|I'd go for the <n> plan}.",
                         p=line["phone_number"], n=plan["name"]),
            known_info={"line": line["phone_number"], "plan": plan["name"]}, unknown_info=["the plan id"])

    def outputs(self, target, result):
        return [money(result["monthly_price"])]

    def ask(self, rng):
        return pick(rng, "Which line, and which plan would you like?", "{Sure|Of course}. Which number and which "
                    "plan?")

    def confirm(self, target, rng):
        return expand(f"{CONFIRM_LEAD} line <l> moves to plan <p> from the next billing day. {CONFIRM_ASK}", rng,
                      l=target.arguments["line_id"], p=target.arguments["plan_id"])

    def report(self, target, outputs, rng):
        price = f" It's {outputs[0]} a month." if outputs else ""
        return expand(f"{{Done|All set}}: the plan changes on your next billing day.{price}", rng)


class PayBill(Intent):
    name = "pay_bill"
    target_tool = "pay_bill"

    def ground(self, env, rng, customer):
        issued = [b for b in (env.db.get("bills", x) for x in customer["bills"]) if b["status"] == "issued"]
        if not issued or _overdue(env, customer):
            return None
        bill, method = issued[-1], _payable(customer, rng)
        return Grounding(
            target=Action(name=self.target_tool, arguments={"bill_id": bill["bill_id"],
                                                            "payment_method_id": method["id"]}),
            bindings={"bill_id": [bill["bill_id"]]}, before=[Action(name="get_bills",
                                                                    arguments={"customer_id": customer["customer_id"]})],
            goal=f"You want to pay your latest bill now, with your {say_method(random.Random(0), method)}.",
            opening=pick(rng, "I'd like to pay my bill.", "{Can|Could} I pay this month's bill{ now|}?",
                         "I want to settle my {latest|current} bill.", "{I got|There's} a bill {in my inbox|on my "
                         "account} and I'd {rather|like to} pay it {now|today|before I forget}.", "{How do I|Can you "
                         "help me} {clear|pay off} what I owe{ this month|}?"),
            details=pick(rng, "{Use|Charge} my <m>, please.", "The latest one. Pay it with my <m>.",
                         "{Put|Take} it {on|from} my <m>{, thanks|}.", "{The newest|The most recent} bill, {with|on} "
                         "my <m>.", m=say_method(rng,
                                                                                                                method)),
            known_info={"payment": say_method(random.Random(0), method)}, unknown_info=["the bill id", "the amount"])

    def outputs(self, target, result):
        return [money(result["amount"])]

    def ask(self, rng):
        return pick(rng, "{Sure|Of course}. How would you like to pay?", "Which payment method should I use?")

    def confirm(self, target, rng):
        return expand(f"{CONFIRM_LEAD} I'll pay bill <b> in full with <m>. {CONFIRM_ASK}", rng,
                      b=target.arguments["bill_id"], m=target.arguments["payment_method_id"])

    def report(self, target, outputs, rng):
        return expand("{Done|Paid|All set}: your bill of <x> is paid{ and your balance is clear|}.", rng,
                      x=outputs[0] if outputs else "this month")


class SuspendLost(Intent):
    """A second line's phone is lost: suspend that line (no phone to act on)."""

    name = "suspend_lost"
    target_tool = "suspend_line"

    def ground(self, env, rng, customer):
        others = [env.db.get("lines", x) for x in customer["lines"][1:]]
        others = [x for x in others if x["status"] == "active"]
        if not others:
            return None
        line = rng.choice(others)
        who = rng.choice(["my son's", "my daughter's", "my partner's", "my mom's", "my second", "the work"])
        return Grounding(
            target=Action(name=self.target_tool, arguments={"line_id": line["line_id"], "reason": "lost or stolen"}),
            bindings={"line_id": [line["line_id"]]},
            goal=f"The phone of another line on your account ({line['phone_number']}, {who} phone) was lost. You want "
                 "that line suspended.",
            opening=pick(rng, "{A phone on my account|One of our phones} {was lost|got stolen}.",
                         "I need to block a lost phone.", "{Someone|My family} {lost|misplaced} a phone {on our plan|"
                         "on my account}{ and we can't find it|}.", "{We think|I'm afraid} one of our phones was "
                         "{stolen|pickpocketed}{ yesterday|}.", "How do I {stop|freeze} a line whose phone {is missing|"
                         "went missing}?"),
            details=pick(rng, "It's <w> phone, <p>. Please suspend it.", "The number is <p> (<w> phone). {Block|Suspend}"
                         " it please.", "{Please|Could you} {suspend|freeze|block} <p>{, it's <w> phone|}{.|?}",
                         "<W> phone is gone: <p>. {Nobody should be able to use it|Stop it working, please}.",
                         w=who, p=line["phone_number"]),
            known_info={"lost_line": line["phone_number"]}, unknown_info=["the line id"])

    def story(self, rng):
        return pick(rng, "{It was left|We left it} on a {bus|train} in <place>.", "I think it was stolen at the gym.",
                    place=rng.choice(PLACES))

    def ask(self, rng):
        return pick(rng, "I'm sorry to hear that. Which number is it?", "Which line is the lost phone on?")

    def confirm(self, target, rng):
        return expand(f"{CONFIRM_LEAD} I'll suspend line <l> as lost or stolen; no calls or data will work on it. "
                      f"{CONFIRM_ASK}", rng, l=target.arguments["line_id"])

    def report(self, target, outputs, rng):
        return expand("{Done|Okay}: line <l> is suspended, so nobody can use it.", rng, l=target.arguments["line_id"])


INTENTS: dict[str, Intent] = {i.name: i for i in (
    NoServiceAirplane(), NoServiceSim(), MobileDataOff(), RoamingDevice(), SlowNetworkMode(), SlowDataSaver(),
    SlowVpn(), ApnBroken(), MmsPermission(), MmsWifiCalling(), SuspendedOverdue(), SuspendedContract(),
    RoamingLine(), DataExhausted(), ChangePlan(), PayBill(), SuspendLost())}
