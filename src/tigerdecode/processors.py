"""Logits processing steps: blend → EOS bias → temperature → top-p / min-p, each a short pure
function that returns new scores and never writes into its input.

The same steps drive tigerdecode's own loop and :class:`ControlledLogitsProcessor`, an HF
``LogitsProcessor`` that brings the policy and the heads into plain ``model.generate``: a forward
hook on the tapped layers hands it the hidden states of the last forward pass, because HF's loop
gives processors only ``(input_ids, scores)``.
"""

from __future__ import annotations

import torch

from tigerdecode.policy import Policy, StepDecision

NEG_INF = float("-inf")


class NonFiniteLogitsError(FloatingPointError):
    """A model produced NaN or inf logits; decoding them would be silent garbage."""


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


def blend(logits: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Log-linear blend of members: ``sum_m w[:, m] * log_softmax(logits_m)``, (B, V)."""
    if len(logits) == 1:
        return torch.log_softmax(logits[0].float(), dim=-1)
    out = None
    for m, z in enumerate(logits):
        term = torch.log_softmax(z.float(), dim=-1) * weights[:, m : m + 1]
        out = term if out is None else out + term
    return out


def add_eos_bias(scores: torch.Tensor, eos_ids: list[int], bias: torch.Tensor) -> torch.Tensor:
    """Add ``bias`` (B,) to the EOS columns."""
    if not eos_ids:
        return scores
    out = scores.clone()
    out[:, eos_ids] += bias[:, None].to(out.dtype)
    return out


def apply_temperature(scores: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Divide by the per-row temperature; rows at temperature 0 keep only their argmax."""
    greedy = temperature <= 0
    t = torch.where(greedy, torch.ones_like(temperature), temperature).to(scores.dtype)
    out = scores / t[:, None]
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
    drop_sorted = before >= top_p[:, None].to(probs.dtype)
    drop_sorted[:, 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return scores.masked_fill(drop, NEG_INF)


def apply_min_p(scores: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """Drop tokens whose probability is below ``min_p`` (B,) times the row's top probability."""
    if not bool((min_p > 0).any()):
        return scores
    logp = torch.log_softmax(scores, -1)
    cut = logp.max(-1, keepdim=True).values + torch.log(min_p.clamp(min=1e-12))[:, None]
    return scores.masked_fill((logp < cut) & (min_p[:, None] > 0), NEG_INF)


def process(logits: list[torch.Tensor], d: StepDecision, eos_ids: list[int]) -> torch.Tensor:
    """The whole controlled pipeline for one step: (M × (B, V) logits) → (B, V) scores."""
    s = blend(logits, d.weights)
    s = add_eos_bias(s, eos_ids, d.eos_bias)
    s = apply_temperature(s, d.temperature)
    s = apply_top_p(s, d.top_p)
    return apply_min_p(s, d.min_p)


def sample(scores: torch.Tensor, generators: list[torch.Generator] | None) -> torch.Tensor:
    """Draw one token per row from ``softmax(scores)``: (B, V) → (B,)."""
    return _draw(scores.softmax(-1), generators)


def _draw(weights: torch.Tensor, generators) -> torch.Tensor:
    """One index per row from non-negative ``weights`` (B, V), each row from its own generator
    when given, so a row's tokens do not depend on what else is in the batch."""
    if generators is None:
        return torch.multinomial(weights, 1).squeeze(-1)
    return torch.cat([torch.multinomial(w[None], 1, generator=g).squeeze(-1)
                      for w, g in zip(weights, generators, strict=True)])


def decide_tokens(scores: torch.Tensor, d: StepDecision, eos_ids: list[int],
                  generators=None) -> torch.Tensor:
    """EOS bias, temperature, top-p/min-p and the draw, fused for the decode loop: (B, V) →
    (B,). Same distribution as ``sample(process(...))`` with fewer passes over the vocabulary
    (top-p samples straight from the sorted, truncated probabilities). Also the finiteness check:
    NaN or +inf anywhere in a row reaches its top value, which every path reads."""
    greedy = d.temperature <= 0
    if bool(greedy.all()):
        if eos_ids and bool((d.eos_bias != 0).any()):
            scores = scores.clone()
            scores[:, eos_ids] += d.eos_bias[:, None].to(scores.dtype)
        tok = scores.argmax(-1)  # (B,) NaN wins an argmax, so the check below sees it
        _check_top(scores.gather(-1, tok[:, None]).squeeze(-1))
        return tok
    t = torch.where(greedy, torch.ones_like(d.temperature), d.temperature)
    s = scores / t[:, None].to(scores.dtype)  # (B, V) a new tensor: the caller's stays intact
    if eos_ids:
        s[:, eos_ids] += (d.eos_bias / t)[:, None].to(s.dtype)
    if bool((d.min_p > 0).any()):
        s = apply_min_p(s, d.min_p)
    if bool((d.top_p < 1).any()):
        tok = _draw_top_p(s, d.top_p, generators)
    else:
        _check_top(s.amax(-1))
        tok = _draw(s.softmax(-1), generators)
    if bool(greedy.any()):
        tok = torch.where(greedy, scores.argmax(-1), tok)
    return tok


TOP_K_FIRST = 1024


def _draw_top_p(s: torch.Tensor, top_p: torch.Tensor, generators) -> torch.Tensor:
    """Nucleus draw without sorting the whole vocabulary: the nucleus almost always lies in the
    top ``TOP_K_FIRST`` tokens, so take those (partial selection), weigh them by the full
    softmax, and fall back to a full sort only for a row whose top tokens hold less than
    ``top_p``. The kept set and its distribution are exactly those of a full sort."""
    k = min(TOP_K_FIRST, s.shape[-1])
    vals, idx = s.topk(k, dim=-1)  # (B, k) descending; NaN and +inf come first
    _check_top(vals[:, 0])
    probs = (vals - torch.logsumexp(s, -1, keepdim=True)).exp_()  # (B, k) true probabilities
    cum = probs.cumsum(-1)
    if k < s.shape[-1] and bool((cum[:, -1] < top_p).any()):
        vals, idx = s.sort(dim=-1, descending=True)
        probs = vals.softmax(-1)
        cum = probs.cumsum(-1)
    drop = cum.sub_(probs) >= top_p[:, None].to(probs.dtype)  # mass strictly above each token
    drop[:, 0] = False
    return idx.gather(-1, _draw(probs.masked_fill_(drop, 0.0), generators)[:, None])[:, 0]


def _check_top(top: torch.Tensor) -> None:
    if not bool(torch.isfinite(top).all()):
        row = int((~torch.isfinite(top)).nonzero()[0, 0])
        kind = "nan" if bool(torch.isnan(top[row])) else "inf"
        raise NonFiniteLogitsError(
            f"the model produced non-finite logits ({kind}) in batch row {row}; all logits "
            "must be finite. Check the weights (a corrupt or overflowing checkpoint, fp16 "
            "overflow: try dtype=torch.float32).")


# ---- HF LogitsProcessor ------------------------------------------------------------------------


class ControlledLogitsProcessor:
    """The policy and heads inside plain ``model.generate``.

    >>> proc = ControlledLogitsProcessor(model, tok, creativity=0.2, heads=heads)
    >>> with proc:
    ...     model.generate(**inputs, logits_processor=[proc], do_sample=True,
    ...                    temperature=1.0, top_p=1.0, top_k=0)

    Use ``do_sample=True`` with HF's own warpers neutral (temperature 1, top_p 1, top_k 0): this
    processor applies the policy's temperature and top-p itself. Without ``heads`` it applies the
    schedule only. The processor returns new scores and never modifies its input.
    """

    def __init__(self, model, tokenizer=None, *, creativity: float = 0.5, heads=None,
                 policy: Policy | None = None, eos_token_id=None):
        from tigerdecode.taps import HiddenStateTap

        self.policy = policy if policy is not None else Policy(creativity)
        self.heads = heads
        if eos_token_id is None:
            eos_token_id = tokenizer.eos_token_id if tokenizer is not None else \
                model.generation_config.eos_token_id
        self.eos_ids = eos_ids_of(eos_token_id)
        self.tap = HiddenStateTap(model, heads.layers) if heads is not None else None
        self.last: dict[str, torch.Tensor] = {}

    def __enter__(self):
        if self.tap is not None:
            self.tap.attach()
        return self

    def __exit__(self, *exc):
        if self.tap is not None:
            self.tap.detach()

    def close(self):
        self.__exit__()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        check_finite(scores)
        p_stop = p_dev = None
        if self.tap is not None:
            if not self.tap._handles:
                raise RuntimeError("ControlledLogitsProcessor with heads must be used inside "
                                   "`with proc:` (that attaches the hidden-state hooks)")
            with torch.no_grad():
                p_stop, p_dev = self.heads(self.tap.last())
            p_stop, p_dev = p_stop.to(scores.device), p_dev.to(scores.device)
        d = self.policy.step(p_stop, p_dev, 1, batch=scores.shape[0], device=scores.device)
        self.last = {"p_stop": p_stop, "p_dev": p_dev, "temperature": d.temperature}
        return process([scores], d, self.eos_ids).to(scores.dtype)


def eos_ids_of(eos) -> list[int]:
    if eos is None:
        return []
    if isinstance(eos, torch.Tensor):
        return [int(x) for x in eos.flatten().tolist()]
    if isinstance(eos, int):
        return [eos]
    return [int(x) for x in eos]
