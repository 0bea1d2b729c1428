"""An independent checker for KG questions: re-solve each stored question from the raw triples.

It shares no code with the generator: it reads the triples file itself (with
the column mapping, id pattern, labels file and relation table the run config
names), keeps adjacency in plain dicts, folds text its own way, and for every
question stored in a dataset's rows recomputes, under the names the question
shows (every entity of a shown name counts, homonyms included):

- whether the answer is unique and is the stored one;
- how many hops it needs: the shortest final part of the chain that, with its
  clues and nothing tying it to what comes before, already leaves one answer;
- leaks: the answer (or an alias) inside any word of the question, or a
  path entity's name shown in it;
- anchors described only by a first letter (or by nothing);
- that each clue it checks is what the question text shows (names, phrases).

    .venv/bin/python bench/kg_check.py --config examples/kg_wn18rr.yaml DATASET_DIR [--path TRIPLES]

Last line: ``kg_check: questions=<n> all_hops=<pct> leaks=<n> non_unique=<n> letter_anchors=<n>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

DELIMITERS = {"tsv": "\t", "csv": ","}


def norm(text: str) -> str:
    text = "".join(c for c in unicodedata.normalize("NFKD", str(text)) if not unicodedata.combining(c)).casefold()
    return " ".join(re.findall(r"[^\W_]+", text))


def shows(text: str, phrase: str, prefix: bool) -> bool:
    if not phrase:
        return False
    return re.search(r"(?<![^\W_])" + re.escape(phrase) + ("" if prefix else r"(?![^\W_])"), text) is not None


def _rows(path: str, fmt: str, header: bool) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter=DELIMITERS[fmt]) if r]
    return rows[1:] if header else rows


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _positions(columns: Any, roles: list[str], header_row: list[str] | None) -> dict[str, int]:
    if columns is None:
        return {role: (header_row.index(role) if header_row else i) for i, role in enumerate(roles)
                if not header_row or role in header_row}
    if isinstance(columns, list):
        return {role: i for i, role in enumerate(columns) if role}
    return {role: (header_row.index(col) if isinstance(col, str) else col) for role, col in columns.items()}


class RawKG:
    """The graph as this checker reads the published files, from the run config's own mapping."""

    def __init__(self, params: dict[str, Any]) -> None:
        fmt = params.get("format") or Path(params["path"]).suffix.lstrip(".")
        header = params.get("header", True) is not False
        raw = _rows(params["path"], fmt, False)
        at = _positions(params.get("columns"), ["head", "relation", "tail"], raw[0] if header else None)
        self.adj: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (entity, relation, out|in) -> entities
        self.entities: set[str] = set()
        self.self_loops = 0
        for row in raw[1:] if header else raw:
            h, r, t = row[at["head"]].strip(), row[at["relation"]].strip(), row[at["tail"]].strip()
            if h == t:
                self.self_loops += 1
                continue
            self.adj[(h, r, "out")].add(t)
            self.adj[(t, r, "in")].add(h)
            self.entities |= {h, t}
        self.name = {e: e for e in self.entities}
        self.type = {e: "entity" for e in self.entities}
        self.aliases: dict[str, list[str]] = defaultdict(list)
        self.attributes: dict[str, dict[str, Any]] = defaultdict(dict)
        named: set[str] = set()
        for source in params.get("entities") or []:
            self._entity_source(source, named)
        self.by_name: dict[str, set[str]] = defaultdict(set)
        for e in self.entities:
            self.by_name[norm(self.name[e])].add(e)
            for a in self.aliases[e]:
                self.by_name[norm(a)].add(e)
        self.typed = len(set(self.type.values())) > 1
        self.phrases: dict[str, tuple[str, str | None]] = {}
        table = params.get("relations")
        if table:
            rows = _rows(table["path"], table.get("format") or Path(table["path"]).suffix.lstrip("."), False)
            head = rows[0] if table.get("header", True) is not False else None
            pos = _positions(table.get("columns"), ["relation", "phrase", "inverse"], head)
            for row in rows[1:] if head else rows:
                inverse = row[pos["inverse"]].strip() if "inverse" in pos and len(row) > pos["inverse"] else ""
                self.phrases[row[pos["relation"]].strip()] = (row[pos["phrase"]].strip(), inverse or None)

    def _entity_source(self, source: dict[str, Any], named: set[str]) -> None:
        if source.get("path"):
            fmt = source.get("format") or Path(source["path"]).suffix.lstrip(".")
            rows = _rows(source["path"], fmt, False)
            head = rows[0] if source.get("header", True) is not False else None
            pos = _positions(source.get("columns") or (None if head else ["id", "name"]), ["id", "name"], head)
            records = [{role: row[i] for role, i in pos.items() if i < len(row)} for row in (rows[1:] if head else rows)]
        else:
            records = [{"id": e} for e in sorted(self.entities)]
        for record in records:
            e = record.get("id", "").strip()
            if e not in self.entities:
                continue
            for role, regex in (source.get("pattern") or {}).items():
                m = re.fullmatch(regex, record.get(role, ""))
                if m:
                    if role != "id":
                        record.pop(role)
                    record.update({k: v for k, v in m.groupdict().items() if v is not None and k != "id"})
            for role, renames in (source.get("values") or {}).items():
                if role in record:
                    record[role] = renames.get(record[role], record[role])
            under = source.get("underscores", True)
            for role in ("name", "alias"):
                if record.get(role) and under:
                    record[role] = record[role].replace("_", " ").strip()
            if record.get("name"):
                if e in named:
                    self.aliases[e].append(record["name"])
                else:
                    named.add(e)
                    self.name[e] = record["name"]
            if record.get("alias"):
                self.aliases[e].append(record["alias"])
            if record.get("type"):
                self.type[e] = record["type"]
            for role, value in record.items():
                if role not in ("id", "name", "alias", "type") and value.strip():
                    self.attributes[e][role] = _number(value.strip()) if source.get("path") else value

    # -- solving ----------------------------------------------------------------------------------------------
    def linked(self, entity: str, relation: str, direction: str) -> set[str]:
        """Neighbours as a reader of the question understands the relation: both ways when it reads the same."""
        found = self.adj.get((entity, relation, direction), set())
        phrase = self.phrases.get(relation)
        if phrase and phrase[0] == phrase[1]:
            found = found | self.adj.get((entity, relation, "in" if direction == "out" else "out"), set())
        return found

    def fits(self, var: dict[str, Any], candidates: set[str] | None) -> set[str]:
        """Entities that satisfy one variable's type and clues, among ``candidates`` (all when None)."""
        pools: list[set[str]] = []
        for c in var["constraints"]:
            if c["kind"] == "rel":
                back = "in" if c["direction"] == "out" else "out"
                pools.append(set().union(*(self.linked(w, c["relation"], back)
                                           for w in self.by_name.get(norm(c["name"]), set()))))
            elif c["kind"] == "initial":
                pools.append({e for e in (candidates or self.entities) if self.name[e][:1].upper() == c["letter"]})
            elif c["kind"] == "attr":
                pools.append({e for e in (candidates or self.entities)
                              if self.attributes[e].get(c["attribute"]) == c["value"]})
            else:
                pools.append({e for e in (candidates or self.entities)
                              if isinstance(v := self.attributes[e].get(c["attribute"]), int | float)
                              and c["low"] <= v < c["high"]})
        current = set(candidates) if candidates is not None else (min(pools, key=len) if pools else set(self.entities))
        for pool in pools:
            current &= pool
        if self.typed:
            current = {e for e in current if self.type[e] == var["type"]}
        return current

    def chain(self, path: list[dict[str, Any]], start: int) -> set[str]:
        current = self.fits(path[start], None)
        for var in path[start + 1:]:
            reached: set[str] = set()
            for e in current:
                reached |= self.linked(e, var["relation"], var["direction"])
            current = self.fits(var, reached)
        return current

    def answers(self, nodes: set[str], attribute: str | None = None) -> set[str]:
        """What the entities answer, as folded strings: their names, or one attribute's values."""
        if attribute is None:
            return {norm(self.name[e]) for e in nodes}
        values = (self.attributes[e].get(attribute) for e in nodes)
        return {norm(f"{v:g}" if isinstance(v, float) else str(v)) for v in values if v is not None}

    def check(self, task: dict[str, Any], question: str) -> dict[str, Any]:
        path = task["path"]
        hops = len(path) - 1
        asked = path[-1].get("answer_attribute")
        final = self.answers(self.chain(path, 0), asked)
        needed = hops
        for k in range(hops, 0, -1):  # the shortest final part of the chain that already leaves one answer
            if len(self.answers(self.chain(path, k), asked)) == 1:
                needed = hops - k
                break
        text = norm(question)
        leak = None
        for answer in [task["answer"], *task.get("answer_aliases", [])]:
            if shows(text, norm(answer), len(norm(answer)) >= 4):
                leak = f"answer {answer!r}"
        for var in path[:-1]:
            if shows(text, norm(var["name"]), False):
                leak = f"path entity {var['name']!r}"
        anchor = path[0]["constraints"]
        unshown = [c["name"] for var in path for c in var["constraints"]
                   if c["kind"] == "rel" and not shows(text, norm(c["name"]), False)]
        relations = [v["relation"] for v in path[1:]]
        relations += [c["relation"] for v in path for c in v["constraints"] if c["kind"] == "rel"]
        for relation in relations:  # each relation reads as the table says, or as its id's words
            wordings = self.phrases.get(relation) or (" ".join(re.split(r"[\W_]+", relation)).strip(), None)
            if not any(w and shows(text, norm(w), False) for w in wordings):
                unshown.append(relation)
        return {"unique": len(final) == 1, "right": final == {norm(task["answer"])}, "hops": hops, "needed": needed,
                "leak": leak, "letter_anchor": all(c["kind"] == "initial" for c in anchor), "unshown": unshown}


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    return {"questions": n, "all_hops": sum(r["needed"] == r["hops"] for r in results),
            "leaks": sum(r["leak"] is not None for r in results), "non_unique": sum(not r["unique"] for r in results),
            "wrong_answer": sum(r["unique"] and not r["right"] for r in results),
            "letter_anchors": sum(r["letter_anchor"] for r in results),
            "unshown": sum(bool(r["unshown"]) for r in results)}


def accepted_questions(root: str) -> list[tuple[dict[str, Any], str]]:
    """(task, question) of every accepted row of the dataset's latest version."""
    import polars as pl

    df = pl.read_delta(root).filter((pl.col("status") == "accepted") & (pl.col("kind") == "kg_question"))
    out = []
    for row in df.select("task", "messages").to_dicts():
        question = next(m["content"] for m in row["messages"] if m["role"] == "user")
        out.append((json.loads(row["task"]), question))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--config", required=True)
    parser.add_argument("--path", help="the triples file, instead of the config's")
    args = parser.parse_args()
    params = yaml.safe_load(Path(args.config).read_text())["domain"]["params"]
    if args.path:
        params["path"] = args.path
    raw = RawKG(params)
    results = [raw.check(task, q) for task, q in accepted_questions(args.dataset)]
    s = summarize(results)
    pct = 100 * s["all_hops"] / max(s["questions"], 1)
    print(json.dumps(s))
    print(f"kg_check: questions={s['questions']} all_hops={pct:.1f}% leaks={s['leaks']} non_unique={s['non_unique']} "
          f"letter_anchors={s['letter_anchors']}")
    sys.exit(0)


if __name__ == "__main__":
    main()
