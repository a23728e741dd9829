"""Formats: int4 packing is bit-exact, the quantizers round as documented, bad input is refused."""

import pytest
import torch

from tigerdecode.kernels import (
    QuantizationError,
    check_format,
    check_shape,
    pack_int4,
    quantize_weight,
    unpack_int4,
)


def test_pack_unpack_roundtrip_is_bit_exact():
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (256, 75), generator=g, dtype=torch.int32)  # (K, N), N odd
    packed = pack_int4(q)
    assert packed.shape == (32, 75) and packed.dtype == torch.int32
    assert torch.equal(unpack_int4(packed), q)


def test_pack_layout_code_k_sits_in_nibble_k_mod_8():
    q = torch.zeros(16, 2, dtype=torch.int32)
    q[0, 0], q[7, 0], q[9, 1] = 1, 15, 5  # rows 0 and 7 → word 0; row 9 → word 1, nibble 1
    packed = pack_int4(q)
    assert packed[0, 0].item() == (1 | (15 << 28)) - (1 << 32)  # bit 31 set: negative int32
    assert packed[1, 1].item() == 5 << 4
    assert packed[0, 1].item() == 0 and packed[1, 0].item() == 0


def test_int4_recovers_a_weight_it_can_represent_exactly():
    g = torch.Generator().manual_seed(1)
    K, N, G = 128, 24, 32
    q = torch.randint(0, 16, (K, N), generator=g).float()
    q[0::G], q[G - 1::G] = 0, 15  # every group spans the full code range: the scale is recovered
    s = torch.full((K // G, N), 0.0625)  # exact in fp16
    W = ((q - 8) * s.repeat_interleave(G, 0)).t()  # (N, K), zero point 8
    w = quantize_weight(W, 4, G)
    assert torch.equal(w.dequantize(), W)
    assert w.zeros.unique().tolist() == [8]


def test_int8_is_symmetric_per_channel():
    W = torch.tensor([[1.0, -0.5, 0.25], [-2.0, 1.0, 0.0]])
    w = quantize_weight(W, 8, None)
    assert w.qweight.dtype == torch.int8 and w.qweight.abs().amax(1).tolist() == [127, 127]
    assert torch.allclose(w.dequantize(), W, atol=2.0 / 127)


def test_zero_groups_do_not_produce_nan():
    w = quantize_weight(torch.zeros(16, 64), 4, 32)
    assert torch.equal(w.dequantize(), torch.zeros(16, 64))
    assert torch.equal(quantize_weight(torch.zeros(4, 16), 8, None).dequantize(), torch.zeros(4, 16))


@pytest.mark.parametrize("bits,group,msg", [(3, 128, "bits=3"), (16, 128, "bits=16"),
                                            (4, 100, "group_size=100"), (4, None, "group_size")])
def test_unsupported_formats_are_refused(bits, group, msg):
    with pytest.raises(QuantizationError, match=msg):
        check_format(bits, group)
    with pytest.raises(QuantizationError):
        quantize_weight(torch.randn(8, 128), bits, group)


def test_k_not_divisible_by_group_names_the_fix():
    with pytest.raises(QuantizationError, match="K=96 is not divisible by group_size=128"):
        check_shape(4, 128, 96)
    with pytest.raises(QuantizationError, match="not divisible"):
        quantize_weight(torch.randn(8, 96), 4, 128)
    check_shape(8, None, 97)  # int8 has no groups: any K


def test_clip_search_never_increases_the_weight_error():
    g = torch.Generator().manual_seed(2)
    W = torch.randn(64, 256, generator=g) * 0.02
    W[::5, ::17] *= 8  # a few outliers make a shrunken range worth it
    plain = quantize_weight(W, 4, 64)
    searched = quantize_weight(W, 4, 64, clip_search=True)
    e_plain = (plain.dequantize() - W).pow(2).sum()
    e_search = (searched.dequantize() - W).pow(2).sum()
    assert e_search < e_plain


def test_float_zero_mode_reencodes_a_q4_1_style_grid_exactly():
    """Weights on a (q * s + m) grid with an arbitrary minimum m, as GGUF Q4_1 stores them."""
    g = torch.Generator().manual_seed(3)
    K, N, G = 64, 16, 32
    q = torch.randint(0, 16, (K, N), generator=g).float()
    q[0::G], q[G - 1::G] = 0, 15
    s = torch.full((K // G, N), 0.03125)
    m = torch.full((K // G, N), -0.1796875)  # -5.75 s: an integer zero point cannot hit it
    W = (q * s.repeat_interleave(G, 0) + m.repeat_interleave(G, 0)).t()  # (N, K)
    w = quantize_weight(W, 4, G, zero_mode="float")
    assert w.zeros.dtype == torch.float16 and w.zero_mode == "float"
    assert torch.equal(w.dequantize(), W)
    assert not torch.equal(quantize_weight(W, 4, G).dequantize(), W)
    with pytest.raises(QuantizationError, match="zero_mode='half'"):
        quantize_weight(W, 4, G, zero_mode="half")
