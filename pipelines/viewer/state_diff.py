"""What a dialogue changed in its environment, next to what its task expected.

Rows store hashes of states, not states. Both states are cheap to rebuild,
since domains are deterministic code over a seeded database: the task's gold
actions and the dialogue's own tool calls are replayed, each on a fresh
environment (the run's domain and parameters, the task's seed), in
milliseconds. A replay is shown as the row's state only when it reproduces
the stored hash (``expected_state_hash`` for the gold, ``final_state_hash``
for the dialogue); when it does not (a tool answered by a model, a domain
that is not installed here), the page says so instead of showing a guess.
For model-written blueprints the diff recorded at synthesis
(``task.provenance.state_diff``) stands in for an expected state that cannot
be replayed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pipelines.steps import build_environment
from schemas import Action, ConfigError, Message, RunConfig, UserAction, canonical_json
from simulators.environment import Environment

MISSING = object()


@dataclass
class Change:
    """One field of one record that is not the same before, as the gold leaves it, and as the dialogue left it.

    A value is ``MISSING`` where the record or field does not exist in that state.
    """

    table: str
    key: str
    path: str
    before: Any
    expected: Any
    dialogue: Any

    @property
    def agrees(self) -> bool:
        return self.expected is self.dialogue or (MISSING not in (self.expected, self.dialogue)
                                                  and canonical_json(self.expected) == canonical_json(self.dialogue))


@dataclass
class StateDiff:
    expected_source: str  # how the expected state was obtained, in words
    expected_ok: bool | None  # the gold replay reproduced the task's expected hash (None: nothing to compare)
    dialogue_ok: bool | None  # the dialogue replay reproduced the row's final state hash
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    has_before: bool = True  # the fresh state is known (the domain could be rebuilt)
    has_dialogue: bool = True  # the dialogue's state is known (its replay reproduced the row's hash)


@lru_cache(maxsize=8)
def _environment(config_json: str, domain: str | None) -> Environment:
    return build_environment(RunConfig.model_validate(json.loads(config_json)), "the version's config", domain)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A record as path -> scalar (``address.zip``, ``items[1].price``), so a diff names the fields that changed."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def _replay(env: Environment, calls: list[tuple[str, Any]]) -> Environment:
    for name, arguments in calls:
        env.execute(name, arguments)
    return env


def dialogue_calls(messages: list[dict]) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], c["function"]["arguments"])
            for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []]


def state_diff(config: dict, task: dict | None, messages: list[dict], final_state_hash: str | None,
               user_actions: list[dict] | None = None) -> StateDiff | None:
    """The field-level changes of the gold and of the dialogue against the fresh state, or None without a task.

    Dual control: gold actions run by their actor, and the dialogue's replay interleaves the user's own device
    actions (``user_actions``, the row column) with the assistant's calls, as verification does."""
    if not task:
        return None
    recorded = (task.get("provenance") or {}).get("state_diff")
    try:
        env = _environment(canonical_json(config), task.get("domain"))
    except (ConfigError, ValueError) as err:
        if recorded is None:
            return StateDiff("not available", None, None, notes=[f"cannot rebuild the domain here: {err}"])
        expected = {t: dict(r) for t, r in recorded.items()}
        return _compare(None, expected, None, "recorded at synthesis (task.provenance.state_diff)", None, None,
                        [f"cannot rebuild the domain here: {err}; the dialogue's state is not shown"])
    seed = task.get("env_seed", env.seed)
    fresh = env.fresh(seed)
    notes: list[str] = []
    gold = env.fresh(seed)
    gold.run_actions([Action.model_validate(a) for a in task.get("gold_actions") or []], task.get("user"))
    expected_hash = task.get("expected_state_hash")
    expected_ok = None if expected_hash is None else gold.state_hash() == expected_hash
    expected, source = gold.db.diff(), "gold actions replayed on a fresh environment"
    if expected_ok is False:
        if recorded is not None:
            expected, source = recorded, "recorded at synthesis (task.provenance.state_diff)"
        notes.append("replaying the gold actions did not reproduce the task's expected state hash")
    try:
        if user_actions:
            after = env.fresh(seed)
            after.replay([Message.model_validate(m) for m in messages],
                         [UserAction.model_validate(a) for a in user_actions], task.get("user"))
        else:
            after = _replay(env.fresh(seed), dialogue_calls(messages))
        dialogue_ok = None if final_state_hash is None else after.state_hash() == final_state_hash
        actual = after.db.diff() if dialogue_ok is not False else None
    except Exception as err:  # a domain whose tools need a model (schema-only) cannot replay offline
        dialogue_ok, actual = False, None
        notes.append(f"the dialogue's calls cannot be replayed here: {type(err).__name__}: {err}")
    if dialogue_ok is False:
        notes.append("replaying the dialogue's tool calls did not reproduce its final state hash "
                     "(tools answered by a model, or a domain that changed); its state is not shown")
    return _compare(fresh, expected, actual, source, expected_ok, dialogue_ok, notes)


def _compare(fresh: Environment | None, expected: dict, actual: dict | None, source: str,
             expected_ok: bool | None, dialogue_ok: bool | None, notes: list[str]) -> StateDiff:
    """Fields that differ between the fresh record, the expected one and the dialogue's (the ones known)."""
    out = StateDiff(source, expected_ok, dialogue_ok, notes=notes, has_before=fresh is not None,
                    has_dialogue=actual is not None)
    keys = sorted({(t, k) for diff in (expected, actual or {}) for t, records in diff.items() for k in records})
    for table, key in keys:
        before = fresh.db.get(table, key) if fresh is not None else None
        records = {"before": before, "expected": expected.get(table, {}).get(key, before),
                   "dialogue": (actual or {}).get(table, {}).get(key, before)}
        flat = {name: _flatten(r) if r is not None else {} for name, r in records.items()}
        known = [name for name, has in (("before", out.has_before), ("expected", True),
                                         ("dialogue", out.has_dialogue)) if has]
        for path in sorted(set().union(*(flat[name] for name in known))):
            values = {name: flat[name].get(path, MISSING) for name in records}
            distinct = {"\0" if values[n] is MISSING else canonical_json(values[n]) for n in known}
            if len(distinct) > 1 or not out.has_before:
                out.changes.append(Change(table, key, path, *(values[n] for n in ("before", "expected", "dialogue"))))
    return out
