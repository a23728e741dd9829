"""Save and load quantized models: a HF-style directory with the format in the metadata.

Layout: ``config.json`` + tokenizer files (as ``save_pretrained`` writes them), ``model.safetensors``
(float tensors and the packed ``qweight``/``scales``/``zeros`` buffers; tied tensors stored once)
and ``tigerdecode_quant.json`` (format name and version, packing, zero mode, per-layer bits and
group sizes). The safetensors header carries the same format fields; loading checks both and
refuses a format it does not know with an error that says what it found and what it supports.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tigerdecode.errors import ModelLoadError
from tigerdecode.fsutil import atomic_dir
from tigerdecode.kernels import QuantizationError, check_format

QUANT_FILE = "tigerdecode_quant.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_NAME = "tigerdecode-quant"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
PACKING = {4: "int4-uint32x8-along-k", 8: "int8-row-major-nk"}
DTYPES = ("float32", "float16", "bfloat16")
ZERO_MODE = {(4, "int"): "asymmetric-uint4-per-group", (4, "float"): "asymmetric-fp16-min-per-group",
             (8, "int"): "symmetric-per-channel"}


class QuantFormatError(ModelLoadError):
    """A quantized checkpoint is missing, corrupt or of a format this version cannot read."""


def is_quantized_dir(path) -> bool:
    return Path(path).is_dir() and (Path(path) / QUANT_FILE).is_file()


def _header(plan) -> dict:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "bits": plan.bits,
            "group_size": plan.group_size, "packing": PACKING[plan.bits],
            "zero_mode": ZERO_MODE[(plan.bits, plan.zero_mode)]}


def save_quantized(model, tokenizer, out_dir, *, source: str | None = None) -> Path:
    """Write ``model`` (after :func:`quantize_model`) and ``tokenizer`` to ``out_dir``.

    Written into a temp directory beside ``out_dir`` and renamed into place, so an interrupted
    save never leaves a half-written checkpoint. An existing ``out_dir`` is replaced only when it
    is empty or itself a quantized checkpoint.
    """
    from safetensors.torch import save_model

    plan = getattr(model, "tigerdecode_quant", None)
    if plan is None:
        raise QuantizationError("the model is not quantized; call quantize_model(model) first.")
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()) and not is_quantized_dir(out):
        raise FileExistsError(f"{out} exists and is not a tigerdecode quantized checkpoint; "
                              "choose an empty or new directory.")
    with atomic_dir(out) as tmp:
        meta = {**_header(plan), "source": source, "dtype": str(_float_dtype(model)).split(".")[-1],
                "plan": plan.to_dict()}
        model.config.save_pretrained(str(tmp))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        header = {k: str(v) for k, v in _header(plan).items()}
        save_model(model, str(tmp / WEIGHTS_FILE), metadata=header)
        (tmp / QUANT_FILE).write_text(json.dumps(meta, indent=2))
    return out


def _float_dtype(model) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def read_metadata(path) -> dict:
    """The checked format metadata of a quantized directory."""
    path = Path(path)
    try:
        meta = json.loads((path / QUANT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # bad JSON or UTF-8, deep nesting
        raise QuantFormatError(f"cannot read {path / QUANT_FILE}: {e}; expected the JSON "
                               "object `tigerdecode quantize` writes") from None
    check_metadata(meta, where=str(path / QUANT_FILE))
    from safetensors import safe_open

    try:
        with safe_open(str(path / WEIGHTS_FILE), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors has its own error types
        raise QuantFormatError(f"cannot read {path / WEIGHTS_FILE}: {e}") from e
    want = {k: str(v) for k, v in _header_from(meta).items()}
    diff = {k: (header.get(k), v) for k, v in want.items() if header.get(k) != v}
    if diff:
        raise QuantFormatError(f"{path / WEIGHTS_FILE} header disagrees with {QUANT_FILE} "
                               f"(field: (header, json)): {diff}; the checkpoint is inconsistent.")
    return meta


def _header_from(meta: dict) -> dict:
    return {k: meta[k] for k in ("format", "version", "bits", "group_size", "packing", "zero_mode")}


def check_metadata(meta: dict, where: str = "metadata") -> None:
    """Raise :class:`QuantFormatError` unless ``meta`` describes a format this version reads."""
    if not isinstance(meta, dict):
        raise QuantFormatError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT_NAME:
        raise QuantFormatError(f"{where}: format {meta.get('format')!r} is not {FORMAT_NAME!r}.")
    if meta.get("version") not in SUPPORTED_VERSIONS:
        raise QuantFormatError(
            f"{where}: format version {meta.get('version')!r} is not supported by this tigerdecode "
            f"(supported: {SUPPORTED_VERSIONS}). Upgrade tigerdecode or re-quantize the model "
            "with `tigerdecode quantize`."
        )
    try:
        check_format(meta["bits"], meta["group_size"])
        bits = meta["bits"]
        modes = {v: k[1] for k, v in ZERO_MODE.items() if k[0] == bits}
        if meta["packing"] != PACKING[bits] or meta["zero_mode"] not in modes:
            raise QuantFormatError(
                f"{where}: packing {meta['packing']!r} / zero mode {meta['zero_mode']!r} do not "
                f"match int{bits} in this version ({PACKING[bits]!r}, one of {sorted(modes)}).")
        if meta["plan"].get("zero_mode", "int") != modes[meta["zero_mode"]]:
            raise QuantFormatError(f"{where}: plan zero mode disagrees with {meta['zero_mode']!r}")
        for spec in meta["plan"]["layers"].values():
            check_format(spec["bits"], spec["group_size"], spec.get("zero_mode", "int"))
            if not isinstance(spec["bias"], bool):
                raise TypeError(f"'bias' {spec['bias']!r}")
        if meta.get("dtype", "float32") not in DTYPES:
            raise QuantFormatError(f"{where}: dtype {meta.get('dtype')!r} is not one of "
                                   f"{DTYPES}")
        from tigerdecode.quant.rtn import QuantPlan

        QuantPlan(**meta["plan"])
    except QuantizationError as e:
        raise QuantFormatError(f"{where}: {e}") from e
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise QuantFormatError(f"{where}: missing or malformed field {e}") from e


def load_quantized(path, *, dtype: torch.dtype | None = None, device=None):
    """Load ``(model, tokenizer)`` from a directory written by :func:`save_quantized`."""
    from safetensors.torch import load_model as st_load
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tigerdecode.quant.rtn import QuantPlan

    path = Path(path)
    meta = read_metadata(path)
    dtype = dtype or getattr(torch, meta.get("dtype", "float32"))
    try:
        cfg = AutoConfig.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, TypeError, strict-field errors
        raise QuantFormatError(f"{path}/config.json cannot be read as a model config: {e}") \
            from None
    plan = QuantPlan(**meta["plan"])

    def build():
        with _no_init():
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        _swap_in_quant_layers(model, plan, dtype)
        return model

    n_layers = getattr(cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg,
                       "num_hidden_layers", 0)
    if isinstance(n_layers, int) and n_layers > _tensor_count(path / WEIGHTS_FILE):
        raise QuantFormatError(f"{path}/config.json asks for {n_layers} layers, more than "
                               f"{WEIGHTS_FILE} holds tensors; the config does not belong to "
                               "these weights")
    try:  # on the meta device first: a config that asks for huge layers allocates nothing
        with torch.device("meta"):
            skeleton = build()
    except Exception as e:  # noqa: BLE001 - transformers raises many types for a bad config
        raise QuantFormatError(f"{path}: config.json and {QUANT_FILE} do not describe a model "
                               f"this tigerdecode can build ({type(e).__name__}: {e}); "
                               "re-quantize it with `tigerdecode quantize`") from None
    _check_shapes(skeleton, path / WEIGHTS_FILE)
    model = build()
    try:
        missing, unexpected = st_load(model, str(path / WEIGHTS_FILE), strict=False)
    except RuntimeError as e:
        raise QuantFormatError(f"{path / WEIGHTS_FILE} does not match the model built from "
                               f"config.json and {QUANT_FILE}: {e}") from e
    missing = _retie(model, set(missing))
    if missing or unexpected:
        raise QuantFormatError(f"{path / WEIGHTS_FILE} does not match the model built from "
                               f"config.json and {QUANT_FILE}: missing {sorted(missing)}, "
                               f"unexpected {sorted(unexpected)}")
    model.tigerdecode_quant = plan
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if device is not None:
        model = model.to(device)
    return model.eval(), tok


def _tensor_count(weights: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as fh:
        return len(list(fh.keys()))


def _check_shapes(skeleton, weights: Path) -> None:
    """Every tensor stored in ``weights`` has the shape the model skeleton expects."""
    from safetensors import safe_open

    want = {k: list(v.shape) for k, v in skeleton.state_dict().items()}
    with safe_open(str(weights), framework="pt") as fh:
        bad = [f"{k}: stored {fh.get_slice(k).get_shape()}, expected {want[k]}"
               for k in fh.keys() if k in want and fh.get_slice(k).get_shape() != want[k]]
    if bad:
        raise QuantFormatError(f"{weights} does not match the model built from config.json and "
                               f"{QUANT_FILE}: {'; '.join(bad[:3])}"
                               + (f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""))


def _swap_in_quant_layers(model, plan, dtype) -> None:
    """Replace the plan's linear layers (and a tied embedding) with empty quantized ones."""
    from tigerdecode.quant.layers import QuantEmbedding, QuantLinear

    for name, spec in plan.layers.items():
        old = model.get_submodule(name)
        W = old.weight.t() if type(old).__name__ == "Conv1D" else old.weight  # (N, K)
        new = QuantLinear(W.shape[1], W.shape[0], spec["bits"], spec["group_size"], spec["bias"],
                          dtype=dtype, zero_mode=spec.get("zero_mode", "int"))
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
    if plan.tied_embedding:
        emb = model.get_submodule(plan.tied_embedding)
        head = model.get_output_embeddings()
        parent, _, child = plan.tied_embedding.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child,
                QuantEmbedding(head, dtype, getattr(emb, "padding_idx", None)))


def _retie(model, missing: set[str]) -> set[str]:
    """safetensors stores a tied embedding once (under one of its names); point the float
    embedding and the float LM head at the same tensor again. Returns what is still missing."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if inp is None or out is None or not isinstance(getattr(inp, "weight", None),
                                                    torch.nn.Parameter) or \
            not isinstance(getattr(out, "weight", None), torch.nn.Parameter):
        return missing
    names = {id(m): n for n, m in model.named_modules()}
    in_key, out_key = f"{names[id(inp)]}.weight", f"{names[id(out)]}.weight"
    if in_key in missing and out_key not in missing and inp.weight.shape == out.weight.shape:
        inp.weight = out.weight
        missing.discard(in_key)
    elif out_key in missing and in_key not in missing and inp.weight.shape == out.weight.shape:
        out.weight = inp.weight
        missing.discard(out_key)
    return missing


def _no_init():
    """Skip random weight init when building the skeleton (every tensor is loaded after)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()
