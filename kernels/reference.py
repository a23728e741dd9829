"""Pure-torch references for the quantized matmuls: dequantize in fp32, then multiply.

These define what every kernel must compute; tests compare the Triton and CPU paths to them.
"""

from __future__ import annotations

import torch

from .packing import PackedWeight


def w4a16_reference(x: torch.Tensor, w: PackedWeight) -> torch.Tensor:
    """``x @ dequant(W).T`` for an int4 grouped weight, fp32 math, output in ``x.dtype``."""
    assert w.bits == 4
    return _ref(x, w)


def w8a16_reference(x: torch.Tensor, w: PackedWeight) -> torch.Tensor:
    """``x @ dequant(W).T`` for an int8 per-channel weight, fp32 math, output in ``x.dtype``."""
    assert w.bits == 8
    return _ref(x, w)


def quant_matmul_reference(x: torch.Tensor, w: PackedWeight) -> torch.Tensor:
    """The reference for either format."""
    return _ref(x, w)


def _ref(x: torch.Tensor, w: PackedWeight) -> torch.Tensor:
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1]).to(torch.float32)  # (M, K)
    y = x2 @ w.dequantize(torch.float32).to(x2.device).t()  # (M, N)
    return y.to(x.dtype).reshape(*lead, w.out_features)
