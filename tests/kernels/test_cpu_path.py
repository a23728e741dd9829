"""The CPU fast path (PyTorch's packed int4/int8 kernels, bf16 activations) vs the reference."""

import pytest
import torch

from tigerdecode.kernels import (
    cpu_quant_matmul,
    cpu_unsupported,
    prepare_cpu,
    quant_matmul_reference,
    quantize_weight,
)
from tigerdecode.kernels.cpu import cpu_available

pytestmark = pytest.mark.skipif(not cpu_available(), reason="torch has no packed CPU kernels")


def _weight(bits, group, n=96, k=256, zero_mode="int"):
    g = torch.Generator().manual_seed(0)
    return quantize_weight(torch.randn(n, k, generator=g) * 0.05, bits, group, zero_mode=zero_mode)


@pytest.mark.parametrize("bits,group,zero_mode", [(4, 32, "int"), (4, 64, "int"), (4, 128, "int"),
                                                  (4, 32, "float"), (8, None, "int")])
def test_cpu_kernels_match_reference(bits, group, zero_mode):
    w = _weight(bits, group, zero_mode=zero_mode)
    p = prepare_cpu(w)
    for m in (1, 3, 17):
        x = torch.randn(m, 256, generator=torch.Generator().manual_seed(m))
        y = cpu_quant_matmul(x, p)
        assert y.dtype == torch.float32 and y.shape == (m, 96)
        ref = quant_matmul_reference(x.bfloat16().float(), w)  # the kernels see bf16 inputs
        rel = ((y - ref).norm() / ref.norm()).item()
        assert rel <= 1e-2, (m, rel)


def test_shapes_torch_cannot_take_are_named():
    assert "N=200 is not a multiple of 16" in cpu_unsupported(_weight(4, 32, n=200))
    assert "K=40 is not a multiple of 16" in cpu_unsupported(_weight(8, None, k=40))
    assert cpu_unsupported(_weight(4, 32)) is None
    with pytest.raises(ValueError, match="cannot take"):
        prepare_cpu(_weight(4, 32, n=200))
