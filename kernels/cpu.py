"""CPU fast path: PyTorch's packed int4 / int8 matmuls (``_weight_int4pack_mm_for_cpu``,
``_weight_int8pack_mm``), fed bf16 activations (with fp32 ones they are several times slower).

The int4 kernel computes ``(q - 8) * scale + zero`` with a float zero per group; our integer zero
point ``z`` maps onto it exactly as ``zero = (8 - z) * scale``, a group minimum ``m`` as
``zero = m + 8 * scale``. The kernels' own layout is built
from the canonical one once per layer (:func:`prepare_cpu`) and cached beside it.

Shape limits of those kernels (found by testing torch 2.13; outside them they crash or return
garbage, so we never call them there): int4 needs N % 16 == 0; int8 needs K % 16 == 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .packing import PackedWeight, unpack_int4

ACT_DTYPE = torch.bfloat16


@dataclass
class CpuPacked:
    """A weight in the layout of PyTorch's CPU kernels."""

    bits: int
    group_size: int | None
    out_features: int
    weight: torch.Tensor  # int4: uint8 (N, K/2) kernel layout; int8: int8 (N, K)
    scales: torch.Tensor  # int4: bf16 (K/G, N, 2) [scale, zero]; int8: bf16 (N,)


def cpu_available() -> bool:
    return hasattr(torch, "_weight_int4pack_mm_for_cpu") and hasattr(torch, "_weight_int8pack_mm")


def cpu_unsupported(w: PackedWeight) -> str | None:
    """Why PyTorch's CPU kernels cannot take this weight, or None when they can."""
    if not cpu_available():
        return f"torch {torch.__version__} has no packed int4/int8 CPU kernels"
    if w.bits == 4 and w.out_features % 16:
        return f"out_features N={w.out_features} is not a multiple of 16 (torch's int4 CPU kernel)"
    if w.bits == 8 and w.in_features % 16:
        return f"in_features K={w.in_features} is not a multiple of 16 (torch's int8 CPU kernel)"
    return None


def prepare_cpu(w: PackedWeight) -> CpuPacked:
    """Convert a canonical weight to the CPU kernels' layout (call once, reuse)."""
    reason = cpu_unsupported(w)
    if reason:
        raise ValueError(f"the CPU kernels cannot take this weight: {reason}")
    if w.bits == 8:
        return CpuPacked(8, None, w.out_features, w.qweight.cpu().contiguous(),
                         w.scales.cpu().to(ACT_DTYPE))
    q = unpack_int4(w.qweight.cpu()).t().contiguous()  # (N, K) int32 codes
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)  # (N, K/2) uint8
    s = w.scales.cpu().to(torch.float32)  # (K/G, N)
    z = w.zeros.cpu().to(torch.float32)
    zero = z + 8.0 * s if w.float_zero else (8.0 - z) * s
    sz = torch.stack([s, zero], dim=-1).to(ACT_DTYPE).contiguous()  # (K/G, N, 2)
    return CpuPacked(4, w.group_size, w.out_features, packed, sz)


def cpu_quant_matmul(x: torch.Tensor, p: CpuPacked) -> torch.Tensor:
    """``x (..., K) @ W.T -> (..., N)`` in ``x.dtype``, computed in bf16 by the packed kernels."""
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).to(ACT_DTYPE).contiguous()  # (M, K)
    if p.bits == 4:
        y = torch._weight_int4pack_mm_for_cpu(x2, p.weight, p.group_size, p.scales)
    else:
        y = torch._weight_int8pack_mm(x2, p.weight, p.scales)
    return y.to(x.dtype).reshape(*lead, p.out_features)  # (..., N)
