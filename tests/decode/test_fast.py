"""The fast path (static KV cache, compiled step) equals the eager runner: greedy tokens, head
outputs, seeded sampling, undo, the judge's cache hand-over, and its fallbacks.

Every architecture runs the static-cache step uncompiled (``fast.COMPILE = False``: compiling
four tiny models would take a minute); one test compiles it (tiny Llama) and checks the same."""

import warnings

import pytest
import torch
from test_loop import PROMPTS, heads_for

from tigerdecode.api import ControlledGenerator, generate
from tigerdecode.decode import fast
from tigerdecode.decode.fast import FastRunner, bucket
from tigerdecode.decode.loop import decode
from tigerdecode.decode.runner import ModelRunner
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.control import PolicyControl
from tigerdecode.policy.knob import Policy
from tigerdecode.settings import GenerateRequest


@pytest.fixture
def uncompiled(monkeypatch):
    monkeypatch.setattr(fast, "COMPILE", False)


def _both(model, tok, prompts=PROMPTS, **kw):
    """The same request through the eager and the fast runner (one set of heads)."""
    h = heads_for(model, tok)
    return [ControlledGenerator(model, tok, heads=h, fast=f).generate_text(prompts, raw=True, **kw)
            for f in (False, True)]


def _same(a, b, tol=1e-4):
    for x, y in zip(a, b, strict=True):
        assert x.token_ids == y.token_ids and x.stop_reason == y.stop_reason
        for s, t in zip(x.trace, y.trace, strict=True):
            assert s.p_dev == pytest.approx(t.p_dev, abs=tol)
            assert s.p_stop == pytest.approx(t.p_stop, abs=tol)


def test_greedy_and_heads_equal_the_eager_path_on_every_architecture(tiny_model, uncompiled):
    arch, model, tok = tiny_model
    inp = encode_prompts(tok, PROMPTS, raw=True)
    h = heads_for(model, tok)
    ref = model.generate(**inp, max_new_tokens=10, do_sample=False, pad_token_id=2)
    ours = generate(model, **inp, max_new_tokens=10, creativity=0.0, tokenizer=tok, heads=h,
                    fast=True, no_repeat_ngram=0)  # the guard off: the random model loops
    assert torch.equal(ours, ref), arch
    _same(*_both(model, tok, creativity=0.0, max_new_tokens=10))


def test_seeded_sampling_equals_the_eager_path(tiny_model, uncompiled):
    _, model, tok = tiny_model
    for c in (0.5, 1.0):
        kw = dict(creativity=c, max_new_tokens=12, seed=7)
        _same(*_both(model, tok, **kw))


def _tapped_alike(model, tok, layers):
    """Eager and fast runner tapping ``layers``: prefill and one step, the same states."""
    inp = encode_prompts(tok, PROMPTS, raw=True)
    runners = [R(model, inp["input_ids"], inp["attention_mask"], layers) for R in
               (ModelRunner, FastRunner)]
    with torch.inference_mode():
        for r in runners:
            r.prefill()
            r.step(torch.tensor([5, 6]))
    a, b = (r.last_states(slice(None)) for r in runners)
    for k in layers:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    assert runners[1].eager is None  # no fallback happened
    for r in runners:
        r.close()
    return inp


def test_the_last_layer_can_be_tapped(tiny_model, uncompiled):
    """The heads read the last block's output (before the final norm), as the eager tap does."""
    _, model, tok = tiny_model
    _tapped_alike(model, tok, [1, model.config.get_text_config().num_hidden_layers])


def test_the_final_normed_state_can_be_tapped(tiny_model, uncompiled, monkeypatch):
    """Heads on layer n + 1 (the final normed state, what engine-packed heads read) see the
    same numbers on the fast path as on the eager one; tapping block n too falls back."""
    _, model, tok = tiny_model
    n = model.config.get_text_config().num_hidden_layers
    inp = _tapped_alike(model, tok, [2, n + 1])
    monkeypatch.setattr(fast, "_NOTICES", set())  # the notice is said once per process
    with pytest.warns(UserWarning, match="final normed state"):
        r = FastRunner.create(model, inp["input_ids"], inp["attention_mask"], [n, n + 1])
    assert isinstance(r, ModelRunner)
    r.close()


def test_undo_on_the_static_cache_equals_recomputation(tiny_llama, uncompiled):
    """Feed a, b, undo, c: the same logits and states as a fresh runner fed a, c."""
    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    a, b, c = torch.tensor([5, 6]), torch.tensor([7, 8]), torch.tensor([9, 10])
    with torch.inference_mode():
        r = FastRunner(model, inp["input_ids"], inp["attention_mask"], [2])
        r.prefill()
        r.step(a)
        r.step(b)
        r.undo()
        got = r.step(c)
        fresh = FastRunner(model, inp["input_ids"], inp["attention_mask"], [2])
        fresh.prefill()
        fresh.step(a)
        want = fresh.step(c)
        eager = ModelRunner(model, inp["input_ids"], inp["attention_mask"], [2])
        eager.prefill()
        eager.step(a)
        ref = eager.step(c)
    assert torch.equal(got, want)
    assert torch.equal(r.last_states(slice(None))[2], fresh.last_states(slice(None))[2])
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    eager.close()


def test_undo_and_resample_in_the_loop(tiny_llama, uncompiled):
    """Every step undone twice and redone (p_dev forced high) still gives plain greedy."""
    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    ref = model.generate(**inp, max_new_tokens=8, do_sample=False, pad_token_id=2)
    h = heads_for(model, tok, dev_bias=30.0)
    ours = generate(model, **inp, max_new_tokens=8, creativity=0.0, tokenizer=tok, heads=h,
                    use_resample=True, use_abstain=False, fast=True)
    assert torch.equal(ours, ref)


def test_more_steps_than_the_bucket_holds(tiny_llama, uncompiled):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hi"], raw=True)
    with torch.inference_mode():
        r = FastRunner(model, inp["input_ids"], inp["attention_mask"], [1])
        e = ModelRunner(model, inp["input_ids"], inp["attention_mask"], [1])
        x, y = r.prefill(), e.prefill()
        assert r.length == bucket(1) == fast.MIN_BUCKET
        for _ in range(fast.MIN_BUCKET + 3):
            t = y.argmax(-1)
            x, y = r.step(t), e.step(t)
        assert r.length == 2 * fast.MIN_BUCKET
        assert torch.equal(x.argmax(-1), y.argmax(-1))
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    e.close()


def test_the_judge_cache_hand_over(tiny_llama, uncompiled):
    """keep_cache gives the same prompt cache as the eager loop (at least the prompt's positions
    are handed on); a prefix cache decodes the same."""
    model, tok = tiny_llama
    enc = encode_prompts(tok, PROMPTS, raw=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    T = ids.shape[1]
    outs = [decode([(model, ids, mask)], PolicyControl(Policy(0.0), 1), max_new_tokens=6,
                   eos_ids=[], pad_id=0, keep_cache=True, fast=f) for f in (False, True)]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    a, b = outs[0].kept[0], outs[1].kept[0]
    assert a.get_seq_length() >= T and b.get_seq_length() >= T
    for la, lb in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(la.keys[:, :, :T], lb.keys[:, :, :T], atol=1e-5, rtol=1e-5)
    # decode on from the prompt's cache minus its last token (the judge's rewind)
    for c in (a, b):
        c.crop(T - 1 - c.get_seq_length())
    rew = [decode([(model, ids, mask)], PolicyControl(Policy(0.0), 1), max_new_tokens=6,
                  eos_ids=[], pad_id=0, prefix_cache=c, fast=f) for c, f in ((a, False),
                                                                             (b, True))]
    assert torch.equal(rew[0].tokens, rew[1].tokens)
    assert torch.equal(rew[1].tokens, outs[0].tokens)


def test_the_judges_reads_on_the_fast_path(tiny_llama, uncompiled):
    """The states and distributions the judge reads are the eager loop's."""
    model, tok = tiny_llama
    enc = encode_prompts(tok, PROMPTS, raw=True)
    outs = [decode([(model, enc["input_ids"], enc["attention_mask"])],
                   PolicyControl(Policy(0.0), 1), max_new_tokens=6, eos_ids=[], pad_id=0,
                   read_layers=[1, 2], fast=f) for f in (False, True)]
    assert torch.equal(outs[0].tokens, outs[1].tokens)
    for a, b in zip(outs[0].reads, outs[1].reads, strict=True):
        assert a.positions == b.positions == 7  # the prompt's last token and six written
        for x in (1, 2):
            torch.testing.assert_close(a.states[x], b.states[x], atol=1e-4, rtol=1e-4)
        for u, v in ((a.logp, b.logp), (a.entropy, b.entropy), (a.maxprob, b.maxprob)):
            torch.testing.assert_close(u, v, atol=1e-4, rtol=1e-4)


def test_compiled_step_equals_the_eager_path(tiny_llama):
    """One compiled case (inductor): greedy, heads and seeded sampling as the eager loop."""
    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    ref = model.generate(**inp, max_new_tokens=10, do_sample=False, pad_token_id=2)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="tigerdecode fast path")  # no fallback
        ours = generate(model, **inp, max_new_tokens=10, creativity=0.0, tokenizer=tok,
                        heads=heads_for(model, tok), fast=True)
        assert torch.equal(ours, ref)
        for c, seed in ((0.0, None), (0.8, 3)):
            # name_hold off: whether a token is held as a name follows the top token, and the
            # random tiny model's near-tied logits let inductor's last-bit differences flip it
            kw = dict(creativity=c, max_new_tokens=10, seed=seed, name_hold=0.0)
            _same(*_both(model, tok, **kw))


def test_falls_back_with_a_notice_where_it_cannot_run(tiny_llama, monkeypatch):
    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    ref = generate(model, **inp, max_new_tokens=6, creativity=0.0, tokenizer=tok, heads=None)
    monkeypatch.setattr(fast, "_NOTICES", set())
    monkeypatch.setattr(fast, "unsupported", lambda m: "this model is not supported")
    with pytest.warns(UserWarning, match="not supported; decoding eagerly"):
        ours = generate(model, **inp, max_new_tokens=6, creativity=0.0, tokenizer=tok,
                        heads=None, fast=True)
    assert torch.equal(ours, ref)
    monkeypatch.undo()

    def broken():
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(fast, "_NOTICES", set())
    monkeypatch.setattr(fast, "_compiled", broken)
    with pytest.warns(UserWarning, match="torch.compile failed .*uncompiled"):
        ours = generate(model, **inp, max_new_tokens=6, creativity=0.0, tokenizer=tok,
                        heads=None, fast=True)
    assert torch.equal(ours, ref)


def test_fast_is_a_validated_request_option():
    assert GenerateRequest(fast=True).fast is True and GenerateRequest().fast is None
    with pytest.raises(ValueError, match="fast must be"):
        GenerateRequest(fast="yes")
    assert GenerateRequest.build({"overrides": {"fast": True}}).fast is True


def test_a_model_changed_after_compiling_never_runs_a_stale_graph(tiny_llama):
    """Compiled steps skip the per-parameter guards once a variant has run; replacing a layer
    must still be seen (the runner keys variants by the parameters' identity too)."""
    import copy

    model = copy.deepcopy(tiny_llama[0])
    tok = tiny_llama[1]
    inp = encode_prompts(tok, PROMPTS, raw=True)
    kw = dict(max_new_tokens=6, creativity=0.0, tokenizer=tok, heads=None)
    for _ in range(2):  # the second run takes the skip-guards path
        assert torch.equal(generate(model, **inp, fast=True, **kw), generate(model, **inp, **kw))
    old = model.model.layers[0].mlp.down_proj
    new = torch.nn.Linear(old.in_features, old.out_features, bias=False)
    with torch.no_grad():
        new.weight.copy_(old.weight * -3.0)
    model.model.layers[0].mlp.down_proj = new
    want = generate(model, **inp, **kw)
    assert torch.equal(generate(model, **inp, fast=True, **kw), want)


def test_fast_fp32_greedy_equals_plain_greedy_on_the_default_model(default_model):
    """The real model (slow): the compiled fp32 step's greedy tokens are plain greedy's, at
    batch 1 and in a left-padded batch, and the shipped heads read the same numbers."""
    model, tok = default_model
    prompts = ["Write a short story about a lighthouse keeper who finds a strange map.",
               "What is the capital of Japan?"]
    for batch in (prompts[:1], prompts):
        inp = encode_prompts(tok, batch)
        ref = model.generate(**inp, max_new_tokens=48, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        ours = generate(model, **inp, max_new_tokens=48, tokenizer=tok, method="greedy",
                        fast=True)
        assert torch.equal(ours, ref)
    gens = [ControlledGenerator(model, tok, fast=f) for f in (False, True)]
    a, b = (g.generate_text(prompts, creativity=0.5, max_new_tokens=24, seed=1) for g in gens)
    _same(a, b)
