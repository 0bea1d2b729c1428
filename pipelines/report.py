"""``trajforge report DIR [--version N] --to FILE.html``: one run's data, as one self-contained HTML page.

A version is one run (one commit), so the report describes the rows that run
added: its manifest's funnel, its accepted dialogues' shape (turns, tools,
message lengths), its rejections by reason, and a few dialogues rendered as a
chat. The page carries no script and loads nothing (its Content-Security-Policy
forbids it), so it can be mailed, archived or opened offline; plots are inline
SVG from ``pipelines.svg_chart``; the page and its dialogues are rendered by
``pipelines.pages`` (shared with ``trajforge view``), which escapes every piece
of dataset text.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from markupsafe import Markup

from pipelines.diversity import SCALARS
from pipelines.funnel import synthesis_steps
from pipelines.pages import environment, stylesheet
from pipelines.rows import ACCEPTED, REJECTED
from pipelines.store import DatasetStore, StoreError, reason_key
from pipelines.svg_chart import bar_chart, line_chart
from schemas import DatasetManifest, DiversityFigures, UserError

LENGTH_EDGES = (0, 50, 100, 200, 400, 800, 1600)
TOP_REASONS = 15
SAMPLES = 3
COLUMNS = ["index", "status", "stage", "reason", "num_turns", "messages", "fault", "user_actions"]


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
    sample_actions: list[list[dict]] = field(default_factory=list)  # their user's own device actions (dual control)
    faults: dict[str, int] = field(default_factory=dict)  # who failed -> rejected rows
    rejects: list[dict] = field(default_factory=list)  # the first rejected rows: stage, reason, fault, messages,
    # user_actions
    history: list[DatasetManifest] = field(default_factory=list)  # every version up to this one: the trend plots


def select_version(root: str | Path, version: int | None, versions: list[DatasetManifest] | None = None
                   ) -> DatasetManifest:
    """The manifest of ``version`` (default: the newest), or a one-line ReportError naming what is wrong."""
    if versions is None:
        versions = listed_versions(root)
    if not versions:
        raise ReportError(f"{root}: no committed version")
    if version is None:
        return versions[-1]
    for manifest in versions:
        if manifest.version == version:
            return manifest
    raise ReportError(f"{root}: no version {version}; readable versions: {', '.join(str(m.version) for m in versions)}")


def listed_versions(root: str | Path) -> list[DatasetManifest]:
    try:
        return DatasetStore(root).versions()
    except StoreError as err:
        raise ReportError(str(err)) from None


def run_rows(root: str | Path, manifest: DatasetManifest, columns: list[str] = COLUMNS) -> pl.DataFrame:
    """The rows the version's run added (the table is append-only; a run commits once), in task order."""
    scan = DatasetStore(root).scan(manifest.version)
    present = scan.collect_schema().names()
    # A column that versions written by older code lack (``fault``) reads as nulls.
    chosen = [pl.col(c) if c in present else pl.lit(None, pl.String).alias(c) for c in columns]
    return scan.filter(pl.col("run_id") == manifest.run_id).select(chosen).sort("index").collect()


def first_rows(root: str | Path, manifest: DatasetManifest, status: str, k: int, columns: list[str]) -> pl.DataFrame:
    """The run's first ``k`` rows with ``status`` (task order), decoding the wide columns of those rows only: a
    filter on the whole run read every row's messages (~1 GB in a 100k-row run's process, for three samples)."""
    scan = DatasetStore(root).scan(manifest.version).filter(pl.col("run_id") == manifest.run_id)
    picked = (scan.filter(pl.col("status") == status).select("index").sort("index").head(k).collect()
              )["index"].to_list()
    if not picked:
        return pl.DataFrame(schema=scan.select(columns).collect_schema())
    # the index range prunes files and row groups by their statistics; the run is in task order
    near = (pl.col("index") >= min(picked)) & (pl.col("index") <= max(picked)) & pl.col("index").is_in(picked)
    return scan.filter(near & (pl.col("status") == status)).sort("index").head(k).select(columns).collect()


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
    versions = listed_versions(root)
    manifest = select_version(root, version, versions)
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
        samples=accepted.head(samples)["messages"].to_list(),
        sample_actions=_sample_actions(accepted.head(samples)),
        faults=dict(Counter(f or "unknown" for f in rejected["fault"].to_list()).most_common()),
        rejects=[{**r, "user_actions": json.loads(r["user_actions"] or "[]")} for r in
                 rejected.head(samples).select("stage", "reason", "fault", "messages", "user_actions").to_dicts()],
        history=[m for m in versions if m.version <= manifest.version])


def _sample_actions(head: pl.DataFrame) -> list[list[dict]]:
    """The user's own device actions of each sample dialogue (dual control), each with ``at``: the index of the
    message before which it happened; tables written before ``user_actions`` existed have none."""
    return [json.loads(a or "[]") for a in head["user_actions"].to_list()]


def top_counts(counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    """The ``n - 1`` largest counts and the rest summed into one bar, so a long tail of reasons stays readable."""
    items = list(counts.items())
    if len(items) <= n:
        return items
    return items[:n - 1] + [(f"({len(items) - n + 1} other reasons)", sum(v for _, v in items[n - 1:]))]


def diversity_charts(f: DiversityFigures | None) -> list[str]:
    """The diversity and difficulty plots; none for a version written before they were measured."""
    if f is None:
        return []
    chains = [(c or "(no calls)", n) for c, n in f.top_tool_chains]
    out = [
        bar_chart("Tool chains: the 10 most frequent (dialogues)", chains, empty="no dialogues", label_width=560),
        bar_chart("User turns: the 10 most frequent (dialogues containing it)", list(f.user.top_turns),
                  empty="no dialogues", label_width=560),
        bar_chart("Tool calls per dialogue", [(f"{k} calls", v) for k, v in f.tool_calls_per_dialogue.items()],
                  empty="no dialogues"),
        bar_chart("Writes per dialogue (both sides)", [(f"{k} writes", v) for k, v in f.writes_per_dialogue.items()],
                  empty="not measured"),
        bar_chart("Difficulty (writes+1 x withheld+1 x dependencies+1)", list(f.difficulty.histogram.items()),
                  empty="not measured"),
        bar_chart("Intents (requests)", list(f.intents.items()), empty="no requests", label_width=360),
        bar_chart("Personas (dialogues)", [(p[:70], n) for p, n in f.personas.items()], empty="no personas",
                  label_width=560),
    ]
    if any(f.user_actions_per_dialogue.get(k) for k in f.user_actions_per_dialogue if k):
        out.append(bar_chart("User's own device actions per dialogue (dual control)",
                             [(f"{k} actions", v) for k, v in f.user_actions_per_dialogue.items()]))
    if len(f.domains) > 1:
        out.append(bar_chart("Domains (dialogues)", list(f.domains.items())))
    if f.judge_scores:
        out.append(bar_chart("Judge scores (rows)", [(f"score {k}", v) for k, v in f.judge_scores.items()]))
    if f.difficulty_filter:
        out.append(bar_chart("Difficulty filter (rows)", list(f.difficulty_filter.items()), label_width=360))
    return out


def figure_lines(f: DiversityFigures | None) -> list[tuple[str, str]]:
    """The headline diversity figures as (name, formatted value); none for a version written before them."""
    if f is None:
        return []
    return [(name, fmt.format(get(f))) for name, get, fmt in SCALARS] + (
        [("intent coverage", f"{f.intent_coverage:.0%}")] if f.intent_coverage is not None else [])


def funnel_chart(manifest: DatasetManifest) -> str:
    return bar_chart("Filter funnel: rows left after each step", funnel_left(manifest))


def reasons_chart(reasons: dict[str, int]) -> str:
    return bar_chart("Rejections by reason", top_counts(reasons, TOP_REASONS), empty="no rejected rows", label_width=560)


def synthesis_charts(manifest: DatasetManifest) -> list[str]:
    """One chart per generator that reports its own funnel."""
    return [bar_chart(f"Task synthesis: {generator}", synthesis_steps(generator, counts))
            for generator, counts in manifest.synthesis.items()]


def charts(data: ReportData) -> list[str]:
    """The five plots, the diversity plots, one per generator that reports its own funnel, and KG difficulty where
    there is one."""
    return [
        funnel_chart(data.manifest),
        reasons_chart(data.reasons),
        bar_chart("Rejections by who failed (fault)", list(data.faults.items()), empty="no rejected rows"),
        bar_chart("Turns per dialogue (user turns, accepted)", [(f"{k} turns", v) for k, v in data.turns.items()],
                  empty="no accepted dialogues"),
        bar_chart("Tool usage (calls in accepted dialogues)", list(data.tools.items()), empty="no tool calls"),
        bar_chart("Message lengths (accepted dialogues)", list(data.lengths.items()), empty="no messages"),
        *diversity_charts(data.manifest.diversity),
        *synthesis_charts(data.manifest),
        *kg_charts(data.manifest),
        *trend_charts(data.history),
    ]


def trend_charts(history: list[DatasetManifest]) -> list[str]:
    """Yield and cost per accepted trajectory, version by version: how a nightly schedule is doing over time.

    Yield is accepted / tasks of each run (rows a target kept back at stage ``target`` count as accepted: they
    passed every check). Versions written before cost accounting, or with no priced backend, leave a gap.
    """
    from pipelines.cost import money

    labels = [f"v{m.version} {m.created_at[:10]}" for m in history]
    yields = [(m.accepted + m.stages.get("target", 0)) / m.tasks if m.tasks else None for m in history]
    costs = [m.cost.per_accepted if m.cost else None for m in history]
    currency = next((m.cost.currency for m in history if m.cost), "USD")
    return [line_chart("Yield over versions (accepted / tasks)", labels, yields, fmt=lambda v: f"{100 * v:.0f}%"),
            line_chart("Cost per accepted trajectory over versions", labels, costs,
                       fmt=lambda v: money(v, currency),
                       empty="no cost recorded: give the backends a price (backends.NAME.price)")]


def kg_charts(manifest: DatasetManifest) -> list[str]:
    """KG questions by hops needed and by clues, with the no-tool solve rate in the title where it was measured."""
    from pipelines.kg_difficulty import chart_items, difficulty

    d = difficulty([manifest])
    if d is None:
        return []
    solved = ""
    if d.solved_without_tools is not None and d.solved_without_tools[1]:
        solved = f"; {100 * d.solved_without_tools[0] / d.solved_without_tools[1]:.1f}% answered without tools"
    return [bar_chart(f"KG question difficulty ({d.questions} questions{solved})", chart_items(d))]




def render(data: ReportData, root: str) -> str:
    from pipelines.cost import cost_lines, stop_line
    from pipelines.funnel import fault_summary

    m = data.manifest
    page = environment().get_template("report.html")
    return page.render(root=root, m=m, charts=[Markup(c) for c in charts(data)], samples=data.samples,
                       sample_actions=data.sample_actions, rejects=data.rejects,
                       faults=fault_summary(data.faults) if data.faults else "", style=Markup(stylesheet()),
                       figures=figure_lines(m.diversity), stop=stop_line(m) or "",
                       cost=cost_lines(m.cost) if m.cost else [])


def write_report(root: str | Path, to: str | Path, version: int | None = None) -> ReportData:
    """Collect, render, then write once: bad input raises ReportError before the file is touched."""
    data = collect(root, version)
    page = render(data, str(root))
    Path(to).parent.mkdir(parents=True, exist_ok=True)
    Path(to).write_text(page, encoding="utf-8")
    return data
