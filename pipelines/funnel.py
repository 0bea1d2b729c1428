"""The rejection funnel: rows rejected per step, in the order a row meets the steps."""

from __future__ import annotations

from collections.abc import Mapping

from filters.dedup_layers import LAYERS

BEFORE_FILTERS = ("synthesis", "simulation")


def funnel(stages: Mapping[str, int], dedup_layers: Mapping[str, int], config: Mapping) -> dict[str, int]:
    """Every step, zeros included: synthesis, simulation, the configured filters, then each dedup layer.

    ``stages`` counts rejections by the stage written on rows (all dedup layers write
    'dedup'); ``dedup_layers`` splits the dedup count by layer. A stage not in the
    config (a plug-in's) is listed after the filters, so the counts always add up.
    """
    names = list(BEFORE_FILTERS) + [f.get("name") for f in config.get("filters", []) if isinstance(f, Mapping)]
    out = {name: stages.get(name, 0) for name in names}
    out.update({name: n for name, n in sorted(stages.items()) if name not in out and name != "dedup"})
    out.update({f"dedup.{layer}": dedup_layers.get(layer, 0) for layer in LAYERS})
    return out


def _bars(counts: Mapping[str, int], width: int = 40) -> list[str]:
    top = max(counts.values(), default=0) or 1
    return [f"  {key:>9}  {n:>7}  {'#' * round(width * n / top)}" for key, n in counts.items()]


def print_funnel(manifest) -> None:
    """The end-of-run summary's funnel: rows left after each step, and the semantic similarity histogram."""
    left = manifest.tasks
    print(f"  funnel ({manifest.tasks} tasks):")
    for step, n in manifest.funnel.items():
        left -= n
        print(f"    {step:<22} -{n:<6} {left:>7} left")
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
