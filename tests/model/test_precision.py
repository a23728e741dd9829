"""Precision as a user choice: load_model(dtype=..., quant=...) and the CLI's --dtype / --quant /
--fast."""

import json

import pytest
import torch
from click.testing import CliRunner

from tigerdecode.cli import main
from tigerdecode.model.load import load_model, resolve_dtype
from tigerdecode.quant.layers import QuantLinear


def test_dtype_by_name_or_torch_dtype(tiny_model_dir):
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(torch.float32) is \
        torch.float32
    for bad in ("int8", "float64", torch.int8, None):
        with pytest.raises(ValueError, match="dtype must be one of"):
            resolve_dtype(bad)
    model, _ = load_model(str(tiny_model_dir), dtype="bf16")
    assert next(model.parameters()).dtype is torch.bfloat16


@pytest.mark.parametrize("quant,bits", [("int8", 8), ("int4", 4)])
def test_quant_on_load(tiny_model_dir, quant, bits):
    model, tok = load_model(str(tiny_model_dir), quant=quant)
    head = model.get_output_embeddings()
    layers = [m for m in model.modules() if isinstance(m, QuantLinear) and m is not head]
    assert layers and all(m.bits == bits for m in layers)
    assert isinstance(head, QuantLinear) and head.bits == 8  # int4 keeps the output layer int8
    with pytest.raises(ValueError, match="quant must be one of"):
        load_model(str(tiny_model_dir), quant="int3")


def test_cli_precision_and_fast_options(tiny_model_dir, monkeypatch):
    from tigerdecode.decode import fast

    monkeypatch.setattr(fast, "COMPILE", False)
    monkeypatch.setenv("TIGERDECODE_QUANT_BACKEND", "cpu")  # not the interpreted Triton kernels
    base = ["generate", "Hello there", "--model", str(tiny_model_dir), "--max-new-tokens", "5",
            "--creativity", "0", "--json"]
    plain = json.loads(CliRunner().invoke(main, base).stdout)
    quick = json.loads(CliRunner().invoke(main, base + ["--fast"]).stdout)
    assert quick["token_ids"] == plain["token_ids"]
    for extra in (["--dtype", "bf16"], ["--quant", "int8", "--fast"],
                  ["--dtype", "bf16", "--quant", "int4", "--fast"]):
        res = CliRunner().invoke(main, base + extra)
        assert res.exit_code == 0, (extra, res.output)
        out = json.loads(res.stdout)
        assert len(out["trace"]) == 5
    bad = CliRunner().invoke(main, base + ["--dtype", "fp64"])
    assert bad.exit_code == 2


def test_int4_with_an_int8_output_layer_saves_and_loads(tiny_model_dir, tmp_path, monkeypatch):
    from tigerdecode.quant.io import save_quantized

    monkeypatch.setenv("TIGERDECODE_QUANT_BACKEND", "cpu")
    model, tok = load_model(str(tiny_model_dir), quant="int4")
    save_quantized(model, tok, tmp_path / "q", source="tiny")
    again, _ = load_model(str(tmp_path / "q"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        torch.testing.assert_close(again(ids).logits, model(ids).logits)
    assert again.get_output_embeddings().bits == 8
