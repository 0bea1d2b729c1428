"""Every number a version's manifest carries, named by its path, for the version page and the diff.

Manifests grow: a branch adds diversity metrics, another cost per accepted
row. Rather than a page per field, anything numeric in the manifest is shown
(grouped by its top-level field, nested keys joined with dots), so a figure a
later version adds appears without touching the viewer.
"""

from __future__ import annotations

from typing import Any

from schemas import DatasetManifest

NOT_FIGURES = {"version", "parent_version", "run_id", "config_hash", "code_version", "seed", "created_at", "config",
               "models"}
TOTALS = ("tasks", "accepted", "rejected", "total_accepted")


def _numbers(value: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _numbers(v, f"{prefix}.{k}" if prefix else str(k), out)


def figures(manifest: DatasetManifest) -> dict[str, dict[str, float]]:
    """Top-level field -> {path below it -> number}; the run's totals first, as ``totals``."""
    data = manifest.model_dump(mode="json", exclude=NOT_FIGURES)
    out: dict[str, dict[str, float]] = {"totals": {k: data.pop(k) for k in TOTALS if k in data}}
    for name, value in data.items():
        flat: dict[str, float] = {}
        _numbers(value, "", flat)
        if flat:
            out[name] = flat if isinstance(value, dict) else {name: flat[""]}
    return out


def side_by_side(a: DatasetManifest, b: DatasetManifest) -> dict[str, list[tuple[str, float | None, float | None]]]:
    """Group -> [(figure, in a, in b)], every figure either version has (None where one lacks it)."""
    fa, fb = figures(a), figures(b)
    out: dict[str, list[tuple[str, float | None, float | None]]] = {}
    for group in list(fa) + [g for g in fb if g not in fa]:
        left, right = fa.get(group, {}), fb.get(group, {})
        out[group] = [(k, left.get(k), right.get(k)) for k in list(left) + [k for k in right if k not in left]]
    return out


def number(value: float | None) -> str:
    """A figure for a table: integers exact, other numbers to 4 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def change(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == b:
        return ""
    return ("+" if b > a else "−") + number(abs(b - a))
