"""Judge-and-rewrite through the generator: rewind, budget, abstention, batches, bad inputs."""

import math

import pytest
import torch
from test_judge_model import make_judge

from tigerdecode.api import ControlledGenerator
from tigerdecode.decode.loop import decode
from tigerdecode.judge.features import from_decode, reencode, rewind_cache, strip_padding
from tigerdecode.judge.rewrite import BanAtStart, JudgeSettings, _kv_sources, rewind_point
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.control import PolicyControl
from tigerdecode.policy.knob import Policy

PROMPTS = ["The capital of Japan is", "Name a colour", "Hello there, how are you"]
N = 8


@pytest.fixture(scope="module")
def setup(tiny_llama):
    model, tok = tiny_llama
    return model, tok, ControlledGenerator(model, tok, heads=None), make_judge(model, tok)


def _greedy(model, ids, mask, cache=None, banned=None, n=N):
    control = PolicyControl(Policy(0.0), 1)
    if banned is not None:
        control = BanAtStart(control, banned)
    out = decode([(model, ids, mask)], control, max_new_tokens=n, eos_ids=[], pad_id=0,
                 prefix_cache=cache, keep_cache=True)
    return out


def _rewound(model, kept, kept_rows, rows, rows_in):
    """The judge's rewind: rows of a decode's kept cache cut to prompt + answer[:j] less its
    last token, then that token fed: ``(ids, mask, cache)``."""
    src = _kv_sources(kept, kept_rows)
    cache, mask = rewind_cache(model, src[0][0], [src[i][1] for i in rows],
                               [src[i][2] for i in rows], [len(x) - 1 for x in rows_in])
    W = mask.shape[1]
    ids = torch.zeros((len(rows), W + 1), dtype=torch.long)
    for r, x in enumerate(rows_in):
        ids[r, W + 1 - len(x):] = torch.tensor(x)
    assert cache.get_seq_length() == W  # the cut cache, handed over: only the last token is fed
    return ids, torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long)], 1), cache


@pytest.mark.parametrize("share", [True, False])
def test_rewound_cache_gives_the_tokens_of_a_recomputed_prefix(setup, share, monkeypatch):
    """Cut the first decode's cache back to prompt + answer[:j] and decode on: the same tokens
    as decoding from prompt + answer[:j] with no cache at all (and with a banned first token);
    rows picked out of order, from either prompt layout."""
    from tigerdecode.decode.runner import ModelRunner

    model, tok, _, _ = setup
    if not share:
        monkeypatch.setattr(ModelRunner, "shares_prefix", False)
    enc = encode_prompts(tok, PROMPTS)
    first = decode([(model, enc["input_ids"], enc["attention_mask"])],
                   PolicyControl(Policy(0.0), 1), max_new_tokens=N, eos_ids=[], pad_id=0,
                   keep_cache=True, keep_answers=True)
    pids = strip_padding(enc["input_ids"], enc["attention_mask"])
    answers = first.tokens.tolist()
    rows, js = [2, 0, 1], [5, 3, 0]
    rows_in = [pids[i] + answers[i][:j] for i, j in zip(rows, js, strict=True)]
    ids, mask, cache = _rewound(model, first.kept, first.kept_rows, rows, rows_in)
    banned = [[answers[i][j]] for i, j in zip(rows, js, strict=True)]
    fast = _greedy(model, ids, mask, cache, banned).tokens
    for r, (i, x) in enumerate(zip(rows, rows_in, strict=True)):  # one row, from scratch
        ref = _greedy(model, torch.tensor([x]), torch.ones(1, len(x), dtype=torch.long),
                      banned=[banned[r]]).tokens
        assert fast[r].tolist() == ref[0].tolist()
        assert fast[r, 0].item() != answers[i][js[r]]


@pytest.mark.parametrize("with_heads", [False, True])
def test_the_decodes_reads_give_the_judge_pass_features(setup, with_heads):
    """What the decode keeps along the way gives the features a pass over prompt + answer
    gives: rows that end at EOS, at the token limit, after others left the batch; and an
    answer resumed after its first tokens (``AnswerRead.then``) reads like one decoded whole."""
    from tigerdecode.heads import ControlHeads, HeadConfig
    from tigerdecode.judge.features import features_from_reads
    from tigerdecode.model.load import fingerprint

    model, tok, _, _ = setup
    heads = None
    if with_heads:
        torch.manual_seed(0)
        cfg = HeadConfig([1, 2], model.config.hidden_size,
                         outputs=["stop", "dev", "slot", "risk"])
        heads = ControlHeads(cfg, fingerprint(model, tok)).eval()
    keep = [1, 2, 3] if with_heads else [1, 3]  # the judge's layers and the heads' (read_layers)
    prompts = PROMPTS + ["One more", "And a fifth prompt here"]
    enc = encode_prompts(tok, prompts)
    pids = strip_padding(enc["input_ids"], enc["attention_mask"])
    probe = _greedy(model, enc["input_ids"], enc["attention_mask"]).tokens
    eos = probe[0, 2].item()  # row 0 ends at its third token; others may too, or run on
    out = decode([(model, enc["input_ids"], enc["attention_mask"])],
                 PolicyControl(Policy(0.0), 1), max_new_tokens=N, eos_ids=[eos], pad_id=0,
                 heads=heads, keep_cache=True, read_layers=keep)
    ended = [n > 0 and out.tokens[i, n - 1].item() == eos for i, n in enumerate(out.lengths)]
    answers = [out.tokens[i, :n - int(e)].tolist() for i, (n, e) in
               enumerate(zip(out.lengths, ended, strict=True))]
    assert ended[0] and not all(ended)
    kw = dict(layers=[1, 3], heads=heads)
    want = reencode(model, from_decode(out.kept, out.kept_rows), answers, ended, eos_id=eos,
                    pad_id=0, **kw)
    got = features_from_reads(out.reads, answers, ended, **kw)
    assert got.scalar_names == want.scalar_names
    torch.testing.assert_close(got.states, want.states, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.scalars, want.scalars, atol=1e-4, rtol=1e-4)
    for a, b in zip(got.token_risk, want.token_risk, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    # rewound after j tokens: the joined read is the whole answer's
    i, j = 4, 2
    enc2 = encode_prompts(tok, [prompts[i]])
    first = decode([(model, enc2["input_ids"], enc2["attention_mask"])],
                   PolicyControl(Policy(0.0), 1), max_new_tokens=N, eos_ids=[], pad_id=0,
                   heads=heads, keep_cache=True, keep_answers=True, read_layers=keep)
    whole = first.tokens[0].tolist()
    ids, mask, cache = _rewound(model, first.kept, first.kept_rows, [0], [pids[i] + whole[:j]])
    rest = decode([(model, ids, mask)], PolicyControl(Policy(0.0), 1), max_new_tokens=N - j,
                  eos_ids=[], pad_id=0, heads=heads, prefix_cache=cache, read_layers=keep)
    joined = first.reads[0].then(j, rest.reads[0])
    assert rest.tokens[0].tolist() == whole[j:]
    a = features_from_reads([joined], [whole], [False], **kw)
    b = features_from_reads(first.reads, [whole], [False], **kw)
    torch.testing.assert_close(a.states, b.states, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a.scalars, b.scalars, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="positions"):
        features_from_reads(first.reads, [whole + [5]], [True], **kw)


def test_accept_keeps_the_answer(setup):
    model, tok, gen, judge = setup
    base = gen.generate_text(PROMPTS, creativity=0.0, max_new_tokens=N, seed=0)
    out = gen.generate_text(PROMPTS, creativity=0.0, max_new_tokens=N, seed=0, judge=judge,
                            judge_threshold=1.0)
    for b, r in zip(base, out, strict=True):
        assert r.text == b.text and r.token_ids == b.token_ids
        assert r.judge.verdict == "accept" and len(r.judge.rewrites) == 1
        assert 0 < r.judge.score < 1 and r.judge.threshold == 1.0
        assert not any(t.rewritten for t in r.trace)


@pytest.mark.parametrize("budget", [0, 2])
def test_budget_then_abstain(setup, budget):
    model, tok, gen, judge = setup
    out = gen.generate_text(PROMPTS, creativity=0.6, max_new_tokens=N, seed=1, judge=judge,
                            judge_threshold=1e-6, max_rewrites=budget, rewrite_budget=math.inf,
                            min_rewind=0, judge_abstain_message="No idea.")
    for r in out:
        assert r.judge.verdict == "abstain" and r.abstained and r.text == "No idea."
        hist = r.judge.rewrites
        assert len(hist) == budget + 1  # the first answer, then one candidate per rewrite
        assert [h["attempt"] for h in hist] == list(range(budget + 1))
        cs = [h["creativity"] for h in hist]
        assert cs == sorted(cs, reverse=True) and (budget == 0 or cs[-1] == 0.0)
        for h in hist[1:]:
            assert h["rewind_at"] is not None and h["score"] is not None
            assert h["token_ids"][:h["rewind_at"]] == hist[h["attempt"] - 1]["token_ids"][
                :h["rewind_at"]]


def test_best_of_rejected_returns_the_best_candidate_marked(setup):
    model, tok, gen, judge = setup
    (r,) = gen.generate_text(PROMPTS[:1], creativity=0.8, max_new_tokens=N, seed=2,
                             judge=judge, judge_threshold=1e-6, max_rewrites=2,
                             on_reject="best", min_rewind=0)
    hist = r.judge.rewrites
    best = min(hist, key=lambda h: h["score"])
    assert r.judge.verdict == "best_of_rejected" and not r.abstained
    assert r.token_ids == best["token_ids"] and r.judge.score == best["score"]
    assert any("rejected" in n for n in r.notes)
    if best["attempt"] > 0:  # tokens from the rewind point on are marked in the trace
        j = best["rewind_at"]
        assert all(t.rewritten for t in r.trace[j:]) and not any(t.rewritten for t in r.trace[:j])


def test_rows_are_judged_and_rewritten_independently(setup):
    model, tok, gen, judge = setup
    base = gen.generate_text(PROMPTS, creativity=0.0, max_new_tokens=N, seed=0, judge=judge,
                             judge_threshold=1.0)
    scores = sorted(r.judge.score for r in base)
    thr = (scores[0] + scores[1]) / 2  # rejects all but the best-scored row
    kw = dict(creativity=0.0, max_new_tokens=N, seed=0, judge=judge, judge_threshold=thr,
              max_rewrites=2, on_reject="best", min_rewind=0)
    batch = gen.generate_text(PROMPTS, **kw)
    assert {r.judge.verdict for r in batch} - {"accept"}  # some rows were rewritten
    for i, p in enumerate(PROMPTS):
        (alone,) = gen.generate_text([p], **kw)
        assert alone.token_ids == batch[i].token_ids and alone.judge.verdict == batch[
            i].judge.verdict
        assert alone.judge.score == pytest.approx(batch[i].judge.score, abs=1e-4)


def test_bad_inputs(setup):
    model, tok, gen, judge = setup
    for bad in (-1, 1.5, True, 99):
        with pytest.raises(ValueError, match="max_rewrites"):
            gen.generate_text(PROMPTS[:1], max_new_tokens=2, judge=judge, max_rewrites=bad)
    with pytest.raises(ValueError, match="judge=True"):
        gen.generate_text(PROMPTS[:1], max_new_tokens=2, max_rewrites=1)
    with pytest.raises(ValueError, match="method"):
        gen.generate_text(PROMPTS[:1], max_new_tokens=2, judge=judge, method="greedy")
    with pytest.raises(ValueError, match="judge_threshold"):
        JudgeSettings(threshold=0.0)
    with pytest.raises(ValueError, match="on_reject"):
        JudgeSettings(on_reject="retry")


def test_rewind_point():
    assert rewind_point([0.1, 0.8, 0.9], 0.5) == 1
    assert rewind_point([0.1, 0.3, 0.2], 0.5) == 1  # none crosses: the riskiest
    assert rewind_point([], 0.5) == 0


def test_drop_in_generate_with_judge(setup):
    import tigerdecode

    model, tok, _, judge = setup
    enc = encode_prompts(tok, PROMPTS[:2])
    kw = dict(max_new_tokens=N, creativity=0.0, tokenizer=tok, heads=None, judge=judge,
              judge_threshold=1e-6, max_rewrites=1)
    seqs = tigerdecode.generate(model, **enc, **kw)
    res = tigerdecode.generate(model, **enc, return_result=True, **kw)
    assert all(r.judge.verdict == "abstain" for r in res)
    T = enc["input_ids"].shape[1]
    assert torch.equal(seqs[:, :T], enc["input_ids"])
    said = tok.decode(seqs[0, T:], skip_special_tokens=True)
    assert said == res[0].text == "I don't know."
    with pytest.raises(ValueError, match="tokenizer"):
        tigerdecode.generate(model, **enc, max_new_tokens=2, heads=None, judge=judge)


def test_judge_eval_cli_prints_the_issue_keys(setup, tiny_model_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from tigerdecode.cli import main
    from tigerdecode.cli.judge import EVAL_KEYS

    model, tok, _, judge = setup
    judge.save(tmp_path / "judge")
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"prompt": p, "answers": ["Tokyo"], "topic": "t"}) + "\n"
                          for p in PROMPTS))
    r = CliRunner().invoke(main, ["judge", "eval", "--qa", str(qa), "--limit", "2", "--json",
                                  "--model", str(tiny_model_dir), "--judge",
                                  str(tmp_path / "judge"), "--max-new-tokens", "4"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout.strip().splitlines()[-1])  # warnings go to stderr
    assert tuple(got) == EVAL_KEYS + ("right_rate_without", "right_kept_rate") and got["n"] == 2
    assert got["wrong_rate_without"] == 1.0  # random weights never say "Tokyo"
    assert got["right_rate_without"] == 0.0 and got["right_kept_rate"] is None  # nothing right
    assert 0 <= got["abstain_rate"] <= 1 and got["latency_ratio"] > 0
    # --set reaches both arms, --open counts the judge's abstentions on free text
    details = tmp_path / "details.json"
    opens = tmp_path / "open.jsonl"
    opens.write_text('{"prompt": "Write a poem about rain."}\n{"prompt": "Write a slogan."}\n')
    r = CliRunner().invoke(main, ["judge", "eval", "--qa", str(qa), "--limit", "2", "--json",
                                  "--model", str(tiny_model_dir), "--judge",
                                  str(tmp_path / "judge"), "--max-new-tokens", "4", "--set",
                                  "use_abstain=false", "--open", str(opens), "--out",
                                  str(details)])
    assert r.exit_code == 0, r.output
    d = json.loads(details.read_text())["details"]
    assert d["policy"] == {"use_abstain": False}
    assert d["open"]["n"] == 2 and 0 <= d["open"]["abstained"] <= 2
    # --seeds decodes every item once per seed and pools the rates over all answers
    r = CliRunner().invoke(main, ["judge", "eval", "--qa", str(qa), "--limit", "2", "--json",
                                  "--model", str(tiny_model_dir), "--judge",
                                  str(tmp_path / "judge"), "--max-new-tokens", "4",
                                  "--seeds", "0,1,2", "--out", str(details)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["n"] == 6
    d = json.loads(details.read_text())["details"]
    assert d["seeds"] == [0, 1, 2] and len(d["per_seed"]) == 3
    assert len(d["outcomes_without"]) == 6
    for bad in ("0,x", "1,1", ""):
        r = CliRunner().invoke(main, ["judge", "eval", "--qa", str(qa), "--limit", "2",
                                      "--model", str(tiny_model_dir), "--seeds", bad])
        assert r.exit_code == 2 and "--seeds" in r.output, (bad, r.output)
    r = CliRunner().invoke(main, ["judge", "eval", "--qa", str(qa), "--set", "nope=1"])
    assert r.exit_code != 0 and "Policy field" in r.output
    bad = CliRunner().invoke(main, ["generate", "hi", "--max-rewrites", "1"])
    assert bad.exit_code != 0 and "--judge" in bad.output


def test_the_rewrite_budget_takes_the_shortest_rewound_spans_first(setup):
    from tigerdecode.judge.rewrite import within_budget

    assert within_budget([5, 1, 3], 4) == [False, True, True]
    assert within_budget([5, 1, 3], 0.5) == [False, False, False]
    assert within_budget([2, 2], 4) == [True, True]
    model, tok, gen, judge = setup
    kw = dict(creativity=0.6, max_new_tokens=N, seed=1, judge=judge, judge_threshold=1e-6,
              max_rewrites=1, min_rewind=0)
    assert (JudgeSettings().max_rewrites, JudgeSettings().rewrite_budget) == (1, 0.3)  # defaults
    free = gen.generate_text(PROMPTS, rewrite_budget=math.inf, **kw)
    assert [len(r.judge.rewrites) for r in free] == [2, 2, 2]  # every answer rewritten once
    big = gen.generate_text(PROMPTS, rewrite_budget=100, **kw)
    assert [r.judge.rewrites for r in big] == [r.judge.rewrites for r in free]
    for r in gen.generate_text(PROMPTS, rewrite_budget=0, **kw):
        # nothing fits: every rejected answer abstains without a rewrite, and says why
        assert r.abstained and len(r.judge.rewrites) == 1
        assert any("budget" in n for n in r.notes)
    # a budget that holds exactly the cheapest rewrite: the first row with the shortest span
    firsts = [r.judge.rewrites[0]["token_ids"] for r in free]
    costs = [max(1, len(f) - r.judge.rewrites[1]["rewind_at"]) for f, r in
             zip(firsts, free, strict=True)]
    cheap = costs.index(min(costs))
    out = gen.generate_text(PROMPTS, rewrite_budget=min(costs) / sum(map(len, firsts)), **kw)
    assert [len(r.judge.rewrites) for r in out] == [2 if i == cheap else 1 for i in range(3)]
    for a, b in zip(out[cheap].judge.rewrites, free[cheap].judge.rewrites, strict=True):
        assert (a["token_ids"], a["rewind_at"]) == (b["token_ids"], b["rewind_at"])
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)  # re-read in another batch
    with pytest.raises(ValueError, match="rewrite_budget"):
        JudgeSettings(rewrite_budget=-1)
    with pytest.raises(ValueError, match="rewrite_budget"):
        gen.generate_text(PROMPTS[:1], max_new_tokens=2, judge=judge, rewrite_budget="all")


def test_min_rewind_leaves_answers_rejected_from_their_first_tokens_unwritten(setup,
                                                                              monkeypatch):
    """A rejected answer whose rewind point comes before ``min_rewind`` ends rejected without
    a rewrite (and says why); the others are rewritten exactly as with no bar."""
    import tigerdecode.judge.rewrite as R

    model, tok, gen, judge = setup
    assert JudgeSettings().min_rewind == 4  # the default, chosen on validation relations
    js = [1, 5, 3]  # the rows' rewind points (the tiny judge rejects every token)
    calls = []

    def points(risk, thr):
        calls.append(None)
        return js[(len(calls) - 1) % 3]
    monkeypatch.setattr(R, "rewind_point", points)
    kw = dict(creativity=0.6, max_new_tokens=N, seed=1, judge=judge, judge_threshold=1e-6,
              max_rewrites=1, rewrite_budget=math.inf)
    free = gen.generate_text(PROMPTS, min_rewind=0, **kw)
    assert [r.judge.rewrites[1]["rewind_at"] for r in free] == js
    out = gen.generate_text(PROMPTS, min_rewind=3, **kw)
    for f, r, j in zip(free, out, js, strict=True):
        if j < 3:
            assert len(r.judge.rewrites) == 1 and r.abstained and r.judge.verdict == "abstain"
            assert any("min_rewind" in n for n in r.notes)
        else:
            assert [h["token_ids"] for h in r.judge.rewrites] == [
                h["token_ids"] for h in f.judge.rewrites]
            assert not any("min_rewind" in n for n in r.notes)
    for r in gen.generate_text(PROMPTS, min_rewind=6, **kw):  # no rewind point reaches it
        assert len(r.judge.rewrites) == 1 and r.abstained
    for bad in (-1, 1.5, True, 5000):
        with pytest.raises(ValueError, match="min_rewind"):
            JudgeSettings(min_rewind=bad)
    with pytest.raises(ValueError, match="min_rewind"):
        gen.generate_text(PROMPTS[:1], max_new_tokens=2, judge=judge, min_rewind="all")
    from click.testing import CliRunner

    from tigerdecode.cli import main

    bad = CliRunner().invoke(main, ["generate", "hi", "--min-rewind", "2"])
    assert bad.exit_code != 0 and "--judge" in bad.output
