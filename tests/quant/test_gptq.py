"""GPTQ: error compensation beats round-to-nearest on correlated inputs; wiring and bad input."""

import pytest
import torch

from tigerdecode import quantize_model
from tigerdecode.kernels import QuantizationError, quantize_weight
from tigerdecode.quant.gptq import calibration_batches, gptq_int4
from tiny_models import build_tiny_model


def _sqnr_db(y, ref):
    return (10 * torch.log10(ref.pow(2).sum() / (y - ref).pow(2).sum())).item()


def test_gptq_beats_rtn_on_the_layer_output():
    g = torch.Generator().manual_seed(0)
    N, K = 48, 128
    W = torch.randn(N, K, generator=g) * 0.02
    A = torch.randn(K, K, generator=g) * 0.3 + torch.eye(K)
    X = torch.randn(1024, K, generator=g) @ A  # correlated inputs, as in real activations
    H = 2 * X.t() @ X / X.shape[0]
    ref = X @ W.t()
    w_gptq = gptq_int4(W, H, 32)
    q = torch.stack([(w_gptq.qweight >> (4 * i)) & 0xF for i in range(8)], 1)
    assert q.min() >= 0 and q.max() <= 15 and w_gptq.scales.shape == (K // 32, N)
    rtn = _sqnr_db(X @ quantize_weight(W, 4, 32).dequantize().t(), ref)
    gptq = _sqnr_db(X @ w_gptq.dequantize().t(), ref)
    assert gptq > rtn + 1.0, (gptq, rtn)


def test_quantize_model_with_gptq_runs_and_records_the_method(tokenizer):
    model = build_tiny_model("llama", tokenizer, layers=1)
    cal = calibration_batches(tokenizer, "The quick brown fox jumps over the lazy dog. " * 40,
                              n_seqs=2, seq_len=64)
    assert len(cal) == 2 and cal[0].shape == (1, 64)
    quantize_model(model, 4, 32, method="gptq", calibration=cal)
    assert model.tigerdecode_quant.method == "gptq"
    for m in model.modules():
        if hasattr(m, "resolve_backend"):
            m.backend = "torch"
    with torch.no_grad():
        assert torch.isfinite(model(cal[0]).logits).all()


def test_gptq_needs_int4_and_calibration(tokenizer):
    model = build_tiny_model("llama", tokenizer, layers=1)
    with pytest.raises(QuantizationError, match="calibration"):
        quantize_model(model, 4, 32, method="gptq")
    with pytest.raises(QuantizationError, match="bits=4"):
        quantize_model(model, 8, None, method="gptq", calibration=[torch.tensor([[1, 2]])])
    with pytest.raises(ValueError, match="method="):
        quantize_model(model, 4, 32, method="awq")
