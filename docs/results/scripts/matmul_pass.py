"""One pass over matrices of the default model's shapes (30 layers × q, k, v, o, gate, up, down,
plus the 49152 × 576 output layer), in fp32, bf16, int8 and int4 (PyTorch's packed CPU kernels,
bf16 activations), at 1 and 8 rows: the floor a decode step cannot go below, and how it moves
with batch size. Quoted in docs/results/generate-speed.md.

    python docs/results/scripts/matmul_pass.py --threads 1

Random weights, each matrix distinct (so they stream from memory as a real step's do).
"""

import argparse
import time

import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--reps", type=int, default=5)
a = ap.parse_args()
torch.set_num_threads(a.threads)
SHAPES = [(576, 576), (576, 192), (576, 192), (576, 576), (576, 1536), (576, 1536),
          (1536, 576)] * 30 + [(576, 49152)]  # (K, N)
G = 32


def passes(kind, M):
    x = {K: torch.randn(M, K) for K in (576, 1536)}
    if kind in ("fp32", "bf16"):
        dt = torch.float32 if kind == "fp32" else torch.bfloat16
        ws = [torch.randn(N, K).to(dt) for K, N in SHAPES]
        xs = {K: v.to(dt) for K, v in x.items()}

        def run():
            for w in ws:
                F.linear(xs[w.shape[1]], w)
        return run, sum(w.numel() * w.element_size() for w in ws)
    xs = {K: v.bfloat16() for K, v in x.items()}
    if kind == "int8":
        ws = [(torch.randint(-127, 127, (N, K), dtype=torch.int8), torch.rand(N).bfloat16(), K)
              for K, N in SHAPES]

        def run():
            for w, s, K in ws:
                torch._weight_int8pack_mm(xs[K], w, s)
        return run, sum(K * N for K, N in SHAPES)
    ws = [(torch._convert_weight_to_int4pack_for_cpu(
        torch.randint(0, 16, (N, K), dtype=torch.int32), 1),
        torch.rand(K // G, N, 2).bfloat16(), K) for K, N in SHAPES]

    def run():
        for w, s, K in ws:
            torch._weight_int4pack_mm_for_cpu(xs[K], w, G, s)
    return run, sum(K * N // 2 for K, N in SHAPES)


print(f"threads {a.threads}\n")
print("| weights | rows | ms per pass | GB/s | MB |")
print("|---|---:|---:|---:|---:|")
for kind in ("fp32", "bf16", "int8", "int4"):
    for M in (1, 8):
        run, byt = passes(kind, M)
        run()
        t0 = time.perf_counter()
        for _ in range(a.reps):
            run()
        dt = (time.perf_counter() - t0) / a.reps
        print(f"| {kind} | {M} | {dt * 1e3:.2f} | {byt / dt / 1e9:.1f} | {byt / 1e6:.0f} |")
