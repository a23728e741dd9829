"""Consensus between samples: the names a text uses, the agreement ranking, and
``generate_text(consensus=k)`` choosing among its own samples."""

import pytest

import tigerdecode
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.consensus import consensus_order, consensus_scores, names
from tigerdecode.result import GenerationResult


def test_names_are_capitalised_words_not_in_the_prompt():
    got = names("In the heart of the French Riviera, Paris shines. The Eiffel Tower of Paris; "
                "Ōsaka in 1999, and São Paulo.", "Write a poem about Pierre Beauchamp in Paris?")
    # "Paris" is in the prompt; sentence-opening "In" / "The" name nothing; non-ASCII capitals
    assert got == {"french", "riviera", "eiffel", "tower", "ōsaka", "são", "paulo"}
    assert names("no capitals here at all", "") == frozenset()
    # a possessive names what comes before it; one-letter pieces name nothing
    assert names("Lyon's hills, Paris' streets, Kyoto’s temples, O'Brien", "Lyon") == {
        "paris", "kyoto", "brien"}


def test_the_sample_whose_names_the_others_share_ranks_first():
    texts = ["A poem of Lyon and its river.",          # Lyon: 1 other sample
             "Paris, city of light, my capital.",      # Paris: 2 others
             "The lights of Paris and Lyon at dusk.",  # Paris 2 + Lyon 1
             "Under Paris skies.",                     # Paris: 2 others
             "A quiet town with no name."]             # nothing shared
    prompt = "Write a two-line poem about France that names its capital."
    assert consensus_scores(prompt, texts) == [1.0, 2.0, 3.0, 2.0, 0.0]
    assert consensus_order(prompt, texts) == [2, 1, 3, 0, 4]  # ties keep their order


def _fake(texts_abstained):
    return [GenerationResult(text=t, token_ids=[1], abstained=a, notes=["n"])
            for t, a in texts_abstained]


def test_consensus_returns_the_most_agreed_with_sample_of_each_prompt(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=None, warn=False)
    prompts = ["The capital of Japan is", "Once upon a time", "The capital of Japan is"]
    got = gen.generate_text(prompts, creativity=1.0, max_new_tokens=8, seed=3, consensus=4)
    # the same call draws exactly these samples: each distinct prompt 4 times, in one batch
    # (a random tiny model writes few shared names: the ranking itself is tested above/below)
    drawn = gen.generate_text([prompts[0]] * 4 + [prompts[1]] * 4, creativity=1.0,
                              max_new_tokens=8, seed=3)
    texts = [r.text for r in drawn]
    order_a = consensus_order(prompts[0], texts[:4])
    order_b = consensus_order(prompts[1], texts[4:])
    assert [r.text for r in got] == [texts[order_a[0]], texts[4 + order_b[0]],
                                     texts[order_a[1]]]
    assert got[0] is not got[2]
    assert all(any(n.startswith("consensus: the most agreed-with") for n in r.notes)
               for r in got)


def test_consensus_abstains_only_when_most_samples_did(tiny_llama, monkeypatch):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=None, warn=False)
    pools = {"most": [("I don't know.", True), ("Paris.", False), ("I don't know.", True),
                      ("I don't know.", True)],
             "few": [("I don't know.", True), ("Lyon.", False), ("Paris, yes.", False),
                     ("Paris.", False)]}
    monkeypatch.setattr(gen, "_generate", lambda ps, req: _fake(
        [x for p in dict.fromkeys(ps) for x in pools[p]]))
    most, few, few2 = gen.generate_text(["most", "few", "few"], consensus=4)
    assert most.abstained and most.text == "I don't know."
    # "Paris" is shared (1 each), "Lyon" is not (0), the abstention ranks last
    assert [few.text, few2.text] == ["Paris, yes.", "Paris."] and not few.abstained


def test_consensus_bad_input_is_a_clear_error(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=None, warn=False)
    for bad in (0, 33, True, 2.5):
        with pytest.raises(ValueError, match="consensus is the number of samples"):
            gen.generate_text(["Hi"], consensus=bad, max_new_tokens=2)
    with pytest.raises(ValueError, match="asked 3 times; ask for consensus >= 3"):
        gen.generate_text(["Hi"] * 3, consensus=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="cannot stream"):
        gen.generate_text(["Hi"], consensus=2, max_new_tokens=2, on_token=lambda *a: None)
    inp = encode_prompts(tok, ["Hi"])
    with pytest.raises(ValueError, match="generate_text"):
        tigerdecode.generate(model, **inp, tokenizer=tok, heads=None, consensus=2,
                             max_new_tokens=2)


def test_consensus_one_is_plain_decoding(tiny_llama):
    model, tok = tiny_llama
    gen = ControlledGenerator(model, tok, heads=None, warn=False)
    a = gen.generate_text(["Hello there"], creativity=0.7, max_new_tokens=6, seed=1)
    b = gen.generate_text(["Hello there"], creativity=0.7, max_new_tokens=6, seed=1, consensus=1)
    assert a[0].token_ids == b[0].token_ids and a[0].text == b[0].text


def test_consensus_with_an_ensemble_and_with_the_judge(tiny_llama):
    from tigerdecode.methods.ensemble import Ensemble
    from tiny_models import random_heads_and_judge

    model, tok = tiny_llama
    prompt = "The capital of Japan is"
    # the samples come from whatever decoding the request names: here a two-member ensemble
    ens = ControlledGenerator(model, tok, heads=None, warn=False,
                              ensemble=Ensemble([model, model], tok))
    (got,) = ens.generate_text([prompt], creativity=0.75, max_new_tokens=8, seed=5, consensus=3)
    drawn = ens.generate_text([prompt] * 3, creativity=0.75, max_new_tokens=8, seed=5)
    texts = [r.text for r in drawn]
    assert got.text == texts[consensus_order(prompt, texts)[0]]
    assert got.trace[0].member_weights is not None and len(got.trace[0].member_weights) == 2

    # ... and with the judge on, every sample is judged before the vote
    heads, judge = random_heads_and_judge(model, tok)
    gen = ControlledGenerator(model, tok, heads=heads, warn=False)
    kw = dict(creativity=0.5, max_new_tokens=8, seed=2, judge=judge)
    (got,) = gen.generate_text([prompt], consensus=3, **kw)
    drawn = gen.generate_text([prompt] * 3, **kw)
    assert got.judge is not None and all(r.judge is not None for r in drawn)
    texts = [r.text for r in drawn]
    ab = [r.abstained for r in drawn]
    first = next(i for i in consensus_order(prompt, texts)
                 if ab[i] == (2 * sum(ab) > 3))  # abstentions rank last unless most abstained
    assert (got.text, got.abstained, got.judge.verdict) == (
        texts[first], ab[first], drawn[first].judge.verdict)
