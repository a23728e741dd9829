"""Split-K GEMV-style kernel for few rows (decode): no tensor cores, one program per
(N block, K slice, row). Each program reduces its K slice with elementwise products, so M = 1
wastes nothing, and SPLIT_K > 1 spreads a thin matrix over enough programs to fill the GPU.
Partial sums go to an fp32 buffer (SPLIT_K, M, N) that the caller sums: deterministic, and no
bf16 atomics (which the interpreter cannot do).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .dequant import load_w4_tile, load_w8_tile


@triton.jit
def quant_gemv_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, out_ptr,
    M, N, K, stride_xm,
    BITS: tl.constexpr, G: tl.constexpr, FLOAT_ZERO: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    m = tl.program_id(2)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for kb in range(pid_k, K // BLOCK_K, SPLIT_K):  # K slices interleave across the split
        k0 = kb * BLOCK_K
        x = tl.load(x_ptr + m * stride_xm + k0 + offs_k).to(tl.float32)  # (BK,)
        if BITS == 4:
            w = load_w4_tile(qw_ptr, s_ptr, z_ptr, k0, offs_k, offs_n, mask_n, N, G,
                                 FLOAT_ZERO)
        else:
            w = load_w8_tile(qw_ptr, k0, offs_k, offs_n, mask_n, K)
        acc += tl.sum(x[:, None] * w, axis=0)  # (BN,)
    if BITS == 8:
        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    out = out_ptr + pid_k * M * N + m * N + offs_n
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask_n)
