"""``trajforge``: the command line.

Every error path ends in one line on stderr and a documented exit status
(``schemas.errors``): 2 for bad input found before any work (a config, an
argument, a file, an output location, a damaged dataset), 3 for a backend
that failed its preflight check, 1 for a run that stopped without
committing. Commands that start work go through ``pipelines.preflight``
first, so nothing is written when the input is bad.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path

from schemas import BackendUnavailableError, ConfigError, InputError, RunFailedError, UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to look) like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"trajforge: error: {message} (see `{self.prog} --help`)\n")


def _run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def cmd_generate(args: argparse.Namespace) -> int:
    from pipelines.preflight import preflight

    config = preflight(args.config, out=args.out, seed=args.seed, run_id=args.run_id,
                       target_accepted=args.target_accepted)  # before any work
    from pipelines.flow import start_run

    run_id = args.run_id or _run_id()
    from pipelines.interrupt import exit_promptly_on_interrupt

    staging = Path(config.output_dir) / "_staging" / run_id
    resume = f"trajforge generate --config {args.config} --out {config.output_dir} --run-id {run_id}"
    try:
        with exit_promptly_on_interrupt(f"run {run_id} stopped; its finished shards stay under {staging}/; resume "
                                        f"with: {resume}"):
            result = start_run(config, config.output_dir, run_id, progress=not args.no_progress)
    except RunFailedError as err:  # its staging is kept: say how to resume
        err.args = (f"{err}; to resume: {resume}",)
        raise
    manifest = result.manifest
    if result.already_committed:
        print(f"run {run_id} was already committed as version {manifest.version}; nothing to redo")
        return 0
    print(f"\nversion {manifest.version} committed to {Path(config.output_dir).resolve()}")
    print(f"  run {manifest.run_id}: {manifest.tasks} tasks -> {manifest.accepted} accepted, "
          f"{manifest.rejected} rejected ({manifest.total_accepted} accepted in the dataset)")
    if manifest.funnel:
        from pipelines.funnel import print_funnel

        print_funnel(manifest)
    else:
        for stage, n in manifest.stages.items():
            print(f"  rejected at {stage}: {n}")
    if manifest.diversity is not None:
        from pipelines.diversity import figure_lines

        f = manifest.diversity
        print(f"  diversity ({f.dialogues} accepted dialogues{'' if f.exact else ', estimated'}):")
        for line in figure_lines(f):
            print(f"    {line}")
    for role, u in manifest.usage.items():
        print(f"  {role} ({manifest.models.get(role, '?')}): {u.requests} requests, {u.cached} from cache, "
              f"{u.retries} retries, {u.prompt_tokens} prompt + {u.completion_tokens} completion tokens, "
              f"{u.latency_s:.1f}s in requests")
    from pipelines.cost import cost_lines, stop_line
    from pipelines.store import polars_hint

    for line in [stop_line(manifest), *(cost_lines(manifest.cost) if manifest.cost else [])]:
        if line:
            print(f"  {line}")
    print(f"  open it: {polars_hint(config.output_dir, manifest.version)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pipelines.preflight import preflight

    config = preflight(args.config, out=args.out)  # before anything is registered
    from pipelines.schedule import check_cron, serve

    return serve(json.loads(config.model_dump_json()), config.output_dir, check_cron(args.cron), args.name or config.name)


def cmd_versions(args: argparse.Namespace) -> int:
    from pipelines.store import DatasetStore

    if args.check:
        return _versions_check(args, DatasetStore(args.dir))
    if args.diff is not None or args.retain is not None:
        return _versions_change(args, DatasetStore(args.dir))
    versions = DatasetStore(args.dir).versions()
    if args.json:
        print(json.dumps([m.model_dump(exclude={"config"}) for m in versions], indent=2))
        return 0
    print(f"{'version':>7}  {'accepted':>8}  {'rejected':>8}  {'total':>7}  {'created_at':<25}  {'run_id':<30}  "
          f"started by")
    for m in versions:
        print(f"{m.version:>7}  {m.accepted:>8}  {m.rejected:>8}  {m.total_accepted:>7}  {m.created_at:<25}  "
              f"{m.run_id:<30}  {m.origin.describe() if m.origin else 'generate'}")
    return 0


def _versions_check(args: argparse.Namespace, store) -> int:
    """``versions --check``: every problem on stdout, one summary line (stderr when something is wrong)."""
    report = store.check()
    for problem in report.problems:
        print(problem)
    if report.problems:
        raise UserError(f"{store.root}: {len(report.problems)} problem(s) found by --check, the first: "
                        f"{report.problems[0]}")
    print(f"{store.root}: ok: {report.versions} version(s), {report.files} data file(s) present and readable, "
          f"{report.rows} rows; every run's row counts match its manifest")
    return 0


def cmd_dedup_histogram(args: argparse.Namespace) -> int:
    """From the persisted embeddings of every version (computed once for a version that has none)."""
    from dedup import kept_rows_histogram, semantic
    from pipelines.export_request import resolve_version
    from pipelines.funnel import bars
    from pipelines.store import DatasetStore
    from schemas import DedupConfig

    if args.bins < 1:
        raise ConfigError(f"--bins: must be at least 1, got {args.bins}")
    store = DatasetStore(args.dir)
    _, versions = resolve_version(store, None)  # every version, or one line: no dataset, a damaged one, no version
    missing = semantic.available()
    if missing:
        raise InputError(f"dedup-histogram: {missing}")
    config = DedupConfig.model_validate(versions[-1].config.get("dedup", {}))
    config = config.model_copy(update={"semantic": config.semantic.model_copy(update={"enabled": True})})
    index = store.dedup_index(config)
    counts, above = kept_rows_histogram(index.embeddings, args.bins, config.semantic.threshold)
    print(f"{len(index)} kept rows in {len(versions)} version(s); cosine similarity to the nearest other kept row")
    print(f"  {'bin':>9}  {'rows':>7}")
    for line in bars(counts):
        print(line)
    print(f"rows at or above the configured threshold {config.semantic.threshold}: {above}")
    return 0


def _versions_change(args: argparse.Namespace, store) -> int:
    """``versions --diff A B`` and ``versions --retain N``."""
    from pipelines.diversity import format_change
    from pipelines.versioning import diff_versions, retain_versions

    if args.diff is not None:
        diff = diff_versions(store, *args.diff).as_dict()
        if args.json:
            print(json.dumps(diff, indent=2))
        else:
            print(f"version {diff['from']} -> {diff['to']}: +{diff['added_total']} rows "
                  f"({diff['added']['accepted']} accepted, {diff['added']['rejected']} rejected), "
                  f"-{diff['removed_total']} rows ({diff['removed']['accepted']} accepted, "
                  f"{diff['removed']['rejected']} rejected)")
            runs = diff["runs"]
            if runs and diff["dedup_rejected"]:  # e.g. a re-run of the same config and seed: its rows are duplicates
                print(f"  {len(runs)} run(s) committed in between ({', '.join(runs)}); {diff['dedup_rejected']} of "
                      f"their rows rejected as duplicates of rows kept before")
            for name, change in diff["diversity"].items():
                print(f"  {name}: {format_change(name, change)}")
        return 0
    result = retain_versions(store, args.retain)
    print(f"kept versions {', '.join(map(str, result.kept))}; expired {len(result.expired)} older version(s)"
          f"{' (' + ', '.join(map(str, result.expired)) + ')' if result.expired else ''}; "
          f"vacuumed {len(result.vacuumed)} unreferenced file(s)")
    return 0


def _export_options(args: argparse.Namespace):
    from pipelines.export import ExportOptions

    return ExportOptions(version=args.version, test_ratio=args.test_ratio, rejects=args.rejects,
                         sharegpt=args.sharegpt, license=args.license, shard_rows=args.shard_rows,
                         chat_templates=args.chat_template or [], drop_unrenderable=args.drop_unrenderable,
                         strip_reasoning=set(args.strip_reasoning or []), json_as_text=args.json_as_text)


def cmd_export(args: argparse.Namespace) -> int:
    from pipelines.export import export_version
    from pipelines.preflight import check_output_folder

    check_output_folder(args.to, "--to")
    summary = export_version(args.dir, args.to, _export_options(args), force=args.force)
    print(f"exported version {summary.version} of {args.dir} to {args.to}")
    for view, splits in summary.rows.items():
        print(f"  {view}: " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    if summary.templates:
        _print_templates(summary.templates)
    if summary.dropped:
        print(f"  dropped {len(summary.dropped)} unrenderable rows (see the card)")
    print(f'  open it: datasets.load_dataset({str(args.to)!r}, "sft")')
    return 0


def _print_templates(summaries: list[dict]) -> None:
    from pipelines.template_check import table

    print("\n".join("  " + line for line in table(summaries)))


def cmd_check_template(args: argparse.Namespace) -> int:
    from pipelines.template_check import check_folder

    reports = check_folder(args.dir, args.chat_template, args.version, args.config, args.limit)
    _print_templates([r.summary() for r in reports])
    failed = 0
    for r in reports:
        for row_id, problem in list(r.failed.items())[: args.show]:
            print(f"  {r.template.name}: row {row_id}: {problem}")
        failed += len(r.failed)
    return 1 if failed else 0


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP clients huggingface_hub may use (httpx, or its fork httpx2)."""
    import importlib

    found: list[type[BaseException]] = [OSError]
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def cmd_push(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from pipelines.hub import push_version

    try:
        result = push_version(args.dir, args.repo, _export_options(args), private=args.private or None)
    except HfHubHTTPError as err:
        print(f"trajforge: error: push to {args.repo} failed: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    except _network_errors() as err:  # the Hub not reachable at all: nothing was pushed
        from huggingface_hub import constants

        from simulators.backends.failures import describe_connection_error

        raise BackendUnavailableError(f"push to {args.repo}: the Hub at {constants.ENDPOINT}: "
                                      f"{describe_connection_error(err)}") from None
    print(f"pushed version {result.version} to {result.repo_id} (commit {result.commit}, tag {result.tag})")
    print(f'  open it: datasets.load_dataset({result.repo_id!r}, "sft", revision={result.tag!r})')
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipelines.preflight import check_output_file
    from pipelines.report import write_report

    check_output_file(args.to, "--to")
    data = write_report(args.dir, args.to, args.version)
    m = data.manifest
    print(f"wrote {args.to}: version {m.version} (run {m.run_id}), {m.accepted} accepted, {m.rejected} rejected, "
          f"{len(data.samples)} sample dialogues")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from pipelines.viewer.server import serve

    return serve(args.dir, args.version, args.port, tuple(args.allow_host))


def cmd_env_serve(args: argparse.Namespace) -> int:
    from pipelines.rl.server import serve

    for name in ("max_sessions", "max_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1")
    for name in ("idle_timeout", "max_episode_seconds"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be positive")
    return serve(args.dir, args.version, args.port, args.max_sessions, args.max_steps, args.idle_timeout,
                 args.max_episode_seconds)


def cmd_env_verl(args: argparse.Namespace) -> int:
    from pipelines.rl.verl import write_verl

    if not (args.dir / "data" / "rl").is_dir():
        raise ConfigError(f"{args.dir}: not an export folder with an rl config (data/rl/); run trajforge export first")
    out = args.out or args.dir / "verl"
    counts = write_verl(args.dir, out)
    for domain, splits in counts.items():
        rows = ", ".join(f"{split} {n}" for split, n in sorted(splits.items()))
        print(f"{out / domain}: {rows} row(s); tool_config.yaml, interaction_config.yaml")
    print(f"{out / 'reward.py'}: compute_score (reward.custom_reward_function.path)")
    return 0


def _add_export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-ratio", type=float, default=0.1, help="share of task groups in the test split (0.1)")
    p.add_argument("--rejects", action="store_true", help="add the rejects config")
    p.add_argument("--sharegpt", action="store_true", help="add the sharegpt config")
    p.add_argument("--license", default="other", help="license id for the card (default: other)")
    p.add_argument("--shard-rows", type=int, default=20_000, help="rows per Parquet shard (20000)")
    p.add_argument("--chat-template", action="append", metavar="NAME_OR_FILE",
                   help="render every sft row through this chat template and stop on a row it cannot render "
                        "(repeatable; built-in: qwen2.5, qwen3, llama3.1, llama3.3, hermes, mistral, granite; or a "
                        ".jinja file, a tokenizer_config.json or a local tokenizer folder; TEMPLATE@TOKENIZER_DIR "
                        "checks it on that tokenizer's tokens)")
    p.add_argument("--drop-unrenderable", action="store_true",
                   help="leave rows a --chat-template cannot render out of every config (counted in the card)")
    p.add_argument("--strip-reasoning", action="append", metavar="CONFIG",
                   help="export this config without assistant reasoning_content (repeatable: sft, rl, rejects, sharegpt)")
    p.add_argument("--json-as-text", action="store_true",
                   help="write messages, tools and the other JSON columns as JSON strings, which any datasets >= 4.0 "
                        "loads (decode each with json.loads), instead of Arrow JSON values (datasets >= 4.7, "
                        "role-exact objects)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="trajforge", description="Synthetic multi-turn tool-use trajectories.")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="run the generate flow and commit a new dataset version")
    g.add_argument("--config", required=True, type=Path)
    g.add_argument("--out", help="dataset directory (overrides output_dir in the config)")
    g.add_argument("--seed", type=int)
    g.add_argument("--run-id", help="name this run (default: a timestamp)")
    g.add_argument("--target-accepted", type=int, metavar="N",
                   help="run shards until N rows are accepted after every filter and dedup, and commit exactly N "
                        "(replaces num_tasks; budget.max_* in the config still stop it earlier)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.set_defaults(func=cmd_generate)
    s = sub.add_parser("serve", help="serve a cron-scheduled deployment: each run commits a new dataset version "
                       "(a local Prefect server is started unless PREFECT_API_URL is set)")
    s.add_argument("--config", required=True, type=Path)
    s.add_argument("--cron", required=True, help='cron expression, e.g. "0 3 * * *" (daily at 03:00 UTC)')
    s.add_argument("--name", help="deployment name (default: the config's name)")
    s.add_argument("--out", help="dataset directory (overrides output_dir in the config)")
    s.set_defaults(func=cmd_serve)
    v = sub.add_parser("versions", help="list the versions of a dataset")
    v.add_argument("dir", type=Path)
    v.add_argument("--json", action="store_true")
    v.add_argument("--diff", nargs=2, type=int, metavar=("A", "B"), help="rows added / removed from version A to B")
    v.add_argument("--retain", type=int, metavar="N", help="keep the newest N versions readable, expire older ones")
    v.add_argument("--check", action="store_true",
                   help="verify the dataset: log whole, data files present and readable, row counts match manifests")
    v.set_defaults(func=cmd_versions)
    h = sub.add_parser("dedup-histogram", help="nearest-neighbour cosine similarity of the kept rows (all versions), "
                       "to choose dedup.semantic.threshold")
    h.add_argument("dir", type=Path)
    h.add_argument("--bins", type=int, default=20)
    h.set_defaults(func=cmd_dedup_histogram)


    e = sub.add_parser("export", help="write a version as a Hugging Face datasets folder (sft / rl configs + card)")
    e.add_argument("dir", type=Path)
    e.add_argument("--version", type=int, help="version to export (default: the newest)")
    e.add_argument("--to", required=True, type=Path, help="destination folder")
    e.add_argument("--force", action="store_true", help="replace the destination folder if it is not empty")
    _add_export_options(e)
    e.set_defaults(func=cmd_export)
    h = sub.add_parser("push", help="export a version and upload it to the Hub, tagged v<N>")
    h.add_argument("dir", type=Path)
    h.add_argument("--version", type=int, required=True)
    h.add_argument("--repo", required=True, help="ORG/NAME of the dataset repo (created if missing)")
    h.add_argument("--private", action="store_true", help="create the repo private")
    _add_export_options(h)
    h.set_defaults(func=cmd_push)
    c = sub.add_parser("check-template", help="render every sft row of an exported folder (or of a dataset "
                       "version) through chat templates and check it at text and token level")
    c.add_argument("dir", type=Path, help="an exported HF datasets folder, or a trajforge dataset directory")
    c.add_argument("--chat-template", action="append", required=True, metavar="NAME_OR_FILE",
                   help="built-in name, .jinja file, tokenizer_config.json or local tokenizer folder (repeatable); "
                        "TEMPLATE@TOKENIZER_DIR checks TEMPLATE on the tokens of a local tokenizer folder")
    c.add_argument("--version", type=int, help="dataset version, for a dataset directory (default: the newest)")
    c.add_argument("--config", default="sft", choices=["sft", "rl", "rejects"], help="config whose messages to check")
    c.add_argument("--limit", type=int, help="check only the first N rows")
    c.add_argument("--show", type=int, default=5, help="failing rows listed per template (5)")
    c.set_defaults(func=cmd_check_template)
    r = sub.add_parser("report", help="write one self-contained HTML page with plots and sample dialogues of a version")
    r.add_argument("dir", type=Path)
    r.add_argument("--version", type=int, help="version to report on (default: the newest)")
    r.add_argument("--to", required=True, type=Path, help="the HTML file to write")
    r.set_defaults(func=cmd_report)
    w = sub.add_parser("view", help="browse, search and compare the rows of every version in a local web app")
    w.add_argument("dir", type=Path)
    w.add_argument("--version", type=int, help="version to open (default: the newest committed)")
    w.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    w.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                   help="also answer requests whose Host header is HOST (a tunnel or proxy); repeatable")
    w.set_defaults(func=cmd_view)
    e = sub.add_parser("env", help="serve a version's tasks as RL environments")
    env_sub = e.add_subparsers(dest="env_command", required=True)
    es = env_sub.add_parser("serve", help="reset/step/state/reward sessions over HTTP on 127.0.0.1")
    es.add_argument("dir", type=Path, help="an export folder (trajforge export --to) or a dataset")
    es.add_argument("--version", type=int, help="version of a dataset to serve (default: the newest)")
    es.add_argument("--port", type=int, default=8770, help="port on 127.0.0.1 (default 8770; 0 picks a free one)")
    es.add_argument("--max-sessions", type=int, default=1024, help="sessions open at once (1024)")
    es.add_argument("--max-steps", type=int, default=400, help="steps per session before it ends (400)")
    es.add_argument("--idle-timeout", type=float, default=600.0,
                    help="seconds without a request before a session is dropped (600)")
    es.add_argument("--max-episode-seconds", type=float, default=3600.0,
                    help="seconds from a reset before the episode ends, however busy (3600)")
    es.set_defaults(func=cmd_env_serve)
    ev = env_sub.add_parser("verl", help="write the rl config in verl's columns, with its tool config and reward")
    ev.add_argument("dir", type=Path, help="an export folder (trajforge export --to)")
    ev.add_argument("--out", type=Path, help="where to write (default: DIR/verl)")
    ev.set_defaults(func=cmd_env_verl)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    args = parser().parse_args(argv)
    from pipelines.prefect_server import ServerError
    from simulators.backends import BackendError

    try:
        return args.func(args)
    except (UserError, RunFailedError) as err:
        print(f"trajforge: error: {_one_line(err)}", file=sys.stderr)
        return err.exit_code
    except (BackendError, ServerError) as err:  # e.g. a managed vLLM or the Prefect server would not start
        print(f"trajforge: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: said so on one line where it was caught (pipelines.interrupt)
        from pipelines.interrupt import EXIT_STATUS

        return EXIT_STATUS


def _one_line(err: BaseException) -> str:
    """The message on one line: a message from a plug-in or a server may hold newlines."""
    return " ".join(str(err).split("\n")).strip()


if __name__ == "__main__":
    sys.exit(main())
