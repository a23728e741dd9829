"""``quant_matmul``: y = x @ W.T for a quantized W, dispatched by the number of rows M.

- M <= ``GEMV_MAX_M``: the split-K GEMV kernel (decode);
- M < crossover: the tiled tensor-core GEMM kernel;
- otherwise: dequantize to the activation dtype and call the dense matmul, which wins once the
  product is compute-bound. The crossover defaults to 256 rows and can be set per process
  (``set_crossover``) or by ``TIGERDECODE_QMM_CROSSOVER``; ``kernels/bench.py`` measures it.

A shape the kernels cannot take (int8 with K not a multiple of 16) takes the dequantize path,
with a warning that says so.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F

from .configs import KernelConfig, interpreting, tuned_config, valid
from .packing import PackedWeight

GEMV_MAX_M = 4
PATHS = ("auto", "gemv", "gemm", "dequant")
_crossover = int(os.environ.get("TIGERDECODE_QMM_CROSSOVER", "256"))
_warned: set = set()


def set_crossover(m: int) -> None:
    """Rows from which ``auto`` dequantizes and uses the dense matmul instead of a kernel."""
    global _crossover
    if m < 1:
        raise ValueError(f"crossover must be >= 1 rows, got {m}")
    _crossover = int(m)


def get_crossover() -> int:
    return _crossover


def kernel_unsupported(w: PackedWeight) -> str | None:
    """Why the Triton kernels cannot take this weight, or None when they can."""
    if w.in_features % 16:
        return f"K={w.in_features} is not a multiple of 16 (the smallest BLOCK_K)"
    return None


def choose_path(M: int, w: PackedWeight) -> str:
    if kernel_unsupported(w):
        return "dequant"
    if M <= GEMV_MAX_M:
        return "gemv"
    return "gemm" if M < _crossover else "dequant"


def quant_matmul(x: torch.Tensor, w: PackedWeight, *, path: str = "auto",
                 config: KernelConfig | None = None) -> torch.Tensor:
    """``x (..., K) @ dequant(W).T -> (..., N)`` in ``x.dtype``, on CUDA or the interpreter."""
    if path not in PATHS:
        raise ValueError(f"path={path!r}; expected one of {PATHS}")
    if x.shape[-1] != w.in_features:
        raise ValueError(f"x has {x.shape[-1]} features, the weight expects {w.in_features}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, w.in_features)  # (M, K)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    M = x2.shape[0]
    if path == "auto":
        path = choose_path(M, w)
    reason = kernel_unsupported(w)
    if path != "dequant" and reason:
        _warn_once(("shape", w.in_features), f"quantized matmul: {reason}; using dequantize + "
                   "matmul for this layer instead of the Triton kernel.")
        path = "dequant"
    if M == 0 or path == "dequant":
        y = F.linear(x2, w.dequantize(x2.dtype).to(x2.device))
    else:
        y = _launch(path, x2, w, config)
    return y.reshape(*lead, w.out_features)


def _launch(path: str, x: torch.Tensor, w: PackedWeight, config: KernelConfig | None):
    from .gemm import quant_gemm_kernel
    from .gemv import quant_gemv_kernel

    M, K = x.shape
    N = w.out_features
    dot_fp32 = interpreting() or x.dtype == torch.float32

    def run(cfg: KernelConfig) -> torch.Tensor:
        # fp32 partials when split, and always under the interpreter (no bf16 arithmetic there)
        acc_dtype = torch.float32 if cfg.split_k > 1 or interpreting() else x.dtype
        out = torch.empty((cfg.split_k, M, N), device=x.device, dtype=acc_dtype)
        zeros = w.zeros if w.zeros is not None else w.scales  # unused for int8
        common = dict(BITS=w.bits, G=w.group_size or 0, FLOAT_ZERO=w.float_zero,
                      num_warps=cfg.num_warps,
                      num_stages=cfg.num_stages)
        if path == "gemv":
            grid = (triton_cdiv(N, cfg.block_n), cfg.split_k, M)
            quant_gemv_kernel[grid](x, w.qweight, w.scales, zeros, out, M, N, K, x.stride(0),
                                    BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
                                    SPLIT_K=cfg.split_k, **common)
        else:
            grid = (triton_cdiv(M, cfg.block_m) * triton_cdiv(N, cfg.block_n), cfg.split_k)
            quant_gemm_kernel[grid](x, w.qweight, w.scales, zeros, out, M, N, K, x.stride(0),
                                    BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                                    BLOCK_K=cfg.block_k, SPLIT_K=cfg.split_k,
                                    GROUP_M=cfg.group_m, DOT_FP32=dot_fp32, **common)
        y = out[0] if cfg.split_k == 1 else out.sum(dim=0)  # (M, N)
        return y.to(x.dtype)

    if config is None:
        config = tuned_config(path, w.bits, w.group_size, M, N, K, x.dtype, run)
    if not valid(config, w.bits, w.group_size, K):
        raise ValueError(f"{config} does not fit K={K}, bits={w.bits}, group={w.group_size}: "
                         "BLOCK_K must divide K and the group size")
    return run(config)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _warn_once(key, msg: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(msg, stacklevel=3)
