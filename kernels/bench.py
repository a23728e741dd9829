"""Kernel benchmark: a markdown table per shape and M on whatever device is present.

CPU: PyTorch's packed int4/int8 kernels (bf16 activations, our CPU path) against fp32 and bf16
``F.linear``. GPU: the Triton W4A16/W8A16 kernels (dispatched by M) against torch bf16
``F.linear``, plus the measured M at which dequantize + matmul starts to win. GB/s counts the
bytes the quantized call must read (weights, scales, activations); the peak is a measured
device-to-device copy, so "% of peak" is a roofline estimate, not a vendor number.

Run: ``tigerdecode bench kernels``.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from .cpu import cpu_quant_matmul, cpu_unsupported, prepare_cpu
from .dispatch import quant_matmul
from .packing import quantize_weight

# (name, N, K): SmolLM2-135M's projections, then a generic square layer
CPU_SHAPES = [("attn q/o 576x576", 576, 576), ("mlp up 1536x576", 1536, 576),
              ("mlp down 576x1536", 576, 1536), ("lm_head 49152x576", 49152, 576),
              ("4096x4096", 4096, 4096)]
GPU_SHAPES = [("4096x4096", 4096, 4096), ("8192x8192", 8192, 8192),
              ("28672x8192 (mlp up)", 28672, 8192)]
CPU_MS = (1, 4, 16, 64)
GPU_MS = (1, 4, 16, 64, 256)


def _time_cpu(fns: dict, reps: int) -> dict:
    """Median seconds per call, the candidates interleaved so machine noise hits all alike."""
    for f in fns.values():
        f()
    ts = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in ts.items()}


def _time_gpu(fns: dict) -> dict:
    from triton.testing import do_bench

    return {k: do_bench(f, warmup=25, rep=100) * 1e-3 for k, f in fns.items()}


def peak_bandwidth(device: str) -> float:
    """Measured copy bandwidth in GB/s (read + write of a 256 MB buffer)."""
    a = torch.empty(64 * 2**20, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    t = (_time_gpu({"c": lambda: b.copy_(a)}) if device == "cuda"
         else _time_cpu({"c": lambda: b.copy_(a)}, 5))["c"]
    return 2 * a.numel() * 4 / t / 1e9


def _group(K: int, want: int = 128) -> int:
    return next(g for g in (want, 64, 32) if K % g == 0)


def bench(device: str | None = None, shapes=None, ms=None, reps: int = 20) -> tuple[list, float]:
    """Rows of measurements (one per shape, M, format) and the peak GB/s they are judged by."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device == "cuda"
    shapes = shapes or (GPU_SHAPES if gpu else CPU_SHAPES)
    ms = ms or (GPU_MS if gpu else CPU_MS)
    peak = peak_bandwidth(device)
    rows = []
    torch.manual_seed(0)
    for name, N, K in shapes:
        W = torch.randn(N, K, device=device) * 0.02
        W16 = W.to(torch.bfloat16)
        fmts = {f"int4 g{_group(K)}": quantize_weight(W, 4, _group(K)),
                "int8": quantize_weight(W, 8, None)}
        cpu_p = {f: prepare_cpu(w) for f, w in fmts.items() if not gpu and not cpu_unsupported(w)}
        for M in ms:
            x = torch.randn(M, K, device=device)
            xb = x.to(torch.bfloat16)
            fns = {"bf16": lambda xb=xb, W16=W16: F.linear(xb, W16)}
            if gpu:
                for f, w in fmts.items():
                    fns[f] = lambda w=w, xb=xb: quant_matmul(xb, w)
            else:
                fns["fp32"] = lambda x=x, W=W: F.linear(x, W)
                for f, p in cpu_p.items():
                    fns[f] = lambda p=p, xb=xb: cpu_quant_matmul(xb, p)
            t = _time_gpu(fns) if gpu else _time_cpu(fns, reps)
            base = "bf16" if gpu else "fp32"
            for f, w in fmts.items():
                if f not in t:
                    continue
                moved = w.nbytes() + x.numel() * 2 + M * N * 2
                rows.append({"shape": name, "M": M, "format": f, "baseline": base,
                             "baseline_us": t[base] * 1e6, "bf16_us": t["bf16"] * 1e6,
                             "ours_us": t[f] * 1e6, "speedup": t[base] / t[f],
                             "gbps": moved / t[f] / 1e9, "pct_peak": 100 * moved / t[f] / 1e9 / peak})
    return rows, peak


def crossover(N: int = 8192, K: int = 8192, ms=(16, 32, 64, 128, 256, 512, 1024)) -> dict:
    """GPU only: per M, the tiled kernel vs dequantize + bf16 matmul (µs) for int4 g128."""
    w = quantize_weight(torch.randn(N, K, device="cuda") * 0.02, 4, 128)
    out = {}
    for M in ms:
        xb = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
        t = _time_gpu({"gemm": lambda xb=xb: quant_matmul(xb, w, path="gemm"),
                       "dequant": lambda xb=xb: quant_matmul(xb, w, path="dequant")})
        out[M] = (t["gemm"] * 1e6, t["dequant"] * 1e6)
    return out


def format_table(rows: list, peak: float, device: str) -> str:
    """The markdown table docs/results/quantization.md quotes."""
    base = rows[0]["baseline"] if rows else "fp32"
    extra = " | bf16 µs" if base == "fp32" else ""
    lines = [f"device: {device}; measured copy bandwidth {peak:.1f} GB/s "
             f"(torch {torch.__version__}, {torch.get_num_threads()} threads)", "",
             f"| shape (N x K) | M | format | {base} µs{extra} | ours µs | speedup | GB/s | % of peak |",
             "|---|---:|---|---:|" + ("---:|" if extra else "") + "---:|---:|---:|---:|"]
    for r in rows:
        b16 = f" | {r['bf16_us']:.0f}" if extra else ""
        lines.append(f"| {r['shape']} | {r['M']} | {r['format']} | {r['baseline_us']:.0f}{b16} | "
                     f"{r['ours_us']:.0f} | {r['speedup']:.2f}x | {r['gbps']:.1f} | "
                     f"{r['pct_peak']:.0f}% |")
    return "\n".join(lines)


def device_name() -> str:
    if torch.cuda.is_available():
        return "cuda: " + torch.cuda.get_device_name(0)
    import platform

    return f"cpu: {platform.processor() or platform.machine()}"


def report(quick: bool = False, reps: int = 20) -> str:
    """The kernel table for this device (``quick``: fewer shapes), plus the dequantize crossover
    on a GPU. ``tigerdecode bench kernels`` prints it."""
    gpu = torch.cuda.is_available()
    shapes = None
    if quick:
        shapes = GPU_SHAPES[:1] if gpu else CPU_SHAPES[:2]
    rows, peak = bench(shapes=shapes, reps=reps)
    text = format_table(rows, peak, device_name())
    if gpu:
        xo = crossover()
        text += "\n\nint4 g128 8192x8192, tiled kernel vs dequantize + bf16 matmul (µs):\n"
        text += "\n".join(f"  M={m}: kernel {a:.0f}, dequant+matmul {b:.0f}" for m, (a, b) in xo.items())
    return text
