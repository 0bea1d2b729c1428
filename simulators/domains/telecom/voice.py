"""How the phone's actions are put into words: the assistant's instructions, the user's reading of them,
and what the user says they saw.

Every instruction the assistant can give is built from ``STEPS``; ``parse``
finds actions in text by a verb-and-object pattern per tool, in the order
they are mentioned, so the scripted user does exactly what it was told (a
wrong instruction makes a wrong phone). The module's test checks that every
phrasing parses back to its actions and that no report or diagnosis parses
as an instruction.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from schemas import Action
from simulators.intents import DeviceVoice
from simulators.phrasing import expand, fragment, pick, pick_fragment

_MODE_WORDS = {"4g_5g": "4G/5G", "3g": "3G", "2g": "2G"}
_MODE_OF = {"4g/5g": "4g_5g", "5g": "4g_5g", "3g": "3g", "2g": "2g"}

# tool -> (instruction templates, pattern that recognizes them)
STEPS: dict[str, tuple[tuple[str, ...], str]] = {
    "check_status_bar": (("{look at|check|glance at} the status bar at the top of your screen",
                          "{check|look at} the status bar{ at the top|}"),
                         r"\b(look at|check|glance at)\b the status bar"),
    "check_network_status": (("open Settings > Network and {check|read me} the network status",
                              "{check|look at} the network status in Settings"),
                             r"\b(check|read me|look at)\b the network status"),
    "check_sim_status": (("{check|look at} the SIM status{ in Settings|}", "{check|see} whether your SIM card is "
                          "detected"), r"\b(check|look at) the SIM status|\b(check|see) whether your SIM card"),
    "run_speed_test": (("run a speed test", "{do|run} a quick speed test{ on mobile data|}"),
                       r"\b(run|do) a (quick )?speed test"),
    "check_apn_settings": (("{check|look at} the APN settings under Settings > Mobile network > Access point names",
                            "{check|look at} your APN settings"), r"\b(check|look at) (the|your) APN settings"),
    "can_send_mms": (("try sending a picture message{ to anyone|}", "{send|try to send} a photo by text"),
                     r"\btry sending a picture message|\b(send|try to send) a photo by text"),
    "check_app_permissions": (("{check|look at} which permissions the Messages app has",
                               "{open|look at} the Messages app's permissions"),
                              r"\b(check|look at) which permissions the Messages app|\b(open|look at) the Messages "
                              r"app's permissions"),
    "toggle_airplane_mode": (("{turn|switch} Airplane Mode {off|on}", "toggle Airplane Mode"),
                             r"\b(turn|switch|toggle) Airplane Mode"),
    "toggle_mobile_data": (("{turn|switch} Mobile Data {on|off}", "toggle Mobile Data{ in Settings|}"),
                           r"\b(turn|switch|toggle) Mobile Data"),
    "toggle_data_roaming": (("{turn|switch} Data Roaming {on|off}", "toggle Data Roaming"),
                            r"\b(turn|switch|toggle) Data Roaming"),
    "toggle_data_saver": (("{turn|switch} Data Saver {off|on}", "toggle Data Saver"),
                          r"\b(turn|switch|toggle) Data Saver"),
    "toggle_wifi_calling": (("{turn|switch} Wi-Fi Calling {off|on}", "toggle Wi-Fi Calling"),
                            r"\b(turn|switch|toggle) Wi-Fi Calling"),
    "set_network_mode": (("set the preferred network type to <mode>", "change the preferred network {type |}to "
                          "<mode>"), r"\b(set|change) the preferred network (type )?to (4G/5G|5G|3G|2G)"),
    "reseat_sim_card": (("take the SIM card out and put it back in", "{remove|pop out} the SIM card and reinsert it"),
                        r"\btake the SIM card out|\b(remove|pop out) the SIM card"),
    "reset_apn_settings": (("reset the APN settings to default", "{tap|use} Reset to default in the APN settings"),
                           r"\breset the APN settings|\b(tap|use) Reset to default"),
    "reboot_device": (("restart your phone", "{reboot|restart} the phone{ completely|}"),
                      r"\brestart your phone|\b(reboot|restart) the phone"),
    "disconnect_vpn": (("disconnect the VPN", "{turn off|disconnect} your VPN{ app|}"),
                       r"\bdisconnect the VPN|\b(turn off|disconnect) your VPN"),
    "grant_app_permission": (("allow the Messages app access to <perm>", "give the Messages app the <perm> "
                              "permission"), r"\b(allow|give) the Messages app (access to |the )(storage|sms|SMS)"),
}
_PATTERNS = {name: re.compile(pattern, re.I) for name, (_, pattern) in STEPS.items()}

# Why a fix is asked for: what the assistant makes of what the user reported.
WHY = {
    "toggle_airplane_mode": ("That airplane icon means Airplane Mode is on, which cuts the cellular radio.",
                             "Airplane Mode is on, so the phone isn't connecting to the network at all."),
    "reseat_sim_card": ("The phone isn't detecting the SIM card.", "It looks like the SIM isn't being read."),
    "toggle_mobile_data": ("Mobile Data is switched off on the phone.", "Your data switch is off, that explains it."),
    "toggle_data_roaming": ("You're abroad and Data Roaming is off on the phone.",
                            "Since you're abroad, the phone needs Data Roaming on."),
    "toggle_data_saver": ("Data Saver is on, and it throttles your connection.",
                          "Data Saver being on would explain the slow speeds."),
    "toggle_wifi_calling": ("Wi-Fi Calling can block picture messages on our network.",
                            "With Wi-Fi Calling on, picture messages often fail."),
    "set_network_mode": ("Your phone is set to an old network type, which is very slow.",
                         "The preferred network type is set too low."),
    "reset_apn_settings": ("The APN settings have been edited, which breaks mobile data.",
                           "Those aren't our default APN settings."),
    "disconnect_vpn": ("The VPN is slowing everything down.", "A VPN that's connected can make data crawl."),
    "grant_app_permission": ("The Messages app is missing a permission it needs for pictures.",
                             "Messages can't attach pictures without that permission."),
    "reboot_device": ("Now the phone needs to reconnect to the network.", "The phone has to register again."),
}


class TelecomVoice(DeviceVoice):
    def step(self, action: Action, rng: random.Random) -> str:
        templates, _ = STEPS[action.name]
        return fragment(rng.choice(templates), rng, mode=_MODE_WORDS.get(str(action.arguments.get("mode")), "4G/5G"),
                        perm=str(action.arguments.get("permission", "storage")))

    def guide(self, actions: list[Action], rng: random.Random, messages: list[Any]) -> str:
        steps = [self.step(a, rng) for a in actions]
        chain = steps[0] if len(steps) == 1 else ", then ".join(steps[:-1]) + ", and then " + steps[-1]
        fix = next((a.name for a in actions if a.name in WHY), None)
        if fix is None:  # a diagnosis: the assistant wants to see before it advises
            lead = pick(rng, "", "{Your line looks fine on our side|I see no problem on the account side}.",
                        "{Let's|Let me} {see|check} what the phone {says|shows}.", "Thanks.")
            ask = pick(rng, "Could you <chain> and tell me what you see?", "Please <chain>, and let me know what it "
                       "{shows|says}.", "Can you <chain>? {Tell me|Let me know} what {comes up|you see}.",
                       chain=chain)
        else:
            lead = expand(rng.choice(WHY[fix]), rng)
            ask = pick(rng, "Please <chain>{, and tell me what you see| and let me know how it looks}.",
                       "Could you <chain>?", "Let's fix it: <chain>.", chain=chain)
        return " ".join(p for p in (lead, ask) if p)

    def parse(self, text: str) -> list[Action]:
        found: list[tuple[int, Action]] = []
        for name, pattern in _PATTERNS.items():
            for m in pattern.finditer(text):
                found.append((m.start(), self._action(name, m)))
        return [a for _, a in sorted(found, key=lambda f: f[0])]

    @staticmethod
    def _action(name: str, m: re.Match) -> Action:
        args: dict[str, Any] = {}
        if name == "set_network_mode":
            args = {"mode": _MODE_OF[m.group(3).lower()]}
        elif name == "grant_app_permission":
            args = {"app": "messages", "permission": m.group(3).lower()}
        elif name == "check_app_permissions":
            args = {"app": "messages"}
        return Action(name=name, arguments=args, actor="user")

    def decoy(self, action: Action) -> Action | None:
        wrong = {"toggle_airplane_mode": "toggle_mobile_data", "toggle_mobile_data": "toggle_data_saver",
                 "toggle_data_roaming": "toggle_mobile_data", "toggle_data_saver": "toggle_mobile_data",
                 "toggle_wifi_calling": "toggle_airplane_mode", "set_network_mode": "toggle_data_saver",
                 "reseat_sim_card": "toggle_airplane_mode", "reset_apn_settings": "toggle_data_saver",
                 "disconnect_vpn": "toggle_data_saver", "grant_app_permission": "toggle_wifi_calling",
                 "reboot_device": "toggle_airplane_mode"}.get(action.name)
        return Action(name=wrong, arguments={}, actor="user") if wrong else None

    def report(self, action: Action, result: str, rng: random.Random) -> str:
        if result.startswith("Error: "):
            return pick(rng, "I tried, but it says: <e>.", "{Hmm|Huh}, it won't let me: <e>.", e=result[7:].rstrip("."))
        data = json.loads(result)
        return _REPORTS.get(action.name, _generic)(data, rng)


def _onoff(value: bool) -> str:
    return "on" if value else "off"


def _status_bar(d: dict[str, Any], rng: random.Random) -> str:
    battery = pick_fragment(rng, "", "", "battery's at <b>%", "<b>% battery", "the battery says <b>%",
                            "{and|plus} <b>% charge", b=str(d["battery_percent"]))
    if d["airplane_mode"]:
        core = pick_fragment(rng, "I see a little {airplane|plane} icon and no bars", "there's an {airplane|aeroplane} "
                             "symbol, no signal", "just {an|a tiny} airplane icon {at the top|in the corner}",
                             "{there's|I can see} a plane {icon|symbol} {where the bars usually are|up top}")
    elif d["signal"] == "no signal":
        core = pick_fragment(rng, "no bars at all, it says no signal", "it {shows|says} no signal{ at all|}",
                             "zero bars, no service", "{nothing|empty} where the bars should be",
                             "{an empty|a crossed-out} signal icon")
    else:
        core = pick_fragment(rng, "<s> and <n>", "I've got <s>, <n>", "it shows <s> with <n>",
                             "{full|strong} signal, <s>, and it says <n>", "<n> {at the top|in the corner}, <s>",
                             s=d["signal"], n=d["network"])
    return expand("<core>{, |. }<battery>.", rng, core=core, battery=battery) if battery else expand("<core>.", rng,
                                                                                                    core=core)


def _network(d: dict[str, Any], rng: random.Random) -> str:
    odd = []
    if d["airplane_mode"]:
        odd.append("airplane mode is on")
    if not d["mobile_data"]:
        odd.append("mobile data is off")
    if d["abroad"] and not d["data_roaming"]:
        odd.append("data roaming is off")
    if d["data_saver"]:
        odd.append("data saver is on")
    if d["vpn"]:
        odd.append("VPN says connected")
    if d["preferred_network"] in ("2G", "3G"):
        odd.append(f"preferred network is {d['preferred_network']}")
    usual = [f"mobile data {_onoff(d['mobile_data'])}", f"data roaming {_onoff(d['data_roaming'])}",
             f"signal {d['signal']}"] + (["it says I'm roaming abroad"] if d["abroad"] else [])
    rng.shuffle(usual)
    listed = odd + usual[:rng.randint(1, 2)]
    return expand("{It says|It shows|Okay, it says|I see|The screen says|Under Network it says}: <items>.", rng,
                  items=", ".join(listed))


def _speed(d: dict[str, Any], rng: random.Random) -> str:
    if d.get("result") == "no connection":
        return pick(rng, "It says no connection.", "The speed test fails, no connection.", "Nothing, it can't connect.",
                    "{It just spins|It times out} and {then |}says no connection.", "Error: no connection.")
    return pick(rng, "<m> Mbps download, it says <q>.", "It says <q>, <m> Mbps.", "Download is <m> Mbps (<q>, it says).",
                "{Got|I get} <m> Mbps{ down|}{,| —} rated <q>.", "{The result is|Result:} <q>, <m> Mbps.",
                "{It finished|Done}: <m> Mbps, which it calls <q>.", m=str(d["download_mbps"]), q=d["quality"])


_REPORTS = {
    "check_status_bar": _status_bar,
    "check_network_status": _network,
    "check_sim_status": lambda d, rng: pick(rng, "It says SIM <s>.", "SIM status: <s>.", s=d["sim"]),
    "run_speed_test": _speed,
    "check_apn_settings": lambda d, rng: pick(rng, "It says <a>.", "APN: <a>.", a=d["apn"]),
    "can_send_mms": lambda d, rng: pick(rng, "It went through this time!", "Sent, it worked.") if d["sent"] else
    pick(rng, "It failed again: message not sent.", "No, it says message not sent."),
    "check_app_permissions": lambda d, rng: pick(rng, "Messages has: <p>.", "It only lists <p>.",
                                                 p=", ".join(d["permissions"]) or "nothing"),
    "toggle_airplane_mode": lambda d, rng: pick(rng, "Airplane mode is <v> now.", "Switched it <v>.",
                                                v=_onoff(d["airplane_mode"])),
    "toggle_mobile_data": lambda d, rng: pick(rng, "Mobile data is <v> now.", "Turned mobile data <v>.",
                                              v=_onoff(d["mobile_data"])),
    "toggle_data_roaming": lambda d, rng: pick(rng, "Data roaming is <v>.", "Roaming switched <v>.",
                                               v=_onoff(d["data_roaming"])),
    "toggle_data_saver": lambda d, rng: pick(rng, "Data saver is <v>.", "Turned data saver <v>.",
                                             v=_onoff(d["data_saver"])),
    "toggle_wifi_calling": lambda d, rng: pick(rng, "Wi-Fi calling is <v>.", "Switched Wi-Fi calling <v>.",
                                               v=_onoff(d["wifi_calling"])),
    "set_network_mode": lambda d, rng: pick(rng, "Set it to <n>.", "Preferred network is <n> now.",
                                            n=d["preferred_network"]),
    "reseat_sim_card": lambda d, rng: pick(rng, "I took the SIM out and put it back.", "SIM reinserted."),
    "reset_apn_settings": lambda d, rng: pick(rng, "Reset them; it says it takes effect after a restart.",
                                              "APN reset to default, pending a restart."),
    "reboot_device": lambda d, rng: pick(rng, "Restarted. It shows <s>.", "Phone's back on, <s>.",
                                         s=d["signal"] + (f", {d['network']}" if d.get("network") else "")),
    "disconnect_vpn": lambda d, rng: pick(rng, "VPN's disconnected.", "Disconnected the VPN."),
    "grant_app_permission": lambda d, rng: pick(rng, "Done, Messages now has <p>.", "Allowed it: <p>.",
                                                p=", ".join(d["permissions"])),
}


def _generic(d: dict[str, Any], rng: random.Random) -> str:
    return "Done."
