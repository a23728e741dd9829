"""Processors: hand-built logits over a vocabulary of 10, never mutated; the HF processor."""

import math

import pytest
import torch

from tigerdecode.decode.sampling import (
    NonFiniteLogitsError,
    StepDecision,
    add_eos_bias,
    apply_min_p,
    apply_temperature,
    apply_top_p,
    blend,
    check_finite,
    process,
)
from tigerdecode.heads import ControlHeads, HeadConfig
from tigerdecode.model.load import fingerprint
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.knob import Policy
from tigerdecode.policy.processor import ControlledLogitsProcessor

LOGP = torch.log(torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0, 0, 0, 0]]) + 1e-9)


def _same_after(fn, *args):
    before = [a.clone() for a in args if isinstance(a, torch.Tensor)]
    out = fn(*args)
    after = [a for a in args if isinstance(a, torch.Tensor)]
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True)), "input mutated"
    return out


def test_top_p_keeps_the_smallest_set_reaching_p():
    out = _same_after(apply_top_p, LOGP, torch.tensor([0.65]))
    assert torch.isfinite(out[0]).tolist() == [True, True] + [False] * 8
    out = _same_after(apply_top_p, LOGP, torch.tensor([0.75]))
    assert torch.isfinite(out[0]).sum() == 3
    assert torch.equal(apply_top_p(LOGP, torch.tensor([1.0])), LOGP)


def test_min_p_is_relative_to_the_top_token():
    out = _same_after(apply_min_p, LOGP, torch.tensor([0.3]))  # keep p >= 0.15
    assert torch.isfinite(out[0]).tolist() == [True, True] + [False] * 8


def test_temperature_and_greedy_rows():
    two = torch.cat([LOGP, LOGP.flip(-1)])
    out = _same_after(apply_temperature, two, torch.tensor([0.0, 2.0]))
    assert torch.isfinite(out[0]).sum() == 1 and out[0, 0] == 0
    # the same distribution as two[1] / 2 (each row's top is shifted to 0 first, so a tiny
    # temperature cannot overflow)
    assert torch.allclose(out[1].log_softmax(-1), (two[1] / 2).log_softmax(-1))
    assert out[1].max() == 0


def test_eos_bias_and_blend():
    out = _same_after(add_eos_bias, LOGP, [3], torch.tensor([2.0]))
    assert out[0, 3] == pytest.approx(float(LOGP[0, 3]) + 2)
    a, b = torch.randn(2, 10), torch.randn(2, 10)
    w = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    out = _same_after(blend, [a, b], w)
    assert torch.allclose(out[0], a[0].log_softmax(-1))
    assert torch.allclose(out[1], 0.5 * a[1].log_softmax(-1) + 0.5 * b[1].log_softmax(-1))


def test_process_pipeline_does_not_mutate():
    z = torch.randn(3, 10)
    d = Policy(0.5).step(torch.tensor([0.9, 0.1, 0.5]), torch.tensor([0.9, 0.1, 0.5]), 1)
    out = _same_after(process, [z], d, [2])
    assert out.shape == (3, 10) and torch.isfinite(out).any(-1).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_are_an_error(bad):
    z = torch.zeros(2, 10)
    z[1, 4] = bad
    with pytest.raises(NonFiniteLogitsError, match="row 1"):
        check_finite(z)


def _heads(model, tok, dev_bias=0.0):
    h = ControlHeads(HeadConfig([2, 4], 64), fingerprint(model, tok))
    with torch.no_grad():
        h.nets["dev"].bias.fill_(dev_bias)
    return h.eval()


def test_hf_processor_inside_model_generate(tiny_llama):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello there", "The capital of Japan is"], raw=True)
    ref = model.generate(**inp, max_new_tokens=6, do_sample=False, pad_token_id=2)
    # creativity 0, heads watching but too unsure to act, the repetition guard off (a random
    # model loops): exactly greedy inside HF's loop
    proc = ControlledLogitsProcessor(model, tok, policy=Policy(0.0, no_repeat_ngram=0),
                                     heads=_heads(model, tok))
    seen = []
    orig = proc.__call__

    def spy(ids, scores):
        keep = scores.clone()
        out = orig(ids, scores)
        assert torch.equal(keep, scores)  # input untouched
        seen.append(proc.last["p_dev"])
        return out

    with proc:
        out = model.generate(**inp, max_new_tokens=6, do_sample=True, temperature=1.0, top_p=1.0,
                             top_k=0, logits_processor=[spy], pad_token_id=2)
    assert torch.equal(out, ref)
    assert len(seen) == 6 and seen[0].shape == (2,)
    assert all(0 <= float(p.min()) and float(p.max()) <= 1 for p in seen)


def test_hf_processor_with_the_repetition_guard_equals_tigerdecodes_loop(tiny_llama):
    from tigerdecode.api import generate

    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello there", "The capital of Japan is"], raw=True)
    h = _heads(model, tok)
    ours = generate(model, **inp, max_new_tokens=16, creativity=0.0, tokenizer=tok, heads=h,
                    no_repeat_ngram=3)
    plain = model.generate(**inp, max_new_tokens=16, do_sample=False, pad_token_id=2)
    assert not torch.equal(ours, plain)  # the random model repeats itself; the guard acts
    proc = ControlledLogitsProcessor(model, tok, policy=Policy(0.0, no_repeat_ngram=3), heads=h)
    for _ in range(2):  # a second run of the same processor starts its history afresh
        with proc:
            out = model.generate(**inp, max_new_tokens=16, do_sample=True, temperature=1.0,
                                 top_p=1.0, top_k=0, logits_processor=[proc], pad_token_id=2)
        assert torch.equal(out, ours)


def test_hf_processor_needs_its_hooks(tiny_llama):
    model, tok = tiny_llama
    proc = ControlledLogitsProcessor(model, tok, creativity=0.5, heads=_heads(model, tok))
    with pytest.raises(RuntimeError, match="inside `with proc:`"):
        proc(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, len(tok)))


def test_hf_processor_tightens_on_high_p_dev(tiny_llama):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello"], raw=True)
    # name_hold off: the name hold's cooling depends on the sampled first token (unseeded here)
    proc = ControlledLogitsProcessor(model, tok, policy=Policy(0.3, use_tighten=True,
                                                               name_hold=0.0),
                                     heads=_heads(model, tok, dev_bias=30.0))
    with proc:
        model.generate(**inp, max_new_tokens=2, do_sample=True, top_k=0, logits_processor=[proc],
                       pad_token_id=2)
    # guard at c=0.3 is 0.6, risk 1 → temperature 0.3 * 0.4
    assert math.isclose(float(proc.last["temperature"][0]), 0.3 * 0.4, rel_tol=1e-5)


def test_fused_nucleus_draw_matches_the_full_sort(monkeypatch):
    """draw keeps exactly apply_top_p's nucleus, whether the nucleus fits in the partial top-k
    (k=4 here) or a row needs the full-sort fallback (k=2)."""
    import tigerdecode.decode.sampling as P

    z = torch.log(torch.tensor([[0.05, 0.3, 0.25, 0.2, 0.1, 0.05, 0.03, 0.02, 0, 0]]) + 1e-9)
    z = torch.cat([z, z.flip(-1)])
    d = Policy(1.0, top_p_max=0.7).step(None, None, 1, batch=2)  # temperature 1, top-p 0.7
    nucleus = [set(torch.isfinite(r).nonzero().flatten().tolist())
               for r in apply_top_p(z, d.top_p)]
    for k in (4, 2):
        monkeypatch.setattr(P, "TOP_K_FIRST", k)
        seen = [set(), set()]
        for seed in range(200):
            gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)]
            tok = P.draw(z, d, [], gens)
            for i in range(2):
                seen[i].add(int(tok[i]))
        assert seen == nucleus, k


def test_min_p_and_top_p_order_is_top_p_first():
    """probabilities [.5, .3, .2], min-p .5, top-p .6: top-p keeps {0, 1}, min-p keeps {0, 1}
    (0.3 >= 0.25): both filters judged on the same distribution, so {0, 1} in every path."""
    z = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    d = StepDecision.fixed(1, "cpu", temperature=1.0, top_p=0.6, min_p=0.5)
    kept = torch.isfinite(process([z], d, [])).nonzero()[:, 1].tolist()
    assert kept == [0, 1]
    from tigerdecode.decode.sampling import nucleus

    idx, w = nucleus(z, d)
    assert sorted(idx[w > 0].tolist()) == [0, 1]


def _random_decision(g, B, M=1):
    temp = torch.rand(B, generator=g) * 1.5
    temp[torch.rand(B, generator=g) < 0.3] = 0.0  # mixed greedy and sampled rows
    top_p = torch.where(torch.rand(B, generator=g) < 0.3, torch.ones(B),
                        0.05 + 0.95 * torch.rand(B, generator=g))
    min_p = torch.where(torch.rand(B, generator=g) < 0.4, torch.zeros(B),
                        0.5 * torch.rand(B, generator=g))
    bias = torch.where(torch.rand(B, generator=g) < 0.5, torch.zeros(B),
                       8 * torch.rand(B, generator=g) - 2)
    no = torch.zeros(B, dtype=torch.bool)
    return StepDecision(temp, top_p, min_p, torch.ones(B, M) / M, bias, no, no)


@pytest.mark.parametrize("k", [3, 16, 1024])
def test_fast_path_is_the_plain_pipelines_distribution(monkeypatch, k):
    """Over random logits and decisions (temperature, top-p, min-p, EOS bias, greedy and
    sampled rows mixed), the fast path's kept set and probabilities equal softmax(process(...));
    greedy rows draw the argmax after the EOS bias."""
    import tigerdecode.decode.sampling as P

    monkeypatch.setattr(P, "TOP_K_FIRST", k)
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        B, V = 6, 40
        z = torch.randn(B, V, generator=g) * (1 + 3 * torch.rand(1, generator=g))
        d = _random_decision(g, B)
        eos = [int(torch.randint(V, (1,), generator=g))]
        want = torch.softmax(P.process([z], d, eos), -1)  # (B, V)
        biased = P.add_eos_bias(z, eos, d.eos_bias)
        idx, w = P.nucleus(biased, d)
        got = torch.zeros(B, V).scatter_add(-1, idx, w)
        sampled = d.temperature > 0
        assert torch.allclose(got[sampled], want[sampled], atol=1e-5), trial
        gens = [torch.Generator().manual_seed(trial * 10 + i) for i in range(B)]
        tok = P.draw(z, d, eos, gens)
        greedy = ~sampled
        assert torch.equal(tok[greedy], biased.argmax(-1)[greedy])
        assert bool((want.gather(-1, tok[:, None])[:, 0] > 0).all()), "drew a dropped token"


def test_a_greedy_row_leaves_its_generator_as_it_is_when_alone():
    """In a batch, a row that is greedy this step draws nothing, as it draws nothing alone (an
    all-greedy step skips the draw); so its later sampled tokens do not depend on its
    neighbours."""
    from tigerdecode.decode.sampling import draw

    torch.manual_seed(0)
    scores = torch.randn(3, 20)
    d = StepDecision.fixed(3, "cpu", temperature=1.0)
    d.temperature[1] = 0.0  # row 1 greedy this step
    gens = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
    tok = draw(scores, d, [], gens)
    assert tok[1] == scores[1].argmax()
    assert torch.equal(gens[1].get_state(), torch.Generator().manual_seed(4).get_state())
    assert not torch.equal(gens[0].get_state(), torch.Generator().manual_seed(3).get_state())


def test_batched_rows_equal_their_solo_runs_when_greedy_and_sampled_steps_mix(tiny_llama):
    """decode: each row's tokens equal the row decoded alone with its own seed, under a control
    that makes rows greedy or sampled at different steps."""
    from tigerdecode.decode.loop import Control, decode
    from tigerdecode.demos.batcher import RowSeeds

    class Alternating(Control):
        def __init__(self, rows):
            self.rows, self.t = rows, 0

        def decide(self, signals, batch, device):
            d = StepDecision.fixed(batch, device, temperature=1.0, top_p=0.9)
            d.temperature = torch.tensor([1.0 if (self.t + r) % 3 else 0.0 for r in self.rows])
            return d

        def observe(self, tokens, ctx):
            self.t += 1

    model, tok = tiny_llama
    prompts = ["Once upon a time", "The capital of France is", "Hi"]
    seeds = [11, 0, 7]

    def run(idx):
        enc = encode_prompts(tok, [prompts[i] for i in idx], raw=True)
        seed = seeds[idx[0]] if len(idx) == 1 else RowSeeds([seeds[i] for i in idx])
        out = decode([(model, enc["input_ids"], enc["attention_mask"])], Alternating(idx),
                     max_new_tokens=12, eos_ids=[], pad_id=tok.pad_token_id, seed=seed)
        return out.tokens.tolist()

    batched = run([0, 1, 2])
    assert [run([i])[0] for i in range(3)] == batched


def _temperature_with_top(proc, V):
    """``temp(ids, top)``: the processor's temperature for a step whose top token is ``top``."""
    def temp(ids, top):
        scores = torch.zeros(1, V)
        scores[0, top] = 3.0
        proc(ids, scores)
        return float(proc.last["temperature"][0])
    return temp


def test_hf_processor_holds_a_name_mid_sentence_as_the_loop_does(tiny_llama):
    from tigerdecode.decode.sampling import name_masks

    model, tok = tiny_llama
    V = model.config.vocab_size
    starts, ends = name_masks(tok, V, "cpu")
    name, plain = int(starts.nonzero()[0]), int((~starts).nonzero()[0])
    mid, end = int((~ends).nonzero()[0]), int(ends.nonzero()[0])
    proc = ControlledLogitsProcessor(model, tok, creativity=0.5)
    ids = torch.tensor([[5, 6, 7]])

    temp = _temperature_with_top(proc, V)
    assert temp(ids, name) == pytest.approx(0.5)  # the first token starts a sentence
    assert temp(torch.cat([ids, torch.tensor([[mid]])], 1), name) == pytest.approx(0.0)
    assert temp(torch.cat([ids, torch.tensor([[mid, end]])], 1), name) == pytest.approx(0.5)
    assert temp(torch.cat([ids, torch.tensor([[mid, end, mid]])], 1), plain) == pytest.approx(0.5)
    off = ControlledLogitsProcessor(model, None, creativity=0.5)  # no tokenizer: no name signal
    off(ids, torch.zeros(1, V))
    scores = torch.zeros(1, V)
    scores[0, name] = 3.0
    off(torch.cat([ids, torch.tensor([[mid]])], 1), scores)
    assert float(off.last["temperature"][0]) == pytest.approx(0.5)


def test_a_rows_draw_is_one_number_whatever_its_neighbours_need():
    """Each sampled row draws one number from its own generator: a neighbour whose nucleus
    needs the whole vocabulary (a flat row, past the partial top-k) changes nothing."""
    import tigerdecode.decode.sampling as P

    g = torch.Generator().manual_seed(0)
    sharp = torch.randn(1, 4000, generator=g) * 6
    flat = torch.zeros(1, 4000)  # top-1024 hold 1024/4000 < top-p: the full-sort fallback
    d1 = StepDecision.fixed(1, "cpu", temperature=0.8, top_p=0.9)
    d2 = StepDecision.fixed(2, "cpu", temperature=0.8, top_p=0.9)
    for seed in range(30):
        alone = P.draw(sharp, d1, [], [torch.Generator().manual_seed(seed)])
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(99)]
        both = P.draw(torch.cat([sharp, flat]), d2, [], gens)
        assert int(both[0]) == int(alone[0])
        # one uniform number consumed, as a fresh generator shows
        ref = torch.Generator().manual_seed(seed)
        torch.rand(1, dtype=torch.float64, generator=ref)
        assert torch.equal(gens[0].get_state(), ref.get_state())


def test_draws_follow_the_kept_distribution():
    """Inverse-CDF draws over the vocabulary-ordered nucleus: frequencies match the
    renormalised top-p set (4 standard errors), dropped tokens never come."""
    import tigerdecode.decode.sampling as P

    p = torch.tensor([0.05, 0.3, 0.25, 0.2, 0.1, 0.05, 0.03, 0.02])
    d = StepDecision.fixed(1, "cpu", temperature=1.0, top_p=0.7)  # keeps {1, 2, 3}
    want = torch.zeros(8)
    want[[1, 2, 3]] = p[[1, 2, 3]] / p[[1, 2, 3]].sum()
    gen = torch.Generator().manual_seed(1)
    n = 4000
    counts = torch.zeros(8)
    for _ in range(n):
        counts[int(P.draw(p.log()[None], d, [], [gen])[0])] += 1
    freq = counts / n
    assert bool((freq[want == 0] == 0).all())
    se = (want * (1 - want) / n).sqrt()
    assert bool(((freq - want).abs() <= 4 * se + 1e-9).all()), (freq, want)


def test_rounding_that_reorders_a_near_tie_rarely_changes_the_draw():
    """Two tokens tied to 1e-6, their order swapped by a perturbation of that size (what a
    row batched vs alone sees on a CPU): drawing in vocabulary order keeps the same token for
    almost every seed (drawing in probability order would swap ~half of the tied tokens'
    draws)."""
    import tigerdecode.decode.sampling as P

    base = torch.log(torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.1]]))
    a, b = base.clone(), base.clone()
    a[0, 1] += 1e-6
    b[0, 2] += 1e-6
    d = StepDecision.fixed(1, "cpu", temperature=1.0, top_p=0.95)
    differ = sum(
        int(P.draw(a, d, [], [torch.Generator().manual_seed(s)])[0])
        != int(P.draw(b, d, [], [torch.Generator().manual_seed(s)])[0]) for s in range(400))
    assert differ <= 2, differ


def test_hf_processor_holds_the_rest_of_a_capitalised_word_as_the_loop_does(tiny_llama):
    from tigerdecode.decode.sampling import spell_masks
    from tigerdecode.policy.knob import Policy

    model, tok = tiny_llama
    V = model.config.vocab_size
    cap, cont = spell_masks(tok, V, "cpu")
    capital = int((cap & ~cont).nonzero()[0])
    goes_on, other = int(cont.nonzero()[0]), int((~cap & ~cont).nonzero()[0])
    proc = ControlledLogitsProcessor(model, tok, policy=Policy(0.5, spell_hold=1.0,
                                                               name_hold=0.0))
    ids = torch.tensor([[5, 6, 7]])

    temp = _temperature_with_top(proc, V)
    assert temp(ids, goes_on) == pytest.approx(0.5)  # a new run: no word is open
    ids = torch.cat([ids, torch.tensor([[capital]])], 1)
    assert temp(ids, goes_on) == pytest.approx(0.0)  # a capitalised word is open
    ids = torch.cat([ids, torch.tensor([[goes_on]])], 1)
    assert temp(ids, goes_on) == pytest.approx(0.0)  # and still open after a continuation
    ids = torch.cat([ids, torch.tensor([[other]])], 1)
    assert temp(ids, goes_on) == pytest.approx(0.5)  # closed by a token that does not go on
