"""Ensembles: identical members equal one member, personas, shared-vocabulary checks."""

import pytest
import torch

from tigerdecode.api import ControlledGenerator, generate
from tigerdecode.methods.ensemble import Ensemble, EnsembleError, Member
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.control import PolicyControl
from tigerdecode.policy.knob import Policy
from tiny_models import build_tiny_model


def test_identical_members_equal_one_member(tiny_llama):
    model, tok = tiny_llama
    one = ControlledGenerator(model, tok, heads=None)
    two = ControlledGenerator(model, tok, heads=None, ensemble=Ensemble([model, model], tok))
    prompts = ["Hello", "Tell me a story"]
    a = one.generate_text(prompts, creativity=0.0, max_new_tokens=8)
    b = two.generate_text(prompts, creativity=0.0, max_new_tokens=8)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    # at any creativity the blended distribution is the single member's (log-probs differ from
    # raw logits by one constant per row, which temperature and truncation ignore)
    z = torch.randn(3, len(tok))
    for c in (0.25, 0.5, 1.0):
        d = Policy(c).step(None, None, 2, batch=3)
        blended = PolicyControl(Policy(c), 2).scores([z, z.clone()], d, None)
        single = PolicyControl(Policy(c), 1).scores([z], d, None)
        diff = blended - single
        assert torch.allclose(diff, diff[:, :1].expand_as(diff), atol=1e-5)
    (r,) = two.generate_text(["Hi"], creativity=0.25, max_new_tokens=2, seed=4)
    assert r.trace[0].member_weights == pytest.approx([0.75, 0.25])


def test_two_checkpoints_blend_and_weights_follow_creativity(tokenizer):
    a = build_tiny_model("llama", tokenizer, seed=0)
    b = build_tiny_model("llama", tokenizer, seed=1)
    ens = Ensemble([Member(a, None, "factual"), Member(b, None, "creative")], tokenizer)
    gen = ControlledGenerator(a, tokenizer, heads=None, ensemble=ens)
    solo_a = ControlledGenerator(a, tokenizer, heads=None)
    kw = dict(max_new_tokens=8, raw=True)
    # creativity 0 is greedy on the factual member alone, and 1 is the creative one at T=1
    assert gen.generate_text(["Hi"], 0.0, **kw)[0].token_ids == \
        solo_a.generate_text(["Hi"], 0.0, **kw)[0].token_ids
    assert gen.generate_text(["Hi"], 1.0, seed=2, **kw)[0].trace[0].member_weights == [0, 1]
    # ... and at 1 the creative member alone decides
    za, zb = torch.randn(1, 50), torch.randn(1, 50)
    d = Policy(1.0).step(None, None, 2, batch=1)
    assert torch.allclose(PolicyControl(Policy(1.0), 2).scores([za, zb], d, None),
                          zb.log_softmax(-1))


def test_self_ensemble_uses_personas(tiny_llama):
    model, tok = tiny_llama
    ens = Ensemble.self_ensemble(model, tok)
    assert ens.names == ["factual", "creative"] and ens.members[1].system
    (m0, ids0, _), (m1, ids1, _) = ens.encode(["Hello"])
    assert m0 is m1 and ids1.shape[1] > ids0.shape[1]  # the creative persona's system turn
    # token-level input gets the persona prepended as a system turn
    inp = encode_prompts(tok, ["Hello", "A longer prompt here"])
    members = ens.encode_ids(inp["input_ids"], inp["attention_mask"])
    assert torch.equal(members[0][1], inp["input_ids"])
    text = tok.decode(members[1][1][1][members[1][2][1].bool()])
    assert text.startswith("<|im_start|>system\nYou are an imaginative") and "A longer" in text
    out = generate(model, **inp, max_new_tokens=4, creativity=0.5, tokenizer=tok, heads=None,
                   ensemble="self", seed=0)
    assert out.shape[0] == 2 and torch.equal(out[:, :inp["input_ids"].shape[1]], inp["input_ids"])


def test_mismatched_tokenizers_are_an_error(tiny_llama):
    from transformers import AutoTokenizer

    from tiny_models import TOKENIZER_DIR

    model, tok = tiny_llama
    other = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    other.add_tokens(["<extra-token>"])
    with pytest.raises(EnsembleError, match="different tokenizer"):
        Ensemble([Member(model, None, "a"), Member(model, None, "b", other)], tok)


def test_mismatched_vocabularies_are_an_error(tokenizer):
    from transformers import AutoModelForCausalLM

    from tiny_models import tiny_config

    a = build_tiny_model("llama", tokenizer)
    big = AutoModelForCausalLM.from_config(tiny_config("llama", len(tokenizer) + 64))
    with pytest.raises(EnsembleError, match="must share one vocabulary"):
        Ensemble([a, big], tokenizer)
    small = AutoModelForCausalLM.from_config(tiny_config("llama", 100))
    with pytest.raises(EnsembleError, match="do not belong together"):
        Ensemble([small], tokenizer)
    with pytest.raises(EnsembleError, match="at least one member"):
        Ensemble([], tokenizer)
