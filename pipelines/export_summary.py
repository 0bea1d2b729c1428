"""What an export is asked for and what it wrote: the input of ``export_version`` and of the card.

Apart from both so that the card (which renders a summary) and the export
(which writes the card) need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.splits import DEFAULT_SALT
from schemas import DatasetManifest


@dataclass
class ExportOptions:
    version: int | None = None
    test_ratio: float = 0.1
    rejects: bool = False
    sharegpt: bool = False
    license: str = "other"
    shard_rows: int = 20_000
    salt: str = DEFAULT_SALT
    name: str | None = None
    repo_id: str | None = None  # where the card says to load from: a Hub repo ...
    load_path: str | None = None  # ... or a local folder (default: the export folder as given)

    def configs(self) -> list[str]:
        return ["sft", "rl"] + (["rejects"] if self.rejects else []) + (["sharegpt"] if self.sharegpt else [])


@dataclass
class ExportSummary:
    """What the card describes: the version, its lineage, and what landed in each config and split."""

    dataset_dir: str
    name: str
    version: int
    manifests: list[DatasetManifest]
    options: ExportOptions
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows
    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # config -> split -> relative paths
    bytes: int = 0
    by_domain: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    by_turns: dict[int, int] = field(default_factory=dict)
    total_rows: int = 0

    @property
    def manifest(self) -> DatasetManifest:
        return self.manifests[-1]
