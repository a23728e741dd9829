"""The features the whole-answer judge reads, per answer.

Per answer it pools the tapped layers (mean over the answer, its end-of-sequence token included,
plus the last prompt token so an empty answer still has a state; and the last state alone), and
aggregates token-level signals now that the whole answer is written: the answer tokens'
log-probabilities, entropies and top probabilities, and the control heads' ``p_dev``/``p_stop``
(and, with heads that give them, ``p_risk`` at the answer's fact slots) when the judge was
trained with heads.

Two sources give the same numbers: the decode that wrote the answer (``decode(...,
read_layers=...)`` keeps every position's states and the model's distribution at each drawn
token, an :class:`~tigerdecode.decode.reads.AnswerRead`; :func:`features_from_reads`), which
costs nothing more, and one forward pass over prompt + finished answer (:func:`reencode`), for
answers the decode did not write (training data, answers given as text).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from tigerdecode.decode.reads import AnswerRead
from tigerdecode.decode.runner import ModelRunner, left_pad
from tigerdecode.model.taps import HiddenStateTap

LOGIT_FEATURES = ("log_len", "ended", "mean_logprob", "min_logprob", "first_logprob",
                  "mean_entropy", "max_entropy", "min_maxprob")
HEAD_FEATURES = ("max_pdev", "mean_pdev", "first_pdev", "last_pdev", "last_pstop")
# with heads that give p_slot and p_risk: the risk read before each fact slot of the answer
RISK_FEATURES = ("max_pslot", "first_slot_prisk", "max_slot_prisk")
SLOT_AT = 0.05  # p_slot from which a position counts as a fact slot (the policy's default bar)


@dataclass
class Reencoded:
    """The judge's features of B answers (from the decode's reads or a pass of its own)."""

    states: torch.Tensor  # (B, 2 * L * H) pooled states: per layer mean then last
    scalars: torch.Tensor  # (B, S) the aggregates named by ``scalar_names``
    scalar_names: list[str]
    token_risk: list[list[float]]  # per answer token (EOS excluded): p_dev, or 1 - p(token)


def strip_padding(ids: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Left-padded (B, T) ids → one list of real token ids per row."""
    return [r[m.bool()].tolist() for r, m in zip(ids, mask, strict=True)]


@dataclass
class PromptCache:
    """The prompts' KV cache minus each row's last prompt token, which the answer pass re-feeds
    (its state and logits open the answer). Rows end at ``T0``; ``mask`` says which columns
    hold each row's tokens (left padding, or a shared prefix first, then padding)."""

    cache: DynamicCache  # T0 - 1 positions
    mask: torch.Tensor  # (B, T0)
    last: torch.Tensor  # (B,) each row's last prompt token


def _crop_to(cache: DynamicCache, n: int) -> None:
    extra = cache.get_seq_length() - n
    if extra > 0:
        cache.crop(-extra)


@torch.inference_mode()
def prompt_pass(model, prompt_ids: list[list[int]], pad_id: int) -> PromptCache:
    """Encode left-padded prompts once (``ModelRunner.prefill``: a prefix all rows share, the
    chat header, is computed a single time and repeated over the batch; positions follow the
    attention mask), cut back to the prompts less their last token."""
    ids, mask = left_pad([(torch.tensor([p], dtype=torch.long),
                           torch.ones(1, len(p), dtype=torch.long)) for p in prompt_ids], pad_id)
    r = ModelRunner(model, ids, mask)
    r.prefill(share_prefix=True)
    return from_decode((r.cache, r.input_ids, r.prompt_mask), slice(0, len(prompt_ids)))


def from_decode(kept, rows: slice) -> PromptCache:
    """The decode loop's cache (``decode(..., keep_cache=True)``), cut back to the prompts."""
    cache, input_ids, prompt_mask = kept
    R = input_ids.shape[0]
    if (rows.start or 0) != 0 or rows.stop != R:
        cache.batch_select_indices(torch.arange(rows.start or 0, rows.stop,
                                                device=input_ids.device))
    _crop_to(cache, input_ids.shape[1] - 1)
    return PromptCache(cache, prompt_mask[rows], input_ids[rows, -1])


def _row_features(states: dict[int, torch.Tensor], lp: torch.Tensor, ent: torch.Tensor,
                  maxp: torch.Tensor, sig: dict | None, n: int, ended: bool, layers: list[int],
                  risky: bool):
    """One answer's (pooled states, scalars, token risks) from its positions: ``states`` {L:
    (>= a+1, H)}, ``lp``/``ent``/``maxp`` (>= a,) of the tail's tokens, ``sig`` the heads'
    outputs per position (or None); ``n`` answer tokens, ``a = n + ended`` tail tokens."""
    a = n + int(ended)
    pooled = torch.cat([torch.cat([states[x][:a + 1].float().mean(0), states[x][a].float()])
                        for x in layers])
    lp_a = lp[:a] if a else lp.new_zeros(1)
    e = ent[:a] if a else ent.new_zeros(1)
    mp = maxp[:a] if a else maxp.new_ones(1)
    feats = [torch.log1p(torch.tensor(float(n))), torch.tensor(float(ended)), lp_a.mean(),
             lp_a.min(), lp_a[0], e.mean(), e.max(), mp.min()]
    if sig is not None:  # the heads' value at token j is read from token j's own state
        pd = sig["dev"][1:n + 1] if n else sig["dev"].new_zeros(1)
        feats += [pd.max(), pd.mean(), pd[0], pd[-1], sig["stop"][a]]
        if risky:  # read before token j is drawn: position j - 1 (0 = last prompt token)
            ps = sig["slot"][:max(n, 1)].float()
            pr = sig["risk"][:max(n, 1)].float() * (ps >= SLOT_AT)
            at = (ps >= SLOT_AT).nonzero()
            feats += [ps.max(), pr[at[0, 0]] if len(at) else pr.new_zeros(()), pr.max()]
        risk = sig["dev"][1:n + 1].float().tolist()
    else:
        risk = (1 - lp_a[:n].exp()).tolist() if n else []
    return pooled, torch.stack([f.float().to(lp.device) for f in feats]), risk


def _scalar_names(heads, risky: bool) -> list[str]:
    return list(LOGIT_FEATURES) + (list(HEAD_FEATURES) if heads is not None else []) + \
        (list(RISK_FEATURES) if risky else [])


def _risky(heads) -> bool:
    return heads is not None and {"slot", "risk"} <= set(heads.config.outputs)


@torch.inference_mode()
def features_from_reads(reads: list[AnswerRead], answer_ids: list[list[int]],
                        ended: list[bool], *, layers: list[int], heads=None) -> Reencoded:
    """The judge's features of answers a decode wrote, from what it kept along the way
    (``decode(..., read_layers=...)``): the same numbers :func:`reencode` computes by reading
    them again (up to float rounding), without that pass. ``answer_ids``: each answer's tokens
    without EOS (at most the read's positions - 1; fewer when a caller cut the answer)."""
    if not (len(reads) == len(answer_ids) == len(ended)) or not reads:
        raise ValueError(f"need one read, answer and ended flag per row; got {len(reads)}, "
                         f"{len(answer_ids)}, {len(ended)}")
    risky = _risky(heads)
    pooled, scalars, risks = [], [], []
    for rd, ids, e in zip(reads, answer_ids, ended, strict=True):
        n = len(ids)
        if n + int(e) >= rd.positions:
            raise ValueError(f"an answer of {n} tokens (ended: {e}) needs {n + int(e) + 1} "
                             f"positions; its read holds {rd.positions}")
        sig = heads.signals(rd.states) if heads is not None else None
        p, s, r = _row_features(rd.states, rd.logp, rd.entropy, rd.maxprob, sig, n, e, layers,
                                risky)
        pooled.append(p)
        scalars.append(s)
        risks.append(r)
    return Reencoded(torch.stack(pooled).cpu(), torch.stack(scalars).cpu(),
                     _scalar_names(heads, risky), risks)


@torch.inference_mode()
def reencode(model, pc: PromptCache, answer_ids: list[list[int]], ended: list[bool], *,
             eos_id: int, pad_id: int, layers: list[int], heads=None) -> Reencoded:
    """One pass over ``[last prompt token | answer | EOS if it ended | right padding]`` on top
    of the prompts' cache: every answer state sees the whole prompt and its own prefix, exactly
    as a pass over prompt + answer from scratch would (causal attention)."""
    B = len(answer_ids)
    if B != len(ended) or B != pc.mask.shape[0] or not B:
        raise ValueError(f"need one answer and one ended flag per prompt; got {B} answers, "
                         f"{len(ended)} flags for {pc.mask.shape[0]} prompts")
    tails = [list(a) + ([eos_id] if e else []) for a, e in zip(answer_ids, ended, strict=True)]
    K = 1 + max(len(t) for t in tails)  # fed positions: last prompt token + longest tail
    dev = pc.mask.device
    ids = torch.full((B, K), pad_id, dtype=torch.long, device=dev)
    fmask = torch.zeros((B, K), dtype=torch.long, device=dev)
    ids[:, 0], fmask[:, 0] = pc.last, 1
    for i, t in enumerate(tails):
        if t:
            ids[i, 1:1 + len(t)] = torch.tensor(t, device=dev)
            fmask[i, 1:1 + len(t)] = 1
    mask = torch.cat([pc.mask, fmask[:, 1:]], dim=1)  # (B, T0 + K - 1)
    pos = pc.mask.sum(1, keepdim=True) - 1 + torch.arange(K, device=dev)  # (B, K)
    tap_layers = sorted(set(layers) | set(heads.layers if heads is not None else []))
    tap = HiddenStateTap(model, tap_layers).attach()
    try:
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                    past_key_values=pc.cache, use_cache=True)
        states = {x: tap.states[x] for x in tap_layers}  # {L: (B, K, H)}
    finally:
        tap.detach()
    logp = torch.log_softmax(out.logits.float(), dim=-1)  # (B, K, V): index k predicts k + 1
    ent = -(logp.exp() * logp).sum(-1)  # (B, K)
    maxp = logp.max(-1).values.exp()  # (B, K)
    risky = _risky(heads)
    sig = heads.signals(states) if heads is not None else None  # each (B, K)
    pooled, scalars, risks = [], [], []
    for i, t in enumerate(tails):
        a = len(t)
        lp = logp[i, torch.arange(a, device=dev), ids[i, 1:a + 1]]
        p, s, r = _row_features({x: v[i] for x, v in states.items()}, lp, ent[i], maxp[i],
                                None if sig is None else {k: v[i] for k, v in sig.items()},
                                len(answer_ids[i]), ended[i], layers, risky)
        pooled.append(p)
        scalars.append(s)
        risks.append(r)
    return Reencoded(torch.stack(pooled).cpu(), torch.stack(scalars).cpu(),
                     _scalar_names(heads, risky), risks)


def rewind_cache(model, src: DynamicCache, rows: list[int], masks: list[torch.Tensor],
                 keep: list[int]) -> tuple[DynamicCache, torch.Tensor]:
    """A new left-padded cache holding, for each chosen row, its first ``keep[r]`` real cached
    positions: a decode's keys/values cut to the rewind point, no recompute. ``masks[r]``
    (1-D) says which of ``src``'s columns hold source row ``rows[r]``'s tokens, whatever the
    layout (left padding, or a shared prefix, padding, then the row's own part).

    Returns the cache and its (R, W) attention mask. Positions are unchanged because both
    layouts number real tokens from the attention mask."""
    W = max(keep)
    out = DynamicCache(config=model.config)
    dev = src.layers[0].keys.device
    cols = [m.to(dev).nonzero().flatten()[:n] for m, n in zip(masks, keep, strict=True)]
    if any(len(c) < n for c, n in zip(cols, keep, strict=True)):
        raise ValueError("rewind_cache: a row keeps more positions than its mask holds")
    for li, layer in enumerate(src.layers):
        k, v = layer.keys, layer.values  # (B, heads, T, d)
        nk = k.new_zeros((len(rows), *k.shape[1:2], W, k.shape[-1]))  # (R, heads, W, d)
        nv = v.new_zeros((len(rows), *v.shape[1:2], W, v.shape[-1]))
        for r, (b, c, n) in enumerate(zip(rows, cols, keep, strict=True)):
            nk[r, :, W - n:] = k[b, :, c]
            nv[r, :, W - n:] = v[b, :, c]
        out.update(nk, nv, li)
    mask = torch.zeros((len(rows), W), dtype=torch.long)
    for r, n in enumerate(keep):
        mask[r, W - n:] = 1
    return out, mask
