"""Any GGUF file as a model: converted once into the cache (same temp-dir, lock and corruption
check as the default), tokenizer and chat template carried over, and clear errors for files that
are not GGUF or hold an architecture transformers cannot load."""

import struct

import pytest
import torch
from gguf_writer import write_tiny_gguf

import tigerdecode.model.load as models
from tigerdecode.model.load import ModelLoadError, fingerprint, load_model

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("gguf") / "Tiny-Llama.F32.gguf"
    model = write_tiny_gguf(path, tokenizer)
    return path, model


def test_gguf_converts_once_and_matches_the_source(tiny_gguf, tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    path, source = tiny_gguf
    assert models.gguf_architecture(path) == "llama"
    model, tok = load_model(str(path))
    entry = models.cache_dir() / "models" / models._gguf_cache_name(path)
    assert models._cache_entry_ok(entry)
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    assert tok("The capital of France is", return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, source(ids).logits, atol=1e-5)
    assert tok.chat_template  # carried over from the GGUF metadata
    assert fingerprint(model, tok).architecture == "LlamaForCausalLM"

    calls = []
    monkeypatch.setattr(models, "_convert_gguf", lambda *a, **k: calls.append(a))
    load_model(str(path))  # the second load reads the cache
    assert calls == []


def test_corrupt_gguf_entry_is_rebuilt(tiny_gguf, tmp_path, monkeypatch, tokenizer):
    from tiny_models import save_tiny_model

    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    path, _ = tiny_gguf
    calls = []

    def convert(dest, gguf, progress=True):
        calls.append(dest)
        save_tiny_model("llama", tokenizer, dest)

    monkeypatch.setattr(models, "_convert_gguf", convert)
    entry = models.ensure_gguf_model(path)
    (entry / "model.safetensors").write_bytes(b"\xff" * 100)
    assert not models._cache_entry_ok(entry)
    assert models._cache_entry_ok(models.ensure_gguf_model(path)) and len(calls) == 2


def test_interrupted_gguf_conversion_leaves_nothing(tiny_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    path, _ = tiny_gguf

    def dies(dest, gguf, progress=True):
        (dest / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", dies)
    with pytest.raises(KeyboardInterrupt):
        models.ensure_gguf_model(path)
    root = models.cache_dir() / "models"
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_unknown_architecture_is_named(tmp_path, tokenizer, monkeypatch):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "odd.gguf"
    write_tiny_gguf(path, tokenizer, architecture="tigerllm")
    with pytest.raises(ModelLoadError, match="'tigerllm' model, which transformers .* cannot"):
        load_model(str(path))
    assert not any((models.cache_dir() / "models").glob("odd-*"))


def _header(kvs: bytes, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, 0, n_kv) + kvs


def _kv_string(key: str, value: str) -> bytes:
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v


def test_header_reader_skips_other_keys(tmp_path):
    arr = b"general.x"
    kv = struct.pack("<Q", len(arr)) + arr + struct.pack("<IIQ", 9, 4, 3) + b"\0" * 12
    path = tmp_path / "h.gguf"
    path.write_bytes(_header(kv + _kv_string("general.architecture", "gemma3"), 2))
    assert models.gguf_architecture(path) == "gemma3"
    path.write_bytes(_header(_kv_string("general.name", "x"), 1))
    assert models.gguf_architecture(path) is None


@pytest.mark.parametrize("content,match", [
    (b"GGUF\x03\x00", "not a readable GGUF file"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 10**12), "not a readable"),
])
def test_truncated_gguf_is_a_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match):
        load_model(str(path))


def test_paths_that_are_neither_directory_nor_gguf(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelLoadError, match="is a file but not a GGUF model"):
        load_model(str(tmp_path / "weights.bin"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "no" / "such" / "dir"))
