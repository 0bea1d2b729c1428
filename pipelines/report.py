"""``trajforge report DIR [--version N] --to FILE.html``: one run's data, as one self-contained HTML page.

A version is one run (one commit), so the report describes the rows that run
added: its manifest's funnel, its accepted dialogues' shape (turns, tools,
message lengths), its rejections by reason, and a few dialogues rendered as a
chat. The page carries no script and loads nothing (its Content-Security-Policy
forbids it), so it can be mailed, archived or opened offline; plots are inline
SVG from ``pipelines.svg_chart``. Jinja2 (already a dependency) escapes every
piece of dataset text.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from jinja2 import Environment
from markupsafe import Markup

from pipelines.rows import ACCEPTED, REJECTED
from pipelines.store import DatasetStore, StoreError, reason_key
from pipelines.svg_chart import bar_chart
from schemas import DatasetManifest, UserError

LENGTH_EDGES = (0, 50, 100, 200, 400, 800, 1600)
TOP_REASONS = 15
SAMPLES = 3
COLUMNS = ["index", "status", "stage", "reason", "num_turns", "messages"]


class ReportError(UserError):
    """Bad input for a report (no dataset, unknown version); nothing is written."""


@dataclass
class ReportData:
    """The numbers behind the plots, kept apart from the HTML so tests can check them against the dataset."""

    manifest: DatasetManifest
    rows: int
    turns: dict[int, int]  # user turns per accepted dialogue -> dialogues
    tools: dict[str, int]  # tool name -> calls in accepted dialogues
    funnel: list[tuple[str, int]]  # (step, rows left after it), starting with all tasks
    lengths: dict[str, int]  # message length bin -> messages in accepted dialogues
    reasons: dict[str, int]  # generic rejection reason -> rejected rows
    samples: list[list[dict]] = field(default_factory=list)  # messages of the first accepted dialogues


def select_version(root: str | Path, version: int | None) -> DatasetManifest:
    """The manifest of ``version`` (default: the newest), or a one-line ReportError naming what is wrong."""
    try:
        versions = DatasetStore(root).versions()
    except StoreError as err:
        raise ReportError(str(err)) from None
    if not versions:
        raise ReportError(f"{root}: no committed version")
    if version is None:
        return versions[-1]
    for manifest in versions:
        if manifest.version == version:
            return manifest
    raise ReportError(f"{root}: no version {version}; readable versions: {', '.join(str(m.version) for m in versions)}")


def run_rows(root: str | Path, manifest: DatasetManifest, columns: list[str] = COLUMNS) -> pl.DataFrame:
    """The rows the version's run added (the table is append-only; a run commits once), in task order."""
    return (DatasetStore(root).scan(manifest.version).filter(pl.col("run_id") == manifest.run_id)
            .select(columns).sort("index").collect())


def _length_bin(n: int) -> str:
    for low, high in zip(LENGTH_EDGES, LENGTH_EDGES[1:], strict=False):
        if n < high:
            return f"{low}–{high - 1} chars"
    return f"{LENGTH_EDGES[-1]}+ chars"


def funnel_left(manifest: DatasetManifest) -> list[tuple[str, int]]:
    """Rows left after each step (the manifest's funnel, or its stages for versions written before the funnel)."""
    left, out = manifest.tasks, [("tasks", manifest.tasks)]
    for step, n in (manifest.funnel or manifest.stages).items():
        left -= n
        out.append((f"{step} (-{n})", left))
    return out


def collect(root: str | Path, version: int | None = None, samples: int = SAMPLES) -> ReportData:
    manifest = select_version(root, version)
    rows = run_rows(root, manifest)
    accepted = rows.filter(pl.col("status") == ACCEPTED)
    rejected = rows.filter(pl.col("status") == REJECTED)
    messages = accepted.select(pl.col("messages").explode()).unnest("messages").filter(pl.col("role").is_not_null())
    names = (messages.select(pl.col("tool_calls").explode()).drop_nulls()
             .select(pl.col("tool_calls").struct.field("function").struct.field("name"))).to_series()
    lengths = Counter(_length_bin(n) for n in messages["content"].drop_nulls().str.len_chars().to_list())
    order = [_length_bin(low) for low in LENGTH_EDGES]
    reasons = Counter(reason_key(s or "", r or "") for s, r in zip(rejected["stage"], rejected["reason"], strict=True))
    return ReportData(
        manifest=manifest, rows=rows.height,
        turns=dict(sorted(Counter(accepted["num_turns"].to_list()).items())),
        tools=dict(Counter(names.to_list()).most_common()),
        funnel=funnel_left(manifest),
        lengths={b: lengths[b] for b in order if lengths[b]},
        reasons=dict(reasons.most_common()),
        samples=[row for row in accepted.head(samples)["messages"].to_list()])


def _top(counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    items = list(counts.items())
    if len(items) <= n:
        return items
    return items[:n - 1] + [(f"({len(items) - n + 1} other reasons)", sum(v for _, v in items[n - 1:]))]


def charts(data: ReportData) -> list[str]:
    """The five plots, and one per generator that reports its own funnel, in page order."""
    return [
        bar_chart("Filter funnel: rows left after each step", data.funnel),
        bar_chart("Rejections by reason", _top(data.reasons, TOP_REASONS), empty="no rejected rows", label_width=560),
        bar_chart("Turns per dialogue (user turns, accepted)", [(f"{k} turns", v) for k, v in data.turns.items()],
                  empty="no accepted dialogues"),
        bar_chart("Tool usage (calls in accepted dialogues)", list(data.tools.items()), empty="no tool calls"),
        bar_chart("Message lengths (accepted dialogues)", list(data.lengths.items()), empty="no messages"),
        *(bar_chart(f"Task synthesis: {generator}", synthesis_steps(counts))
          for generator, counts in data.manifest.synthesis.items()),
    ]


SYNTHESIS_STEPS = ("blueprints", "generated", "regenerated", "passed_rules", "failed_committee", "passed_committee",
                   "dropped", "recombined")


def synthesis_steps(counts: dict[str, int]) -> list[tuple[str, int]]:
    """A model blueprint's stages in the order a blueprint meets them; other generators' counters as they are."""
    if "generated" not in counts:
        return sorted(counts.items())
    return [(step.replace("_", " "), counts.get(step, 0)) for step in SYNTHESIS_STEPS]


def _pretty(arguments: str | None) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), ensure_ascii=False)
    except ValueError:
        return arguments or ""


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>trajforge report: {{ root }} version {{ m.version }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table.summary td { padding: 2px 12px 2px 0; } .charts { display: flex; flex-wrap: wrap; gap: 24px; }
.dialogue { border: 1px solid #ddd; border-radius: 8px; padding: 12px; margin: 16px 0; max-width: 760px; }
.bubble { border-radius: 14px; padding: 8px 12px; margin: 6px 0; max-width: 80%; white-space: pre-wrap; }
.bubble.user { background: #dbeafe; margin-left: auto; } .bubble.assistant { background: #f1f5f9; }
.bubble.tool { background: #fef9c3; font-family: monospace; font-size: 12px; }
.bubble.system { background: none; color: #666; font-style: italic; max-width: 100%; }
.role { font-size: 11px; color: #666; display: block; } .tool-call { font-family: monospace; font-size: 12px;
  background: #e2e8f0; border-radius: 6px; padding: 4px 6px; margin-top: 4px; }
</style></head><body>
<h1>trajforge report</h1>
<table class="summary">
<tr><td>dataset</td><td>{{ root }}</td></tr>
<tr><td>version</td><td>{{ m.version }} (parent {{ m.parent_version if m.parent_version is not none else "none" }})</td></tr>
<tr><td>run</td><td>{{ m.run_id }}, seed {{ m.seed }}, created {{ m.created_at }}</td></tr>
<tr><td>config / code</td><td>{{ m.config_hash }} / {{ m.code_version }}</td></tr>
<tr><td>this run</td><td>{{ m.tasks }} tasks: {{ m.accepted }} accepted, {{ m.rejected }} rejected</td></tr>
<tr><td>dataset total</td><td>{{ m.total_accepted }} accepted rows</td></tr>
{% for role, u in m.usage.items() %}<tr><td>{{ role }}{% if m.models.get(role) %} ({{ m.models[role] }}){% endif %}</td>
<td>{{ u.requests }} requests, {{ u.cached }} cached, {{ u.prompt_tokens }} prompt + {{ u.completion_tokens }}
completion tokens</td></tr>{% endfor %}
</table>
<h2>Plots</h2>
<div class="charts">{% for chart in charts %}<figure>{{ chart }}</figure>{% endfor %}</div>
<h2>Sample dialogues</h2>
{% if not samples %}<p>No accepted dialogues in this version.</p>{% endif %}
{% for messages in samples %}<section class="dialogue"><h3>Dialogue {{ loop.index }}</h3>
{% for msg in messages %}{% if msg.role == "system" %}<details class="bubble system"><summary>system prompt
({{ (msg.content or "") | length }} characters)</summary>{{ msg.content or "" }}</details>
{%- else %}<div class="bubble {{ msg.role }}"><span class="role">{{ msg.role }}
{%- if msg.role == "tool" and msg.name %} · {{ msg.name }}{% endif %}</span>{{ msg.content or "" }}
{%- for call in msg.tool_calls or [] %}<div class="tool-call">→ {{ call.function.name }}
({{- pretty(call.function.arguments) }})</div>
{%- endfor %}</div>{% endif %}
{% endfor %}</section>
{% endfor %}
</body></html>
"""


def render(data: ReportData, root: str) -> str:
    env = Environment(autoescape=True, keep_trailing_newline=True)
    env.globals["pretty"] = _pretty
    return env.from_string(_PAGE).render(root=root, m=data.manifest, charts=[Markup(c) for c in charts(data)],
                                         samples=data.samples)


def write_report(root: str | Path, to: str | Path, version: int | None = None) -> ReportData:
    """Collect, render, then write once: bad input raises ReportError before the file is touched."""
    data = collect(root, version)
    page = render(data, str(root))
    Path(to).parent.mkdir(parents=True, exist_ok=True)
    Path(to).write_text(page, encoding="utf-8")
    return data
