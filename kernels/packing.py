"""Weight-only quantization formats: round-to-nearest quantizers, int4 packing, dequantization.

Two formats, both for a linear weight ``W`` of shape (N, K) = (out_features, in_features):

- **int4, asymmetric, grouped** (W4A16): every ``group_size`` consecutive inputs of an output
  channel share a scale and a zero. Zero mode ``"int"``: an integer zero point,
  ``W ≈ (q - z) * s`` with ``q, z`` in [0, 15], ``zeros`` uint8. Zero mode ``"float"``: the
  group's minimum, ``W ≈ q * s + m``, ``zeros`` fp16 (the GGUF Q4_1 / HQQ style: the grid need
  not hold 0, and weights already on such a grid are re-encoded exactly).
  ``qweight`` is int32 (K/8, N): eight 4-bit codes packed along K, code ``k`` in bits
  ``4 * (k % 8)`` of row ``k // 8`` (the GPTQ layout, so a column of the tile unpacks with one
  shift per row). ``scales`` fp16 (K/G, N), ``zeros`` uint8 (K/G, N).
- **int8, symmetric, per output channel** (W8A16): ``W ≈ q * s`` with ``q`` int8 (N, K) in
  [-127, 127] and ``s`` fp16 (N,). The (N, K) layout is also what PyTorch's CPU int8 kernel takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUPPORTED_BITS = (4, 8)
SUPPORTED_GROUP_SIZES = (32, 64, 128)
PACK_FACTOR = 8  # int4 codes per int32
SCALE_DTYPE = torch.float16
ZERO_MODES = ("int", "float")


class QuantizationError(ValueError):
    """Bad quantization input: the message names the value, what is allowed and how to fix it."""


def check_format(bits: int, group_size: int | None, zero_mode: str = "int") -> None:
    """Raise :class:`QuantizationError` for unsupported ``bits`` / ``group_size`` / zero mode."""
    if zero_mode not in ZERO_MODES:
        raise QuantizationError(f"zero_mode={zero_mode!r} is not supported; choose one of "
                                f"{ZERO_MODES} (int: uint4 zero point; float: fp16 group minimum).")
    if bits not in SUPPORTED_BITS:
        raise QuantizationError(
            f"bits={bits!r} is not supported; choose one of {SUPPORTED_BITS} "
            "(4 = int4 grouped asymmetric, 8 = int8 per-channel symmetric)."
        )
    if bits == 4 and group_size not in SUPPORTED_GROUP_SIZES:
        raise QuantizationError(
            f"group_size={group_size!r} is not supported for int4; choose one of "
            f"{SUPPORTED_GROUP_SIZES}."
        )


def check_shape(bits: int, group_size: int | None, in_features: int) -> None:
    """Raise :class:`QuantizationError` when ``in_features`` (K) cannot be split into groups."""
    if bits == 4 and in_features % group_size:
        raise QuantizationError(
            f"in_features K={in_features} is not divisible by group_size={group_size}; int4 "
            "groups run along K. Pick a group size that divides K or keep this layer in float."
        )


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack codes ``q`` (K, N) in [0, 15] into int32 (K/8, N), eight codes per word along K."""
    K, N = q.shape
    if K % PACK_FACTOR:
        raise QuantizationError(f"K={K} must be a multiple of {PACK_FACTOR} to pack int4 codes.")
    q = q.to(torch.int32).reshape(K // PACK_FACTOR, PACK_FACTOR, N)  # (K/8, 8, N)
    shifts = (torch.arange(PACK_FACTOR, dtype=torch.int32, device=q.device) * 4).view(1, -1, 1)
    # The eight nibbles occupy disjoint bits, so the sum is a bitwise OR; int32 wraps on bit 31.
    return (q << shifts).sum(dim=1, dtype=torch.int32)  # (K/8, N)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: int32 (K/8, N) → int32 codes (K, N) in [0, 15]."""
    K8, N = packed.shape
    shifts = (torch.arange(PACK_FACTOR, dtype=torch.int32, device=packed.device) * 4).view(1, -1, 1)
    q = (packed.unsqueeze(1) >> shifts) & 0xF  # (K/8, 8, N)
    return q.reshape(K8 * PACK_FACTOR, N)


def dequant_int4(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int,
                 zero_mode: str) -> torch.Tensor:
    """Codes (K, n) with per-group scales/zeros (K/G, n) → fp32 weights (K, n)."""
    s = scales.to(torch.float32).repeat_interleave(group_size, dim=0)  # (K, n)
    z = zeros.to(torch.float32).repeat_interleave(group_size, dim=0)  # (K, n)
    q = q.to(torch.float32)
    return q * s + z if zero_mode == "float" else (q - z) * s


@dataclass
class PackedWeight:
    """One quantized weight in the canonical (saved, Triton) layout; see the module docstring."""

    bits: int
    group_size: int | None  # None for per-channel int8
    in_features: int  # K
    out_features: int  # N
    qweight: torch.Tensor  # int4: int32 (K/8, N); int8: int8 (N, K)
    scales: torch.Tensor  # int4: fp16 (K/G, N); int8: fp16 (N,)
    zeros: torch.Tensor | None = None  # int4: uint8 ("int") or fp16 ("float") (K/G, N)
    zero_mode: str = "int"

    @property
    def float_zero(self) -> bool:
        return self.bits == 4 and self.zero_mode == "float"

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The float weight (N, K) this format represents."""
        if self.bits == 8:
            return (self.qweight.to(dtype) * self.scales.to(dtype)[:, None]).contiguous()
        w = dequant_int4(unpack_int4(self.qweight), self.scales, self.zeros, self.group_size,
                         self.zero_mode)  # (K, N)
        return w.t().to(dtype).contiguous()  # (N, K)

    def nbytes(self) -> int:
        """Bytes of the stored tensors (what a checkpoint holds for this weight)."""
        ts = [self.qweight, self.scales] + ([self.zeros] if self.zeros is not None else [])
        return sum(t.numel() * t.element_size() for t in ts)


CLIP_GRID = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75)


def _int4_codes(w: torch.Tensor, shrink: float, zero_mode: str):
    """Scale, zero and codes for groups ``w`` (K/G, G, N) with the range shrunk by ``shrink``."""
    wmin, wmax = w.amin(dim=1) * shrink, w.amax(dim=1) * shrink  # (K/G, N)
    if zero_mode == "int":  # the integer grid must hold 0
        wmin, wmax = wmin.clamp(max=0.0), wmax.clamp(min=0.0)
    scale = ((wmax - wmin) / 15.0).to(SCALE_DTYPE).to(torch.float32)  # round the scale first...
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    if zero_mode == "int":
        zero = torch.round(-wmin / scale).clamp(0, 15)  # ...so codes fit the stored scale
        q = torch.round(w / scale[:, None, :] + zero[:, None, :]).clamp(0, 15)  # (K/G, G, N)
        deq = (q - zero[:, None, :]) * scale[:, None, :]
    else:
        zero = wmin.to(SCALE_DTYPE).to(torch.float32)
        q = torch.round((w - zero[:, None, :]) / scale[:, None, :]).clamp(0, 15)
        deq = q * scale[:, None, :] + zero[:, None, :]
    return scale, zero, q, deq


def quantize_int4(weight: torch.Tensor, group_size: int = 128, *, clip_search: bool = False,
                  zero_mode: str = "int") -> PackedWeight:
    """Round-to-nearest asymmetric int4 with one (scale, zero) per group of K inputs.

    ``clip_search`` tries a few shrunken ranges per group (``CLIP_GRID``) and keeps the one with
    the least squared error: clipping rare outliers buys finer steps for the rest.
    """
    check_format(4, group_size, zero_mode)
    N, K = weight.shape
    check_shape(4, group_size, K)
    w = weight.detach().to(torch.float32).t().reshape(K // group_size, group_size, N)  # (K/G, G, N)
    scale, zero, q, deq = _int4_codes(w, 1.0, zero_mode)
    if clip_search:
        best = (deq - w).pow(2).sum(dim=1)  # (K/G, N)
        for shrink in CLIP_GRID[1:]:
            s2, z2, q2, d2 = _int4_codes(w, shrink, zero_mode)
            err = (d2 - w).pow(2).sum(dim=1)
            better = err < best
            best = torch.where(better, err, best)
            scale, zero = torch.where(better, s2, scale), torch.where(better, z2, zero)
            q = torch.where(better[:, None], q2, q)
    return PackedWeight(
        bits=4, group_size=group_size, in_features=K, out_features=N,
        qweight=pack_int4(q.reshape(K, N).to(torch.int32)),
        scales=scale.to(SCALE_DTYPE).contiguous(),
        zeros=zero.to(torch.uint8 if zero_mode == "int" else SCALE_DTYPE).contiguous(),
        zero_mode=zero_mode,
    )


def quantize_int8(weight: torch.Tensor) -> PackedWeight:
    """Round-to-nearest symmetric int8 with one scale per output channel."""
    N, K = weight.shape
    w = weight.detach().to(torch.float32)
    scale = (w.abs().amax(dim=1) / 127.0).to(SCALE_DTYPE).to(torch.float32)  # (N,)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return PackedWeight(bits=8, group_size=None, in_features=K, out_features=N,
                        qweight=q.contiguous(), scales=scale.to(SCALE_DTYPE).contiguous())


def quantize_weight(weight: torch.Tensor, bits: int = 4, group_size: int | None = 128, *,
                    clip_search: bool = False, zero_mode: str = "int") -> PackedWeight:
    """Quantize a float (N, K) weight to ``bits`` (4: grouped asymmetric; 8: per-channel)."""
    check_format(bits, group_size, zero_mode)
    if weight.dim() != 2:
        raise QuantizationError(f"expected a 2-D (out, in) weight, got shape {tuple(weight.shape)}")
    if bits == 8:
        return quantize_int8(weight)
    return quantize_int4(weight, group_size, clip_search=clip_search, zero_mode=zero_mode)
