"""The llama.cpp backend: tigerdecode's loop over an engine's logits with the heads packed as
extra rows.

Without llama-cpp-python (CI), an engine stand-in runs the HF export of a tiny model the way
llama.cpp's Python binding does (``reset`` / ``eval`` / ``n_tokens``, the logits of the last
evaluated position, stale positions dropped on the next ``eval``): the backend must then equal
the transformers backend with the same heads, token for token, head values included, undo and
abstention too. With llama-cpp-python installed, the real engine runs the tiny GGUF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_export import final_heads
from transformers import AutoModelForCausalLM

from tigerdecode.api import ControlledGenerator
from tigerdecode.engines.export import export_hf, read_packed_hf
from tigerdecode.engines.llama_cpp import LlamaCppModel, LlamaCppRunner

PROMPTS = ["The capital of Japan is", "Write a line about the sea"]


class FakeLlama:
    """What LlamaCppRunner uses of ``llama_cpp.Llama``, computed by an HF model (no cache: each
    ``eval`` recomputes the prefix, so cache handling cannot hide a bug)."""

    def __init__(self, model):
        self.model, self.ids, self.n_tokens, self.last = model, [], 0, None

    def reset(self):
        self.n_tokens = 0

    def eval(self, tokens):
        self.ids = self.ids[:self.n_tokens] + list(tokens)
        self.n_tokens = len(self.ids)
        with torch.no_grad():
            self.last = self.model(torch.tensor([self.ids])).logits[0, -1].float()


class FakeEngine(LlamaCppModel):
    def __init__(self, export_dir):
        self.path, self.n_ctx, self.busy = export_dir / "model.gguf", 512, False
        self.packed = read_packed_hf(export_dir)
        self.llm = FakeLlama(AutoModelForCausalLM.from_pretrained(export_dir).eval())
        self.n_vocab = self.llm.model.get_output_embeddings().weight.shape[0]

    def logits(self):
        return self.llm.last[None].clone()


@pytest.fixture(scope="module")
def exported(tiny_llama, tmp_path_factory):
    model, tok = tiny_llama
    heads = final_heads(model, tok, seed=3)
    out = tmp_path_factory.mktemp("export") / "x"
    export_hf(model, tok, heads, out)
    return model, tok, heads, out


def _pair(exported, **kw):
    model, tok, heads, out = exported
    hf = ControlledGenerator(model, tok, heads=heads).generate_text(PROMPTS, raw=True, **kw)
    eng = ControlledGenerator(FakeEngine(out), tok, backend="llama-cpp")
    return hf, eng.generate_text(PROMPTS, raw=True, **kw)


@pytest.mark.parametrize("creativity,seed", [(0.0, None), (0.7, 5), (1.0, 11)])
def test_engine_backend_equals_the_transformers_backend(exported, creativity, seed):
    hf, eng = _pair(exported, creativity=creativity, seed=seed, max_new_tokens=12)
    for a, b in zip(hf, eng, strict=True):
        assert a.token_ids == b.token_ids and a.stop_reason == b.stop_reason
        assert any("judge and ensembles need the transformers backend" in n for n in b.notes)
        assert len(a.trace) == len(b.trace) > 0
        for s, t in zip(a.trace, b.trace, strict=True):
            assert s.p_dev == pytest.approx(t.p_dev, abs=1e-5)
            assert s.p_stop == pytest.approx(t.p_stop, abs=1e-5)
            assert s.p_slot == pytest.approx(t.p_slot, abs=1e-5)
            assert s.temperature == pytest.approx(t.temperature, abs=1e-6)


def test_undo_and_resample_on_the_engine(exported):
    """Resampling rewinds the engine one position (``n_tokens -= 1``); the redrawn tokens
    equal the transformers backend's."""
    kw = dict(creativity=0.1, seed=2, max_new_tokens=10, use_resample=True, resample_at=0.0)
    hf, eng = _pair(exported, **kw)
    assert any(t.retries for r in hf for t in r.trace)  # retries really happened
    for a, b in zip(hf, eng, strict=True):
        assert a.token_ids == b.token_ids
        assert [t.retries for t in a.trace] == [t.retries for t in b.trace]


def test_engine_backend_refuses_what_it_cannot_run(exported):
    _, tok, _, out = exported
    gen = ControlledGenerator(FakeEngine(out), tok, backend="llama-cpp")
    with pytest.raises(ValueError, match="judge=True needs the transformers backend"):
        gen.generate_text(["hi"], judge=True)
    with pytest.raises(ValueError, match="needs the transformers backend"):
        gen.generate_text(["hi"], method="dola")
    with pytest.raises(ValueError, match="ensembles need the transformers backend"):
        ControlledGenerator(FakeEngine(out), tok, backend="llama-cpp", ensemble="self")
    with pytest.raises(ValueError, match="packed into the GGUF"):
        ControlledGenerator(FakeEngine(out), tok, backend="llama-cpp", heads="some/dir")
    with pytest.raises(ValueError, match="backend must be one of"):
        ControlledGenerator(None, tok, backend="vllm")
    runner = LlamaCppRunner(gen.model, torch.tensor([[1, 2]]), torch.ones(1, 2))
    with pytest.raises(RuntimeError, match="already decoding"):
        LlamaCppRunner(gen.model, torch.tensor([[1, 2]]), torch.ones(1, 2))
    runner.close()
    with pytest.raises(ValueError, match="one row per runner"):
        LlamaCppRunner(gen.model, torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2))


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    from tigerdecode.errors import ModelLoadError

    (tmp_path / "x.gguf").write_bytes(b"not a gguf")
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):
        LlamaCppModel(tmp_path / "x.gguf")


def test_real_llama_cpp_on_the_tiny_gguf(tiny_llama, tmp_path):
    """llama.cpp itself (when installed): the exported GGUF's greedy tokens equal llama.cpp's
    own greedy on the source file, and the packed heads read what the HF heads read."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from gguf_writer import write_tiny_gguf

    from tigerdecode.engines.export import export_gguf

    _, tok = tiny_llama
    model = write_tiny_gguf(tmp_path / "src.gguf", tok)
    heads = final_heads(model, tok, seed=4)
    export_gguf(model, tok, heads, tmp_path / "src.gguf", tmp_path / "x.gguf")
    ids = tok("The capital of Japan is")["input_ids"]
    plain = llama_cpp.Llama(model_path=str(tmp_path / "src.gguf"), n_ctx=128, n_threads=1,
                            verbose=False)
    want = []
    plain.reset()
    plain.eval(ids)
    for _ in range(8):
        logits = np.ctypeslib.as_array(plain._ctx.get_logits(), shape=(plain.n_vocab(),))
        want.append(int(logits.argmax()))
        plain.eval([want[-1]])
    gen = ControlledGenerator(tmp_path / "x.gguf", tok, backend="llama-cpp", n_threads=1)
    (res,) = gen.generate_text(["The capital of Japan is"], raw=True, creativity=0.0,
                               max_new_tokens=8, no_repeat_ngram=0, min_new_tokens=8)
    assert res.token_ids[:8] == want[:len(res.token_ids[:8])]
    hf = ControlledGenerator(model, tok, heads=heads).generate_text(
        ["The capital of Japan is"], raw=True, creativity=0.0, max_new_tokens=8,
        no_repeat_ngram=0, min_new_tokens=8)[0]
    assert hf.token_ids == res.token_ids
    for s, t in zip(hf.trace, res.trace, strict=True):
        assert s.p_dev == pytest.approx(t.p_dev, abs=1e-3)


def test_policy_chosen_for_packed_heads_applies_by_default(tiny_llama, tmp_path):
    """Bars stored with an export (`tigerdecode export --set ...`) are the engine backend's
    defaults for controlled decoding; explicit arguments win, baselines ignore them."""
    model, tok = tiny_llama
    policy = {"abstain_at": 0.0, "abstain_from_slot": False, "factual_at": 0.0,
              "use_slot": False, "abstain_message": "no idea"}
    export_hf(model, tok, final_heads(model, tok, seed=5), tmp_path / "x", policy)
    eng = ControlledGenerator(FakeEngine(tmp_path / "x"), tok, backend="llama-cpp")
    assert eng.heads.policy == policy
    (r,) = eng.generate_text(["The capital of Japan is"], raw=True, creativity=0.0,
                             max_new_tokens=8)
    assert r.abstained and r.text == "no idea"
    (r,) = eng.generate_text(["The capital of Japan is"], raw=True, creativity=0.0,
                             max_new_tokens=8, abstain_message="skip")
    assert r.text == "skip"
    (r,) = eng.generate_text(["The capital of Japan is"], raw=True, method="greedy",
                             max_new_tokens=8)
    assert not r.abstained
    with pytest.raises(Exception, match="unknown policy fields"):
        export_hf(model, tok, final_heads(model, tok), tmp_path / "y", {"bogus": 1})


def test_the_demo_on_the_engine_backend(exported):
    """The demo's backend on llama.cpp: answers as the generator does, says the judge and the
    ensemble cannot run there, and rows batched together equal their solo runs."""
    import threading

    from tigerdecode.demos.backend import DemoBackend, Unavailable

    _, tok, _, out = exported
    demo = DemoBackend(FakeEngine(out), tok, backend="llama-cpp", max_batch=4)
    caps = demo.capabilities()
    assert caps["controlled"] and not caps["judge"] and not caps["ensemble"]
    assert "transformers backend" in demo.judge_note
    kw = dict(creativity=0.7, max_new_tokens=8, raw=True)
    solo = [demo.generate(p, seed=s, **kw) for p, s in zip(PROMPTS, (1, 2), strict=True)]
    got = [None, None]

    def ask(i):
        got[i] = demo.generate(PROMPTS[i], seed=i + 1, **kw)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.token_ids for r in got] == [r.token_ids for r in solo]
    with pytest.raises(Unavailable, match="judge"):
        demo.generate("hi", creativity=0.5, judge=True)
    with pytest.raises(Unavailable, match="ensemble needs the transformers backend"):
        demo.generate("hi", creativity=0.5, ensemble=("be exact", "be playful"))


def test_without_llama_cpp_python_the_backend_says_how_to_install_it(tiny_llama, tmp_path,
                                                                      monkeypatch):
    import sys

    from gguf_writer import write_tiny_gguf

    from tigerdecode.errors import ModelLoadError

    _, tok = tiny_llama
    write_tiny_gguf(tmp_path / "m.gguf", tok)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    with pytest.raises(ModelLoadError, match=r"pip install 'tigerdecode\[llama\]'"):
        ControlledGenerator(tmp_path / "m.gguf", tok, backend="llama-cpp")
