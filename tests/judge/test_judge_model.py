"""The judge's features, checkpoints and bad inputs, on tiny random models."""

import pytest
import torch

from tigerdecode.judge.features import LOGIT_FEATURES, prompt_pass, reencode, strip_padding
from tigerdecode.judge.model import (
    Judge,
    JudgeConfig,
    JudgeError,
    find_shipped_judge,
    resolve_judge,
)
from tigerdecode.model.load import fingerprint
from tigerdecode.model.prompting import encode_prompts
from tiny_models import build_tiny_model

PROMPTS = ["The capital of Japan is", "Name a colour", "Hello"]


def make_judge(model, tok, layers=(2, 4), seed=0):
    torch.manual_seed(seed)
    cfg = JudgeConfig(layers=list(layers), hidden_size=model.config.hidden_size,
                      scalar_names=list(LOGIT_FEATURES))
    return Judge(cfg, fingerprint(model, tok)).eval()


def _prompt_ids(tok, prompts):
    enc = encode_prompts(tok, prompts)
    return strip_padding(enc["input_ids"], enc["attention_mask"])


def test_reencode_matches_a_pass_from_scratch(tiny_llama):
    """The answer pass on the prompts' cache sees what a pass over prompt + answer sees."""
    model, tok = tiny_llama
    pids = _prompt_ids(tok, PROMPTS)
    answers = [[100, 200, 300], [], [7, 8]]
    ended = [True, True, False]
    r = reencode(model, prompt_pass(model, pids, 0), answers, ended,
                 eos_id=tok.eos_token_id, pad_id=0, layers=[1, 3])
    for i in range(len(PROMPTS)):  # one row at a time, no padding, no cache
        tail = answers[i] + ([tok.eos_token_id] if ended[i] else [])
        ids = torch.tensor([pids[i] + tail])
        out = model(input_ids=ids, output_hidden_states=True)
        hs = out.hidden_states
        a = len(tail)
        win = slice(len(pids[i]) - 1, len(pids[i]) + a)
        want = torch.cat([torch.cat([hs[x][0, win].mean(0), hs[x][0, -1]]) for x in (1, 3)])
        torch.testing.assert_close(r.states[i], want, atol=1e-4, rtol=1e-4)
        logp = torch.log_softmax(out.logits[0].float(), -1)
        lps = [logp[len(pids[i]) - 1 + j, t] for j, t in enumerate(tail)]
        if lps:
            assert r.scalars[i, 2].item() == pytest.approx(torch.stack(lps).mean().item(),
                                                           abs=1e-4)
        assert len(r.token_risk[i]) == len(answers[i])


def test_scores_are_probabilities_and_batch_independent(tiny_llama):
    model, tok = tiny_llama
    judge = make_judge(model, tok)
    pids = _prompt_ids(tok, PROMPTS)
    answers, ended = [[100, 200], [5], [9, 9, 9]], [True, False, True]
    kw = dict(eos_id=tok.eos_token_id, pad_id=0)
    p, _ = judge.score(model, prompt_pass(model, pids, 0), answers, ended, **kw)
    assert p.shape == (3,) and bool(((p > 0) & (p < 1)).all())
    for i in range(3):
        pi, _ = judge.score(model, prompt_pass(model, pids[i:i + 1], 0), answers[i:i + 1],
                            ended[i:i + 1], **kw)
        assert pi.item() == pytest.approx(p[i].item(), abs=1e-5)


def test_save_load_round_trip(tiny_llama, tmp_path):
    model, tok = tiny_llama
    judge = make_judge(model, tok)
    judge.calibrator.fit([-1.0, 0.0, 1.0, 2.0], [0, 1, 0, 1], "platt")
    judge.save(tmp_path / "j", {"validation_auroc": 0.5})
    back = Judge.load(tmp_path / "j", model=model, tokenizer=tok)
    pc = prompt_pass(model, _prompt_ids(tok, PROMPTS[:2]), 0)
    a, r = judge.score(model, pc, [[1, 2], [3]], [True, True], eos_id=tok.eos_token_id,
                       pad_id=0)
    torch.testing.assert_close(back(r), a)
    assert back.calibrator.method == "platt"
    assert resolve_judge(model, tok, str(tmp_path / "j")).config == judge.config


def test_judge_for_another_model_is_a_clear_error(tiny_llama, tokenizer, tmp_path):
    model, tok = tiny_llama
    make_judge(model, tok).save(tmp_path / "j")
    other = build_tiny_model("gpt2", tokenizer)
    with pytest.raises(JudgeError) as e:
        Judge.load(tmp_path / "j", model=other, tokenizer=tokenizer)
    msg = str(e.value)
    assert str(fingerprint(model, tok)) in msg and str(fingerprint(other, tokenizer)) in msg


def test_corrupt_or_missing_checkpoints(tiny_llama, tmp_path):
    model, tok = tiny_llama
    with pytest.raises(JudgeError, match="no config.json"):
        Judge.load(tmp_path)
    make_judge(model, tok).save(tmp_path / "j")
    (tmp_path / "j" / "judge.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(JudgeError, match="corrupt"):
        Judge.load(tmp_path / "j")


def test_no_shipped_judge_for_a_tiny_model(tiny_llama):
    model, tok = tiny_llama
    assert find_shipped_judge(model, tok) is None
    with pytest.raises(JudgeError, match="judge train"):
        resolve_judge(model, tok, True)


def test_judge_needs_the_heads_it_was_trained_with(tiny_llama):
    model, tok = tiny_llama
    judge = make_judge(model, tok)
    judge.config.heads_digest = "0123456789abcdef"
    with pytest.raises(JudgeError, match="0123456789abcdef"):
        judge.check_heads(None)


def test_threshold_follows_creativity(tiny_llama):
    judge = make_judge(*tiny_llama)
    ts = [judge.threshold(c) for c in (0.0, 0.5, 1.0)]
    assert ts == sorted(ts) and ts[0] == judge.config.threshold_at_0
    with pytest.raises(JudgeError):
        JudgeConfig(layers=[1], hidden_size=8, scalar_names=[], threshold_at_0=0.0)


def test_heads_with_risk_add_the_risk_at_the_answers_fact_slots(tiny_llama):
    """With heads giving p_slot and p_risk, the judge reads the risk before each fact slot:
    here every position is a slot (p_slot ~ 1) and p_risk is a known constant."""
    from tigerdecode.heads import ControlHeads, HeadConfig
    from tigerdecode.judge.features import HEAD_FEATURES, RISK_FEATURES

    model, tok = tiny_llama
    cfg = HeadConfig([1, 2], model.config.hidden_size, outputs=["stop", "dev", "slot", "risk"])
    heads = ControlHeads(cfg, fingerprint(model, tok)).eval()
    with torch.no_grad():
        for o, bias in (("slot", 20.0), ("risk", 0.0)):
            heads.nets[o].weight.zero_()
            heads.nets[o].bias.fill_(bias)  # p_slot = sigmoid(20) ~ 1, p_risk = 0.5
    r = reencode(model, prompt_pass(model, _prompt_ids(tok, PROMPTS), 0),
                 [[100, 200], [], [7]], [True, True, False], eos_id=tok.eos_token_id,
                 pad_id=0, layers=[1], heads=heads)
    assert r.scalar_names == list(LOGIT_FEATURES) + list(HEAD_FEATURES) + list(RISK_FEATURES)
    risk = r.scalars[:, -3:]
    torch.testing.assert_close(risk, torch.tensor([[1.0, 0.5, 0.5]] * 3), atol=1e-4, rtol=0)
