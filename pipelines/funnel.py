"""The funnels a run reports: rows rejected per step, and what each generator's own stages did.

The pipeline knows no step's internals: a generator describes its counters
itself (``Step.funnel_lines`` / ``funnel_steps``), and dedup reports only the
layers that ran.
"""

from __future__ import annotations

from collections.abc import Mapping

from generators import GENERATORS, Generator
from simulators.registry import UnknownStepError

BEFORE_FILTERS = ("synthesis", "simulation")


def funnel(stages: Mapping[str, int], dedup_layers: Mapping[str, int], config: Mapping) -> dict[str, int]:
    """Every step, zeros included: synthesis, simulation, the configured filters, then each dedup layer that ran.

    ``stages`` counts rejections by the stage written on rows (all dedup layers write
    'dedup'); ``dedup_layers`` splits the dedup count by enabled layer, in order (a layer
    that is off is not a step of this run, so it is left out). A stage not in the config
    (a plug-in's) is listed after the filters, so the counts always add up.
    """
    names = list(BEFORE_FILTERS)
    for f in config.get("filters", []):
        if isinstance(f, Mapping):
            names.append(f.get("name"))
            if stages.get(f"{f.get('name')}_error"):  # a model filter that gave no verdict, right beside its verdicts
                names.append(f"{f.get('name')}_error")
    out = {name: stages.get(name, 0) for name in names}
    out.update({name: n for name, n in sorted(stages.items()) if name not in out and name != "dedup"})
    out.update({f"dedup.{layer}": n for layer, n in dedup_layers.items()})
    return out


def _generator(name: str) -> type[Generator]:
    """The generator class that wrote these counters; the base class when it is not installed here."""
    try:
        return GENERATORS.get(name)
    except UnknownStepError:
        return Generator


def synthesis_lines(generator: str, counts: Mapping[str, int]) -> list[str]:
    """A generator's own funnel in its own words, its name first."""
    first, *rest = _generator(generator).funnel_lines(counts)
    return [f"{generator}: {first}", *rest]


def synthesis_steps(generator: str, counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A generator's own funnel as (label, count) bars, in its own order."""
    return _generator(generator).funnel_steps(counts)


def bars(counts: Mapping[str, int], width: int = 40) -> list[str]:
    top = max(counts.values(), default=0) or 1
    return [f"  {key:>9}  {n:>7}  {'#' * round(width * n / top)}" for key, n in counts.items()]


FAULT_NAMES = {"assistant": "the assistant's", "user": "the user simulator's", "tool": "the tool simulator's",
               "judge": "a judge's (no verdict)", "backend": "the backend's", "synthesis": "task synthesis's",
               "plugin": "a plug-in step's", "unknown": "not attributed (older rows)"}


def fault_summary(faults: Mapping[str, int]) -> str:
    """Who failed, in words: "rejections: 31% the user simulator's (9), 59% the assistant's (17), ..."."""
    total = sum(faults.values())
    if not total:
        return "rejections: none"
    return "rejections: " + ", ".join(f"{100 * n / total:.0f}% {FAULT_NAMES.get(f, f)} ({n})"
                                      for f, n in sorted(faults.items(), key=lambda kv: -kv[1]))


def print_funnel(manifest) -> None:
    """The end-of-run summary's funnels: what each generator's stages did, then rows left after each step,
    and the semantic similarity histogram."""
    for generator, counts in manifest.synthesis.items():
        print("  synthesis " + "\n  ".join(synthesis_lines(generator, counts)))
    left = manifest.tasks
    print(f"  funnel ({manifest.tasks} tasks):")
    for step, n in manifest.funnel.items():
        left -= n
        print(f"    {step:<22} -{n:<6} {left:>7} left")
    if manifest.faults:
        print("  " + fault_summary(manifest.faults))
    if manifest.similarity_histogram:
        print("  semantic similarity of each row to its nearest earlier row (choose dedup.semantic.threshold):")
        for line in bars(manifest.similarity_histogram):
            print("  " + line)
