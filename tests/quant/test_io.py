"""Quantized checkpoints: greedy tokens survive save/load, the format is checked, CLI round trip."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from tigerdecode import load_model, quantize_model
from tigerdecode.cli import main
from tigerdecode.kernels.configs import interpreting
from tigerdecode.quant.io import (
    QUANT_FILE,
    WEIGHTS_FILE,
    QuantFormatError,
    load_quantized,
    read_metadata,
    save_quantized,
)
from tiny_models import build_tiny_model


def _set_backend(model, backend):
    for m in model.modules():
        if hasattr(m, "resolve_backend"):
            m.backend = backend


def _greedy(model, ids, n=6):
    with torch.no_grad():
        return model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                              min_new_tokens=n, do_sample=False)


@pytest.fixture(scope="module")
def saved_int4(tokenizer, tmp_path_factory):
    model = quantize_model(build_tiny_model("llama", tokenizer, layers=2), 4, 32)
    out = save_quantized(model, tokenizer, tmp_path_factory.mktemp("q") / "int4")
    return model, out


def test_greedy_tokens_survive_save_and_load(saved_int4, tokenizer):
    model, out = saved_int4
    ids = tokenizer("The lighthouse keeper", return_tensors="pt").input_ids
    _set_backend(model, "cpu")
    before = _greedy(model, ids)
    loaded, tok = load_quantized(out)
    _set_backend(loaded, "cpu")
    assert torch.equal(_greedy(loaded, ids), before)
    assert tok.get_vocab() == tokenizer.get_vocab()
    for name, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name


@pytest.mark.skipif(not interpreting(), reason="Triton on CPU needs TRITON_INTERPRET=1")
def test_greedy_tokens_survive_save_and_load_on_triton(saved_int4, tokenizer):
    model, out = saved_int4
    ids = tokenizer("Hi", return_tensors="pt").input_ids
    _set_backend(model, "triton")
    loaded, _ = load_quantized(out)
    _set_backend(loaded, "triton")
    assert torch.equal(_greedy(loaded, ids, n=3), _greedy(model, ids, n=3))


def test_float_zero_int4_round_trip(tokenizer, tmp_path):
    model = quantize_model(build_tiny_model("qwen2", tokenizer, layers=1), 4, 64,
                           zero_mode="float")
    _set_backend(model, "cpu")
    ids = tokenizer("A map of the coast", return_tensors="pt").input_ids
    before = _greedy(model, ids)
    out = save_quantized(model, tokenizer, tmp_path / "qwen-f")
    assert read_metadata(out)["zero_mode"] == "asymmetric-fp16-min-per-group"
    loaded, _ = load_quantized(out)
    _set_backend(loaded, "cpu")
    assert loaded.model.layers[0].mlp.up_proj.zeros.dtype == torch.float16
    assert torch.equal(_greedy(loaded, ids), before)


def test_tied_int8_lm_head_is_stored_once(tokenizer, tmp_path):
    model = quantize_model(build_tiny_model("gpt2", tokenizer, layers=2), 8, None,
                           include_lm_head=True)
    _set_backend(model, "torch")
    ids = tokenizer("Once upon a time", return_tensors="pt").input_ids
    before = _greedy(model, ids)
    out = save_quantized(model, tokenizer, tmp_path / "gpt2-int8")
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as fh:
        keys = list(fh.keys())
    assert sum(k.endswith("qweight") for k in keys) == sum(
        1 for _ in model.tigerdecode_quant.layers)  # the embedding adds no copy
    loaded, _ = load_quantized(out)
    _set_backend(loaded, "torch")
    assert torch.equal(_greedy(loaded, ids), before)


def test_metadata_records_the_format(saved_int4):
    _, out = saved_int4
    meta = read_metadata(out)
    assert (meta["format"], meta["version"], meta["bits"], meta["group_size"]) == \
        ("tigerdecode-quant", 1, 4, 32)
    assert meta["packing"] == "int4-uint32x8-along-k" and "asymmetric" in meta["zero_mode"]
    with safe_open(str(out / WEIGHTS_FILE), framework="pt") as fh:
        assert fh.metadata()["version"] == "1" and fh.metadata()["group_size"] == "32"


def _edit_meta(src, dst, **changes):
    import shutil

    shutil.copytree(src, dst)
    meta = json.loads((dst / QUANT_FILE).read_text())
    meta.update(changes)
    (dst / QUANT_FILE).write_text(json.dumps(meta))
    return dst


def test_unknown_version_and_bad_metadata_are_refused(saved_int4, tmp_path):
    _, out = saved_int4
    with pytest.raises(QuantFormatError, match="version 99 is not supported.*re-quantize"):
        load_quantized(_edit_meta(out, tmp_path / "v99", version=99))
    with pytest.raises(QuantFormatError, match="bits=3"):
        load_quantized(_edit_meta(out, tmp_path / "b3", bits=3))
    with pytest.raises(QuantFormatError, match="group_size"):
        load_quantized(_edit_meta(out, tmp_path / "g64", group_size=64))  # header says 32
    with pytest.raises(QuantFormatError, match="packing"):
        load_quantized(_edit_meta(out, tmp_path / "pk", packing="int4-k2-uint8"))


def test_save_refuses_unquantized_model_and_foreign_dir(tokenizer, tmp_path, saved_int4):
    from tigerdecode.kernels import QuantizationError

    with pytest.raises(QuantizationError, match="quantize_model"):
        save_quantized(build_tiny_model("llama", tokenizer, layers=1), tokenizer, tmp_path / "x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a tigerdecode quantized checkpoint"):
        save_quantized(saved_int4[0], tokenizer, tmp_path / "foreign")


def test_cli_quantize_then_generate_and_load_model(tiny_model_dir, tmp_path):
    out = tmp_path / "tiny-int4"
    r = CliRunner().invoke(main, ["quantize", str(tiny_model_dir), "--bits", "4",
                                  "--group-size", "32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "quantized" in r.output and (out / QUANT_FILE).is_file()
    model, _ = load_model(str(out))
    assert model.tigerdecode_quant.bits == 4
    r = CliRunner().invoke(main, ["generate", "Hello", "--model", str(out), "--max-new-tokens",
                                  "2", "--json"], env={"TIGERDECODE_QUANT_BACKEND": "cpu"})
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["token_ids"]) >= 1
    r = CliRunner().invoke(main, ["quantize", str(tiny_model_dir), "--bits", "3", "--out",
                                  str(tmp_path / "bad")])
    assert r.exit_code != 0 and "'3' is not one of '4', '8'" in r.output


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_tied_float_lm_head_reloads(tokenizer, tmp_path, arch):
    """The LM head left in float on a tied model is stored once; loading ties it again."""
    model = build_tiny_model(arch, tokenizer, layers=2)
    model.config.tie_word_embeddings = True
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    model = quantize_model(model, 4, 32)
    _set_backend(model, "torch")
    ids = tokenizer("Once upon a time", return_tensors="pt").input_ids
    before = _greedy(model, ids)
    loaded, _ = load_quantized(save_quantized(model, tokenizer, tmp_path / f"{arch}-int4"))
    _set_backend(loaded, "torch")
    assert loaded.get_input_embeddings().weight is loaded.get_output_embeddings().weight
    assert torch.equal(_greedy(loaded, ids), before)
