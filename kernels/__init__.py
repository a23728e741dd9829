"""Weight-only quantized matmul kernels (Triton) with torch references and a CPU fast path."""
