"""Launch configurations for the Triton kernels and a small autotuner.

``@triton.autotune`` cannot run where there is no GPU (it needs a benchmarker), so tuning is done
here by hand: on a GPU each candidate is timed once per (path, format, M bucket, N, K, dtype) and
the winner cached; under ``TRITON_INTERPRET=1`` (or with no GPU) a fixed config is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class KernelConfig:
    """Tile sizes and launch options for one kernel call."""

    block_m: int = 16  # gemm only; tl.dot needs >= 16
    block_n: int = 64
    block_k: int = 32
    split_k: int = 1
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 2


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def valid(cfg: KernelConfig, bits: int, group_size: int | None, K: int) -> bool:
    """A config is usable when BLOCK_K divides K and (int4) lies inside one group."""
    if K % cfg.block_k:
        return False
    return bits == 8 or group_size % cfg.block_k == 0


def fixed_config(path: str, bits: int, group_size: int | None, M: int, N: int, K: int) -> KernelConfig:
    """The config used without tuning: a split-K that gives every (N block) a few K slices."""
    bk = 32 if bits == 8 or group_size % 32 == 0 else 16
    if K % bk:
        bk = 16
    cfg = KernelConfig(block_m=16, block_n=64, block_k=bk)
    n_blocks = -(-N // cfg.block_n)
    k_blocks = K // bk
    split = 1
    if path == "gemv" and not interpreting():
        while split < 16 and n_blocks * split * 2 <= 264 and k_blocks // (split * 2) >= 4:
            split *= 2
    return replace(cfg, split_k=split)


def candidates(path: str, M: int = 1) -> list[KernelConfig]:
    """The configs the GPU autotuner times (kept short: each costs a compile)."""
    out = []
    if path == "gemv":
        for bn in (64, 128):
            for bk in (64, 128):
                for sk in (1, 4, 8, 16):
                    out.append(KernelConfig(block_m=1, block_n=bn, block_k=bk, split_k=sk,
                                            num_warps=4, num_stages=2))
    else:
        bms = [bm for bm in (16, 32, 64) if bm <= max(16, m_bucket(M))]
        for bm in bms:
            for bn in (64, 128):
                for bk in (64, 128):
                    for sk in (1, 2):
                        out.append(KernelConfig(block_m=bm, block_n=bn, block_k=bk, split_k=sk,
                                                num_warps=4, num_stages=3))
    return out


_CACHE: dict[tuple, KernelConfig] = {}


def m_bucket(M: int) -> int:
    """Round M up to a power of two so nearby batch sizes share a tuned config."""
    return 1 << max(0, (M - 1).bit_length())


def tuned_config(path, bits, group_size, M, N, K, dtype, run) -> KernelConfig:
    """Pick (and cache) the fastest valid config; ``run(cfg)`` launches the kernel once.

    Falls back to :func:`fixed_config` under the interpreter or when no GPU is present.
    """
    if interpreting() or not torch.cuda.is_available():
        return fixed_config(path, bits, group_size, M, N, K)
    key = (path, bits, group_size, m_bucket(M), N, K, dtype)
    if key not in _CACHE:
        from triton.testing import do_bench

        best, best_t = fixed_config(path, bits, group_size, M, N, K), float("inf")
        for cfg in candidates(path, M):
            if not valid(cfg, bits, group_size, K) or K // cfg.block_k < cfg.split_k:
                continue
            try:
                t = do_bench(lambda c=cfg: run(c), warmup=5, rep=20)
            except Exception:  # noqa: BLE001 - e.g. out of shared memory: not a candidate
                continue
            if t < best_t:
                best, best_t = cfg, t
        _CACHE[key] = best
    return _CACHE[key]
