"""Weight-only quantized matmul kernels (Triton) with torch references and a CPU fast path.

No dependency on transformers. Triton is imported only when a kernel is launched, so the formats,
references and the CPU path work where Triton is absent.
"""

from .cpu import CpuPacked, cpu_quant_matmul, cpu_unsupported, prepare_cpu
from .dispatch import get_crossover, kernel_unsupported, quant_matmul, set_crossover
from .packing import (
    SUPPORTED_BITS,
    SUPPORTED_GROUP_SIZES,
    PackedWeight,
    QuantizationError,
    check_format,
    check_shape,
    pack_int4,
    quantize_weight,
    unpack_int4,
)
from .reference import quant_matmul_reference, w4a16_reference, w8a16_reference

__all__ = [
    "SUPPORTED_BITS", "SUPPORTED_GROUP_SIZES", "CpuPacked", "PackedWeight", "QuantizationError",
    "check_format", "check_shape", "cpu_quant_matmul", "cpu_unsupported", "get_crossover",
    "kernel_unsupported", "pack_int4", "prepare_cpu", "quant_matmul", "quant_matmul_reference",
    "quantize_weight", "set_crossover", "unpack_int4", "w4a16_reference", "w8a16_reference",
]
