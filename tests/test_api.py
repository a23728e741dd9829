"""The public API: drop-in generate, wrap, ControlledGenerator, and every bad input."""

import copy
import warnings

import pytest
import torch

import tigerdecode
from tigerdecode.api import NO_HEADS_NOTE
from tigerdecode.decode.sampling import NonFiniteLogitsError
from tigerdecode.heads import ControlHeads, HeadConfig, HeadsError
from tigerdecode.model.load import fingerprint
from tigerdecode.model.prompting import PromptError, encode_prompts
from tigerdecode.policy.knob import CreativityError
from tigerdecode.result import GenerationResult
from tiny_models import build_tiny_model


def test_exports():
    for name in ("generate", "wrap", "ControlledGenerator", "Policy", "Ensemble"):
        assert name in tigerdecode.__all__ and getattr(tigerdecode, name)


def test_drop_in_returns_what_model_generate_returns(tiny_llama):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello", "The capital of Japan is"])
    ref = model.generate(**inp, max_new_tokens=5, do_sample=False, pad_token_id=2)
    out = tigerdecode.generate(model, **inp, max_new_tokens=5, creativity=0.0, tokenizer=tok)
    assert isinstance(out, torch.Tensor) and torch.equal(out, ref)
    res = tigerdecode.generate(model, **inp, max_new_tokens=5, creativity=0.0, tokenizer=tok,
                               return_result=True)
    assert isinstance(res[0], GenerationResult) and len(res) == 2
    assert res[0].notes == [NO_HEADS_NOTE] and res[0].trace[0].p_dev is None
    wrapped = tigerdecode.wrap(model, tok)
    assert torch.equal(wrapped.generate(**inp, max_new_tokens=5, creativity=0.0), ref)
    assert wrapped.config is model.config  # everything else passes through


def test_auto_heads_without_a_shipped_checkpoint_warns_and_runs(tiny_llama):
    model, tok = tiny_llama
    with pytest.warns(UserWarning, match="no control heads"):
        gen = tigerdecode.ControlledGenerator(model, tok)
    (r,) = gen.generate_text(["Hi"], max_new_tokens=3, creativity=0.2, seed=0)
    assert gen.heads is None and r.notes == [NO_HEADS_NOTE]


def test_heads_for_another_model_are_an_error(tiny_llama, tokenizer):
    model, tok = tiny_llama
    gpt2 = build_tiny_model("gpt2", tokenizer)
    foreign = ControlHeads(HeadConfig([1, 2], 64), fingerprint(gpt2, tokenizer))
    with pytest.raises(HeadsError, match="was trained for"):
        tigerdecode.ControlledGenerator(model, tok, heads=foreign)
    wide = ControlHeads(HeadConfig([1, 2], 128))
    with pytest.raises(HeadsError, match="hidden size"):
        tigerdecode.ControlledGenerator(model, tok, heads=wide)
    deep = ControlHeads(HeadConfig([9], 64))
    with pytest.raises(HeadsError, match="4 layers"):
        tigerdecode.ControlledGenerator(model, tok, heads=deep)


@pytest.mark.parametrize("bad", [-0.01, 1.5, float("nan"), float("inf")])
def test_bad_creativity_names_the_value(tiny_llama, bad):
    model, tok = tiny_llama
    gen = tigerdecode.ControlledGenerator(model, tok, heads=None)
    with pytest.raises(CreativityError, match=r"creativity must lie in \[0, 1\]"):
        gen.generate_text(["Hi"], creativity=bad)
    inp = encode_prompts(tok, ["Hi"])
    with pytest.raises(CreativityError, match=str(bad)):
        tigerdecode.generate(model, **inp, creativity=bad, max_new_tokens=2)


def test_bad_prompts_and_lengths(tiny_llama):
    model, tok = tiny_llama
    gen = tigerdecode.ControlledGenerator(model, tok, heads=None)
    with pytest.raises(PromptError, match="prompt is empty"):
        gen.generate_text(["  "])
    with pytest.raises(PromptError, match="no prompts"):
        gen.generate_text([])
    with pytest.raises(PromptError, match="context window"):
        gen.generate_text(["word " * 600], max_new_tokens=8)
    for n in (0, -3):
        with pytest.raises(ValueError, match="max_new_tokens must lie in"):
            gen.generate_text(["Hi"], max_new_tokens=n)
    inp = encode_prompts(tok, ["Hi"])
    with pytest.raises(PromptError, match="context window"):
        tigerdecode.generate(model, **inp, max_new_tokens=600)
    with pytest.raises(PromptError, match="empty"):
        tigerdecode.generate(model, input_ids=torch.zeros(1, 0, dtype=torch.long),
                             max_new_tokens=2)
    with pytest.raises(PromptError, match="empty"):
        tigerdecode.generate(model, input_ids=torch.ones(1, 3, dtype=torch.long),
                             attention_mask=torch.zeros(1, 3, dtype=torch.long), max_new_tokens=2)
    with pytest.raises(TypeError, match="unexpected arguments"):
        tigerdecode.generate(model, **inp, max_new_tokens=2, do_sample=True)


def test_nan_logits_are_an_error(tiny_llama):
    model, tok = tiny_llama
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight[5].fill_(float("nan"))
    gen = tigerdecode.ControlledGenerator(broken, tok, heads=None)
    with pytest.raises(NonFiniteLogitsError, match="non-finite logits"):
        gen.generate_text(["Hi"], max_new_tokens=3)
    with torch.no_grad():
        broken.lm_head.weight[5].fill_(float("inf"))
    with pytest.raises(NonFiniteLogitsError, match="inf|nan"):
        gen.generate_text(["Hi"], max_new_tokens=3)


def test_result_is_json_serialisable(tiny_llama):
    model, tok = tiny_llama
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = tigerdecode.ControlledGenerator(model, tok, ensemble="self")
    (r,) = gen.generate_text(["Hi"], creativity=0.3, max_new_tokens=4, seed=1)
    back = GenerationResult.from_dict(__import__("json").loads(r.to_json()))
    assert back.token_ids == r.token_ids and back.trace[0].member_weights == \
        pytest.approx(r.trace[0].member_weights, abs=1e-6)
