"""Prefect artifacts for one run: what the Prefect UI shows on the ``generate`` flow run.

Three artifacts, created after the commit so they describe the committed
version: the filter funnel (table), model requests and tokens per role (table)
and three accepted dialogues (markdown). Keys carry the run id, so the latest
artifact under a key is that run's; Prefect keys allow only lowercase letters,
digits and dashes.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from pipelines.report import first_rows, funnel_left
from pipelines.rows import ACCEPTED
from schemas import DatasetManifest

SAMPLES = 3


def artifact_key(kind: str, run_id: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"trajforge-{kind}-{run_id}".lower())).strip("-")


def funnel_table(manifest: DatasetManifest) -> list[dict]:
    """One row per step: rows rejected there and rows left after it."""
    steps = manifest.funnel or manifest.stages
    return [{"step": "tasks", "rejected": 0, "left": manifest.tasks}] + [
        {"step": step, "rejected": steps[step], "left": left}
        for step, (_, left) in zip(steps, funnel_left(manifest)[1:], strict=True)]


def usage_table(manifest: DatasetManifest) -> list[dict]:
    """One row per model role; empty offline (no model, no requests). With a price table: its cost and savings."""
    return [{"role": role, "model": manifest.models.get(role, ""), "requests": u.requests, "cached": u.cached,
             "retries": u.retries, "errors": u.errors, "prompt_tokens": u.prompt_tokens,
             "completion_tokens": u.completion_tokens, "latency_s": round(u.latency_s, 2),
             **({"cost": round(manifest.cost.by_role.get(role, 0.0), 6),
                 "saved": round(manifest.cost.saved_by_role.get(role, 0.0), 6)} if manifest.cost else {})}
            for role, u in manifest.usage.items()]


def _quote(text: str) -> str:
    """Dataset text inside a markdown blockquote: no stray headings, fences or HTML from model output."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines()) or ">"


def dialogue_markdown(messages: list[dict]) -> str:
    """A stored dialogue (row ``messages``) as markdown: one quoted block per message, tool calls inline."""
    out = []
    for m in messages:
        out.append(f"**{m['role']}**" + (f" ({m['name']})" if m.get("name") else ""))
        if m.get("content"):
            out.append(_quote(m["content"]))
        for call in m.get("tool_calls") or []:
            fn = call["function"]
            out.append(_quote(f"→ {fn['name']}({fn.get('arguments') or '{}'})"))
        out.append("")
    return "\n".join(out)


def samples_markdown(manifest: DatasetManifest, dialogues: list[list[dict]]) -> str:
    parts = [f"# Sample accepted dialogues, run {manifest.run_id} (version {manifest.version})", ""]
    if not dialogues:
        parts.append("No accepted dialogues in this run.")
    for i, messages in enumerate(dialogues, 1):
        parts += [f"## Dialogue {i}", "", dialogue_markdown(messages)]
    return "\n".join(parts)


def create_run_artifacts(manifest: DatasetManifest, out_dir: str | Path) -> None:
    """Called inside the ``generate`` flow once the version is committed."""
    create_table_artifact(funnel_table(manifest), key=artifact_key("funnel", manifest.run_id),
                          description=f"{manifest.tasks} tasks -> {manifest.accepted} accepted, "
                                      f"{manifest.rejected} rejected (version {manifest.version})")
    create_table_artifact(usage_table(manifest), key=artifact_key("usage", manifest.run_id),
                          description="model requests and tokens per role (empty offline)")
    accepted = first_rows(out_dir, manifest, ACCEPTED, SAMPLES, ["messages"])["messages"].to_list()
    create_markdown_artifact(samples_markdown(manifest, accepted), key=artifact_key("samples", manifest.run_id),
                             description=f"{len(accepted)} accepted dialogues of version {manifest.version}")
