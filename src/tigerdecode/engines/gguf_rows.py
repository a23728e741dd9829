"""Append extra vocabulary rows to a GGUF model so llama.cpp computes linear heads for free.

A linear control head reads the model's final normed hidden state ``h`` and returns
``W @ h``. That is exactly what the output matrix (the "LM head") does for every vocabulary
entry, so a head with ``k`` outputs can be packed as ``k`` extra rows of the output matrix:
any engine that returns logits (llama.cpp, llama-cpp-python, a llama.cpp server...) then
returns ``n_vocab + k`` logits per step, and the last ``k`` are the head's outputs, computed
inside the engine at no extra pass.

Why the original logits do not change: a matrix-vector product computes every output row
independently (``logit_i = dot(row_i, h)``). This module copies the bytes of the original
output rows unchanged, in the same ggml type, and only appends new rows after them, so every
original row is the same dot product of the same bytes with the same activations, and the
first ``n_vocab`` logits are bit-identical to the source file's. (If the source ties its
embeddings - no ``output.weight``, llama.cpp reuses ``token_embd.weight`` - an explicit
``output.weight`` is created holding the embedding rows' exact bytes plus the new rows.)

The new rows are stored in the output matrix's ggml type (for a quantized model, quantized
the way llama.cpp quantizes), so they lose precision: :func:`append_rows_gguf` reports the
largest difference between the requested rows and what the file holds.

Caveats for callers:

- The extra ids are ordinary vocabulary ids to the engine's samplers: mask them out
  (e.g. ``logit_bias={id: -inf}``) when sampling, or a large head output may be sampled.
- The extra tokens are written as CONTROL tokens (see :data:`NEW_TOKEN_TYPE`), so text never
  tokenizes to them unless the caller parses special tokens, and they detokenize to nothing.
- Architectures that scale logits (``<arch>.logit_scale``) scale the head outputs too;
  architectures that soft-cap logits are refused (the head outputs would be squashed).
- Architectures for which llama.cpp never loads an ``output.weight`` (always-tied models such
  as Gemma) cannot load the created ``output.weight``; untied models and llama-style tied
  models (output optional) work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tigerdecode.fsutil import atomic_file

# ``tokenizer.ggml.token_type`` of the new entries: CONTROL (3), not USER_DEFINED (4).
# llama.cpp matches USER_DEFINED tokens in plain text even when the caller does not ask for
# special-token parsing, so a user typing the token's text would produce it. CONTROL tokens
# are only matched when the caller parses special tokens explicitly, and are rendered as
# empty text when detokenized without special rendering: the closest to "never produced by
# tokenization" llama.cpp offers.
NEW_TOKEN_TYPE = 3

# ``tokenizer.ggml.scores`` of the new entries: far below any real token, so a score-driven
# tokenizer (SentencePiece/Unigram) would never prefer them.
NEW_TOKEN_SCORE = -1.0e9

# Architectures whose final logits llama.cpp soft-caps even without the metadata key.
_DEFAULT_SOFTCAP = {"gemma2": 30.0}

_TOKENS = "tokenizer.ggml.tokens"
_TOKEN_TYPES = "tokenizer.ggml.token_type"
_SCORES = "tokenizer.ggml.scores"


def append_rows_gguf(src: str | Path, dst: str | Path, rows: np.ndarray, names: list[str], *,
                     extra_metadata: dict[str, str] | None = None,
                     progress: bool = False) -> dict:
    """Write ``dst``: the GGUF model ``src`` with ``k`` extra vocabulary rows.

    ``rows`` (float array of shape ``(k, n_embd)``) become output rows ``V .. V+k-1`` (``V``
    the source vocabulary size), so llama.cpp's logits for those ids are
    ``dot(rows[i], final_normed_hidden_state)``. ``names`` are the ``k`` new token strings
    (e.g. ``"<|tigerdecode_dev|>"``), which must be new to the vocabulary.

    Everything else is copied: every metadata key (the token list, types, scores and
    ``<arch>.vocab_size`` extended by ``k``), every tensor byte for byte, except
    ``token_embd.weight`` (``k`` zero rows appended, same ggml type) and ``output.weight``
    (``k`` rows appended in its type; created from the embedding's bytes if the source ties
    them). ``dst`` is written to a temporary file beside it and moved into place, so it is
    either complete or untouched. ``extra_metadata``: string keys to add (or replace), e.g.
    the packed heads' description.

    Returns ``{"n_vocab_before", "n_vocab_after", "output_type", "rows_quantized",
    "row_ids", "max_row_error"}``; ``max_row_error`` is the largest absolute difference
    between ``rows`` and the rows as stored (0.0 for an F32 output).
    """
    import gguf

    src, dst = Path(src), Path(dst)
    reader = _open_gguf(src)
    arch = _string_field(reader, "general.architecture") or ""
    _check_no_softcap(reader, arch, src)
    tokens = _token_list(reader, src)
    n_vocab = len(tokens)

    tensors = {t.name: t for t in reader.tensors}
    embd = _vocab_tensor(tensors, "token_embd.weight", n_vocab, src, required=True)
    output = _vocab_tensor(tensors, "output.weight", n_vocab, src, required=False)
    out_src = output if output is not None else embd
    rows = _check_rows(rows, names, tokens, width=int(out_src.shape[0]))
    k = rows.shape[0]

    out_type = gguf.GGMLQuantizationType(out_src.tensor_type)
    head_bytes = _encode_rows(rows, out_type, what="the head rows (output.weight)")
    stored = gguf.quants.dequantize(head_bytes, out_type).reshape(rows.shape)
    max_err = float(np.max(np.abs(stored.astype(np.float64) - rows.astype(np.float64))))
    zero_rows = np.zeros((k, int(embd.shape[0])), dtype=np.float32)
    embd_extra = _encode_rows(zero_rows, gguf.GGMLQuantizationType(embd.tensor_type),
                              what="the zero embedding rows (token_embd.weight)",
                              zero_fallback=True)

    new_tensors: dict[str, np.ndarray] = {
        "token_embd.weight": np.concatenate([_row_bytes(embd), embd_extra]),
        "output.weight": np.concatenate([_row_bytes(out_src), head_bytes]),
    }
    if "output.bias" in tensors:  # a biased LM head: the new rows get a zero bias
        new_tensors["output.bias"] = _extend_bias(tensors["output.bias"], n_vocab, k, src)

    with atomic_file(dst) as tmp:
        _write_gguf(reader, tmp, arch, names, k, new_tensors, tied=output is None,
                    progress=progress, extra=extra_metadata or {})
    return {
        "n_vocab_before": n_vocab,
        "n_vocab_after": n_vocab + k,
        "output_type": out_type.name,
        "rows_quantized": out_type != gguf.GGMLQuantizationType.F32,
        "row_ids": list(range(n_vocab, n_vocab + k)),
        "max_row_error": max_err,
    }


# --- reading and checking the source -------------------------------------------------------


def _open_gguf(src: Path):
    import gguf

    if not src.is_file():
        raise FileNotFoundError(f"GGUF model file not found: {src}")
    try:
        reader = gguf.GGUFReader(str(src))
    except Exception as e:  # the reader raises ValueError, KeyError, IndexError... on bad input
        raise ValueError(f"{src} is not a readable GGUF file ({e}); expected a llama.cpp model "
                         f"file starting with the 'GGUF' magic - pass a .gguf model") from e
    if reader.byte_order != "I":
        raise ValueError(f"{src} is a big-endian GGUF file; only little-endian files are "
                         f"supported - convert it with llama.cpp's gguf tools first")
    return reader


def _string_field(reader, key: str) -> str | None:
    field = reader.get_field(key)
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def _check_no_softcap(reader, arch: str, src: Path) -> None:
    field = reader.get_field(f"{arch}.final_logit_softcapping")
    cap = float(field.parts[field.data[0]][0]) if field is not None \
        else _DEFAULT_SOFTCAP.get(arch, 0.0)
    if cap:
        raise ValueError(f"{src}: architecture {arch!r} soft-caps its logits "
                         f"(cap * tanh(logit / cap), cap={cap:g}), which would squash the "
                         f"appended rows' outputs too; expected an architecture without final "
                         f"logit soft-capping - run the heads outside the engine for this model")


def _token_list(reader, src: Path) -> list[bytes]:
    field = reader.get_field(_TOKENS)
    if field is None:
        raise ValueError(f"{src} has no {_TOKENS} metadata, so there is no vocabulary to "
                         f"extend; expected a language-model GGUF with its tokenizer")
    return [bytes(field.parts[i]) for i in field.data]


def _vocab_tensor(tensors: dict, name: str, n_vocab: int, src: Path, *, required: bool):
    """The vocabulary-sized matrix ``name`` (ggml shape ``[n_embd, n_vocab]``), checked."""
    t = tensors.get(name)
    if t is None:
        if required:
            raise ValueError(f"{src} has no {name} tensor; expected a language model with a "
                             f"token embedding matrix")
        return None
    shape = [int(d) for d in t.shape]
    if len(shape) != 2 or shape[1] != n_vocab:
        raise ValueError(f"{src}: {name} has ggml shape {shape}, expected [n_embd, {n_vocab}] "
                         f"({n_vocab} = the number of tokens in {_TOKENS}); the file's "
                         f"vocabulary and matrices disagree")
    return t


def _check_rows(rows: Any, names: Any, tokens: list[bytes], *, width: int) -> np.ndarray:
    arr = np.asarray(rows)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"rows must be a 2-D float array of shape (k, {width}); got "
                         f"{arr.dtype} of shape {arr.shape} - stack the head rows into one "
                         f"(k, n_embd) float32 array")
    if arr.shape[0] == 0 or arr.shape[1] != width:
        raise ValueError(f"rows has shape {arr.shape}, expected (k, {width}) with k >= 1: the "
                         f"model's output rows are {width} wide (its embedding length) - "
                         f"check the heads were fitted on this model's hidden states")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("rows contain NaN or infinite values (or values beyond float32's "
                         "range); expected finite head weights")
    if isinstance(names, str) or len(names) != arr.shape[0]:
        got = repr(names) if isinstance(names, str) else f"{len(names)} names"
        raise ValueError(f"names must be a list of {arr.shape[0]} token strings, one per row; "
                         f"got {got}")
    encoded = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"every name must be a non-empty string; got {name!r}")
        encoded.append(name.encode("utf-8"))
    if len(set(encoded)) != len(encoded):
        raise ValueError(f"names must be distinct (each becomes a vocabulary entry); got {names}")
    taken = sorted(n.decode("utf-8") for n in set(encoded) & set(tokens))
    if taken:
        raise ValueError(f"names {taken} are already in the model's vocabulary; pick new token "
                         f"strings such as '<|tigerdecode_head_0|>'")
    return arr


# --- encoding rows ---------------------------------------------------------------------------


def _row_bytes(t) -> np.ndarray:
    """The tensor's rows as raw bytes, shape ``(n_rows, bytes_per_row)`` (no copy)."""
    data = np.ascontiguousarray(t.data)
    return data.view(np.uint8).reshape(int(t.shape[1]), -1)


def _encode_rows(rows: np.ndarray, qtype, *, what: str, zero_fallback: bool = False
                 ) -> np.ndarray:
    """``rows`` (float32, ``(k, n)``) in ggml type ``qtype`` as raw bytes ``(k, row_bytes)``."""
    import gguf

    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n = rows.shape[1]
    if n % block:
        raise ValueError(f"cannot store {what} as {qtype.name}: the row length {n} is not a "
                         f"multiple of its block size {block}")
    try:
        encoded = gguf.quants.quantize(rows, qtype)
    except NotImplementedError as e:
        if zero_fallback and not rows.any():
            # All-zero blocks decode to zeros in every ggml format (each value is a scale
            # times a code, and the scale bytes are zero).
            return np.zeros((rows.shape[0], n // block * type_size), dtype=np.uint8)
        raise ValueError(f"cannot store {what} as {qtype.name}: the gguf package has no "
                         f"{qtype.name} quantizer; expected a model whose output matrix is "
                         f"F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 - re-quantize the "
                         f"model with llama-quantize --output-tensor-type q8_0") from e
    return np.ascontiguousarray(encoded).view(np.uint8).reshape(rows.shape[0], -1)


def _extend_bias(t, n_vocab: int, k: int, src: Path) -> np.ndarray:
    import gguf

    if t.tensor_type != gguf.GGMLQuantizationType.F32 or int(t.n_elements) != n_vocab:
        raise ValueError(f"{src}: output.bias is {t.tensor_type.name} with {t.n_elements} "
                         f"values, expected F32 with {n_vocab}; cannot extend it")
    return np.concatenate([np.asarray(t.data, dtype=np.float32).reshape(-1),
                           np.zeros(k, dtype=np.float32)])


# --- writing ---------------------------------------------------------------------------------


def _writer_class():
    import gguf

    class _Writer(gguf.GGUFWriter):
        """GGUFWriter that can also copy an empty metadata array (the stock one refuses)."""

        def _pack_val(self, val, vtype, add_vtype, sub_type=None):
            if vtype == gguf.GGUFValueType.ARRAY and sub_type is not None and len(val) == 0:
                head = self._pack("I", vtype) if add_vtype else b""
                return head + self._pack("I", sub_type) + self._pack("Q", 0)
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    return _Writer


def _field_value(field) -> tuple[Any, Any, Any]:
    """``(value, type, array item type)`` of a metadata field, strings kept as raw bytes."""
    import gguf

    vt = gguf.GGUFValueType
    vtype = field.types[0]
    if vtype == vt.ARRAY:
        sub = vt(int(field.parts[3][0]))  # parts: key length, key, type, item type, count, ...
        if sub == vt.ARRAY:
            raise ValueError(f"metadata key {field.name!r} is a nested array, which the gguf "
                             f"reader cannot copy faithfully")
        if sub == vt.STRING:
            return [bytes(field.parts[i]) for i in field.data], vtype, sub
        return [field.parts[i][0].item() for i in field.data], vtype, sub
    if vtype == vt.STRING:
        return bytes(field.parts[field.data[0]]), vtype, None
    return field.parts[field.data[0]][0].item(), vtype, None


def _copy_metadata(reader, writer, arch: str, names: list[str], k: int,
                   added: dict[str, str]) -> None:
    import gguf

    vt = gguf.GGUFValueType
    extra: dict[str, list] = {
        _TOKENS: [n.encode("utf-8") for n in names],
        _TOKEN_TYPES: [NEW_TOKEN_TYPE] * k,
        _SCORES: [NEW_TOKEN_SCORE] * k,
    }
    vocab_key = f"{arch}.vocab_size"
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in added:
            continue  # header pseudo-fields; the writer adds the architecture itself
        value, vtype, sub = _field_value(field)
        if key in extra and vtype == vt.ARRAY:
            value = value + extra[key]
        elif key == vocab_key and vtype != vt.ARRAY:
            value = value + k
        writer.add_key_value(key, value, vtype, sub_type=sub)
    for key, value in added.items():
        writer.add_key_value(key, value, vt.STRING)


def _write_gguf(reader, path: Path, arch: str, names: list[str], k: int,
                new_tensors: dict[str, np.ndarray], *, tied: bool, progress: bool,
                extra: dict[str, str]) -> None:
    writer = _writer_class()(str(path), arch)
    try:
        writer.data_alignment = int(reader.alignment)  # the key itself is copied below
        _copy_metadata(reader, writer, arch, names, k, extra)
        for t in reader.tensors:
            if t.name in new_tensors:
                writer.add_tensor(t.name, new_tensors[t.name], raw_dtype=t.tensor_type)
            else:
                writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
            if tied and t.name == "token_embd.weight":
                # tied source: the explicit output matrix goes right after the embedding
                writer.add_tensor("output.weight", new_tensors["output.weight"],
                                  raw_dtype=t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=progress)
    finally:
        writer.close()
