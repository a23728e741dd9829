"""The eager runner's batch savings: rows that finished leave the batch, and a prompt prefix
every row shares is prefilled once; both give what the plain runner gives."""

import pytest
import torch
from transformers import StoppingCriteria

from tigerdecode.decode.loop import Control, decode
from tigerdecode.decode.runner import ModelRunner, has_sliding_window
from tigerdecode.decode.sampling import StepDecision
from tigerdecode.model.prompting import encode_prompts

PROMPTS = ["Once upon a time there was", "The capital of France is", "Hi", "A B C D E F G H"]


def _enc(tok, prompts):
    enc = encode_prompts(tok, prompts, raw=True)
    return enc["input_ids"], enc["attention_mask"]


class _Rows:
    """Counts the rows of every forward of the model (a pre-hook on it)."""

    def __init__(self, model):
        self.seen = []
        self.h = model.register_forward_pre_hook(
            lambda m, a, kw: self.seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.h.remove()


def test_finished_rows_leave_the_batch_and_the_others_read_the_same(tiny_llama):
    model, tok = tiny_llama
    ids, mask = _enc(tok, PROMPTS)
    a, b = ModelRunner(model, ids, mask, [1]), ModelRunner(model, ids, mask, [1])
    la, lb = a.prefill(), b.prefill()
    keep = torch.ones(4, dtype=torch.bool)
    with _Rows(model) as rows:
        for t in range(6):
            tokens = lb.argmax(-1)
            if t == 2:
                keep[[0, 2]] = False  # two of four: half the batch, so they leave
            la, lb = a.step(tokens, keep=keep), b.step(tokens)
            assert torch.allclose(la[keep], lb[keep], atol=1e-5), t
            assert bool((la[~keep] == 0).all())
    assert [r[0] for r in rows.seen][::2] == [4, 4, 2, 2, 2, 2]  # a's forwards (b's: all 4)
    assert a.cache.layers[0].keys.shape[0] == 2
    # undo after the batch shrank, then the same step again
    a.undo()
    b.undo()
    tokens = lb.argmax(-1)
    la = a.step(tokens, keep=keep)
    sa = a.last_states(slice(0, 4))[1]  # (both runners' taps hook the same model: read now)
    lb = b.step(tokens)
    sb = b.last_states(slice(0, 4))[1]
    assert torch.allclose(la[keep], lb[keep], atol=1e-5)
    # the tapped states of the rows in the batch, zeros for those that left
    assert sa.shape == sb.shape and bool((sa[~keep] == 0).all())
    assert torch.allclose(sa[keep], sb[keep], atol=1e-5)


def test_one_finished_row_of_eight_stays_in_the_batch(tiny_llama):
    """Copying the cache is only worth it for a quarter of the batch."""
    model, tok = tiny_llama
    ids, mask = _enc(tok, PROMPTS * 2)
    r = ModelRunner(model, ids, mask)
    logits = r.prefill()
    keep = torch.ones(8, dtype=torch.bool)
    keep[3] = False
    r.step(logits.argmax(-1), keep=keep)
    assert r.alive is None and r.cache.layers[0].keys.shape[0] == 8
    keep[5] = False  # two of eight: a quarter
    r.step(logits.argmax(-1), keep=keep)
    assert r.alive.tolist() == [0, 1, 2, 4, 6, 7]


class _StopAt(StoppingCriteria):
    """Row i stops after ``at[i]`` new tokens."""

    def __init__(self, at, start):
        self.at, self.start = torch.tensor(at), start

    def __call__(self, input_ids, scores, **kw):
        return (input_ids.shape[1] - self.start) >= self.at


class _Fixed(Control):
    def __init__(self, temperature):
        self.temperature = temperature

    def decide(self, signals, batch, device):
        return StepDecision.fixed(batch, device, temperature=self.temperature, top_p=0.9)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_batch_whose_rows_end_apart_decodes_as_without_dropping(tiny_llama, monkeypatch,
                                                                  sampled):
    model, tok = tiny_llama
    prompts = PROMPTS * 2
    ids, mask = _enc(tok, prompts)
    control = _Fixed(0.9 if sampled else 0.0)

    def run():
        with _Rows(model) as rows:
            out = decode([(model, ids, mask)], control, max_new_tokens=12, eos_ids=[],
                         pad_id=tok.pad_token_id, seed=3,
                         stopping_criteria=_StopAt([2, 3, 4, 5, 12, 12, 6, 12], ids.shape[1]))
        return out, [r[0] for r in rows.seen]

    dropped, rows = run()
    assert rows[0] == 8 and min(rows) == 3  # rows ending at 2..6 left the batch
    monkeypatch.setattr(ModelRunner, "compacts", False)
    kept, rows_kept = run()
    assert set(rows_kept) == {8}
    assert dropped.lengths == kept.lengths == [2, 3, 4, 5, 12, 12, 6, 12]
    for i, n in enumerate(dropped.lengths):
        assert dropped.tokens[i, :n].tolist() == kept.tokens[i, :n].tolist(), i


def test_a_shared_prompt_prefix_is_prefilled_once(tiny_llama):
    model, tok = tiny_llama
    lead = "You are a helpful assistant. Answer the question in one line. "
    prompts = [lead + q for q in ("Where is Paris?", "Who wrote Hamlet, the play?", "Why?")]
    ids, mask = _enc(tok, prompts)
    plain, shared = ModelRunner(model, ids, mask), ModelRunner(model, ids, mask)
    P = shared._shared_prefix()
    assert P == len(tok(lead.rstrip(), add_special_tokens=False).input_ids) or P > 4
    with _Rows(model) as rows:
        ls = shared.prefill(share_prefix=True)
    lp = plain.prefill()
    assert rows.seen[0] == (1, P)  # the prefix: one row
    assert rows.seen[1] == (3, ids.shape[1] - P)  # the rest: every row, the columns after it
    assert torch.allclose(ls, lp, atol=1e-4)
    for _ in range(5):
        tokens = lp.argmax(-1)
        ls, lp = shared.step(tokens), plain.step(tokens)
        assert torch.allclose(ls, lp, atol=1e-4)
    assert shared.pos.tolist() == plain.pos.tolist()


def test_no_prefix_is_shared_where_it_would_not_be_right(tiny_llama):
    model, tok = tiny_llama
    ids, mask = _enc(tok, ["Hello there", "The capital of Japan is"])
    assert ModelRunner(model, ids, mask)._shared_prefix() == 0  # nothing in common
    same = ["Tell me about the moon and", "Tell me about the moon and"]
    ids, mask = _enc(tok, same)
    r = ModelRunner(model, ids, mask)
    assert r._shared_prefix() == ids.shape[1] - 1  # every row keeps its last token
    assert ModelRunner(model, ids[:1], mask[:1])._shared_prefix() == 0  # one row
    right = mask.flip(-1)  # right-padded or holed masks: not this layout
    right[0, -1] = 0
    assert ModelRunner(model, ids, right)._shared_prefix() == 0


def test_sliding_window_models_keep_their_layout():
    class Cfg:
        pass

    class M:
        config = Cfg()

    M.config.layer_types = ["full_attention", "sliding_attention"]
    assert has_sliding_window(M)
    M.config.layer_types = ["full_attention"]
    assert not has_sliding_window(M)
    M.config.sliding_window, M.config.use_sliding_window = 4096, False
    assert not has_sliding_window(M)
    M.config.use_sliding_window = True
    assert has_sliding_window(M)


def test_a_kept_cache_holds_every_rows_prompt_after_rows_left(tiny_llama, monkeypatch):
    """keep_cache (the judge's first decode) with rows ending apart: rows still leave the batch,
    and the cache handed on holds every row's prompt positions as a plain run's does."""
    model, tok = tiny_llama
    ids, mask = _enc(tok, PROMPTS * 2)

    def run():
        with _Rows(model) as rows:
            out = decode([(model, ids, mask)], _Fixed(0.0), max_new_tokens=10, eos_ids=[],
                         pad_id=tok.pad_token_id, keep_cache=True,
                         stopping_criteria=_StopAt([2, 3, 4, 5, 10, 10, 6, 10], ids.shape[1]))
        return out, [r[0] for r in rows.seen]

    dropped, rows = run()
    assert min(rows) == 3
    monkeypatch.setattr(ModelRunner, "compacts", False)
    kept, _ = run()
    cd, ck = dropped.kept[0], kept.kept[0]
    T = ids.shape[1]
    assert cd.get_seq_length() == T and ck.get_seq_length() > T
    assert torch.equal(dropped.kept[2], kept.kept[2])  # the same prompt layout
    for a, b in zip(cd.layers, ck.layers, strict=True):
        assert torch.allclose(a.keys, b.keys[:, :, :T], atol=1e-5)
        assert torch.allclose(a.values, b.values[:, :, :T], atol=1e-5)


def test_a_decode_from_a_given_cache_drops_finished_rows_too(tiny_llama, monkeypatch):
    """The judge's rewrites decode on a handed-over prompt cache: rows ending apart leave that
    batch too, with the same tokens."""
    model, tok = tiny_llama
    ids, mask = _enc(tok, PROMPTS * 2)
    T = ids.shape[1]

    def run():
        first = decode([(model, ids, mask)], _Fixed(0.0), max_new_tokens=1, eos_ids=[],
                       pad_id=tok.pad_token_id, keep_cache=True)
        cache = first.kept[0]
        cache.crop(T - 1 - cache.get_seq_length())  # the prompts less their last token
        with _Rows(model) as rows:
            out = decode([(model, ids, mask)], _Fixed(0.0), max_new_tokens=10, eos_ids=[],
                         pad_id=tok.pad_token_id, prefix_cache=cache, keep_cache=True,
                         stopping_criteria=_StopAt([2, 3, 4, 5, 10, 10, 6, 10], T))
        return out, [r[0] for r in rows.seen]

    dropped, rows = run()
    assert rows[0] == 8 and min(rows) == 3
    monkeypatch.setattr(ModelRunner, "compacts", False)
    kept, rows_kept = run()
    assert set(rows_kept) == {8}
    assert dropped.lengths == kept.lengths
    for i, n in enumerate(dropped.lengths):
        assert dropped.tokens[i, :n].tolist() == kept.tokens[i, :n].tolist(), i
    for a, b in zip(dropped.kept[0].layers, kept.kept[0].layers, strict=True):
        assert torch.allclose(a.keys, b.keys[:, :, :T], atol=1e-5)  # the prompts' positions


def test_rows_stop_at_their_own_token_limits(tiny_llama):
    """row_max_new_tokens (the judge's rewrites): each row ends at its own limit as at
    max_new_tokens, with the tokens the unlimited decode wrote, and leaves the batch."""
    model, tok = tiny_llama
    ids, mask = _enc(tok, PROMPTS)
    kw = dict(max_new_tokens=8, eos_ids=[], pad_id=tok.pad_token_id)
    full = decode([(model, ids, mask)], _Fixed(0.0), **kw)
    with _Rows(model) as rows:
        cut = decode([(model, ids, mask)], _Fixed(0.0), row_max_new_tokens=[2, 8, 3, 5], **kw)
    assert cut.lengths == [2, 8, 3, 5]
    assert cut.stop_reasons == ["max_new_tokens"] * 4
    for i, n in enumerate(cut.lengths):
        assert cut.tokens[i, :n].tolist() == full.tokens[i, :n].tolist()
    assert min(r[0] for r in rows.seen) < 4  # rows at their limit left the batch
