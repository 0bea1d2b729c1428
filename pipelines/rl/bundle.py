"""What an ``rl`` row needs to rebuild its environment: the run's domain, and the files its parameters name.

A run's domain is ``domain.name`` plus ``domain.params`` (``db_seed`` only
seeds the run's shared instance: every task starts from ``fresh(env_seed)``).
Parameters may name files (a KG's triples, a schema-only tool spec) relative
to the directory the run ran in; the export copies each into
``environment/<sha256[:12]>-<name>`` of its folder and the row names that
copy, so the folder alone rebuilds the environment on another machine.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from schemas import DatasetManifest
from schemas.config import DomainConfig, MixedDomainConfig

BUNDLE_DIR = "environment"


def bundle_environments(manifests: list[DatasetManifest], folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Each run's environments by (run id, domain name), files copied under ``folder``; a missing file stays as
    named. A run that mixes domains (``domains``) has one per domain; a row takes its own domain's."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for m in manifests:
        mixed = m.config.get("domains")
        domains = ([MixedDomainConfig.model_validate(d) for d in mixed] if mixed else
                   [DomainConfig.model_validate(m.config.get("domain") or {})])
        for domain in domains:
            files: dict[str, str] = {}
            params = _bundle(domain.params, folder, files)
            out[(m.run_id, domain.name)] = {"domain": domain.name, "params": params, "files": files}
    return out


def _bundle(value: Any, folder: Path, files: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _bundle(v, folder, files) for k, v in value.items()}
    if isinstance(value, list):
        return [_bundle(v, folder, files) for v in value]
    if isinstance(value, str) and "." in Path(value).name and Path(value).is_file():
        data = Path(value).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{BUNDLE_DIR}/{digest[:12]}-{Path(value).name}"
        target = folder / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(value, target)
        files[rel] = digest
        return rel
    return value


def resolve_files(environment: dict[str, Any], root: Path) -> dict[str, Any]:
    """The params with every bundled file as a path under ``root`` (the export folder), its hash checked."""
    files: dict[str, str] = environment.get("files") or {}
    for rel, digest in files.items():
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the environment file this row names is not there "
                                    f"(pass the export folder as root)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"{path}: content differs from the file the dataset was made with")

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return str(root / value) if isinstance(value, str) and value in files else value

    return walk(environment.get("params") or {})
