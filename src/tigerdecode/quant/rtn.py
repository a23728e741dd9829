"""``quantize_model``: swap a model's linear layers for weight-only quantized ``QuantLinear``.

Round-to-nearest, in place, one layer at a time (peak memory: the model plus one layer). Works on
any HF causal LM: ``nn.Linear`` and GPT-2's transposed ``Conv1D`` are both taken. A layer whose
input size K is not divisible by the requested int4 group uses the largest supported group that
divides K (e.g. K=576 with group 128 → group 64), or stays in float when none does; either way a
warning says which layers and why, and the choice is recorded per layer for saving.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tigerdecode.kernels import SUPPORTED_GROUP_SIZES, QuantizationError, check_format
from tigerdecode.kernels.packing import quantize_weight
from tigerdecode.quant.layers import QuantEmbedding, QuantLinear

BAD_SHAPE_POLICIES = ("fallback", "skip", "error")


@dataclass
class QuantPlan:
    """What was quantized: per layer (bits, group size), plus the layers kept in float and why."""

    bits: int
    group_size: int | None
    include_lm_head: bool = False
    layers: dict[str, dict] = field(default_factory=dict)  # name -> {"bits", "group_size", "bias"}
    kept_float: dict[str, str] = field(default_factory=dict)  # name -> reason
    tied_embedding: str | None = None  # name of an embedding that reads the quantized lm_head
    method: str = "rtn"
    zero_mode: str = "int"

    def to_dict(self) -> dict:
        return asdict(self)


def _is_conv1d(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and m.weight.dim() == 2


def _linear_weight(m: nn.Module) -> torch.Tensor:
    """The (out, in) weight of an ``nn.Linear`` or a GPT-2 ``Conv1D`` (stored as (in, out))."""
    return m.weight.t() if _is_conv1d(m) else m.weight


def layer_group_size(bits: int, group_size: int | None, K: int, policy: str) -> int | None:
    """The group a layer with input size K gets, or raise / return -1 (keep float) per policy."""
    if bits == 8 or K % group_size == 0:
        return group_size
    smaller = [g for g in sorted(SUPPORTED_GROUP_SIZES, reverse=True) if g < group_size and K % g == 0]
    if policy == "error":
        raise QuantizationError(
            f"in_features K={K} is not divisible by group_size={group_size}; use a group size "
            f"that divides K (e.g. {smaller[0] if smaller else 'none supported'}) or "
            "on_bad_shape='fallback'."
        )
    if policy == "fallback" and smaller:
        return smaller[0]
    return -1


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def quantize_model(model: nn.Module, bits: int = 4, group_size: int | None = 128, *,
                   include_lm_head: bool = False, skip: tuple[str, ...] = (),
                   on_bad_shape: str = "fallback", clip_search: bool = False,
                   zero_mode: str = "int", method: str = "rtn", calibration=None,
                   progress: bool = False, lm_head_bits: int | None = None) -> nn.Module:
    """Quantize ``model``'s linear layers in place (RTN) and return it.

    ``include_lm_head`` also quantizes the output projection; when the input embedding is tied
    to it (and is a plain ``nn.Embedding``), the embedding then reads the same quantized matrix.
    ``skip``: name substrings to keep in float. ``on_bad_shape``: what to do with a layer whose K
    is not divisible by ``group_size`` ("fallback" to a smaller group, "skip" it, or "error").
    ``clip_search`` picks each int4 group's range by least squared error (slower, more accurate).
    ``zero_mode``: int4 zeros as a uint4 zero point ("int") or the fp16 group minimum ("float").
    ``method="gptq"`` (int4 only) uses ``calibration``, a list of (1, T) token-id tensors (see
    :func:`tigerdecode.quant.gptq.calibration_batches`), to quantize with GPTQ error compensation.
    ``lm_head_bits``: the output layer's bits when it differs (e.g. 8 beside int4 layers: the
    largest matrix of a small model at a quarter of its float bytes, at little cost in
    perplexity). The plan is stored on ``model.tigerdecode_quant``.
    """
    check_format(bits, group_size, zero_mode)
    if lm_head_bits not in (None, 4, 8):
        raise ValueError(f"lm_head_bits={lm_head_bits!r}; expected 4, 8 or None (as bits)")
    if on_bad_shape not in BAD_SHAPE_POLICIES:
        raise ValueError(f"on_bad_shape={on_bad_shape!r}; expected one of {BAD_SHAPE_POLICIES}")
    if method not in ("rtn", "gptq"):
        raise ValueError(f"method={method!r}; expected 'rtn' or 'gptq'")
    if method == "gptq" and (bits != 4 or not calibration):
        raise QuantizationError("method='gptq' needs bits=4 and calibration=[token id tensors], "
                                "e.g. tigerdecode.quant.gptq.calibration_batches(tokenizer, text).")
    if getattr(model, "tigerdecode_quant", None) is not None:
        raise QuantizationError("this model is already quantized; load the float model again.")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    tied = head is not None and emb is not None and head.weight is emb.weight
    plan = QuantPlan(bits, group_size if bits == 4 else None, include_lm_head)
    targets = []
    for name, m in model.named_modules():
        if not (isinstance(m, nn.Linear) or _is_conv1d(m)):
            continue
        if m is head and not include_lm_head:
            plan.kept_float[name] = "lm_head (pass include_lm_head=True to quantize it)"
        elif any(s in name for s in skip):
            plan.kept_float[name] = "skipped by request"
        else:
            targets.append((name, m))
    hessians = None
    if method == "gptq":
        from tigerdecode.quant.gptq import collect_hessians

        hessians = collect_hessians(model, [n for n, _ in targets], calibration, progress)
    plan.method = method
    plan.zero_mode = zero_mode if bits == 4 else "int"
    it = targets
    if progress:
        from tqdm import tqdm

        it = tqdm(targets, desc=f"quantizing to int{bits}", unit="layer")
    fallbacks = {}
    for name, m in it:
        W = _linear_weight(m)  # (N, K)
        b = lm_head_bits if m is head and lm_head_bits is not None else bits
        g = layer_group_size(b, group_size if b == 4 else None, W.shape[1], on_bad_shape)
        if g == -1:
            plan.kept_float[name] = (f"K={W.shape[1]} not divisible by group_size={group_size} "
                                     f"(on_bad_shape={on_bad_shape!r})")
            continue
        if b == 4 and g != group_size:
            fallbacks.setdefault((W.shape[1], g), []).append(name)
        H = hessians.hessian(name) if hessians is not None else None
        if H is not None and b == 4:
            from tigerdecode.quant.gptq import gptq_int4

            packed = gptq_int4(W, H, g, zero_mode=zero_mode)
        else:
            packed = quantize_weight(W, b, g, clip_search=clip_search,
                                     zero_mode=zero_mode if b == 4 else "int")
        q = QuantLinear.from_packed(packed, m.bias)
        _set_module(model, name, q)
        plan.layers[name] = {"bits": b, "group_size": g, "bias": m.bias is not None,
                             "zero_mode": packed.zero_mode}
        if m is head and tied:
            _tie_embedding(model, emb, q, plan)
    for (K, g), names in fallbacks.items():
        warnings.warn(f"group_size={group_size} does not divide K={K}; {len(names)} layers use "
                      f"group {g} instead (e.g. {names[0]}).", stacklevel=2)
    odd = {n: r for n, r in plan.kept_float.items() if r.startswith("K=")}
    if odd:
        warnings.warn(f"{len(odd)} layers stay in float: {odd}", stacklevel=2)
    model.tigerdecode_quant = plan
    return model


def _tie_embedding(model: nn.Module, emb: nn.Module, head: QuantLinear, plan: QuantPlan) -> None:
    """Point a tied plain ``nn.Embedding`` at the quantized lm_head; otherwise untie and warn."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    cfg.tie_word_embeddings = False
    if hasattr(model.config, "tie_word_embeddings"):
        model.config.tie_word_embeddings = False
    if type(emb) is not nn.Embedding:
        warnings.warn(f"the input embedding ({type(emb).__name__}) is not a plain nn.Embedding; it "
                      "stays in float (untied from the quantized lm_head).", stacklevel=3)
        return
    name = next(n for n, m in model.named_modules() if m is emb)
    _set_module(model, name, QuantEmbedding(head, emb.weight.dtype, emb.padding_idx))
    plan.tied_embedding = name


def quantized_bytes(model: nn.Module) -> int:
    """Bytes a checkpoint of ``model`` holds (parameters + persistent buffers, shared counted once)."""
    seen, total = set(), 0
    for t in list(model.state_dict().values()):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total
