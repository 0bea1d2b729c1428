"""The rejection funnel: rows rejected per step, in the order a row meets the steps."""

from __future__ import annotations

from collections.abc import Mapping

from filters.dedup_layers import LAYERS
from generators.blueprint_rules import STAGES

BEFORE_FILTERS = ("synthesis", "simulation")


def funnel(stages: Mapping[str, int], dedup_layers: Mapping[str, int], config: Mapping) -> dict[str, int]:
    """Every step, zeros included: synthesis, simulation, the configured filters, then each dedup layer.

    ``stages`` counts rejections by the stage written on rows (all dedup layers write
    'dedup'); ``dedup_layers`` splits the dedup count by layer. A stage not in the
    config (a plug-in's) is listed after the filters, so the counts always add up.
    """
    names = list(BEFORE_FILTERS)
    for f in config.get("filters", []):
        if isinstance(f, Mapping):
            names.append(f.get("name"))
            if stages.get(f"{f.get('name')}_error"):  # a model filter that gave no verdict, right beside its verdicts
                names.append(f"{f.get('name')}_error")
    out = {name: stages.get(name, 0) for name in names}
    out.update({name: n for name, n in sorted(stages.items()) if name not in out and name != "dedup"})
    out.update({f"dedup.{layer}": dedup_layers.get(layer, 0) for layer in LAYERS})
    return out


def _bars(counts: Mapping[str, int], width: int = 40) -> list[str]:
    top = max(counts.values(), default=0) or 1
    return [f"  {key:>9}  {n:>7}  {'#' * round(width * n / top)}" for key, n in counts.items()]


def synthesis_lines(generator: str, c: Mapping[str, int]) -> list[str]:
    """A generator's own funnel in words: a model blueprint's stages, or any generator's counters as they are."""
    if "generated" not in c:
        return [f"{generator}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))]
    rules = ", ".join(f"{stage} -{c.get(f'failed_{stage}', 0)}" for stage in STAGES)
    cut = f", {c['failed_truncated']} cut off at max_tokens" if c.get("failed_truncated") else ""
    judge = f", {c['failed_judge']} without a verdict (judge_error)" if c.get("failed_judge") else ""
    lines = [f"{generator}: {c.get('blueprints', 0)} blueprints, {c['generated']} written "
             f"({c.get('regenerated', 0)} rewritten with feedback{cut})",
             f"  stage 1 rules ({rules}) -> {c.get('passed_rules', 0)} reviewed",
             f"  stage 2 committee -{c.get('failed_committee', 0)}{judge} -> {c.get('passed_committee', 0)} validated; "
             f"{c.get('dropped', 0)} dropped after the last round, {c.get('failed_backend', 0)} lost to the backend, "
             f"{c.get('contexts_failed', 0)} without a context"]
    if c.get("recombinations"):
        lines.append(f"  recombination: {c['recombinations']} tried -> {c.get('recombined', 0)} recombined "
                     f"({c.get('recombination_conflicts', 0)} conflicts)")
    return lines


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
        for line in _bars(manifest.similarity_histogram):
            print("  " + line)


def dedup_histogram(root, bins: int = 20) -> int:
    """``trajforge dedup-histogram DIR``: from the persisted embeddings (computed once if a version has none)."""
    from filters.semantic import available, histogram, nearest_similarities
    from pipelines.dedup_index import load_index
    from pipelines.store import DatasetStore, StoreError
    from schemas import ConfigError, DedupConfig

    missing = available()
    if missing:
        raise ConfigError(f"dedup-histogram: {missing}")
    store = DatasetStore(root)
    try:
        versions = store.versions()
    except StoreError as err:
        raise ConfigError(str(err)) from None
    if not versions:
        raise ConfigError(f"{root}: no committed version")
    config = DedupConfig.model_validate(versions[-1].config.get("dedup", {}))
    config = config.model_copy(update={"semantic": config.semantic.model_copy(update={"enabled": True})})
    index = load_index(root, versions, config)
    sims = nearest_similarities(index.embeddings) if index.embeddings is not None else []
    counts = histogram(sims, bins) if len(sims) else {}
    print(f"{len(index)} kept rows in {len(versions)} version(s); cosine similarity to the nearest other kept row")
    print(f"  {'bin':>9}  {'rows':>7}")
    for line in _bars(counts):
        print(line)
    at = config.semantic.threshold
    print(f"rows at or above the configured threshold {at}: {int((sims >= at).sum()) if len(sims) else 0}")
    return 0
