"""The one sampling pipeline: blend → EOS bias → temperature → top-p → min-p → draw.

Each step is a short pure function that returns new scores and never writes into its input.
:func:`process` runs the steps as written (what :class:`~tigerdecode.policy.processor.
ControlledLogitsProcessor` hands back to HF ``generate``); :func:`draw` is what tigerdecode's
own loop calls: the same steps and the draw, with a fast path for the nucleus (a partial top-k
instead of a sort of the whole vocabulary) that keeps exactly the same distribution
(``tests/decode/test_sampling.py`` proves it over random logits and decisions).

Order: top-p before min-p, as llama.cpp's default chain, HF and vLLM apply them. With this
order the kept set is the intersection of the two filters, each judged on the tempered
distribution, so they commute; min-p first would renormalise before top-p and shrink the nucleus.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

NEG_INF = float("-inf")
TOP_K_FIRST = 1024


class NonFiniteLogitsError(FloatingPointError):
    """A model produced NaN or inf logits; decoding them would be silent garbage."""


@dataclass
class StepDecision:
    """One step's decisions, one entry per row (tensors of shape (B,) or (B, M))."""

    temperature: torch.Tensor  # (B,) 0 = greedy
    top_p: torch.Tensor  # (B,)
    min_p: torch.Tensor  # (B,)
    weights: torch.Tensor  # (B, M) rows sum to 1
    eos_bias: torch.Tensor  # (B,) added to the EOS logits
    resample: torch.Tensor  # (B,) bool: undo the last token and draw it again
    abstain: torch.Tensor  # (B,) bool (only meaningful after retries)
    # (B,) bool or None: end the row as an abstention *instead of* drawing this step's token
    abstain_now: torch.Tensor | None = None

    @classmethod
    def fixed(cls, batch: int, device, temperature: float = 0.0, top_p: float = 1.0,
              min_p: float = 0.0) -> StepDecision:
        """The same settings for every row, one member, no EOS bias, no resample or abstain."""
        full = lambda v: torch.full((batch,), float(v), device=device)  # noqa: E731
        no = torch.zeros(batch, dtype=torch.bool, device=device)
        return cls(full(temperature), full(top_p), full(min_p),
                   torch.ones(batch, 1, device=device), full(0.0), no, no)


# ---- the steps ---------------------------------------------------------------------------------


def blend(logits: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Log-linear blend of members: ``sum_m w[:, m] * log_softmax(logits_m)``, (B, V). One
    member's logits pass as they are (the same distribution after every later step)."""
    if len(logits) == 1:
        return logits[0].float()
    out = None
    for m, z in enumerate(logits):
        term = torch.log_softmax(z.float(), dim=-1) * weights[:, m : m + 1]
        out = term if out is None else out + term
    return out


def add_eos_bias(scores: torch.Tensor, eos_ids: list[int], bias: torch.Tensor) -> torch.Tensor:
    """Add ``bias`` (B,) to the EOS columns."""
    if not eos_ids or not bool((bias != 0).any()):
        return scores
    out = scores.clone()
    out[:, eos_ids] += bias[:, None].to(out.dtype)
    return out


def _shift_to_max(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` minus each row's top value (the same softmax), so dividing by a tiny
    temperature or tempering huge logits cannot overflow to ``inf - inf = nan``; a row with no
    finite top value is left as it is."""
    top = scores.amax(-1, keepdim=True)
    return scores - torch.where(torch.isfinite(top), top, torch.zeros_like(top))


def apply_temperature(scores: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Divide by the per-row temperature (after shifting each row's top score to 0: the same
    distribution, no overflow); rows at temperature 0 keep only their argmax."""
    greedy = temperature <= 0
    t = torch.where(greedy, torch.ones_like(temperature), temperature).to(scores.dtype)
    out = _shift_to_max(scores) / t[:, None]
    if bool(greedy.any()):
        top = scores.argmax(-1, keepdim=True)
        only = torch.full_like(scores, NEG_INF).scatter(-1, top, 0.0)
        out = torch.where(greedy[:, None], only, out)
    return out


def apply_top_p(scores: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (B,), per row."""
    if bool((top_p >= 1).all()):
        return scores
    sorted_s, idx = scores.sort(dim=-1, descending=True)
    probs = sorted_s.softmax(-1)
    before = probs.cumsum(-1) - probs  # mass strictly above each token
    drop_sorted = (before >= top_p[:, None].to(probs.dtype)) & (top_p[:, None] < 1)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return scores.masked_fill(drop, NEG_INF)


def apply_min_p(scores: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drop tokens whose probability is below ``min_p`` (B,) times the row's top probability
    (a cut on score differences, so it is the same before or after renormalising)."""
    if not bool((min_p > 0).any()):
        return scores
    cut = scores.amax(-1, keepdim=True) + torch.log(min_p.clamp(min=1e-12))[:, None]
    return scores.masked_fill((scores < cut) & (min_p[:, None] > 0), NEG_INF)


class RepeatGuard:
    """Per row, the n-grams written so far, kept so that each step's ban is a lookup: the token
    that would complete an ``n``-gram the row has already written gets score -inf. That stops the
    loops a small model falls into ("of the balcony of the balcony ..."). ``n`` < 2 is off.
    Feed every row's new token with :meth:`push` once per step; :meth:`apply` bans."""

    def __init__(self, n: int, batch: int):
        self.n = n
        self.rows: list[list[int]] = [[] for _ in range(batch)]
        self.next: list[dict[tuple, set[int]]] = [{} for _ in range(batch)]

    def add(self, i: int, token: int) -> None:
        """Row ``i`` wrote ``token``."""
        row = self.rows[i]
        row.append(token)
        if self.n >= 2 and len(row) >= self.n:
            self.next[i].setdefault(tuple(row[-self.n:-1]), set()).add(token)

    def push(self, tokens: list[int]) -> None:
        """Every row wrote its token of this step."""
        for i, t in enumerate(tokens):
            self.add(i, t)

    def bans(self) -> list[list[int]]:
        if self.n < 2:
            return [[] for _ in self.rows]
        return [sorted(nxt.get(tuple(row[-(self.n - 1):]), ())) if len(row) >= self.n - 1
                else [] for row, nxt in zip(self.rows, self.next, strict=True)]

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` (B, V) with every row's banned tokens at -inf (a copy when any is)."""
        bans = self.bans()
        if not any(bans):
            return scores
        scores = scores.clone()
        for i, banned in enumerate(bans):
            if banned:
                scores[i, banned] = NEG_INF
        return scores


def repeat_bans(history: list[list[int]], n: int) -> list[list[int]]:
    """Per row, the tokens that would complete an ``n``-gram the row has already written
    (``history``: each row's generated tokens so far); ``n`` < 2 bans nothing."""
    guard = RepeatGuard(n, len(history))
    for i, row in enumerate(history):
        for t in row:
            guard.add(i, t)
    return guard.bans()


def process(logits: list[torch.Tensor], d: StepDecision, eos_ids: list[int]) -> torch.Tensor:
    """The whole pipeline for one step as plain steps: (M × (B, V) logits) → (B, V) scores
    whose softmax is the distribution :func:`draw` samples from."""
    s = blend(logits, d.weights)
    s = add_eos_bias(s, eos_ids, d.eos_bias)
    s = apply_temperature(s, d.temperature)
    s = apply_top_p(s, d.top_p)
    return apply_min_p(s, d.min_p)


# ---- the draw (fast path) ----------------------------------------------------------------------


def draw(scores: torch.Tensor, d: StepDecision, eos_ids: list[int],
         generators: list[torch.Generator] | None = None) -> torch.Tensor:
    """One token per row from ``softmax(process([scores], d, eos_ids))``: (B, V) → (B,).

    ``scores`` are the blended scores (one member's logits as they are). Also the finiteness
    check: NaN or +inf anywhere in a row reaches its top value, which every path reads.
    fp16/bf16 scores are drawn in fp32."""
    s = add_eos_bias(scores.float(), eos_ids, d.eos_bias)
    greedy = d.temperature <= 0
    top = s.argmax(-1)  # (B,) NaN wins an argmax, so the check below sees it
    _check_top(s.gather(-1, top[:, None]).squeeze(-1))
    if bool(greedy.all()):
        return top
    idx, probs = nucleus(s, d)
    return torch.where(greedy, top, _inverse_cdf(idx, probs, generators, ~greedy))


def nucleus(s: torch.Tensor, d: StepDecision) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept tokens of each sampled row and their probabilities: ``(idx, probs)``, each
    (B, K), probs zero outside the kept set (rows sum to 1). ``s`` already carries the EOS bias.

    The nucleus almost always lies in the top ``TOP_K_FIRST`` tokens, so take those (partial
    selection) weighed by the full softmax, and sort the whole row only when its top tokens hold
    less than ``top_p``. Greedy rows come out at temperature 1 (the caller takes their argmax)."""
    t = torch.where(d.temperature <= 0, torch.ones_like(d.temperature), d.temperature)
    s = _shift_to_max(s) / t[:, None].to(s.dtype)  # (B, V) tempered; a new tensor, top at 0
    V = s.shape[-1]
    need_p = d.top_p < 1
    if bool(need_p.any()):
        k = min(TOP_K_FIRST, V)
        vals, idx = s.topk(k, dim=-1)  # (B, k) descending
        logz = torch.logsumexp(s, -1, keepdim=True)
        probs = (vals - logz).exp()
        cum = probs.cumsum(-1)
        # a sampled row whose top-k holds less than its top-p (every row at top-p 1) needs all
        if k < V and bool(((cum[:, -1] < d.top_p) & (d.temperature > 0)).any()):
            vals, idx = s.sort(dim=-1, descending=True)
            probs = (vals - logz).exp()
            cum = probs.cumsum(-1)
        drop = ((cum - probs) >= d.top_p[:, None].to(probs.dtype)) & need_p[:, None]
        drop[:, 0] = False
    else:
        idx = torch.arange(V, device=s.device).expand(s.shape[0], V)
        vals = s
        drop = torch.zeros_like(s, dtype=torch.bool)
    if bool((d.min_p > 0).any()):
        cut = vals.amax(-1, keepdim=True) + torch.log(d.min_p.clamp(min=1e-12))[:, None]
        drop = drop | ((vals < cut) & (d.min_p[:, None] > 0))
    w = torch.softmax(vals.masked_fill(drop, NEG_INF), -1)  # (B, K) renormalised kept set
    return idx, w


def _inverse_cdf(idx: torch.Tensor, weights: torch.Tensor, generators,
                 sampled: torch.Tensor) -> torch.Tensor:
    """One token per row from the kept tokens ``idx`` (B, K) and their non-negative
    ``weights``: one uniform number from the row's own generator (when given), mapped through
    the cumulative weights **in vocabulary order**. Only ``sampled`` rows (B,) draw: a greedy
    row leaves its generator untouched, as it does alone (where an all-greedy step draws
    nothing); other rows get token 0.

    Why this way: a row draws exactly one number a step, whatever the size of its kept set
    (a full-vocabulary fallback in another row changes nothing) and whatever else is in the
    batch; and because the order is the vocabulary's, not the probabilities', float rounding
    that differs between a row batched and the row alone (~1e-5 in the logits on a CPU) moves
    each token's segment of [0, 1) only by that much instead of swapping two nearly tied
    tokens' places, so the same seed draws the same token but for a ~1e-5 chance."""
    B, dev = weights.shape[0], weights.device
    out = torch.zeros(B, dtype=torch.long, device=dev)
    rows = sampled.nonzero().flatten()
    if rows.numel() == 0:
        return out
    if generators is None:
        u = torch.rand(rows.numel(), dtype=torch.float64, device=dev)
    else:
        if len(generators) != B:
            raise ValueError(f"{len(generators)} generators for {B} rows")
        u = torch.cat([torch.rand(1, dtype=torch.float64, generator=generators[i], device=dev)
                       for i in rows.tolist()])
    ids, w = idx[rows], weights[rows].double()
    V = int(ids.max()) + 1  # the highest kept token id bounds the dense row
    dense = torch.zeros(rows.numel(), V, dtype=torch.float64, device=dev).scatter_(1, ids, w)
    cdf = dense.cumsum(-1)
    tok = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
    # u * total rounds up to total only for u within 2^-53 of 1: take the last kept token
    last = V - 1 - (dense > 0).flip(-1).int().argmax(-1)
    out[rows] = torch.where(tok < V, tok, last)
    return out


def check_finite(logits: torch.Tensor, where: str = "the model") -> None:
    """Raise when any logit is NaN or +-inf (one reduction, no copy)."""
    if not bool(torch.isfinite(logits).all()):
        bad = ~torch.isfinite(logits)
        row = int(bad.any(-1).nonzero()[0, 0])
        kinds = sorted({"nan" if torch.isnan(v) else "inf" for v in logits[row][bad[row]][:8]})
        raise NonFiniteLogitsError(
            f"{where} produced non-finite logits ({'/'.join(kinds)}) in batch row {row}; "
            "all logits must be finite. Check the weights (a corrupt or overflowing checkpoint, "
            "fp16 overflow: try dtype=torch.float32).")


def _check_top(top: torch.Tensor) -> None:
    if not bool(torch.isfinite(top).all()):
        row = int((~torch.isfinite(top)).nonzero()[0, 0])
        kind = "nan" if bool(torch.isnan(top[row])) else "inf"
        raise NonFiniteLogitsError(
            f"the model produced non-finite logits ({kind}) in batch row {row}; all logits "
            "must be finite. Check the weights (a corrupt or overflowing checkpoint, fp16 "
            "overflow: try dtype=torch.float32).")


def eos_ids_of(eos) -> list[int]:
    """EOS id(s) as a list, from an int, a list or a tensor (None: no EOS)."""
    if eos is None:
        return []
    if isinstance(eos, torch.Tensor):
        return [int(x) for x in eos.flatten().tolist()]
    if isinstance(eos, int):
        return [eos]
    return [int(x) for x in eos]


_FLAGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {key: (V,)}
_SPACE = ("Ġ", "▁", " ")  # how byte-level BPE, SentencePiece and plain vocabularies mark a space
_ENDS = (".", "!", "?", ":", ";", '"', "“", "”")


def token_flags(tokenizer, vocab: int, device, flag) -> torch.Tensor:
    """(V,) bool: ``flag(token string)`` for every id of ``tokenizer`` (False for ids past its
    vocabulary), computed once per tokenizer, vocabulary size and ``flag`` function."""
    per = _FLAGS.setdefault(tokenizer, {})
    key = (flag, vocab)
    if key not in per:
        toks = tokenizer.convert_ids_to_tokens(list(range(min(vocab, len(tokenizer)))))
        per[key] = torch.tensor([bool(flag(t or "")) for t in toks] + [False] * (vocab - len(toks)),
                                dtype=torch.bool)
    return per[key].to(device)


def _starts_capitalised(t: str) -> bool:
    return len(t) > 1 and t[0] in _SPACE and t[1].isupper()


def _capitalised(t: str) -> bool:
    t = t[1:] if t[:1] in _SPACE else t
    return t[:1].isupper()


def _continues_word(t: str) -> bool:
    return t[:1].islower()


def _ends_sentence(t: str) -> bool:
    return t.rstrip("".join(_SPACE)).endswith(_ENDS) or "\n" in t or "Ċ" in t or "<0x0A>" in t


def name_masks(tokenizer, vocab: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(V,) bool each: tokens that start a capitalised word after a space (" Paris", " The"),
    and tokens after which a sentence starts (ending in . ! ? : ; a quote, or a newline).
    Together they mark where a name is written: a capitalised word not at a sentence start."""
    return (token_flags(tokenizer, vocab, device, _starts_capitalised),
            token_flags(tokenizer, vocab, device, _ends_sentence))


def spell_masks(tokenizer, vocab: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(V,) bool each: tokens that begin with a capital letter (with or without a space before
    it: " Paris", "Joh"), and tokens that go on with a word (no space before them, a lower-case
    letter first: "ann", "oto"). Together they mark where a capitalised word, once begun, is
    being spelled out."""
    return (token_flags(tokenizer, vocab, device, _capitalised),
            token_flags(tokenizer, vocab, device, _continues_word))


def spelling_next(masks: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor,
                  prev: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(p_spell, inside)``: ``inside`` (B,) bool, the rows whose token just written, ``prev``,
    began a capitalised word or went on with one (given ``inside`` before it); ``p_spell``
    (B,) float, 1 where such a word is open and the top next token of ``logits`` (B, V) goes on
    with it (the rest of a name being spelled), else 0."""
    cap, cont = masks
    inside = cap[prev] | (inside & cont[prev])
    return (inside & cont[logits.argmax(-1)]).float(), inside


def names_next(masks: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor,
               prev: torch.Tensor) -> torch.Tensor:
    """(B,) float: 1 where the top next token of ``logits`` (B, V) starts a capitalised word and
    the token just written, ``prev`` (B,), does not end a sentence; else 0."""
    starts, ends = masks
    return (starts[logits.argmax(-1)] & ~ends[prev]).float()

