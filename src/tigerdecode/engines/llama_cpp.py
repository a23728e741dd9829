"""The llama.cpp backend: tigerdecode's loop and policy over llama.cpp's forward passes.

llama.cpp (through ``llama-cpp-python``, an optional extra: ``pip install tigerdecode[llama]``,
a source build of a few minutes) runs the model; tigerdecode reads each step's logits, cuts off
the packed head rows (``tigerdecode export --format gguf``), turns them into ``p_stop`` /
``p_dev`` / ``p_slot`` / ``p_risk`` / ``p_factual``, and draws the next token through the same
sampling pipeline, policy, repetition guard, abstention and trace as its own loop
(:class:`LlamaCppRunner` is a runner of ``tigerdecode.decode.loop``). A GGUF without packed heads
decodes with the creativity schedule alone.

What does not run here: the judge (it re-reads the answer's hidden states, which llama.cpp does
not hand out), ensembles, and batches of more than one row per runner (rows are decoded one
after another).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tigerdecode.engines.packed import PACKED, PackedHeads, split_scores
from tigerdecode.errors import ModelLoadError

INSTALL = ("the llama.cpp backend needs llama-cpp-python: `pip install 'tigerdecode[llama]'` "
           "(or `pip install llama-cpp-python==0.3.36`; it compiles llama.cpp, a few minutes)")


def _llama_class():
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise ModelLoadError(f"{INSTALL} ({e})") from None
    return Llama


class LlamaCppModel:
    """A GGUF file loaded in llama.cpp, with its packed heads (None when it has none)."""

    def __init__(self, path: str | Path, *, n_ctx: int = 2048, n_threads: int | None = None):
        from tigerdecode.engines.export import read_packed_gguf
        from tigerdecode.model.load import is_gguf_file

        path = Path(path).expanduser()
        if not path.is_file() or not is_gguf_file(path):
            raise ModelLoadError(f"{path} is not a GGUF file; the llama.cpp backend loads a "
                                 "GGUF (export one with heads: `tigerdecode export MODEL "
                                 "--format gguf --out FILE.gguf`)")
        self.packed: PackedHeads | None = read_packed_gguf(path, required=False)
        self.path = path
        self.llm = _llama_class()(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                                  n_threads_batch=n_threads, logits_all=False, verbose=False)
        self.n_vocab = int(self.llm.n_vocab())
        self.n_ctx = n_ctx
        self.busy = False

    def logits(self) -> torch.Tensor:
        """The last evaluated position's logits, ``(1, n_vocab)`` (a copy)."""
        ptr = self.llm._ctx.get_logits()
        return torch.from_numpy(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())[None]


class LlamaCppRunner:
    """The decode loop's runner interface over one llama.cpp context (one row)."""

    def __init__(self, model: LlamaCppModel, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor, tap_layers=None, cache=None):
        if input_ids.shape[0] != 1:
            raise ValueError(f"the llama.cpp backend decodes one row per runner, got "
                             f"{input_ids.shape[0]}")
        if cache is not None:
            raise ValueError("the llama.cpp backend cannot start from a transformers KV cache")
        if model.busy:
            raise RuntimeError("this llama.cpp model is already decoding; one request at a time")
        self.model, self.input_ids, self.prompt_mask = model, input_ids, attention_mask
        self.ids = input_ids[0][attention_mask[0].bool()].tolist()
        self.rows: torch.Tensor | None = None
        model.busy = True

    def _read(self) -> torch.Tensor:
        logits = self.model.logits()
        if self.model.packed is None:
            return logits
        vocab, self.rows = split_scores(logits, self.model.packed)
        return vocab

    def prefill(self) -> torch.Tensor:
        llm = self.model.llm
        llm.reset()
        llm.eval(self.ids)
        return self._read()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.model.llm.eval([int(tokens.reshape(-1)[0])])
        return self._read()

    def undo(self) -> None:
        """Forget the last step: the next ``eval`` drops the cache cells past ``n_tokens``."""
        self.model.llm.n_tokens -= 1

    def last_states(self, rows: slice) -> dict:
        if self.rows is None:
            raise RuntimeError("this GGUF has no packed heads; decode it with heads=None")
        return {PACKED: self.rows[rows]}

    @property
    def cache(self):
        raise NotImplementedError("the judge reads hidden states, which llama.cpp does not hand "
                                  "out; use the transformers backend for judge=True")

    def close(self) -> None:
        self.model.busy = False
