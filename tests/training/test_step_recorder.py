"""Sampling records exactly the states a teacher-forced pass sees, and the right baselines."""

import pytest
import torch

from tigerdecode.model.prompting import build_prompt
from tigerdecode.model.taps import HiddenStateTap
from tigerdecode.qa.prompts import format_prompt
from tigerdecode.training.sampling import (
    Setting,
    parse_settings,
    sample_answers,
)

PROMPTS = ["The capital of Japan is", "What is the largest ocean on Earth, by area and volume?"]


@pytest.mark.parametrize("setting", [Setting("greedy"), Setting("t1", 1.0, 0.9)])
def test_recorded_states_match_teacher_forcing(tiny_llama, setting):
    model, tok = tiny_llama
    prompts = [format_prompt(p) for p in PROMPTS]
    res = sample_answers(model, tok, prompts, [2, 4], setting, max_new_tokens=7, seed=0)
    assert len(res) == 2
    for p, r in zip(prompts, res, strict=True):
        ids = tok(build_prompt(tok, p), add_special_tokens=False)["input_ids"]
        n, P = r["n_keep"], len(ids)
        assert n == min(len(r["token_ids"]), 6)  # the last token of a cut row is never fed
        full = torch.tensor([ids + r["token_ids"]])
        with torch.no_grad(), HiddenStateTap(model, [2, 4]) as tap:
            logits = model(full).logits[0].float()  # (T, V)
            for layer in (2, 4):
                want = tap.states[layer][0, P:P + n]  # (n, H): states at the generated tokens
                got = r["states"][layer].float()
                assert got.shape == want.shape
                torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
        logp = torch.log_softmax(logits[P - 1:P - 1 + n], dim=-1)  # dists that produced them
        chosen = logp.gather(1, torch.tensor(r["token_ids"][:n])[:, None]).squeeze(1)
        torch.testing.assert_close(r["logprob"], chosen, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(r["maxprob"], logp.exp().max(-1).values, atol=1e-4, rtol=1e-3)
        ent = -(logp.exp() * logp).sum(-1)
        torch.testing.assert_close(r["entropy"], ent, atol=1e-3, rtol=1e-3)
        eos = torch.log_softmax(logits[P:P + n], -1).exp()[:, tok.eos_token_id]
        torch.testing.assert_close(r["next_eos_prob"], eos, atol=1e-5, rtol=1e-3)


def test_parse_settings():
    s = parse_settings("greedy, 0.7:0.9 ,1.0")
    assert [x.name for x in s] == ["greedy", "t0.7-p0.9", "t1-p1"]
    assert s[1].temperature == 0.7 and s[1].top_p == 0.9
    for bad in ("hot", "0.7:2", "-1", ""):
        with pytest.raises(ValueError):
            parse_settings(bad)


def test_prompt_templates():
    assert format_prompt("What is the capital of Japan?").startswith("What is the capital")
    assert "Finish this sentence" in format_prompt("The capital of Japan is")


def test_bad_layers(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(ValueError, match="out of range"):
        sample_answers(model, tok, ["x"], [9], Setting("greedy"), max_new_tokens=3, seed=0)
