"""``QuantLinear`` and ``QuantEmbedding``: drop-in modules over a weight-only quantized matrix.

``QuantLinear`` picks its backend per call: CUDA → the Triton kernels; CPU under
``TRITON_INTERPRET=1`` → the same Triton kernels, interpreted (so tests exercise them); CPU →
PyTorch's packed int4/int8 kernels in bf16; anything those cannot take → dequantize + matmul,
with a warning that names the reason. ``TIGERDECODE_QUANT_BACKEND`` (auto|triton|cpu|torch) or
the module's ``backend`` attribute overrides the choice.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from tigerdecode.kernels import (
    PackedWeight,
    cpu_quant_matmul,
    cpu_unsupported,
    prepare_cpu,
    quant_matmul,
)
from tigerdecode.kernels.configs import interpreting
from tigerdecode.kernels.packing import PACK_FACTOR, SCALE_DTYPE, dequant_int4, unpack_int4

BACKENDS = ("auto", "triton", "cpu", "torch")
_warned: set = set()


def _warn_once(key, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, stacklevel=4)


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


class QuantLinear(nn.Module):
    """``y = x @ W.T + b`` with W stored as int4 (grouped, asymmetric) or int8 (per channel)."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int | None,
                 bias: bool, dtype: torch.dtype = torch.float32, device=None,
                 zero_mode: str = "int"):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.bits, self.group_size = bits, (group_size if bits == 4 else None)
        self.zero_mode = zero_mode if bits == 4 else "int"
        self.backend = "auto"
        K, N = in_features, out_features
        if bits == 4:
            G = group_size
            self.register_buffer("qweight", torch.empty(K // PACK_FACTOR, N, dtype=torch.int32,
                                                        device=device))
            self.register_buffer("scales", torch.empty(K // G, N, dtype=SCALE_DTYPE, device=device))
            zdtype = torch.uint8 if zero_mode == "int" else SCALE_DTYPE
            self.register_buffer("zeros", torch.empty(K // G, N, dtype=zdtype, device=device))
        else:
            self.register_buffer("qweight", torch.empty(N, K, dtype=torch.int8, device=device))
            self.register_buffer("scales", torch.empty(N, dtype=SCALE_DTYPE, device=device))
            self.zeros = None
        self.register_buffer("bias", torch.empty(N, dtype=dtype, device=device) if bias else None)
        self._cpu = None  # (key, CpuPacked) cache of the CPU kernels' layout

    @classmethod
    def from_packed(cls, w: PackedWeight, bias: torch.Tensor | None) -> QuantLinear:
        dtype = bias.dtype if bias is not None else torch.float32
        m = cls(w.in_features, w.out_features, w.bits, w.group_size, bias is not None, dtype,
                device=w.qweight.device, zero_mode=w.zero_mode)
        m.qweight.copy_(w.qweight)
        m.scales.copy_(w.scales)
        if w.bits == 4:
            m.zeros.copy_(w.zeros)
        if bias is not None:
            m.bias.copy_(bias.detach())
        return m

    def packed(self) -> PackedWeight:
        return PackedWeight(self.bits, self.group_size, self.in_features, self.out_features,
                            self.qweight, self.scales, self.zeros, self.zero_mode)

    def _apply(self, fn, recurse=True):
        # Module.to(dtype) would cast the fp16 scales (and float zeros) too: a lossy rounding.
        kept = {k: getattr(self, k) for k in ("scales", "zeros") if getattr(self, k) is not None}
        out = super()._apply(fn, recurse)
        for k, t in kept.items():
            if getattr(self, k).dtype != t.dtype:
                setattr(self, k, t.to(device=getattr(self, k).device))
        self._cpu = None
        return out

    def resolve_backend(self, x: torch.Tensor) -> str:
        """The backend a call on ``x`` uses (see the module docstring)."""
        choice = os.environ.get("TIGERDECODE_QUANT_BACKEND", self.backend)
        if choice not in BACKENDS:
            raise ValueError(f"quant backend {choice!r}; expected one of {BACKENDS}")
        if choice == "auto":
            if x.is_cuda or (interpreting() and _triton_importable()):
                choice = "triton"
            else:
                choice = "cpu"
        if choice == "cpu":
            reason = "x is not on the CPU" if x.device.type != "cpu" else cpu_unsupported(
                self.packed())
            if reason:
                _warn_once(("cpu", self.in_features, self.out_features, reason),
                           f"QuantLinear({self.in_features}->{self.out_features}, int{self.bits}): "
                           f"{reason}; falling back to dequantize + matmul for this layer.")
                choice = "torch"
        return choice

    def _cpu_packed(self):
        key = (self.qweight.data_ptr(), self.qweight._version, self.scales._version)
        if self._cpu is None or self._cpu[0] != key:
            self._cpu = (key, prepare_cpu(self.packed()))
        return self._cpu[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() and self._cpu is not None:
            # traced into a compiled graph (the fast decode step): an eager call before it
            # chose the CPU kernels and prepared their layout; use that, nothing to decide
            y = cpu_quant_matmul(x, self._cpu[1])
            return y if self.bias is None else y + self.bias.to(y.dtype)
        backend = self.resolve_backend(x)
        if backend == "triton":
            y = quant_matmul(x, self.packed())
        elif backend == "cpu":
            y = cpu_quant_matmul(x, self._cpu_packed())
        else:
            y = F.linear(x, self.packed().dequantize(x.dtype))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y  # (..., N)

    def extra_repr(self) -> str:
        g = (f", group_size={self.group_size}, zero={self.zero_mode}" if self.bits == 4
             else ", per-channel")
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int{self.bits}{g}, bias={self.bias is not None}")


class QuantEmbedding(nn.Module):
    """Token embedding that reads rows of a tied, quantized ``lm_head`` (one copy of the matrix).

    Holds no tensors of its own, so a checkpoint stores the matrix once.
    """

    def __init__(self, source: QuantLinear, dtype: torch.dtype = torch.float32,
                 padding_idx: int | None = None):
        super().__init__()
        self._source = [source]  # a list, so the lm_head is not registered twice
        self.num_embeddings, self.embedding_dim = source.out_features, source.in_features
        self.padding_idx = padding_idx
        self.dtype = dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        src = self._source[0]
        flat = ids.reshape(-1)  # (n,)
        if src.bits == 8:
            rows = src.qweight[flat].to(torch.float32) * src.scales[flat].to(torch.float32)[:, None]
        else:
            rows = dequant_int4(unpack_int4(src.qweight[:, flat]), src.scales[:, flat],
                                src.zeros[:, flat], src.group_size, src.zero_mode).t()  # (n, K)
        return rows.to(self.dtype).reshape(*ids.shape, self.embedding_dim)  # (..., K)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized (V, H) matrix, for code that reads ``embedding.weight`` (costly)."""
        return self._source[0].packed().dequantize(self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, tied to the quantized lm_head"
