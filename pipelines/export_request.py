"""What an export is asked for (its options, which version), what cannot be met, and what it wrote.

Apart from ``pipelines.export`` so that the card (which renders a summary) and
the chat-template check (which resolves a version) need not import the export,
which uses both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.splits import DEFAULT_SALT
from pipelines.store import DatasetStore
from schemas import DatasetManifest, UserError


class ExportError(UserError):
    """An export request that cannot be met, phrased as one line."""


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
    chat_templates: list[str] = field(default_factory=list)  # every sft row is checked against each (template_check)
    drop_unrenderable: bool = False  # drop rows a template cannot render (counted in the card) instead of stopping
    strip_reasoning: set[str] = field(default_factory=set)  # configs exported without assistant reasoning_content
    json_as_text: bool = False  # JSON columns as plain strings (any datasets >= 4.0) instead of Arrow JSON (>= 4.7)

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
    view_bytes: dict[str, int] = field(default_factory=dict)  # config -> bytes of its Parquet files
    split_bytes: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> bytes
    by_domain: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    by_turns: dict[int, int] = field(default_factory=dict)
    total_rows: int = 0
    templates: list[dict[str, Any]] = field(default_factory=list)  # TemplateReport.summary() per --chat-template
    dropped: dict[str, str] = field(default_factory=dict)  # row id -> why no template could render it
    json_fields: dict[str, list[str]] = field(default_factory=dict)  # config -> where its JSON values are (Views)

    @property
    def manifest(self) -> DatasetManifest:
        return self.manifests[-1]


def resolve_version(store: DatasetStore, version: int | None) -> tuple[int, list[DatasetManifest]]:
    """The version to export (default: the newest) and the manifests of every version up to it."""
    manifests = store.versions()  # a missing or damaged dataset: its own one-line DatasetError
    if not manifests:
        raise ExportError(f"{store.root}: the dataset has no committed versions")
    known = [m.version for m in manifests]
    if version is None:
        version = known[-1]
    if version not in known:
        raise ExportError(f"{store.root}: no version {version}; readable versions: {', '.join(map(str, known))}")
    return version, [m for m in manifests if m.version <= version]
