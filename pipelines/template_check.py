"""Chat-template verification: every exported row rendered through a real tool-calling chat template.

A row is only trainer-ready if the template a trainer will use renders it
whole. Each row is rendered with transformers' own renderer
(``render_jinja_template``, what ``apply_chat_template`` calls) on the messages
and tools exactly as ``datasets`` returns them, and checked four ways:

- **placement**: a second render in which every system prompt, user and
  assistant text, tool-call argument object, tool result and tool description
  is replaced by a unique probe shows each of them exactly once and the
  dialogue's items in order (a template that drops, repeats or reorders one
  fails);
- **fidelity**: the real render contains every text as written, and parsing
  the rendered assistant turns with the template's tool-call format (Hermes /
  Qwen ``<tool_call>``, Llama 3.1 JSON, Mistral ``[TOOL_CALLS]``, Granite
  ``<|tool_call|>``) gives back the row's calls, names and arguments, in order;
- **prefix**: the render of the messages before each assistant turn (with the
  generation prompt) is a prefix of the whole render, as text and, with a
  tokenizer, as tokens: the multi-turn mismatch RL trainers hit when they
  re-tokenize a growing conversation;
- **assistant mask** (templates with ``{% generation %}`` and a tokenizer):
  every assistant item lies inside the trained span and nothing else does.

Templates ship with the package (``pipelines/templates``, sources and licenses
in its ``SOURCES.md``) under short names; a file or a local tokenizer folder
works as well. ``TEMPLATE@TOKENIZER_DIR`` pairs any of them with a local
tokenizer, so that a built-in's text (no tokenizer ships with it) is checked on
the tokens of its model family's tokenizer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import ConfigError

TEMPLATE_DIR = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class _Builtin:
    file: str
    calls: str
    source: str
    license: str
    specials: dict[str, str]
    prefix_note: str = ""  # set when the template cannot be prefix-stable by design: its prefix check is reported only
    system_note: str = ""  # set when the template drops the system prompt of a dialogue that ends on the assistant


_CHATML = {"bos_token": "", "eos_token": "<|im_end|>"}
_LLAMA = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
BUILTINS: dict[str, _Builtin] = {
    "qwen2.5": _Builtin("qwen2.5.jinja", "hermes", "Qwen/Qwen2.5-7B-Instruct tokenizer_config.json", "Apache-2.0",
                        _CHATML),
    "qwen3": _Builtin("qwen3.jinja", "hermes", "Qwen/Qwen3-0.6B tokenizer_config.json", "Apache-2.0", _CHATML),
    "llama3.1": _Builtin("llama3.1.jinja", "llama_json", "vLLM examples/tool_chat_template_llama3.1_json.jinja",
                         "Apache-2.0", _LLAMA),
    "llama3.3": _Builtin("llama3.3.jinja", "llama_json", "meta-llama/Llama-3.3-70B-Instruct tokenizer_config.json",
                         "Llama 3.3 Community License", _LLAMA),
    "hermes": _Builtin("hermes.jinja", "hermes", "vLLM examples/tool_chat_template_hermes.jinja", "Apache-2.0",
                       _CHATML),
    "mistral": _Builtin("mistral.jinja", "mistral", "vLLM examples/tool_chat_template_mistral_parallel.jinja",
                        "Apache-2.0", {"bos_token": "<s>", "eos_token": "</s>"},
                        prefix_note="puts the tools and the system prompt before the last user turn, so an earlier "
                                    "turn's prompt is never a prefix of the whole dialogue",
                        system_note="renders the system prompt only when the last message is a user turn (an "
                                    "inference prompt), so a whole dialogue ending on the assistant is trained "
                                    "without it; mistral-common puts it in the last user turn instead"),
    "granite": _Builtin("granite.jinja", "granite", "vLLM examples/tool_chat_template_granite.jinja (Granite 3.0)",
                        "Apache-2.0", {"bos_token": "", "eos_token": "<|end_of_text|>"}),
}


@dataclass
class ChatTemplate:
    name: str
    text: str
    calls: str | None  # tool-call format the rendered turns are parsed with; None: no known format
    source: str = ""
    license: str = ""
    specials: dict[str, str] = field(default_factory=dict)
    tokenizer: Any = None
    prefix_note: str = ""
    system_note: str = ""

    @property
    def marks_generation(self) -> bool:
        return bool(re.search(r"\{%-?\s*generation\s*-?%\}", self.text))


def detect_call_format(text: str) -> str | None:
    """The tool-call format a template writes, from the markers it renders."""
    if "[TOOL_CALLS]" in text:
        return "mistral"
    if "<|tool_call|>" in text:
        return "granite"
    if "<tool_call>" in text:
        return "hermes"
    if '"parameters": ' in text and "<|start_header_id|>" in text:
        return "llama_json"
    return None


def load_template(spec: str) -> ChatTemplate:
    """A built-in name, a template file (``.jinja`` or a ``tokenizer_config.json``) or a local tokenizer folder;
    ``TEMPLATE@TOKENIZER_DIR`` pairs any of them with a local tokenizer, so the checks run on its tokens."""
    key = spec.strip().lower()
    if key not in BUILTINS and not Path(spec).exists() and "@" in spec:
        left, _, right = spec.rpartition("@")
        return _paired(load_template(left), Path(right), spec)
    if key in BUILTINS:
        b = BUILTINS[key]
        return ChatTemplate(key, (TEMPLATE_DIR / b.file).read_text(), b.calls, b.source, b.license, dict(b.specials),
                            prefix_note=b.prefix_note, system_note=b.system_note)
    path = Path(spec)
    if path.is_dir():
        return _from_tokenizer(path)
    if path.is_file():
        text = path.read_text()
        if path.suffix == ".json":
            try:
                text = json.loads(text)["chat_template"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"--chat-template {spec}: no chat_template in this JSON file") from None
            text = _pick(text, spec)
        return ChatTemplate(path.name, text, detect_call_format(text), source=str(path))
    raise ConfigError(f"--chat-template {spec}: not a built-in template ({', '.join(BUILTINS)}), "
                      "nor a template file or tokenizer folder")


def _pick(template: Any, spec: str) -> str:
    """A tokenizer's template: the ``tool_use`` one where it ships several."""
    if isinstance(template, list):
        template = {t["name"]: t["template"] for t in template}
    if isinstance(template, dict):
        template = template.get("tool_use") or template.get("default")
    if not isinstance(template, str):
        raise ConfigError(f"--chat-template {spec}: the tokenizer has no chat template")
    return template


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(path: Path, spec: str) -> Any:
    """The tokenizer in a local folder, loaded once per process (several templates may share one)."""
    from transformers import AutoTokenizer

    key = str(path.resolve())
    if key in _TOKENIZERS:
        return _TOKENIZERS[key]
    if not path.is_dir():
        raise ConfigError(f"--chat-template {spec}: {path} is not a folder (after @: a local tokenizer folder)")
    try:
        _TOKENIZERS[key] = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        return _TOKENIZERS[key]
    except (OSError, ValueError) as err:
        raise ConfigError(f"--chat-template {spec}: {path} is not a tokenizer folder ({str(err).splitlines()[0]})") \
            from None


def _paired(template: ChatTemplate, path: Path, spec: str) -> ChatTemplate:
    """``template`` checked on the tokens of the tokenizer in ``path``.

    A built-in keeps its own special tokens (the text it renders is its model
    family's), and the tokenizer must know each as one token: a template paired
    with another family's tokenizer would pass every check on meaningless
    tokens, so it is refused.
    """
    tokenizer = _tokenizer(path, spec)
    if template.tokenizer is None and template.name not in BUILTINS:  # a bare file: the tokenizer's own specials
        template.specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    for role, token in template.specials.items():
        if token and len(tokenizer(token, add_special_tokens=False)["input_ids"]) != 1:
            raise ConfigError(f"--chat-template {spec}: the tokenizer in {path} does not have {token!r} (the "
                              f"{template.name} template's {role}) as one token; pair the template with a tokenizer "
                              "of its model family")
    template.tokenizer = tokenizer
    template.name = f"{template.name}@{path.name}"
    template.source = f"{template.source}; tokens: {path.name}" if template.source else f"tokens: {path.name}"
    return template


def _from_tokenizer(path: Path) -> ChatTemplate:
    tokenizer = _tokenizer(path, str(path))
    text = _pick(tokenizer.chat_template, str(path))
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return ChatTemplate(path.name, text, detect_call_format(text), source=str(path), specials=specials,
                        tokenizer=tokenizer)


# ---------------------------------------------------------------------------------------------------- rendering


def render(template: ChatTemplate, messages: list[dict], tools: list[dict] | None, generation_prompt: bool = False,
           mask: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The template's text for one conversation, and its ``{% generation %}`` spans when ``mask``."""
    from transformers.utils.chat_template_utils import render_jinja_template

    texts, spans = render_jinja_template(conversations=[messages], tools=tools or None, chat_template=template.text,
                                         add_generation_prompt=generation_prompt, return_assistant_tokens_mask=mask,
                                         **template.specials)
    return texts[0], [tuple(s) for s in spans[0]] if spans else []


def _probe(i: int) -> str:
    return f"TFPROBE{i:05d}Z"


@dataclass
class _Item:
    what: str  # how a failure names it
    probe: str
    ordered: bool  # part of the dialogue order (system prompt and tool schemas are placed freely)
    assistant: bool


def _probed(messages: list[dict], tools: list[dict]) -> tuple[list[dict], list[dict], list[_Item]]:
    """Copies of the conversation with every checkable value replaced by a unique probe."""
    items: list[_Item] = []

    def probe(what: str, ordered: bool = True, assistant: bool = False) -> str:
        items.append(_Item(what, _probe(len(items)), ordered, assistant))
        return items[-1].probe

    out_tools = []
    for t in tools:
        fn = t.get("function", {})
        if fn.get("description"):
            out_tools.append({**t, "function": {**fn, "description": probe(f"tool schema {fn.get('name')}", False)}})
        else:
            out_tools.append(t)
    out = []
    for n, m in enumerate(messages):
        m = dict(m)
        if m["role"] == "system":
            m["content"] = probe(f"system prompt (message {n})", ordered=False)
        elif m["role"] == "tool":
            m["content"] = probe(f"tool result {m.get('tool_call_id')} (message {n})")
        elif m.get("content"):
            m["content"] = probe(f"{m['role']} text (message {n})", assistant=m["role"] == "assistant")
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": {
                "probe": probe(f"call {c['function']['name']} {c['id']} arguments (message {n})", assistant=True)}}}
                for c in m["tool_calls"]]
        m.pop("reasoning_content", None)  # templates may drop past reasoning by design; it is not placed
        out.append(m)
    return out, out_tools, items


def _spellings(text: str) -> list[str]:
    escaped = json.dumps(text, ensure_ascii=False)[1:-1]
    return [s for s in dict.fromkeys([text, text.strip(), escaped, escaped.strip()]) if s]


# ---------------------------------------------------------------------------------------------------- tool calls


def _json_after(text: str, start: int) -> tuple[Any, int] | None:
    """The JSON value starting at ``start`` (after whitespace), and where it ends."""
    while start < len(text) and text[start] in " \n\t\r":
        start += 1
    try:
        return json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError:
        return None


def _marked(text: str, marker: str) -> Iterable[Any]:
    for match in re.finditer(re.escape(marker), text):
        if (found := _json_after(text, match.end())) is not None:
            yield found[0]


def parse_calls(text: str, fmt: str) -> list[tuple[str, Any]]:
    """(name, arguments) of every tool call in a rendered conversation, read back in format ``fmt``."""
    calls: list[Any] = []
    if fmt == "hermes":
        calls = list(_marked(text, "<tool_call>"))
    elif fmt in ("mistral", "granite"):
        for value in _marked(text, "[TOOL_CALLS]" if fmt == "mistral" else "<|tool_call|>"):
            calls += value if isinstance(value, list) else [value]
    elif fmt == "llama_json":
        for turn in re.finditer(r"<\|start_header_id\|>assistant<\|end_header_id\|>\n\n(.*?)<\|eo[mt]_id\|>", text,
                                re.DOTALL):
            try:
                value = json.loads(turn[1])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and "parameters" in value:
                calls.append({"name": value.get("name"), "arguments": value["parameters"]})
    return [(c.get("name"), c.get("arguments")) for c in calls if isinstance(c, dict) and "name" in c]


# ---------------------------------------------------------------------------------------------------- checking


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"at char {i}: prefix has {a[i:i + 40]!r}, whole has {b[i:i + 40]!r}"


@dataclass
class RowCheck:
    problem: str | None = None  # the first failure that makes the row unrenderable
    prefix_problem: str | None = None
    system_dropped: bool = False  # only where the template is known to drop it (``system_note``)
    tokens: int = 0
    assistant_tokens: int = 0


def _tokens(template: ChatTemplate, text: str) -> list[int]:
    return template.tokenizer(text, add_special_tokens=False)["input_ids"]


def check_row(template: ChatTemplate, messages: list[dict], tools: list[dict]) -> RowCheck:
    """Render one conversation and run every check; the first problem found is reported."""
    result = RowCheck()
    try:
        text, _ = render(template, messages, tools)
    except Exception as err:  # noqa: BLE001 - a template's own raise_exception or a Jinja error: both mean "does not render"
        result.problem = f"template raised: {err}"
        return result
    problem, result.system_dropped = _placement(template, messages, tools)
    result.problem = problem or _fidelity(template, text, messages, tools, result.system_dropped)
    if result.problem is None and template.tokenizer is not None:
        result.tokens = len(_tokens(template, text))
    result.prefix_problem = _prefix(template, text, messages, tools)
    return result


def _placement(template: ChatTemplate, messages: list[dict], tools: list[dict]) -> tuple[str | None, bool]:
    """The first misplaced item, and whether the system prompt was dropped by a template known to drop it."""
    probe_messages, probe_tools, items = _probed(messages, tools)
    mask = template.marks_generation and template.tokenizer is not None
    try:
        text, spans = render(template, probe_messages, probe_tools, mask=mask)
    except Exception as err:  # noqa: BLE001
        return f"template raised on the probe render: {err}", False
    last, dropped = -1, False
    for item in items:
        count = text.count(item.probe)
        if count == 0 and item.what.startswith("system prompt") and template.system_note:
            dropped = True
            continue
        if count != 1:
            return f"{item.what}: rendered {count} times, expected once", dropped
        at = text.index(item.probe)
        if item.ordered:
            if at < last:
                return f"{item.what}: rendered before the item that precedes it", dropped
            last = at
        if mask and item.assistant != any(a <= at < b for a, b in spans):
            where = "outside" if item.assistant else "inside"
            return f"{item.what}: {where} the assistant ({{% generation %}}) mask", dropped
    return None, dropped


def _fidelity(template: ChatTemplate, text: str, messages: list[dict], tools: list[dict],
              system_dropped: bool = False) -> str | None:
    for n, m in enumerate(messages):
        content = m.get("content") or ""
        if m["role"] == "system" and system_dropped:
            continue
        if content and not any(s in text for s in _spellings(content)):
            return f"message {n} ({m['role']}): its text is not in the render as written"
    for t in tools:
        name = t.get("function", {}).get("name", "")
        if name not in text:
            return f"tool schema {name}: its name is not in the render"
    if template.calls is None:
        return None
    want = [(c["function"]["name"], c["function"]["arguments"]) for m in messages for c in m.get("tool_calls") or []]
    got = parse_calls(text, template.calls)
    for k, (w, g) in enumerate(zip(want, got, strict=False)):
        if w != g:
            return f"tool call {k}: read back {g[0]}({json.dumps(g[1])}) but the row has {w[0]}({json.dumps(w[1])})"
    if len(want) != len(got):
        return f"tool calls: read back {len(got)} with the {template.calls} format, the row has {len(want)}"
    return None


class _Tokens:
    """A render's tokens, and the tokens of any text prefix of it, without re-tokenizing the shared head.

    HF tokenizers cut the input at special added tokens before anything else
    and tokenize each piece on its own, so up to the last special token that
    ends within a prefix, the prefix's tokens are the whole's; only the rest is
    tokenized again. That holds when no normalizer runs and no special token
    strips its neighbours (``lstrip``/``rstrip``) or is normalized; for any
    other tokenizer the whole prefix is tokenized.
    """

    def __init__(self, template: ChatTemplate, text: str) -> None:
        self.template, self.text = template, text
        backend = getattr(template.tokenizer, "backend_tokenizer", None)
        added = getattr(template.tokenizer, "added_tokens_decoder", {})
        cuts = {i for i, t in added.items() if t.special and not (t.lstrip or t.rstrip or t.normalized)}
        self.exact = backend is None or backend.normalizer is not None or not cuts
        if self.exact:
            self.ids, self.cuts = _tokens(template, text), []
            return
        encoded = backend.encode(text, add_special_tokens=False)
        self.ids = encoded.ids
        self.cuts = [(end, k + 1) for k, (i, (_, end)) in enumerate(zip(encoded.ids, encoded.offsets, strict=True))
                     if i in cuts]  # (char offset after a special token, tokens up to it)

    def of_prefix(self, prefix: str) -> list[int]:
        if self.exact:
            return _tokens(self.template, prefix)
        end, k = next(((e, k) for e, k in reversed(self.cuts) if e <= len(prefix)), (0, 0))
        return self.ids[:k] + _tokens(self.template, prefix[end:])


def _prefix(template: ChatTemplate, text: str, messages: list[dict], tools: list[dict]) -> str | None:
    tokens = _Tokens(template, text) if template.tokenizer is not None else None
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        try:
            prefix, _ = render(template, messages[:k], tools, generation_prompt=True)
        except Exception as err:  # noqa: BLE001
            return f"prompt before message {k}: template raised: {err}"
        if not text.startswith(prefix):
            return f"prompt before message {k} is not a prefix of the whole: {_first_difference(prefix, text)}"
        if tokens is not None:
            ids, head = tokens.ids, tokens.of_prefix(prefix)
            if ids[: len(head)] != head:
                cut = next((i for i, (a, b) in enumerate(zip(head, ids, strict=False)) if a != b), len(ids))
                return f"prompt before message {k} is a text prefix but not a token prefix (token {cut})"
    return None


def assistant_token_count(template: ChatTemplate, messages: list[dict], tools: list[dict]) -> int:
    """Tokens in the assistant mask, as ``apply_chat_template(return_assistant_tokens_mask=True)`` computes it."""
    text, spans = render(template, messages, tools, mask=True)
    encoded = template.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return sum(1 for a, b in encoded["offset_mapping"] if any(a < e and b > s for s, e in spans))


@dataclass
class TemplateReport:
    """What one template made of a set of rows: the card's and the CLI's summary line."""

    template: ChatTemplate
    rows: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # row id -> first problem
    prefix_failed: dict[str, str] = field(default_factory=dict)
    system_dropped: int = 0
    tokens: int = 0
    assistant_tokens: int = 0

    @property
    def rendered(self) -> int:
        return self.rows - len(self.failed)

    @property
    def level(self) -> str:
        return "tokens" if self.template.tokenizer is not None else "text"

    def add(self, row_id: str, messages: list[dict], tools: list[dict]) -> bool:
        """Check one row; False when it does not render (prefix failures count unless the template cannot pass)."""
        self.rows += 1
        result = check_row(self.template, messages, tools)
        if result.prefix_problem:
            self.prefix_failed[row_id] = result.prefix_problem
        self.system_dropped += result.system_dropped
        problem = result.problem or (None if self.template.prefix_note else result.prefix_problem)
        if problem:
            self.failed[row_id] = problem
            return False
        self.tokens += result.tokens
        if self.template.marks_generation and self.template.tokenizer is not None:
            self.assistant_tokens += assistant_token_count(self.template, messages, tools)
        return True

    def summary(self) -> dict[str, Any]:
        return {"template": self.template.name, "source": self.template.source, "license": self.template.license,
                "rows": self.rows, "rendered": self.rendered, "prefix_ok": self.rows - len(self.prefix_failed),
                "level": self.level, "assistant_tokens": self.assistant_tokens,
                "masked": self.template.marks_generation and self.template.tokenizer is not None,
                "prefix_note": self.template.prefix_note, "system_dropped": self.system_dropped,
                "system_note": self.template.system_note}


_CHUNK = 48


def _check_chunk(templates: list[ChatTemplate], rows: list[tuple[str, list[dict], list[dict]]]) -> list[TemplateReport]:
    reports = [TemplateReport(t) for t in templates]
    for row_id, messages, tools in rows:
        for report in reports:
            report.add(row_id, messages, tools)
    return reports


_WORKER_TEMPLATES: list[ChatTemplate] = []


def _init_worker(templates: list[ChatTemplate]) -> None:
    _WORKER_TEMPLATES[:] = templates


def _check_chunk_in_worker(rows: list[tuple[str, list[dict], list[dict]]]) -> list[TemplateReport]:
    """A chunk in a worker process, whose templates (tokenizers included: megabytes) came once, at its start;
    only the counts travel back."""
    reports = _check_chunk(_WORKER_TEMPLATES, rows)
    for report in reports:
        report.template = None
    return reports


def _merge(into: list[TemplateReport], part: list[TemplateReport]) -> None:
    for a, b in zip(into, part, strict=True):
        a.rows += b.rows
        a.failed.update(b.failed)
        a.prefix_failed.update(b.prefix_failed)
        a.system_dropped += b.system_dropped
        a.tokens += b.tokens
        a.assistant_tokens += b.assistant_tokens


def check_records(templates: list[ChatTemplate], rows: Iterable[tuple[str, list[dict], list[dict]]],
                  workers: int | None = None) -> list[TemplateReport]:
    """Every (row id, messages, tools) through every template, in chunks over ``workers`` processes.

    Rendering is pure CPU (Jinja), so processes, not threads; results merge in row order.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor
    from itertools import islice
    from multiprocessing import get_context

    reports = [TemplateReport(t) for t in templates]
    workers = workers or min(os.cpu_count() or 1, 8)
    rows = iter(rows)
    chunks = iter(lambda: list(islice(rows, _CHUNK)), [])
    first = next(chunks, [])
    _merge(reports, _check_chunk(templates, first))
    if workers == 1 or len(first) < _CHUNK:
        for chunk in chunks:
            _merge(reports, _check_chunk(templates, chunk))
        return reports
    context = get_context("fork") if "fork" in __import__("multiprocessing").get_all_start_methods() else None
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(templates,)) as pool:
        pending = []
        for chunk in chunks:
            pending.append(pool.submit(_check_chunk_in_worker, chunk))
            if len(pending) >= 2 * workers:
                _merge(reports, pending.pop(0).result())
        for future in pending:
            _merge(reports, future.result())
    return reports


def table(summaries: list[dict[str, Any]]) -> list[str]:
    """The template x rows table (``TemplateReport.summary()`` each), as the CLI prints it."""
    width = max([22, *(len(t["template"]) for t in summaries)])
    lines = [f"{'template':<{width}} {'rows':>6} {'rendered':>9} {'prefix ok':>10}  checked at"]
    for t in summaries:
        note = " (prefix reported only)" if t["prefix_note"] else ""
        note += f"; system prompt dropped by the template in {t['system_dropped']} rows" if t["system_dropped"] else ""
        note += f"; {t['assistant_tokens']} assistant tokens in the mask" if t["masked"] else ""
        lines.append(f"{t['template']:<{width}} {t['rows']:>6} {t['rendered']:>9} {t['prefix_ok']:>10}  {t['level']}{note}")
    return lines


def _folder_rows(folder: Path, config: str, limit: int | None) -> Iterable[tuple[str, list[dict], list[dict]]]:
    """Rows of an exported folder as ``datasets.load_dataset`` returns them (a throwaway cache, nothing downloaded)."""
    import tempfile

    import datasets

    from pipelines.views import MESSAGE_COLUMNS

    if not (folder / "data" / config).is_dir():
        raise ConfigError(f"{folder}: no {config} config in this exported folder")
    with tempfile.TemporaryDirectory() as cache:
        loaded = datasets.load_dataset(str(folder), config, cache_dir=cache)
        n = 0
        for split in loaded.values():
            for row in split:
                if limit is not None and n >= limit:
                    return
                n += 1
                yield row["id"], _objects(row[MESSAGE_COLUMNS[config]]), _objects(row["tools"])


def _objects(values: list[Any] | None) -> list[Any]:
    """A JSON column as objects: the ``Json`` feature's already are; an ``--json-as-text`` export's are strings."""
    return [json.loads(v) if isinstance(v, str) else v for v in values or []]


def _store_rows(root: Path, config: str, version: int | None, limit: int | None):
    """Rows of a dataset version as the export would write them."""
    from pipelines.export_request import resolve_version
    from pipelines.rows import ACCEPTED, REJECTED
    from pipelines.store import DatasetStore
    from pipelines.views import MESSAGE_COLUMNS, RECORDS, decoded

    store = DatasetStore(root)
    version, _ = resolve_version(store, version)  # or a one-line UserError: no dataset, no such version
    status = REJECTED if config == "rejects" else ACCEPTED
    n = 0
    for row in store.read(version).to_dicts():
        if row["status"] != status:
            continue
        if limit is not None and n >= limit:
            return
        n += 1
        record = decoded(RECORDS[config](row), config)
        yield record["id"], record[MESSAGE_COLUMNS[config]], record["tools"]


def check_folder(path: Path, specs: list[str], version: int | None = None, config: str = "sft",
                 limit: int | None = None) -> list[TemplateReport]:
    """``trajforge check-template``: an exported folder or a dataset directory through every template."""
    templates = [load_template(spec) for spec in specs]
    path = Path(path)
    if (path / "_delta_log").is_dir():
        rows = _store_rows(path, config, version, limit)
    elif (path / "README.md").is_file() and (path / "data").is_dir():
        rows = _folder_rows(path, config, limit)
    else:
        raise ConfigError(f"{path}: neither an exported datasets folder (README.md + data/) nor a trajforge dataset")
    return check_records(templates, rows)
