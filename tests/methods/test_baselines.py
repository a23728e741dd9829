"""Baselines through the same API: greedy, temperature, top-p, min-p, factual nucleus, DoLa."""

import pytest
import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.methods.baselines import DoLa, FactualNucleus, make_baseline
from tigerdecode.model.prompting import encode_prompts


@pytest.fixture(scope="module")
def gen(tiny_llama):
    model, tok = tiny_llama
    return ControlledGenerator(model, tok, heads=None)


def test_every_method_runs_through_generate_text(gen):
    for method, kw in [("greedy", {}), ("temperature", {"temperature": 0.7}),
                       ("top_p", {"top_p": 0.8}), ("min_p", {"min_p": 0.2}),
                       ("factual_nucleus", {}), ("dola", {})]:
        (r,) = gen.generate_text(["Hello"], creativity=0.5, max_new_tokens=5, seed=0,
                                 method=method, **kw)
        assert r.method == method and 1 <= len(r.trace) <= 5, method


def test_greedy_baseline_equals_model_generate(gen, tiny_llama):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello"])
    ref = model.generate(**inp, max_new_tokens=6, do_sample=False, pad_token_id=2)
    (r,) = gen.generate_text(["Hello"], max_new_tokens=6, method="greedy")
    assert r.token_ids == [t for t in ref[0, inp["input_ids"].shape[1]:].tolist() if t != 2]


def test_factual_nucleus_decays_within_a_sentence_and_resets(tokenizer):
    fn = FactualNucleus(top_p=0.9, decay=0.5, floor=0.3, tokenizer=tokenizer)
    p0 = fn.row_top_p(1, "cpu")
    word = tokenizer.convert_tokens_to_ids("Ġthe")
    dot = tokenizer.convert_tokens_to_ids(".")
    fn._sentence_ends(len(tokenizer), "cpu")
    fn.observe(torch.tensor([word]), None)
    p1 = fn.row_top_p(1, "cpu")
    fn.observe(torch.tensor([word]), None)
    p2 = fn.row_top_p(1, "cpu")
    fn.observe(torch.tensor([dot]), None)
    p3 = fn.row_top_p(1, "cpu")
    assert [round(float(p), 4) for p in (p0, p1, p2, p3)] == [0.9, 0.45, 0.3, 0.9]


def test_dola_contrasts_a_premature_layer(tiny_llama):
    model, tok = tiny_llama
    d = DoLa(model, layers=[1, 2])
    assert d.tap_layers == [1, 2] and d.temperature == 0.0
    gen = ControlledGenerator(model, tok, heads=None)
    (a,) = gen.generate_text(["Hello"], max_new_tokens=6, method="dola")
    (b,) = gen.generate_text(["Hello"], max_new_tokens=6, method="greedy")
    assert len(a.token_ids) >= 1 and a.token_ids != b.token_ids


def test_bad_baseline_settings(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(ValueError, match="top_p must lie in"):
        make_baseline("top_p", top_p=0.0)
    with pytest.raises(ValueError, match="temperature must lie in"):
        make_baseline("temperature", temperature=float("nan"))
    with pytest.raises(ValueError, match="unexpected"):
        make_baseline("greedy", top_p=0.5)
    with pytest.raises(ValueError, match="DoLa candidate layers"):
        DoLa(model, layers=[4])
    with pytest.raises(ValueError, match="unknown method"):
        ControlledGenerator(model, tok, heads=None).generate_text(["Hi"], method="beam")
