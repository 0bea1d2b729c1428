"""Publish a dataset version to the Hugging Face Hub, one tag per version.

The token is never handled here: ``HfApi`` finds it itself (``HF_TOKEN`` or
the login cache of ``hf auth login``), so it cannot end up in a card, a
manifest or a log line. We only ask whether one exists, to fail early with a
message that says how to provide it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import RepositoryNotFoundError

from pipelines.export import ExportError, ExportOptions, export_version, resolve_version
from pipelines.store import DatasetStore
from schemas import UserError

_REPO = r"^[A-Za-z0-9][\w.-]*/[\w.-]+$"


class PushError(UserError):
    """A push that cannot start, phrased as one line."""


@dataclass
class PushResult:
    repo_id: str
    version: int
    tag: str
    commit: str | None
    url: str | None


def version_tag(version: int) -> str:
    return f"v{version}"


def push_version(dataset_dir: str | Path, repo_id: str, options: ExportOptions | None = None,
                 api: HfApi | None = None, private: bool | None = None) -> PushResult:
    """Export a version into a temporary folder, upload it to ``repo_id`` and tag the commit ``v<N>``.

    A version is pushed once: when the repo already has its tag, nothing is
    uploaded and a ``PushError`` says so (the tag, and so what
    ``load_dataset(repo, revision="vN")`` returns, never changes).

    ``api`` is the seam for tests and for other endpoints; by default a plain
    ``HfApi()`` with the token it finds on its own.
    """
    if not re.match(_REPO, repo_id):
        raise PushError(f"--repo: expected ORG/NAME, got {repo_id!r}")
    options = options or ExportOptions()
    try:
        version, _ = resolve_version(DatasetStore(dataset_dir), options.version)
    except ExportError as err:
        raise PushError(str(err)) from None
    if api is None:
        if constants.HF_HUB_OFFLINE:
            raise PushError("HF_HUB_OFFLINE is set: unset it to push to the Hub")
        if get_token() is None:
            raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
        api = HfApi()
    options = replace(options, version=version, repo_id=repo_id, name=options.name or repo_id.split("/")[1])
    tag = version_tag(version)
    if (pushed := _tagged_commit(api, repo_id, tag)) is not None:
        raise PushError(f"{repo_id} already has tag {tag} (commit {pushed}): version {version} was pushed before, and "
                        f"a version tag is never moved; nothing was uploaded")
    with tempfile.TemporaryDirectory(prefix="trajforge-push-") as tmp:
        folder = Path(tmp) / "dataset"
        try:
            export_version(dataset_dir, folder, options)
        except ExportError as err:
            raise PushError(str(err)) from None
        repo = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder),
                                 commit_message=f"trajforge dataset version {version}",
                                 delete_patterns=["data/**"])
        commit = getattr(info, "oid", None)
        # exist_ok=False: a push of the same version racing this one fails here rather than moving the tag
        api.create_tag(repo_id, tag=tag, tag_message=f"trajforge dataset version {version}", revision=commit,
                       repo_type="dataset", exist_ok=False)
    return PushResult(repo_id=repo_id, version=version, tag=tag, commit=commit, url=str(repo) if repo else None)


def _tagged_commit(api: HfApi, repo_id: str, tag: str) -> str | None:
    """The commit ``tag`` names in the repo, or None (also when the repo does not exist yet)."""
    try:
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return None
    return next((ref.target_commit for ref in refs.tags if ref.name == tag), None)
