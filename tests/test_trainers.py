"""The exported configs read by the trainers themselves: TRL's SFTTrainer, LLaMA-Factory's converter, datasets 4.0.

A small dataset is generated and exported with every built-in chat template
checked; then TRL trains a tiny local model on ``sft`` (assistant-only loss
through a ``{% generation %}`` template), and a separate cached venv with
``datasets==4.0.0`` (LLaMA-Factory's pin) loads ``sft``, ``rl`` and
``sharegpt`` and runs LLaMA-Factory's own ShareGPT converter on every row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
from export_helpers import ROOT, config
from tiny_model import build_tiny_model

from pipelines.cli import main
from pipelines.export import ExportOptions, export_version
from pipelines.flow import run_generate
from pipelines.template_check import BUILTINS

pytestmark = pytest.mark.usefixtures("prefect_server")
TEMPLATE = Path(__file__).parent / "data" / "tool_chat_template.jinja"
VENV40 = Path(os.environ.get("TRAJFORGE_DATASETS40_VENV", ROOT / ".venv-datasets40"))
LLAMAFACTORY = "llamafactory==0.9.5"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny test model, and a copy of its tokenizer with a {% generation %} tool template."""
    from transformers import AutoTokenizer

    folder = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TEMPLATE.read_text()
    marked = tmp_path_factory.mktemp("tiny") / "marked"
    tokenizer.save_pretrained(marked)
    return folder, marked


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("trainers")
    run_generate(config(21, 30), root / "ds", "run-t")
    folder = root / "hf"
    summary = export_version(root / "ds", folder, ExportOptions(
        test_ratio=0.2, sharegpt=True, rejects=True,
        chat_templates=[*BUILTINS, str(tiny[0]), str(tiny[1])]))
    return folder, summary


def test_export_checked_every_row_in_every_template(exported):
    _, summary = exported
    accepted = sum(summary.rows["sft"].values())
    by_name = {t["template"]: t for t in summary.templates}
    assert set(by_name) == {*BUILTINS, "model", "marked"}
    for t in summary.templates:
        assert t["rows"] == t["rendered"] == accepted > 0, t
        if not t["prefix_note"]:
            assert t["prefix_ok"] == accepted, t
    assert by_name["model"]["level"] == by_name["marked"]["level"] == "tokens"
    assert by_name["marked"]["assistant_tokens"] > 0 and not summary.dropped


# A ChatML variant whose generation prompt ends in a space: every prompt is a text prefix of the whole, but a
# byte-level BPE merges that space into the assistant's first word, so no prompt is a token prefix (the RL
# re-tokenization mismatch the token-level check exists to catch).
SPACED = ("{%- for m in messages %}{{ '<|im_start|>' + m.role + ': ' + (m.content or '') }}{%- for c in m.tool_calls "
          "or [] %}<tool_call>{{ c.function | tojson }}</tool_call>{%- endfor %}{{ '<|im_end|>\\n' }}{%- endfor %}"
          "{%- if add_generation_prompt %}{{ '<|im_start|>assistant: ' }}{%- endif %}")


def test_token_level_checks_with_real_bpe_tokenizers(exported, real_model_lane, tmp_path):
    """Built-in templates paired with their families' real tokenizers (TEMPLATE@TOKENIZER_DIR): SmolLM2's
    byte-level BPE for the ChatML family, Llama 3's tiktoken BPE for Llama 3.1/3.3, on every sft row."""
    import trl
    from real_tokenizers import llama3_reference_ids, llama3_tokenizer

    from pipelines.template_check import check_folder, load_template, render
    from schemas import ConfigError

    folder, summary = exported
    smol, llama = real_model_lane.model, llama3_tokenizer()
    training = Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja"  # {% generation %} marks
    spaced = tmp_path / "spaced.jinja"
    spaced.write_text(SPACED)
    specs = [f"qwen2.5@{smol}", f"qwen3@{smol}", f"hermes@{smol}", f"{training}@{smol}", f"llama3.1@{llama}",
             f"llama3.3@{llama}", f"{spaced}@{smol}", str(spaced)]
    started = time.monotonic()
    reports = {r.template.name: r.summary() for r in check_folder(folder, specs)}
    accepted = sum(summary.rows["sft"].values())
    good = [f"qwen2.5@{smol.name}", f"qwen3@{smol.name}", f"hermes@{smol.name}", f"qwen3_training.jinja@{smol.name}",
            f"llama3.1@{llama.name}", f"llama3.3@{llama.name}"]
    for name in good:
        t = reports[name]
        assert t["level"] == "tokens" and t["rows"] == t["rendered"] == t["prefix_ok"] == accepted > 0, t
        assert t["masked"] == (name.startswith("qwen3_training")) and (t["assistant_tokens"] > 0) == t["masked"], t
    # the check can fail: a text prefix that is not a token prefix is caught only with the tokenizer
    assert reports["spaced.jinja"]["level"] == "text" and reports["spaced.jinja"]["prefix_ok"] == accepted
    assert reports[f"spaced.jinja@{smol.name}"]["prefix_ok"] == 0
    # the Llama tokenizer is Meta's: the converted folder tokenizes a rendered row exactly as llama_models' tiktoken
    llama31 = load_template(f"llama3.1@{llama}")
    row = datasets.load_dataset(str(folder), "sft", cache_dir=str(tmp_path / "cache"))["train"][0]
    text, _ = render(llama31, row["messages"], row["tools"])
    assert llama31.tokenizer(text, add_special_tokens=False)["input_ids"] == llama3_reference_ids(text)
    # a template paired with another family's tokenizer would check meaningless tokens: refused in one line
    with pytest.raises(ConfigError, match=r"does not have '<\|begin_of_text\|>' \(the llama3.1 template's bos_token\)"):
        load_template(f"llama3.1@{smol}")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_template(f"qwen3@{tmp_path / 'missing'}")
    print(f"token-level checks, {len(specs)} templates x {accepted} rows: {time.monotonic() - started:.1f}s")


def test_trl_sft_trainer_steps_on_the_sft_config(exported, tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    folder, _ = exported
    train = datasets.load_dataset(str(folder), "sft", cache_dir=str(tmp_path / "cache"))["train"]
    train = train.select(range(4)).select_columns(["messages", "tools"])  # exactly as loaded: no cleaning
    tokenizer = AutoTokenizer.from_pretrained(tiny[1])
    model = AutoModelForCausalLM.from_pretrained(tiny[0], dtype=torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    args = SFTConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2,
                     assistant_only_loss=True, max_length=4096, report_to=[], use_cpu=True, logging_steps=1,
                     save_strategy="no", bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    assert trainer.train_dataset.num_rows == 4  # nothing dropped as unreadable or too long
    labels = trainer.train_dataset["labels"]
    assert all(0 < sum(t != -100 for t in row) < len(row) for row in labels)  # assistant tokens only, not all
    started = time.monotonic()
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert result.global_step == 2 and len(losses) == 2 and all(0 < loss < 100 for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    print(f"TRL: 2 SFT steps in {time.monotonic() - started:.1f}s")


def _venv40() -> Path:
    """A venv with datasets==4.0.0 and LLaMA-Factory's code (no deps: its converter needs none of torch), cached."""
    python = VENV40 / "bin" / "python"
    stamp = VENV40 / f".installed-{LLAMAFACTORY}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV40)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "datasets==4.0.0", "polars", "typing_extensions"], check=True, timeout=900)
        subprocess.run([*pip, "--no-deps", LLAMAFACTORY], check=True, timeout=900)
        stamp.touch()
    return python


LLAMAFACTORY_CHECK = r'''
import json, sys, types, importlib.util, pathlib
import datasets, polars, pandas
folder, text_folder = sys.argv[1], sys.argv[3]
out = {"datasets": datasets.__version__}
for config, column in (("sft", "messages"), ("rl", "prompt")):  # the --json-as-text export: JSON strings, decoded here
    d = datasets.load_dataset(text_folder, config, cache_dir=sys.argv[2] + "-text")
    out["text_" + config] = {s: d[s].num_rows for s in d}
    out["text_" + config + "_decoded"] = {s: [[json.loads(m) for m in row[column]] for row in d[s]] for s in d}
for config in ("sft", "rl", "sharegpt"):
    try:
        d = datasets.load_dataset(folder, config, cache_dir=sys.argv[2])
        out[config] = {s: d[s].num_rows for s in d}
    except ValueError as err:  # datasets < 4.7 has no Json feature: the card says so
        out[config] = str(err)
    files = sorted(pathlib.Path(folder, "data", config).glob("*.parquet"))
    out[config + "_polars"] = sum(polars.read_parquet(f).height for f in files)
    out[config + "_pandas"] = sum(len(pandas.read_parquet(f)) for f in files)
first = polars.read_parquet(sorted(pathlib.Path(folder, "data", "sft").glob("train-*.parquet"))[0])
out["sft_message_keys"] = [sorted(json.loads(m)) for m in first["messages"][0]]

# LLaMA-Factory's own converter and function-call parser, imported without the package __init__ (which loads
# torch, peft and its trainers): only two constants and two hub switches are stood in for.
root = pathlib.Path(importlib.util.find_spec("llamafactory").submodule_search_locations[0])
for name in ("llamafactory", "llamafactory.data", "llamafactory.extras"):
    module = types.ModuleType(name)
    module.__path__ = [str(root / name.partition(".")[2].replace(".", "/"))] if "." in name else [str(root)]
    sys.modules[name] = module
constants = types.ModuleType("llamafactory.extras.constants")
constants.RUNNING_LOG, constants.DATA_CONFIG = "running_log.txt", "dataset_info.json"
misc = types.ModuleType("llamafactory.extras.misc")
misc.use_modelscope = misc.use_openmind = lambda: False
sys.modules.update({"llamafactory.extras.constants": constants, "llamafactory.extras.misc": misc})
from llamafactory.data.converter import align_dataset
from llamafactory.data.parser import DatasetAttr
from llamafactory.data.formatter import FunctionFormatter
from llamafactory.data.tool_utils import DefaultToolUtils

attr = DatasetAttr("file", dataset_name="trajforge", formatting="sharegpt")
attr.set_attr("messages", {"messages": "conversations"})
attr.set_attr("system", {"system": "system"})
attr.set_attr("tools", {"tools": "tools"})
args = types.SimpleNamespace(streaming=False, preprocessing_num_workers=None, overwrite_cache=True,
                             dataset_dir=folder, media_dir=folder)
training = types.SimpleNamespace(local_process_index=0)
sharegpt = datasets.load_dataset(folder, "sharegpt", cache_dir=sys.argv[2])
formatter = FunctionFormatter(slots=["{{content}}"], tool_format="default")
rows = broken = calls = parallel = 0
for split in sharegpt.values():
    aligned = align_dataset(split, attr, args, training)
    for row, source in zip(aligned, split):
        rows += 1
        broken += not row["_prompt"] or not row["_response"]
        DefaultToolUtils.tool_formatter(json.loads(row["_tools"]))
        turns = source["conversations"]
        for i, turn in enumerate(turns):
            if turn["from"] == "function_call":
                assert turns[i + 1]["from"] == "observation", (source["id"], i)
                formatter.apply(content=turn["value"])
                calls += 1
                parallel += isinstance(json.loads(turn["value"]), list)
out["llamafactory"] = {"rows": rows, "broken": broken, "function_calls": calls, "parallel": parallel}
print(json.dumps(out))
'''


def run_in_datasets40(folder: Path, text_folder: Path, tmp: Path) -> dict:
    python = _venv40()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp / "hf"))
    run = subprocess.run([str(python), "-c", LLAMAFACTORY_CHECK, str(folder), str(tmp / "cache40"), str(text_folder)],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_datasets_4_0_and_llamafactory_read_the_folder(exported, tmp_path):
    """LLaMA-Factory's environment (datasets 4.0): sharegpt loads and converts; sft/rl need the Json feature (4.7),
    or an export made with --json-as-text, whose JSON strings decode to the very messages the Json export holds."""
    folder, summary = exported
    text_folder = tmp_path / "hf-text"  # the same version again, JSON columns as text, through the CLI
    assert main(["export", str(folder.parent / "ds"), "--to", str(text_folder), "--test-ratio", "0.2",
                 "--json-as-text"]) == 0
    started = time.monotonic()
    out = run_in_datasets40(folder, text_folder, tmp_path)
    assert out["datasets"] == "4.0.0"
    assert out["sharegpt"] == summary.rows["sharegpt"]
    for name in ("sft", "rl"):  # the documented minimum (card, README): role-exact messages need datasets >= 4.7
        assert out[name] == "Arrow type extension<arrow.json> does not have a datasets dtype equivalent."
        assert out["text_" + name] == summary.rows[name]  # ... or --json-as-text, which 4.0 loads whole
    assert "datasets` >= 4.7" in (folder / "README.md").read_text()
    assert "written with `--json-as-text`" in (text_folder / "README.md").read_text()
    # decoded with one json.loads each under 4.0, the messages are the Json feature's (newest datasets), key for key
    for name, column in (("sft", "messages"), ("rl", "prompt")):
        exact = datasets.load_dataset(str(folder), name, cache_dir=str(tmp_path / "cache"))
        for split in exact:
            rows = [row[column] for row in exact[split]]
            assert out[f"text_{name}_decoded"][split] == rows and rows, (name, split)
    decoded = [m for row in out["text_sft_decoded"]["train"] for m in row]
    keys = {tuple(m) for m in decoded}  # no null padding: each role's own keys, nothing None
    assert ("role", "content") in keys and ("role", "tool_call_id", "name", "content") in keys
    assert ("role", "content", "tool_calls") in keys and all(v is not None for m in decoded for v in m.values())
    for name in ("sft", "rl", "sharegpt"):  # polars and pandas of that environment read every config
        assert out[name + "_polars"] == out[name + "_pandas"] == sum(summary.rows[name].values())
    # role-exact even as JSON text: a user message has no tool_calls key, a tool message has its name
    assert ["content", "role"] in out["sft_message_keys"] and ["content", "name", "role", "tool_call_id"] in \
        out["sft_message_keys"]
    lf = out["llamafactory"]
    assert lf["rows"] == sum(summary.rows["sharegpt"].values()) and lf["broken"] == 0 and lf["function_calls"] > 0
    print(f"datasets 4.0 + LLaMA-Factory: {time.monotonic() - started:.1f}s")
