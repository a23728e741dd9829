"""The decode loop: greedy equals model.generate on every fixture architecture, batches equal
single rows, seeded sampling, undo-and-resample keeps the cache right, streaming, stopping."""

import threading

import pytest
import torch
from transformers import StoppingCriteria, TextIteratorStreamer

from tigerdecode.api import ControlledGenerator, generate
from tigerdecode.heads import ControlHeads, HeadConfig
from tigerdecode.model.load import fingerprint
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.knob import Policy

PROMPTS = ["Hello there", "The capital of Japan is a city called"]


def heads_for(model, tok, dev_bias=0.0, stop_bias=0.0):
    from tigerdecode.model.load import text_config

    h = ControlHeads(HeadConfig([1, 2], text_config(model).hidden_size), fingerprint(model, tok))
    with torch.no_grad():
        h.nets["dev"].bias.fill_(dev_bias)
        h.nets["stop"].bias.fill_(stop_bias)
    return h.eval()


def test_greedy_equals_model_generate_on_every_architecture(tiny_model):
    arch, model, tok = tiny_model
    inp = encode_prompts(tok, PROMPTS, raw=True)  # left-padded: rows of different lengths
    ref = model.generate(**inp, max_new_tokens=10, do_sample=False, pad_token_id=2)
    # the repetition guard off: a random tiny model loops, which the guard would break
    ours = generate(model, **inp, max_new_tokens=10, creativity=0.0, tokenizer=tok,
                    heads=heads_for(model, tok), no_repeat_ngram=0)
    assert torch.equal(ours, ref), arch


def _repeats(row: list[int], n: int) -> bool:
    grams = [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]
    return len(grams) != len(set(grams))


def test_the_repetition_guard_bans_a_second_copy_of_any_ngram(tiny_model):
    from tigerdecode.decode.sampling import repeat_bans

    assert repeat_bans([[1, 2, 3, 1, 2], [1, 2], [5, 5, 5]], 3) == [[3], [], [5]]
    assert repeat_bans([[1, 2, 1, 2]], 1) == [[]]  # n < 2: off
    arch, model, tok = tiny_model
    inp = encode_prompts(tok, PROMPTS, raw=True)
    n_prompt = inp["input_ids"].shape[1]
    ref = model.generate(**inp, max_new_tokens=24, do_sample=False, pad_token_id=2)[:, n_prompt:]
    assert any(_repeats(r, 3) for r in ref.tolist())  # the random model loops
    ours = generate(model, **inp, max_new_tokens=24, creativity=0.0, tokenizer=tok,
                    heads=heads_for(model, tok), no_repeat_ngram=3)[:, n_prompt:]
    for r, g in zip(ours.tolist(), ref.tolist(), strict=True):
        assert not _repeats(r, 3), arch
        # greedy until the first token that would repeat a 3-gram
        first = next((k for k in range(2, len(g) + 1) if _repeats(g[:k], 3)), len(g))
        assert r[:first - 1] == g[:first - 1]


def test_batch_equals_single_rows(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=heads_for(model, tok))
    for c in (0.0, 0.8):
        batch = gen.generate_text(PROMPTS, creativity=c, max_new_tokens=8, seed=5)
        for i, p in enumerate(PROMPTS):
            (one,) = gen.generate_text([p], creativity=c, max_new_tokens=8, seed=5 + i)
            assert one.token_ids == batch[i].token_ids, (c, i)
            assert one.trace[0].p_dev == pytest.approx(batch[i].trace[0].p_dev, abs=1e-5)


def test_seeded_sampling_is_reproducible_and_seeds_matter(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=None)
    a, b, c = (gen.generate_text(["Once upon a time"], creativity=1.0, max_new_tokens=12, seed=s,
                                 raw=True)[0].token_ids for s in (1, 1, 2))
    assert a == b and a != c


def test_trace_records_every_decision(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=heads_for(model, tok))
    (r,) = gen.generate_text(["Hi"], creativity=0.5, max_new_tokens=5, seed=0)
    assert len(r.trace) == len(r.token_ids) + (r.stop_reason == "eos")
    t = r.trace[0]
    assert 0 <= t.p_stop <= 1 and 0 <= t.p_dev <= 1 and t.member_weights == [1.0]
    assert t.temperature <= 0.5 and t.top_p <= 0.775 + 1e-6
    assert r.timings["new_tokens"] >= 1 and r.to_json()


def test_undo_and_resample_truncates_the_cache_correctly(tiny_llama):
    """At creativity 0 every retry is greedy again: with p_dev forced high every step is undone
    twice and redone, and the answer must equal plain greedy (a stale cache would change it)."""
    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    ref = model.generate(**inp, max_new_tokens=8, do_sample=False, pad_token_id=2)
    res = generate(model, **inp, max_new_tokens=8, creativity=0.0, tokenizer=tok,
                   heads=heads_for(model, tok, dev_bias=30.0), use_resample=True,
                   use_abstain=False, return_result=True)
    ours = generate(model, **inp, max_new_tokens=8, creativity=0.0, tokenizer=tok,
                    heads=heads_for(model, tok, dev_bias=30.0), use_resample=True,
                    use_abstain=False)
    assert torch.equal(ours, ref)
    assert all(t.retries == 2 and t.rewritten for r in res for t in r.trace)


def test_resample_at_high_risk_changes_sampled_tokens(tiny_llama):
    model, tok = tiny_llama
    kw = dict(creativity=0.5, max_new_tokens=10, seed=3, raw=True)
    plain = ControlledGenerator(model, tok, heads=heads_for(model, tok, dev_bias=30.0))
    (a,) = plain.generate_text(["Once upon a time"], use_tighten=False, **kw)
    (b,) = plain.generate_text(["Once upon a time"], use_tighten=False, use_resample=True, **kw)
    assert all(t.retries == 0 for t in a.trace) and all(t.retries == 2 for t in b.trace)
    assert a.token_ids != b.token_ids


def test_abstains_at_low_creativity_on_high_risk(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=heads_for(model, tok, dev_bias=30.0))
    (r,) = gen.generate_text(["Who wrote Hamlet?"], creativity=0.0, max_new_tokens=10,
                             use_abstain=True, abstain_message="No idea.")
    assert r.abstained and r.text == "No idea." and r.stop_reason == "abstain"
    # No abstention from abstain_below on (default 1: creativity 1 samples freely).
    (r,) = gen.generate_text(["Who wrote Hamlet?"], creativity=1.0, max_new_tokens=4,
                             use_abstain=True)
    assert not r.abstained
    (r,) = gen.generate_text(["Who wrote Hamlet?"], creativity=0.6, max_new_tokens=4,
                             use_abstain=True, abstain_below=0.5)
    assert not r.abstained


def test_stop_head_biases_eos(tiny_llama):
    model, tok = tiny_llama
    sure = ControlledGenerator(model, tok, heads=heads_for(model, tok, stop_bias=30.0))
    (r,) = sure.generate_text(["Hi"], creativity=0.0, max_new_tokens=10, eos_bias_max=100.0)
    assert r.stop_reason == "eos" and r.token_ids == []  # first token (after the prompt) is EOS


def test_streaming_and_callbacks(tiny_llama):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello"], raw=True)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("ids", generate(
        model, **inp, max_new_tokens=6, creativity=0.0, tokenizer=tok, heads=None,
        streamer=streamer)))
    th.start()
    text = "".join(streamer)
    th.join()
    new = out["ids"][0, inp["input_ids"].shape[1]:]
    assert text == tok.decode(new, skip_special_tokens=True)
    calls = []
    gen = ControlledGenerator(model, tok, heads=heads_for(model, tok))
    (r,) = gen.generate_text(["Hello"], creativity=0.0, max_new_tokens=4,
                             on_token=lambda *a: calls.append(a))
    assert [c[1] for c in calls] == [t.token_id for t in r.trace]
    assert calls[0][0] == 0 and 0 <= calls[0][2]["p_dev"] <= 1


class StopAfter(StoppingCriteria):
    def __init__(self, n, start):
        self.n, self.start = n, start

    def __call__(self, input_ids, scores, **kw):
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - self.start >= self.n)


def test_stopping_criteria_and_min_new_tokens(tiny_llama):
    model, tok = tiny_llama
    inp = encode_prompts(tok, ["Hello"], raw=True)
    res = generate(model, **inp, max_new_tokens=10, creativity=0.0, tokenizer=tok, heads=None,
                   stopping_criteria=StopAfter(3, inp["input_ids"].shape[1]), return_result=True)
    assert len(res[0].token_ids) == 3 and res[0].stop_reason == "stopping_criteria"
    sure = heads_for(model, tok, stop_bias=30.0)
    res = generate(model, **inp, max_new_tokens=5, min_new_tokens=5, creativity=0.0,
                   tokenizer=tok, heads=sure, eos_bias_max=100.0, return_result=True)
    assert len(res[0].token_ids) == 5


def test_abstain_now_ends_a_row_before_its_token_is_drawn(tiny_llama):
    from tigerdecode.decode.loop import Control, decode
    from tigerdecode.decode.sampling import StepDecision

    model, tok = tiny_llama

    class AbstainRow0AtStep2(Control):
        abstains = True

        def __init__(self):
            self.calls = 0

        def decide(self, signals, batch, device):
            d = StepDecision.fixed(batch, device)
            d.abstain_now = torch.tensor([self.calls == 2, False], device=device)
            self.calls += 1
            return d

    inp = encode_prompts(tok, PROMPTS, raw=True)
    out = decode([(model, inp["input_ids"], inp["attention_mask"])], AbstainRow0AtStep2(),
                 max_new_tokens=6, eos_ids=[], pad_id=2, tokenizer=tok)
    # decisions: prefill (0), after token 1 (1), after token 2 (2) -> row 0 stops before token 3
    assert out.stop_reasons == ["abstain", "max_new_tokens"]
    assert out.lengths == [2, 6]
    ref = model.generate(**inp, max_new_tokens=6, do_sample=False, pad_token_id=2)
    assert out.tokens[0, :2].tolist() == ref[0, -6:-4].tolist()  # what it wrote before is kept
    assert out.tokens[1].tolist() == ref[1, -6:].tolist()  # the other row is untouched


class _ScheduledHeads:
    """Heads stand-in: p_slot follows a schedule over the loop's reads (read 0 = prefill, read k
    = after token k), everything else constant."""

    layers = [1]

    def __init__(self, slots, factual=None):
        self.slots, self.calls, self.factual = slots, 0, factual

    def signals(self, states):
        b = states[1].shape[0]
        s = self.slots[self.calls] if self.calls < len(self.slots) else 0.0
        self.calls += 1
        out = {"stop": torch.zeros(b), "dev": torch.ones(b), "slot": torch.full((b,), s)}
        if self.factual is not None:
            out["factual"] = torch.tensor(self.factual[:b])
        return out


def _gate_control(latch, now_at=(), dev=True):
    from tigerdecode.decode.loop import Control
    from tigerdecode.decode.sampling import StepDecision

    class C(Control):
        abstains, abstain_slot, abstain_latch = True, 0.5, latch

        def __init__(self):
            self.calls = 0

        def decide(self, signals, batch, device):
            d = StepDecision.fixed(batch, device)
            d.abstain = torch.full((batch,), dev)  # p_dev high (or low) everywhere
            d.abstain_now = torch.full((batch,), self.calls in now_at)
            self.calls += 1
            return d
    return C()


def test_abstention_waits_for_the_first_fact_slot_and_latches(tiny_llama):
    from tigerdecode.decode.loop import content_mask, decode

    model, tok = tiny_llama
    inp = encode_prompts(tok, ["The capital of Japan is a city called"], raw=True)
    members = [(model, inp["input_ids"], inp["attention_mask"])]
    run = lambda control, slots: decode(members, control, max_new_tokens=8, eos_ids=[],  # noqa: E731
                                        pad_id=2, heads=_ScheduledHeads(slots), tokenizer=tok)
    ref = run(_gate_control(False), [0.0] * 9)  # no fact slot: never abstains
    assert ref.stop_reasons == ["max_new_tokens"]
    content = content_mask(tok, model.config.vocab_size, "cpu")[ref.tokens[0]].tolist()
    # the first fact slot is token 2 (read 2); with the latch, the first content token from
    # there on abstains; without it, only token 2 itself can
    first = next(i for i in range(2, 8) if content[i])
    out = run(_gate_control(True), [0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert out.stop_reasons == ["abstain"] and out.lengths == [first + 1]
    out = run(_gate_control(False), [0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert out.stop_reasons == (["abstain"] if content[2] else ["max_new_tokens"])
    # p_risk acts at the first fact slot only: flagged at a later slot (read 3), nothing happens
    out = run(_gate_control(True, now_at=(3,), dev=False), [0, 1, 0, 1, 0, 0, 0, 0, 0])
    assert out.stop_reasons == ["max_new_tokens"]
    out = run(_gate_control(True, now_at=(1,), dev=False), [0, 1, 0, 1, 0, 0, 0, 0, 0])
    assert out.stop_reasons == ["abstain"] and out.lengths == [1]  # before token 1 is drawn


def test_a_factual_answer_that_never_reaches_a_fact_slot_abstains_at_its_end(tiny_llama):
    from tigerdecode.decode.loop import decode

    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    members = [(model, inp["input_ids"], inp["attention_mask"])]

    def run(slots, factual, unslotted=True):
        c = _gate_control(True, dev=False)
        c.abstain_unslotted = unslotted
        return decode(members, c, max_new_tokens=5, eos_ids=[], pad_id=2, tokenizer=tok,
                      heads=_ScheduledHeads(slots, factual=factual))

    ref = run([0.0] * 6, [0.9, 0.1], unslotted=False)
    assert ref.stop_reasons == ["max_new_tokens"] * 2
    out = run([0.0] * 6, [0.9, 0.1])  # row 0 factual, row 1 creative; no slot anywhere
    assert out.stop_reasons == ["abstain", "max_new_tokens"]
    assert out.tokens.tolist() == ref.tokens.tolist() and out.lengths == ref.lengths
    out = run([0, 0, 1, 0, 0, 0], [0.9, 0.9])  # both reach a fact slot: nothing abstains
    assert out.stop_reasons == ["max_new_tokens"] * 2
    out = run([0.0] * 6, None)  # heads without p_factual: the rule cannot tell, never fires
    assert out.stop_reasons == ["max_new_tokens"] * 2


def test_a_factual_answer_written_unsure_abstains_at_its_end(tiny_llama):
    """abstain_logprob: the mean log-probability of the most likely token at each step under
    the model's own logits, recomputed here by a teacher-forced forward, decides; creative rows
    never abstain."""
    from tigerdecode.decode.loop import decode

    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    members = [(model, inp["input_ids"], inp["attention_mask"])]

    def run(bar, factual=(0.9, 0.9)):
        c = _gate_control(True, dev=False)
        c.abstain_logprob = bar
        return decode(members, c, max_new_tokens=5, eos_ids=[], pad_id=2, tokenizer=tok,
                      heads=_ScheduledHeads([1.0] * 6, factual=list(factual)))

    ref = run(None)
    assert ref.stop_reasons == ["max_new_tokens"] * 2
    means = []
    for i in range(2):
        ids = torch.cat([inp["input_ids"][i], ref.tokens[i]])
        mask = torch.cat([inp["attention_mask"][i], torch.ones(5, dtype=torch.long)])
        with torch.no_grad():
            logits = model(ids[None], attention_mask=mask[None]).logits[0].float()
        n = inp["input_ids"].shape[1]
        logp = torch.log_softmax(logits[n - 1:-1], -1)
        lp = logp.gather(1, ref.tokens[i][:, None])[:, 0]
        assert ref.trace["logprob"][i] == pytest.approx(lp.tolist(), abs=1e-4)  # the trace
        top = logp.max(-1).values
        assert ref.trace["top_logprob"][i] == pytest.approx(top.tolist(), abs=1e-4)
        means.append(float(top.mean()))
    lo, hi = min(means), max(means)
    out = run((lo + hi) / 2)  # between the two rows' means: only the less sure row abstains
    assert out.stop_reasons == ["abstain" if m < (lo + hi) / 2 else "max_new_tokens"
                                for m in means]
    assert out.tokens.tolist() == ref.tokens.tolist()  # decided at the end: same tokens
    assert run(lo - 0.5).stop_reasons == ["max_new_tokens"] * 2
    assert run(hi + 0.5).stop_reasons == ["abstain"] * 2
    assert run(hi + 0.5, factual=(0.9, 0.1)).stop_reasons == ["abstain", "max_new_tokens"]


class _NameVocab:
    """A tokenizer stand-in for the name masks: only ``convert_ids_to_tokens`` and ``len``."""

    def __init__(self, toks):
        self.toks = toks

    def __len__(self):
        return len(self.toks)

    def convert_ids_to_tokens(self, ids):
        return [self.toks[i] for i in ids]


def test_name_masks_mark_capitalised_word_starts_and_sentence_ends():
    from tigerdecode.decode.sampling import name_masks, names_next

    toks = ["Ġthe", "ĠParis", "▁London", ".", "Ġcity.", "Ċ", "Hello", "ĠX", "Ġ", None, "?"]
    starts, ends = name_masks(_NameVocab(toks), 12, "cpu")  # one id past the vocabulary: padding
    assert starts.tolist() == [False, True, True, False, False, False, False, True, False, False,
                               False, False]
    assert ends.tolist() == [False, False, False, True, True, True, False, False, False, False,
                             True, False]
    logits = torch.full((3, 12), -1.0)
    logits[0, 1] = logits[1, 1] = logits[2, 0] = 5.0  # top: " Paris", " Paris", " the"
    prev = torch.tensor([0, 3, 0])  # after " the", after "." (a sentence starts), after " the"
    assert names_next((starts, ends), logits, prev).tolist() == [1.0, 0.0, 0.0]


def test_spell_masks_follow_a_capitalised_word_until_it_ends():
    from tigerdecode.decode.sampling import spell_masks, spelling_next

    toks = ["Joh", "ann", "Ġthe", "ĠKy", "oto", ",", "▁Paris", "Ġ", None, "s"]
    cap, cont = spell_masks(_NameVocab(toks), 11, "cpu")
    assert cap.tolist() == [True, False, False, True, False, False, True, False, False, False,
                            False]
    assert cont.tolist() == [False, True, False, False, True, False, False, False, False, True,
                             False]
    top = lambda i: torch.nn.functional.one_hot(torch.tensor([i]), 11).float()  # noqa: E731
    inside = torch.zeros(1, dtype=torch.bool)
    seen = []
    # "Joh" "ann" " the" " Ky" "oto" "," : the top next token after each is the one written next
    written = [0, 1, 2, 3, 4, 5]
    for k, prev in enumerate(written[:-1]):
        p, inside = spelling_next((cap, cont), top(written[k + 1]), torch.tensor([prev]), inside)
        seen.append(float(p[0]))
    # held after "Joh" (top "ann") and after " Ky" (top "oto"); not after "ann" (the word ended:
    # the top " the" starts another), " the" (not capitalised) or "oto" (top ",")
    assert seen == [1.0, 0.0, 0.0, 1.0, 0.0]
    # a word that went on stays open: "Joh" "ann" then a top "s" is still held
    inside = torch.zeros(1, dtype=torch.bool)
    _, inside = spelling_next((cap, cont), top(1), torch.tensor([0]), inside)
    p, inside = spelling_next((cap, cont), top(9), torch.tensor([1]), inside)
    assert float(p[0]) == 1.0
    p, _ = spelling_next((cap, cont), top(9), torch.tensor([2]), inside)  # " the" closes it
    assert float(p[0]) == 0.0


def test_a_factual_answers_opening_and_a_names_spelling_are_held(tiny_llama):
    """``open_hold``: the first token of a factual request's answer is drawn as a fact slot
    (heads read the request as factual; never on a creative request, nor without heads);
    ``spell_hold``: the rest of an open capitalised word likewise."""
    from tigerdecode.decode.loop import decode
    from tigerdecode.policy.control import PolicyControl

    model, tok = tiny_llama
    inp = encode_prompts(tok, PROMPTS, raw=True)
    members = [(model, inp["input_ids"], inp["attention_mask"])]
    policy = Policy(0.5, open_hold=1.0, spell_hold=1.0, name_hold=0.0, use_abstain=False,
                    no_repeat_ngram=0)
    seen = {0.0: 0, 1.0: 0}
    for seed in range(4):
        out = decode(members, PolicyControl(policy, 1), max_new_tokens=12, eos_ids=[],
                     pad_id=2, tokenizer=tok, seed=seed,
                     heads=_ScheduledHeads([0.0] * 13, factual=[0.9, 0.1]))
        temps, spell = out.trace["temperature"], out.trace["p_spell"]
        assert temps[0][0] == pytest.approx(0.0)  # row 0 asks for a fact: its opening is held
        assert temps[1][0] == pytest.approx(0.5)  # row 1 is a creative request
        for row in range(2):
            for t, p in zip(temps[row][1:], spell[row][1:], strict=True):
                seen[p] += 1
                assert t == pytest.approx(0.0 if p == 1.0 else 0.5)
    assert seen[1.0] > 0 and seen[0.0] > 0  # both cases were exercised
    out = decode(members, PolicyControl(policy, 1), max_new_tokens=2, eos_ids=[], pad_id=2,
                 tokenizer=tok, seed=0)
    assert out.trace["temperature"][0][0] == pytest.approx(0.5)  # no heads: not known factual


def test_a_name_mid_sentence_is_drawn_greedily_up_to_slot_hold(tiny_llama):
    from tigerdecode.decode.sampling import name_masks

    model, tok = tiny_llama
    starts, ends = name_masks(tok, model.config.vocab_size, "cpu")
    assert starts.any() and ends.any()  # the fixture vocabulary has both kinds
    gen = ControlledGenerator(model, tok, heads=None, warn=False)
    seen = {0.0: 0, 1.0: 0}
    for seed in range(6):
        (r,) = gen.generate_text(["The capital of Japan is a city called"], creativity=0.5,
                                 max_new_tokens=16, seed=seed, no_repeat_ngram=0)
        assert r.trace[0].p_name == 0.0  # the first token starts a sentence
        for t in r.trace:
            seen[t.p_name] += 1
            # a name is held greedy (temperature 0), and so is the rest of an open capitalised
            # word (spell_hold); other tokens keep the schedule's 0.5
            held = t.p_name == 1.0 or t.p_spell == 1.0
            assert t.temperature == pytest.approx(0.0 if held else 0.5)
    assert seen[1.0] > 0 and seen[0.0] > 0  # both cases were exercised
    (r,) = gen.generate_text(["The capital of Japan is a city called"], creativity=0.5,
                             max_new_tokens=8, seed=0, name_hold=0.0, spell_hold=0.0)
    assert all(t.p_name is None and t.temperature == pytest.approx(0.5) for t in r.trace)
    (r,) = gen.generate_text(["The capital of Japan is a city called"], creativity=1.0,
                             max_new_tokens=8, seed=0)
    assert all(t.p_name is None for t in r.trace)  # c = 1 samples names freely: not read
