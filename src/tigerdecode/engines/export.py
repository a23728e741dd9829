"""``tigerdecode export``: a model with its control heads appended to ``lm_head``.

The export holds the original model unchanged except for ``k`` more vocabulary rows (one per
head output, each with a reserved token that is never fed or sampled), so any engine that
returns logits computes the heads for free; :class:`~tigerdecode.engines.packed.PackedHeads`
turns the extra logits back into calibrated probabilities.

- ``hf``: a Hugging Face directory (safetensors) that plain ``AutoModelForCausalLM`` loads, with
  ``tigerdecode_heads.json`` beside the weights. A tied embedding is untied (the input embedding
  keeps the original rows; the reserved tokens' input rows are zero).
- ``gguf``: the model's GGUF file with the rows appended (see ``engines/gguf_rows.py``): the
  original rows keep their bytes and type, so llama.cpp's logits for the original vocabulary
  are exactly those of the source file; the packed description is stored under the metadata
  key ``tigerdecode.heads``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from tigerdecode.engines.packed import PackedHeads, token_name
from tigerdecode.fsutil import atomic_dir
from tigerdecode.heads.control import ControlHeads, HeadsError
from tigerdecode.model.load import text_config

HEADS_JSON = "tigerdecode_heads.json"


class ExportError(ValueError):
    """The source file cannot take the head rows (see the message for what to do)."""


GGUF_KEY = "tigerdecode.heads"


def _vocab(model) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


def _check_tokenizer(tokenizer, vocab: int) -> None:
    if len(tokenizer) > vocab:
        raise HeadsError(f"the tokenizer has {len(tokenizer)} entries but lm_head only {vocab} "
                         "rows; tigerdecode cannot tell which rows are free for the heads")


@torch.no_grad()
def export_hf(model, tokenizer, heads: ControlHeads, out: str | Path,
              policy: dict | None = None) -> dict:
    """Write ``model`` with ``heads`` as extra ``lm_head`` rows to the directory ``out``
    (replaced atomically); ``policy``: Policy fields chosen for these heads, stored with them.
    Returns a summary: rows, tokens, vocabulary sizes."""
    V = _vocab(model)
    _check_tokenizer(tokenizer, V)
    packed, rows = PackedHeads.from_heads(heads, model, V, policy)
    k = len(rows)
    m = copy.deepcopy(model).float().eval()
    tok = copy.deepcopy(tokenizer)
    # reserved entries up to the matrix size (a padded vocabulary), then one per head row
    fill = [f"<|tigerdecode_reserved_{i}|>" for i in range(V - len(tok))]
    names = [token_name(o) for o in packed.outputs]
    if any(n in tok.get_vocab() for n in names):
        raise HeadsError(f"the tokenizer already has tokens {names}: is this model already "
                         "an export? Export from the original model.")
    tok.add_special_tokens({"additional_special_tokens": fill + names},
                           replace_extra_special_tokens=False)
    if len(tok) != V + k:
        raise HeadsError(f"adding {k} head tokens gave a tokenizer of {len(tok)} entries; "
                         f"expected {V + k}")
    cfg = text_config(m)
    out_emb = m.get_output_embeddings()
    if out_emb.weight is m.get_input_embeddings().weight or getattr(cfg, "tie_word_embeddings",
                                                                   False):
        out_emb.weight = torch.nn.Parameter(out_emb.weight.detach().clone())
        for c in {id(m.config): m.config, id(cfg): cfg}.values():
            c.tie_word_embeddings = False
    m.resize_token_embeddings(V + k, mean_resizing=False)
    m.get_input_embeddings().weight[V:] = 0
    lm = m.get_output_embeddings()
    lm.weight[V:] = torch.from_numpy(rows).to(lm.weight.dtype)
    if getattr(lm, "bias", None) is not None:  # the constant stays in the JSON
        lm.bias[V:] = 0
    with atomic_dir(out) as tmp:
        m.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / HEADS_JSON).write_text(packed.to_json())
    return {"format": "hf", "out": str(out), "n_vocab_before": V, "n_vocab_after": V + k,
            "outputs": packed.outputs, "row_ids": packed.row_ids, "tokens": names,
            "policy": packed.policy}


def read_packed_hf(path: str | Path) -> PackedHeads:
    """The packed heads of an HF export directory."""
    f = Path(path) / HEADS_JSON
    if not f.is_file():
        raise HeadsError(f"{path} has no {HEADS_JSON}: it is not a tigerdecode export "
                         "(`tigerdecode export MODEL --heads DIR --format hf --out PATH`)")
    return PackedHeads.from_json(f.read_text(encoding="utf-8"), str(f))


def export_gguf(model, tokenizer, heads: ControlHeads, source_gguf: str | Path,
                out: str | Path, policy: dict | None = None) -> dict:
    """Append ``heads`` (trained on ``model``, the HF form of ``source_gguf``) to the GGUF file
    as extra output rows, with the packed description (and ``policy``) in its metadata."""
    from tigerdecode.engines.gguf_rows import append_rows_gguf

    V = _vocab(model)
    _check_tokenizer(tokenizer, V)
    packed, rows = PackedHeads.from_heads(heads, model, V, policy)
    try:
        info = append_rows_gguf(source_gguf, out, rows, [token_name(o) for o in packed.outputs],
                                extra_metadata={GGUF_KEY: packed.to_json()})
    except (ValueError, FileNotFoundError) as e:
        raise ExportError(str(e)) from e
    if info["row_ids"] != packed.row_ids:
        raise HeadsError(f"{source_gguf} has {info['n_vocab_before']} vocabulary entries, the "
                         f"model it was loaded as {V}: export from the GGUF the model came from")
    return {"format": "gguf", "out": str(out), **info, "outputs": packed.outputs,
            "policy": packed.policy}


def read_packed_gguf(path: str | Path, required: bool = True) -> PackedHeads | None:
    """The packed heads stored in a GGUF export's metadata (None when it has none and not
    ``required``)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (OSError, ValueError) as e:
        raise HeadsError(f"cannot read {path} as GGUF: {e}") from e
    field = reader.get_field(GGUF_KEY)
    if field is None:
        if not required:
            return None
        raise HeadsError(f"{path} holds no tigerdecode heads (metadata key {GGUF_KEY}); export "
                         "it with `tigerdecode export MODEL --heads DIR --format gguf`")
    return PackedHeads.from_json(field.contents(), f"{path}:{GGUF_KEY}")
