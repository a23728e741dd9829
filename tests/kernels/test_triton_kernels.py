"""Triton W4A16 / W8A16 kernels vs the torch reference, run under TRITON_INTERPRET=1.

Shapes stay small (K=256, N=200: not a multiple of any BLOCK_N) so the interpreter is quick.
"""

import warnings

import pytest
import torch

from tigerdecode.kernels import quant_matmul, quant_matmul_reference, quantize_weight
from tigerdecode.kernels.configs import KernelConfig, interpreting
from tigerdecode.kernels.dispatch import choose_path, get_crossover, set_crossover

pytestmark = pytest.mark.skipif(not interpreting(), reason="runs the kernels in the interpreter")
K, N = 256, 200
M_ALL = (1, 2, 3, 7, 16, 17, 33, 64)
FORMATS = [(4, 32), (4, 128), (8, None)]


def _weight(bits, group, seed=0, n=N, k=K, zero_mode="int"):
    g = torch.Generator().manual_seed(seed)
    return quantize_weight(torch.randn(n, k, generator=g) * 0.05, bits, group, zero_mode=zero_mode)


def _x(m, seed=1, k=K, dtype=torch.float32):
    return torch.randn(m, k, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _rel(y, ref):
    return ((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


@pytest.mark.parametrize("bits,group", FORMATS)
def test_gemm_matches_reference_over_m(bits, group):
    w = _weight(bits, group)
    for m in M_ALL:
        x = _x(m)
        y = quant_matmul(x, w, path="gemm")
        assert y.shape == (m, N) and y.dtype == x.dtype
        assert _rel(y, quant_matmul_reference(x, w)) <= 1e-3, f"M={m}"


@pytest.mark.parametrize("bits,group", FORMATS)
def test_gemv_matches_reference_over_small_m(bits, group):
    w = _weight(bits, group)
    for m in (1, 2, 3, 7):
        x = _x(m)
        assert _rel(quant_matmul(x, w, path="gemv"), quant_matmul_reference(x, w)) <= 1e-3


@pytest.mark.parametrize("bits,group", [(4, 128), (8, None)])
def test_split_k_equals_no_split_k(bits, group):
    w = _weight(bits, group)
    for path, m, splits in (("gemv", 2, (2, 8)), ("gemm", 17, (2, 4))):
        x = _x(m)
        one = quant_matmul(x, w, path=path, config=KernelConfig(block_k=32, split_k=1))
        for s in splits:
            y = quant_matmul(x, w, path=path, config=KernelConfig(block_k=32, split_k=s))
            torch.testing.assert_close(y, one, rtol=1e-5, atol=1e-6)


def test_float_zero_mode_matches_reference():
    w = _weight(4, 64, zero_mode="float")
    for path, m in (("gemv", 3), ("gemm", 17)):
        x = _x(m)
        assert _rel(quant_matmul(x, w, path=path), quant_matmul_reference(x, w)) <= 1e-3


def test_larger_tiles_and_uneven_n():
    w = _weight(4, 128, n=77)
    x = _x(5)
    cfg = KernelConfig(block_m=32, block_n=128, block_k=128, split_k=2)
    assert _rel(quant_matmul(x, w, path="gemm", config=cfg), quant_matmul_reference(x, w)) <= 1e-3


@pytest.mark.parametrize("bits,group", [(4, 64), (8, None)])
def test_bf16_activations_come_back_bf16_and_close(bits, group):
    w = _weight(bits, group)
    for path, m in (("gemv", 1), ("gemm", 16)):
        x = _x(m, dtype=torch.bfloat16)
        y = quant_matmul(x, w, path=path)
        assert y.dtype == torch.bfloat16
        assert _rel(y, quant_matmul_reference(x.float(), w)) <= 1e-2  # bf16 output rounding


def test_batched_3d_input_and_auto_dispatch():
    w = _weight(4, 32)
    x = _x(6).reshape(2, 3, K)  # (B, T, K)
    y = quant_matmul(x, w)
    assert y.shape == (2, 3, N)
    assert _rel(y, quant_matmul_reference(x, w)) <= 1e-3
    old = get_crossover()
    try:
        set_crossover(32)
        assert [choose_path(m, w) for m in (1, 4, 5, 31, 32, 64)] == \
            ["gemv", "gemv", "gemm", "gemm", "dequant", "dequant"]
        x = _x(40)
        assert _rel(quant_matmul(x, w), quant_matmul_reference(x, w)) <= 1e-3
    finally:
        set_crossover(old)


def test_bad_config_and_bad_input_are_refused():
    w = _weight(4, 32)
    with pytest.raises(ValueError, match="BLOCK_K must divide"):
        quant_matmul(_x(1), w, path="gemv", config=KernelConfig(block_k=64))
    with pytest.raises(ValueError, match="features"):
        quant_matmul(_x(1, k=128), w)
    with pytest.raises(ValueError, match="path="):
        quant_matmul(_x(1), w, path="fast")


def test_shape_the_kernel_cannot_take_falls_back_and_says_so():
    w = _weight(8, None, k=40)  # int8 with K=40: no BLOCK_K >= 16 divides it
    x = _x(3, k=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = quant_matmul(x, w, path="gemv")
    assert any("K=40 is not a multiple of 16" in str(c.message) for c in caught)
    assert _rel(y, quant_matmul_reference(x, w)) <= 1e-5
