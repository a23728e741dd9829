"""quantize_model / QuantLinear on tiny models: layers swapped, accuracy (SQNR), backends, bad input."""

import warnings

import pytest
import torch
from torch import nn

from tigerdecode import quantize_model
from tigerdecode.kernels import QuantizationError
from tigerdecode.kernels.configs import interpreting
from tigerdecode.quant.layers import QuantEmbedding, QuantLinear
from tigerdecode.quant.rtn import quantized_bytes
from tiny_models import build_tiny_model


def _sqnr_db(y, ref):
    return (10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum())).item()


def _layer(n=192, k=512, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    nn.init.normal_(lin.weight, std=0.02)
    return lin


@pytest.mark.parametrize("backend", ["torch", "cpu", "triton"])
@pytest.mark.parametrize("bits,group,floor", [(4, 128, 18.0), (8, None, 30.0)])
def test_quantized_layer_sqnr(backend, bits, group, floor):
    if backend == "triton" and not interpreting():
        pytest.skip("Triton on CPU needs TRITON_INTERPRET=1")
    lin = _layer()
    model = nn.Sequential(lin)
    x = torch.randn(5, 512, generator=torch.Generator().manual_seed(3))
    ref = lin(x).detach()
    quantize_model(model, bits, group)
    q = model[0]
    assert isinstance(q, QuantLinear)
    q.backend = backend
    with torch.no_grad():
        y = q(x)
    assert _sqnr_db(y, ref) >= floor


def test_tiny_llama_layers_swapped_and_lm_head_kept(tokenizer):
    model = build_tiny_model("llama", tokenizer)
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    before = quantized_bytes(model)
    quantize_model(model, 4, 32)
    plan = model.tigerdecode_quant
    assert len(plan.layers) == n_linear - 1 and "lm_head" in plan.kept_float
    assert isinstance(model.lm_head, nn.Linear)
    assert isinstance(model.model.layers[0].mlp.down_proj, QuantLinear)
    assert quantized_bytes(model) < before
    with pytest.raises(QuantizationError, match="already quantized"):
        quantize_model(model, 4, 32)


def test_gpt2_conv1d_and_tied_lm_head(tokenizer):
    model = build_tiny_model("gpt2", tokenizer)
    ids = torch.tensor([[5, 9, 200, 31, 7]])
    with torch.no_grad():
        ref = model(ids).logits
    quantize_model(model, 8, None, include_lm_head=True)
    model.lm_head.backend = "torch"
    for m in model.modules():
        if isinstance(m, QuantLinear):
            m.backend = "torch"
    assert isinstance(model.transformer.h[0].attn.c_attn, QuantLinear)
    assert isinstance(model.transformer.wte, QuantEmbedding)  # reads the quantized lm_head
    assert model.tigerdecode_quant.tied_embedding == "transformer.wte"
    with torch.no_grad():
        out = model(ids).logits
    assert _sqnr_db(out, ref) >= 25.0


def test_group_fallback_skip_and_error_policies():
    model = nn.Sequential(nn.Linear(96, 32), nn.Linear(40, 32), nn.Linear(128, 32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_model(model, 4, 128)
    msgs = " ".join(str(c.message) for c in caught)
    assert "does not divide K=96" in msgs and "group 32" in msgs and "stay in float" in msgs
    plan = model.tigerdecode_quant
    assert plan.layers["0"]["group_size"] == 32 and plan.layers["2"]["group_size"] == 128
    assert "1" in plan.kept_float and isinstance(model[1], nn.Linear)

    with pytest.raises(QuantizationError, match="K=96 is not divisible by group_size=128"):
        quantize_model(nn.Sequential(nn.Linear(96, 32)), 4, 128, on_bad_shape="error")
    with pytest.warns(UserWarning, match="stay in float"):
        skipped = quantize_model(nn.Sequential(nn.Linear(96, 32)), 4, 128, on_bad_shape="skip")
    assert isinstance(skipped[0], nn.Linear)


@pytest.mark.parametrize("bits,group", [(2, 128), (4, 48), (4, 256)])
def test_unsupported_bits_and_groups(bits, group):
    with pytest.raises(QuantizationError, match="not supported"):
        quantize_model(nn.Sequential(nn.Linear(256, 32)), bits, group)


def test_cpu_backend_falls_back_and_says_so():
    model = quantize_model(nn.Sequential(_layer(n=200, k=256)), 4, 64)  # N=200: not % 16
    q = model[0]
    q.backend = "cpu"
    x = torch.randn(2, 256)
    with pytest.warns(UserWarning, match="N=200 is not a multiple of 16.*falling back"):
        y = q(x)
    ref = torch.nn.functional.linear(x, q.packed().dequantize(), q.bias)
    torch.testing.assert_close(y, ref)


def test_module_to_bf16_keeps_fp16_scales():
    model = quantize_model(nn.Sequential(_layer(n=32, k=128)), 4, 64)
    model.to(torch.bfloat16)
    assert model[0].scales.dtype == torch.float16 and model[0].bias.dtype == torch.bfloat16
