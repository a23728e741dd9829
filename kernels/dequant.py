"""Shared Triton helpers: load one (BLOCK_K, BLOCK_N) weight tile and dequantize it to fp32.

Both helpers return fp32 so the arithmetic is right under the Triton interpreter too (it computes
bf16 wrongly); callers cast to the dot dtype. For int8 the per-channel scale is applied by the
caller after the K reduction (it does not vary along K), so the tile is just the codes.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_w4_tile(qw_ptr, s_ptr, z_ptr, k0, offs_k, offs_n, mask_n, N, G: tl.constexpr,
                 FLOAT_ZERO: tl.constexpr):
    """int4 tile for rows ``k0 + offs_k``; the block lies inside one group (G % BLOCK_K == 0).
    ``FLOAT_ZERO``: zeros hold the group minimum m (w = q*s + m), else a zero point (w = (q-z)*s)."""
    k = k0 + offs_k  # (BK,)
    packed = tl.load(qw_ptr + (k // 8)[:, None] * N + offs_n[None, :],
                     mask=mask_n[None, :], other=0)  # (BK, BN) int32, each word read 8 times
    q = (packed >> ((k % 8) * 4)[:, None]) & 0xF  # (BK, BN)
    g = k0 // G
    s = tl.load(s_ptr + g * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)  # (BN,)
    z = tl.load(z_ptr + g * N + offs_n, mask=mask_n, other=0).to(tl.float32)  # (BN,)
    if FLOAT_ZERO:
        return q.to(tl.float32) * s[None, :] + z[None, :]
    return (q.to(tl.float32) - z[None, :]) * s[None, :]


@triton.jit
def load_w8_tile(qw_ptr, k0, offs_k, offs_n, mask_n, K):
    """int8 codes of W (N, K) row-major, read transposed as a (BK, BN) tile, as fp32."""
    k = k0 + offs_k
    q = tl.load(qw_ptr + offs_n[None, :] * K + k[:, None], mask=mask_n[None, :], other=0)
    return q.to(tl.float32)
