"""The dataset card: README.md with the YAML the Hub and ``datasets`` read, and the prose a person reads.

Everything in it is computed from the exported rows and the versions'
manifests, never typed by hand, so the card cannot drift from the data.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml

from pipelines.cost import card_section as cost_section
from pipelines.export_request import ExportSummary
from pipelines.splits import TEST, TRAIN

_ABOUT = {
    "sft": "accepted dialogues up to their last assistant turn: `messages` (OpenAI chat format, role-exact, tool-call "
           "`arguments` as objects) and the `tools` offered (OpenAI function schemas in declared order), the "
           "conversational format TRL's `SFTTrainer` reads",
    "rl": "accepted tasks as RL prompts: `prompt` (messages up to the first assistant turn), `tools`, `domain`, "
          "`env_seed`, the simulated user's `scenario`, and a `reward_spec` (gold actions, expected final-state "
          "hash, expected outputs; for KG questions the answer and its aliases), plus `env_config` (the domain and its "
          "parameters; files it names are bundled under `environment/`) and the whole `task`, from which "
          "`pipelines.rl.TaskEnvironment.from_row` rebuilds the environment, its simulated user and its reward",
    "rejects": "rejected rows with the `stage` and `reason` that rejected them, the dialogue if there was one (up to "
               "its last assistant turn; the turns after it in `trailing`), the `task` and all `verdicts`",
    "sharegpt": "accepted dialogues in ShareGPT form as LLaMA-Factory reads it (`conversations` of human / gpt / "
                "function_call / observation turns, `system`, `tools` as a JSON string)",
}
_STAGES_FIRST = ["synthesis", "simulation"]


def size_category(n: int) -> str:
    for limit, label in [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]:
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def front_matter(summary: ExportSummary) -> dict[str, Any]:
    """The card's YAML: one config per view, its splits pointing at the shard files."""
    configs, infos = [], []
    for view in summary.options.configs():
        splits = [s for s in (TRAIN, TEST) if summary.rows.get(view, {}).get(s)]
        if not splits:
            continue
        entry: dict[str, Any] = {"config_name": view}
        if view == "sft":
            entry["default"] = True
        entry["data_files"] = [{"split": s, "path": f"data/{view}/{s}-*.parquet"} for s in splits]
        configs.append(entry)
        # `datasets` keys its cache of a local folder by this YAML alone (the data_files are patterns): without
        # the sizes, a folder exported again (the next version, another run) loaded as the first export's cache
        infos.append({"config_name": view, "download_size": summary.view_bytes.get(view, 0),
                      "splits": [{"name": s, "num_bytes": summary.split_bytes.get(view, {}).get(s, 0),
                                  "num_examples": summary.rows[view][s]} for s in splits]})
    accepted = summary.manifest.total_accepted
    return {
        "license": summary.options.license,
        "pretty_name": f"{summary.name} (trajforge v{summary.version})",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "tool-use", "function-calling", "multi-turn", "agents", "trajforge"],
        "size_categories": [size_category(accepted)],
        "configs": configs,
        "dataset_info": infos,
    }


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _counts(counts: dict[Any, int], name: str) -> str:
    total = sum(counts.values()) or 1
    return _table([name, "accepted trajectories", "share"],
                  [[k, v, f"{100 * v / total:.1f}%"] for k, v in counts.items()])


def models_used(config: dict[str, Any]) -> list[str]:
    """Model names in a run config (any key named ``model``), or the offline scripted agents."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "model" and isinstance(v, str):
                    found.append(f"{v} ({path or 'config'})")
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(config, "")
    if config.get("simulation", {}).get("mode", "offline") == "offline" and not found:
        return ["none: offline mode, a scripted user and a scripted assistant with real tool results"]
    return found


def funnel(summary: ExportSummary) -> str:
    """Tasks in, rejections per stage in pipeline order, accepted out, summed over the listed versions."""
    manifests = summary.manifests
    tasks = sum(m.tasks for m in manifests)
    stages: dict[str, int] = {}
    for m in manifests:
        for stage, n in m.stages.items():
            stages[stage] = stages.get(stage, 0) + n
    filters = [f.get("name") for f in summary.manifest.config.get("filters", []) if isinstance(f, dict)]
    beside = [x for f in filters for x in (f, f"{f}_error")]  # a judge that gave no verdict, beside its verdicts
    order = [s for s in [*_STAGES_FIRST, *beside, "dedup"] if s in stages]
    order += sorted(s for s in stages if s not in order)
    rows, left = [["tasks generated", tasks, ""]], tasks
    for stage in order:
        left -= stages[stage]
        rows.append([f"rejected at `{stage}`", stages[stage], left])
    rows.append(["**accepted**", sum(m.accepted for m in manifests), ""])
    return _table(["step", "rows", "remaining"], rows)


def faults(summary: ExportSummary) -> str:
    """Who failed, summed over the versions: the rejections attributed to each party."""
    from pipelines.funnel import FAULT_NAMES, fault_summary

    totals: Counter[str] = Counter()
    for m in summary.manifests:
        totals.update(m.faults)
    if not totals:
        return ""
    total = sum(totals.values())
    rows = [[FAULT_NAMES.get(f, f).removesuffix("'s").removesuffix("'"), f"`{f}`", n, f"{100 * n / total:.0f}%"]
            for f, n in totals.most_common()]
    return ("\n\nWho failed (the row column `fault`): " + fault_summary(totals) + ".\n\n"
            + _table(["failed", "fault", "rejected rows", "share"], rows))


def synthesis(summary: ExportSummary) -> str:
    """What model-backed generators did before any dialogue existed (blueprints written, reviewed, dropped)."""
    from pipelines.funnel import synthesis_lines

    totals: dict[str, Counter[str]] = {}
    for m in summary.manifests:
        for generator, counts in m.synthesis.items():
            totals.setdefault(generator, Counter()).update(counts)
    if not totals:
        return ""
    lines = [line for g, c in sorted(totals.items()) for line in synthesis_lines(g, c)]
    return "\n\nTask synthesis, before any dialogue:\n\n```\n" + "\n".join(lines) + "\n```"


def diversity(summary: ExportSummary) -> str:
    """Variety and difficulty: the exported version's figures in full, then the headline ones per version."""
    from pipelines.diversity import SCALARS

    measured = [m for m in summary.manifests if m.diversity is not None]
    if not measured:
        return "## Diversity and difficulty\n\nNot measured (these versions were written before trajforge measured them)."
    f = summary.manifest.diversity
    parts = ["## Diversity and difficulty",
             "Measured on each version's accepted dialogues when it was committed (tokens: whitespace words, "
             "lowercased; distinct-n: distinct n-grams / n-grams; compression similarity: 1 - mean zlib "
             "normalized compression distance between sampled dialogues; difficulty: (writes + 1) x (facts the "
             "user withholds + 1) x (calls that depend on an earlier result + 1))."]
    if f is not None:
        rows = [[name, fmt.format(get(f))] for name, get, fmt in SCALARS]
        if f.intent_coverage is not None:
            rows.append(["intent coverage", f"{f.intent_coverage:.0%}"])
        parts.append(f"Version {summary.version} ({f.dialogues} dialogues{'' if f.exact else ', sketched'}):\n\n"
                     + _table(["figure", "value"], rows))
        if f.top_tool_chains:
            parts.append("Most frequent tool chains:\n\n" + _table(
                ["tool chain", "dialogues"], [[f"`{c or '(none)'}`", n] for c, n in f.top_tool_chains[:5]]))
        if f.judge_scores:
            parts.append("Judge scores (every row the judge saw):\n\n" + _table(
                ["score", "rows"], [[k, v] for k, v in f.judge_scores.items()]))
    if len(measured) > 1:
        head = [name for name, _get, _fmt in SCALARS[:4]] + ["mean difficulty"]
        getters = {name: (get, fmt) for name, get, fmt in SCALARS}
        parts.append("Per version:\n\n" + _table(["version", *head], [
            [m.version, *(getters[h][1].format(getters[h][0](m.diversity)) for h in head)] for m in measured]))
    return "\n\n".join(parts)


def kg_section(summary: ExportSummary) -> list[str]:
    """KG question difficulty (hops needed, clues, no-tool solve rate), when the versions made KG questions."""
    from pipelines.kg_difficulty import difficulty, markdown

    d = difficulty(summary.manifests)
    return [] if d is None else ["## KG question difficulty\n\nSummed over the versions listed under Lineage.\n\n"
                                 + markdown(d)]


def lineage(summary: ExportSummary) -> str:
    return _table(
        ["version", "parent", "run_id", "created_at", "tasks", "accepted", "rejected", "config_hash", "code_version",
         "seed"],
        [[m.version, "" if m.parent_version is None else m.parent_version, m.run_id, m.created_at, m.tasks, m.accepted,
          m.rejected, f"`{m.config_hash}`", f"`{m.code_version}`", m.seed] for m in summary.manifests])


# What each config was checked against in this version of trajforge, besides the --chat-template checks of the export.
TRAINERS = {
    "sft": "TRL `SFTTrainer` (trl 1.16, `assistant_only_loss` with a `{% generation %}` template) runs optimizer steps "
           "on it in trajforge's tests",
    "rl": "TRL `GRPOTrainer` (trl 1.16, `environment_factory` from `pipelines.rl.trl`) runs optimizer steps on it in "
          "trajforge's tests, with every rollout's tools executed on the rebuilt domain and its reward from the "
          "task kind's verifiers",
    "sharegpt": "LLaMA-Factory 0.9.5's own ShareGPT converter (`llamafactory/data/converter.py`) and function-call "
                "parser accept every row in trajforge's tests, loaded with `datasets==4.0.0`",
}


def loading(summary: ExportSummary, configs: list[str]) -> str:
    """What each config needs to load, and how its JSON columns come back: the two encodings of ``--json-as-text``."""
    text = summary.options.json_as_text
    rows = []
    for v in configs:
        columns = summary.json_fields.get(v) or []
        if not columns:
            needs, returns = "`datasets` >= 4.0", "plain columns"
        elif text:
            needs, returns = "`datasets` >= 4.0", "JSON strings (`[]`: one per item): `json.loads` each"
        else:
            needs, returns = "`datasets` >= 4.7 (the `Json` feature)", "objects, role-exact"
        rows.append([f"`{v}`", ", ".join(f"`{c}`" for c in columns) or "none", needs, returns])
    if text:
        how = ("This export was written with `--json-as-text`: every JSON column holds JSON text (one string per "
               "message and per tool), so any `datasets` >= 4.0, polars and pandas load every config. Decode at the "
               "point of use, which keeps each message role-exact: `messages = [json.loads(m) for m in "
               "row[\"messages\"]]`, `tools = [json.loads(t) for t in row[\"tools\"]]`; with `datasets` >= 4.7, "
               "`ds.cast_column(\"messages\", datasets.List(datasets.Json()))` does the same. (A `Dataset.map` that "
               "returns the parsed dicts would store them as an Arrow struct again, padding every role with the "
               "others' keys as nulls.)")
    else:
        how = ("Messages, tool-call `arguments` and `tools` are JSON objects (the `Json` feature), role-exact (each "
               "message has only its role's keys), as chat templates expect: `tokenizer.apply_chat_template("
               "row[\"messages\"], tools=row[\"tools\"])`; pyarrow, polars and pandas read them as JSON text. "
               "`datasets` < 4.7 cannot load a JSON column (LLaMA-Factory pins `datasets<=4.0`): use `sharegpt`, or "
               "an export made with `trajforge export --json-as-text`, which any `datasets` >= 4.0 loads.")
    return _table(["config", "JSON values", "needs", "they come back as"], rows) + "\n\n" + how


def verification(summary: ExportSummary) -> str:
    """Which chat templates every row was rendered through, at export, and which trainers read each config."""
    lines = []
    if summary.templates:
        rows = []
        for t in summary.templates:
            notes = [n for n in (t["prefix_note"] and f"prefix check reported only: the template {t['prefix_note']}",
                                 t["system_dropped"] and f"the template {t['system_note']}") if n]
            rows.append([f"`{t['template']}`", t["source"] or "", t["license"] or "", t["rows"], t["rendered"],
                         t["prefix_ok"], t["level"], "; ".join(notes)])
        lines.append("Every `sft` row was rendered at export with transformers' chat-template renderer (what "
                     "`apply_chat_template` calls) and checked: each system prompt, text, tool call, argument object, "
                     "tool result and tool schema appears exactly once and in order, the rendered tool calls parse "
                     "back to the row's calls, and the prompt before each assistant turn is a prefix of the whole "
                     "render.\n\n" + _table(["template", "source", "license", "rows", "rendered", "prefix ok", "checked at",
                                            "notes"], rows))
    else:
        lines.append("No chat template was checked at this export (`trajforge export --chat-template NAME` checks "
                     "every row; `trajforge check-template FOLDER --chat-template NAME` checks this folder).")
    if summary.dropped:
        lines.append(f"{len(summary.dropped)} accepted rows were left out of every config because a template could "
                     "not render them (`--drop-unrenderable`); the first: "
                     + "; ".join(f"`{k}` ({v})" for k, v in list(summary.dropped.items())[:3]) + ".")
    configs = [v for v in summary.options.configs() if summary.rows.get(v)]
    lines.append("\n".join(f"- `{v}`: {TRAINERS[v]}." for v in configs if v in TRAINERS))
    lines.append("Dialogues end on the assistant's last turn: the simulated user's closing line is trimmed, not "
                 "answered. Which `datasets` each config needs: see How to load.")
    return "\n\n".join(line for line in lines if line)


def render_card(summary: ExportSummary) -> str:
    o, m = summary.options, summary.manifest
    where = o.repo_id or o.load_path or summary.name
    revision = f', revision="v{summary.version}"' if o.repo_id else ""
    configs = [v for v in o.configs() if summary.rows.get(v)]
    split_rows = [[f"`{v}`", s, summary.rows[v][s], len(summary.files[v][s])]
                  for v in configs for s in (TRAIN, TEST) if summary.rows[v].get(s)]
    load = "\n".join(f'{v} = load_dataset("{where}", "{v}"{revision})' for v in configs)
    expired = "" if summary.manifests[0].parent_version is None else (
        f"\n\nVersions before {summary.manifests[0].version} have expired (retention); their rows remain part of "
        "every later version, but their manifests are no longer listed.\n")
    # Where the run wrote and how it was parallelised are not part of the data (nor of the config hash), and a
    # local path has no place in a published card.
    shown = {k: v for k, v in m.config.items() if k not in {"output_dir", "runner", "cache", "publish"}}
    config_yaml = yaml.safe_dump(shown, sort_keys=False, default_flow_style=None).strip()
    sections = [
        f"# {summary.name}: trajforge dataset, version {summary.version}",
        "Synthetic multi-turn tool-use dialogues: a simulated user talks to an assistant that calls tools on a "
        "stateful environment. Each task is an APIGen-MT-style blueprint (instruction, gold tool calls, expected "
        "outputs) or a KG question; every dialogue was verified tau-bench style (well-formed, ran cleanly, followed "
        "the domain policy, reached the gold final state, told the user what they needed) and deduplicated, and "
        "every task that failed is kept as a rejected row with its reason. Generated by trajforge and "
        "versioned as a Delta Lake table; this folder is a snapshot of "
        f"version {summary.version}.",
        "## Size\n\n"
        f"{m.total_accepted} accepted trajectories in version {summary.version} ({summary.total_rows} rows with the "
        f"rejected ones), {summary.bytes / 1e6:.1f} MB of Parquet. Train/test split by hashing the task id (and the "
        f"near-duplicate cluster, where rows have one), so no task and no near-duplicate cluster is in both; "
        f"test ratio {o.test_ratio}.\n\n" + _table(["config", "split", "rows", "files"], split_rows),
        "## Configs\n\n" + "\n".join(f"- `{v}`: {_ABOUT[v]}." for v in configs),
        "## How to load\n\n```python\nfrom datasets import load_dataset\n\n" + load + "\n```\n\n"
        + loading(summary, configs),
        "## Verified against\n\n" + verification(summary),
        "## Contents\n\n" + _counts(summary.by_domain, "domain") + "\n\n" + _counts(summary.by_kind, "kind")
        + "\n\n" + _counts(summary.by_turns, "user turns"),
        diversity(summary),
        "## Filter funnel\n\nSummed over the versions listed under Lineage.\n\n" + funnel(summary)
        + faults(summary) + synthesis(summary),
        *kg_section(summary),
        *cost_section(summary.manifests),
        "## Generation\n\nModels used:\n\n" + "\n".join(f"- {x}" for x in models_used(m.config))
        + f"\n\nRun config of version {summary.version} (config hash `{m.config_hash}`):\n\n```yaml\n"
        + config_yaml + "\n```",
        "## Lineage\n\n" + lineage(summary) + expired.rstrip(),
        f"## License\n\n`{o.license}`" + (" (set with `trajforge export --license`)" if o.license == "other" else ""),
    ]
    return "---\n" + yaml.safe_dump(front_matter(summary), sort_keys=False) + "---\n\n" + "\n\n".join(sections) + "\n"
