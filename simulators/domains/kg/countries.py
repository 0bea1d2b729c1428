"""The shipped KG: countries, capitals, currencies, languages, subregions and regions.

Built at run time from the data the ``countryinfo`` package carries (MIT),
so no data file lives in this repository. Currencies and languages are the
ISO 4217 / ISO 639-1 codes that package uses. Relations are nouns so that
generic phrasing reads well: "the capital of A", "A has B as neighbour".
"""

from __future__ import annotations

import re

from simulators.domains.kg.graph import KnowledgeGraph


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def countries_graph() -> KnowledgeGraph:
    from countryinfo import all_countries

    kg = KnowledgeGraph(name="countries")
    kg.identifiers |= {"iso_alpha2", "iso_alpha3", "tld", "demonym"}
    infos = sorted((c.info() for c in all_countries()), key=lambda d: d["name"])
    by_alpha3: dict[str, str] = {}
    for info in infos:
        iso = info.get("ISO") or {}
        alpha3 = iso.get("alpha3")
        cid = f"country:{alpha3 or _slug(info['name'])}"
        if alpha3:
            by_alpha3[alpha3] = cid
        attributes = {}
        if isinstance(info.get("population"), int) and info["population"] > 0:
            attributes["population"] = info["population"]
        if isinstance(info.get("area"), int | float) and info["area"] > 0:
            attributes["area_km2"] = info["area"]
        if info.get("callingCodes") and info["callingCodes"][0]:
            attributes["calling_code"] = "+" + info["callingCodes"][0]
        if info.get("tld") and info["tld"][0]:
            attributes["tld"] = info["tld"][0]
        if info.get("demonym"):
            attributes["demonym"] = info["demonym"]
        if alpha3:
            attributes["iso_alpha3"] = alpha3
        if iso.get("alpha2"):
            attributes["iso_alpha2"] = iso["alpha2"]
        aliases = [a for a in info.get("altSpellings", []) if len(a) > 3]
        aliases += [info.get("nativeName") or ""] + sorted(set((info.get("translations") or {}).values()))
        kg.add_entity(cid, name=info["name"], type="country", aliases=[a for a in aliases if a], **attributes)
        capitals = info.get("capital") or []
        for capital in [capitals] if isinstance(capitals, str) else capitals:
            city = f"city:{_slug(capital)}:{alpha3 or _slug(info['name'])}"
            kg.add_entity(city, name=capital, type="city")
            kg.add_edge(cid, "capital", city)
        for code in info.get("currencies") or []:
            kg.add_entity(f"currency:{code}", name=code, type="currency")
            kg.add_edge(cid, "currency", f"currency:{code}")
        for code in info.get("languages") or []:
            kg.add_entity(f"language:{code}", name=code, type="language")
            kg.add_edge(cid, "official language", f"language:{code}")
        region, subregion = info.get("region"), info.get("subregion")
        if subregion:
            sid = f"subregion:{_slug(subregion)}"
            kg.add_entity(sid, name=subregion, type="subregion")
            kg.add_edge(cid, "subregion", sid)
            if region:
                kg.add_entity(f"region:{_slug(region)}", name=region, type="region")
                if not kg.linked(sid, "region", "out", f"region:{_slug(region)}"):
                    kg.add_edge(sid, "region", f"region:{_slug(region)}")
    for info in infos:
        alpha3 = (info.get("ISO") or {}).get("alpha3")
        for other in info.get("borders") or []:
            if alpha3 in by_alpha3 and other in by_alpha3 and other != alpha3:
                kg.add_edge(by_alpha3[alpha3], "neighbour", by_alpha3[other])
    return kg
