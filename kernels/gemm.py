"""Tiled GEMM kernel for moderate M (prefill, batched decode): tensor-core ``tl.dot`` on
(BLOCK_M, BLOCK_K) x (BLOCK_K, BLOCK_N) tiles with the weight dequantized in registers, fp32
accumulation and optional split-K (partials to an fp32 (SPLIT_K, M, N) buffer).

``DOT_FP32`` (constexpr) picks fp32 operands: used for fp32 activations and always under the
interpreter, where bf16 arithmetic is wrong. Otherwise the dequantized tile is cast to the
activation dtype (fp16/bf16) for the tensor cores.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .dequant import load_w4_tile, load_w8_tile


@triton.jit
def quant_gemm_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr,
    M, N, K, stride_xm,
    BITS: tl.constexpr, G: tl.constexpr, FLOAT_ZERO: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr, GROUP_M: tl.constexpr, DOT_FP32: tl.constexpr,
):
    # Grouped tile order: GROUP_M row-tiles share each weight column-tile while it is in L2.
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    group = pid // (GROUP_M * num_n)
    first_m = group * GROUP_M
    size_m = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * num_n)) % size_m
    pid_n = (pid % (GROUP_M * num_n)) // size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for kb in range(pid_k, K // BLOCK_K, SPLIT_K):
        k0 = kb * BLOCK_K
        x = tl.load(x_ptr + offs_m[:, None] * stride_xm + (k0 + offs_k)[None, :],
                    mask=mask_m[:, None], other=0.0)  # (BM, BK)
        if BITS == 4:
            w = load_w4_tile(qw_ptr, s_ptr, z_ptr, k0, offs_k, offs_n, mask_n, N, G,
                                 FLOAT_ZERO)
        else:
            w = load_w8_tile(qw_ptr, k0, offs_k, offs_n, mask_n, K)
        if DOT_FP32:
            acc = tl.dot(x.to(tl.float32), w, acc, input_precision="ieee")
        else:
            acc = tl.dot(x, w.to(x.dtype), acc)  # (BM, BN)
    if BITS == 8:
        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    out = out_ptr + pid_k * M * N + offs_m[:, None] * N + offs_n[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
