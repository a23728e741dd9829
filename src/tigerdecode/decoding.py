"""The decode loop: KV-cached steps over left-padded rows, heads on the tapped states, the
policy's decisions, undo-and-resample, stopping, streaming, seeded sampling.

Read it top to bottom in :func:`decode`. Per step it does one forward pass per distinct model
(members sharing weights are rows of one batch), the heads on states that pass already computed,
and a handful of tensor ops; the only host syncs are the "is anything left to do" checks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from tigerdecode.policy import Policy, StepDecision
from tigerdecode.processors import NEG_INF, blend, decide_tokens
from tigerdecode.runner import ModelRunner, left_pad


class PolicyControl:
    """The controlled method: the policy's decisions and the processor pipeline."""

    name = "tigerdecode"
    tap_layers: list[int] = []

    def __init__(self, policy: Policy, n_members: int):
        self.policy, self.n_members = policy, n_members

    def decide(self, p_stop, p_dev, batch, device) -> StepDecision:
        return self.policy.step(p_stop, p_dev, self.n_members, batch=batch, device=device)

    def scores(self, logits, d: StepDecision, ctx) -> torch.Tensor:
        """Members blended in log-prob space; one member's logits as they are (the same
        distribution after temperature and truncation, one pass fewer)."""
        return logits[0].float() if len(logits) == 1 else blend(logits, d.weights)

    def observe(self, tokens: torch.Tensor, ctx) -> None:
        pass


@dataclass
class DecodeContext:
    """What a control may read at a step (DoLa reads the runner's tapped states)."""

    eos_ids: list[int]
    runner: ModelRunner
    rows: slice
    step: int = 0


@dataclass
class DecodeOutput:
    tokens: torch.Tensor  # (B, N) generated ids, pad after a row's end
    lengths: list[int]  # tokens per row up to and including its EOS
    stop_reasons: list[str]
    trace: dict[str, list]  # per key: B lists of per-token values
    timings: dict[str, float] = field(default_factory=dict)
    kept: tuple | None = None  # keep_cache=True: (cache, input_ids, prompt mask) of member 0
    kept_rows: slice | None = None  # member 0's rows in that cache


def _content_mask(tokenizer, vocab: int, device) -> torch.Tensor:
    """(V,) bool: tokens with a letter or digit (where a fact can sit)."""
    cached = getattr(tokenizer, "_tigerdecode_content", None)
    if cached is None or cached.shape[0] != vocab:
        toks = tokenizer.convert_ids_to_tokens(list(range(min(vocab, len(tokenizer)))))
        flags = [any(ch.isalnum() for ch in (t or "")) for t in toks]
        cached = torch.tensor(flags + [False] * (vocab - len(flags)), dtype=torch.bool)
        tokenizer._tigerdecode_content = cached
    return cached.to(device)


@torch.inference_mode()
def decode(members: list[tuple], control, *, max_new_tokens: int, eos_ids: list[int],
           pad_id: int, heads=None, tokenizer=None, min_new_tokens: int = 0,
           seed: int | None = None, streamer=None, on_token=None,
           stopping_criteria=None, keep_cache: bool = False,
           prefix_cache=None) -> DecodeOutput:
    """Generate up to ``max_new_tokens`` for B rows.

    ``members``: one ``(model, input_ids (B, T_m), attention_mask (B, T_m))`` per ensemble
    member, factual member first (the heads read its rows). ``on_token(row, token_id, info)``
    is called for every accepted token; ``streamer`` gets HF's ``put``/``end`` calls (batch 1).
    ``keep_cache``: return member 0's KV cache (the judge reads the answer on top of it);
    ``prefix_cache``: a cache already holding the first positions of member 0's rows (the
    judge's rewind), so the prefix is not recomputed.
    """
    t0 = time.perf_counter()
    B = members[0][1].shape[0]
    policy = getattr(control, "policy", None)
    # group members by model identity: shared weights → one runner, members as row blocks
    groups: dict[int, list[int]] = {}
    for m, (model, _, _) in enumerate(members):
        groups.setdefault(id(model), []).append(m)
    layers = sorted(set(heads.layers if heads is not None else []) | set(control.tap_layers))
    runners, where = [], {}
    for gi, idxs in enumerate(groups.values()):
        ids, mask = left_pad([(members[m][1], members[m][2]) for m in idxs], pad_id)
        tap = layers if 0 in idxs else None
        runners.append(ModelRunner(members[idxs[0]][0], ids, mask, tap,
                                   cache=prefix_cache if 0 in idxs else None))
        for k, m in enumerate(idxs):
            where[m] = (gi, slice(k * B, (k + 1) * B))
    r0, rows0 = runners[where[0][0]], where[0][1]
    ctx = DecodeContext(eos_ids, r0, rows0)

    def split(outs):  # per-runner (R, V) → per-member (B, V), on member 0's device
        dev = outs[where[0][0]].device
        return [outs[g][s].to(dev) for g, s in (where[m] for m in range(len(members)))]

    def forward(tokens=None):
        outs = [r.prefill() if tokens is None else r.step(tokens.repeat(r.cache_rows // B))
                for r in runners]
        logits = split(outs)  # finiteness is checked where tokens are drawn (decide_tokens)
        hp = heads(r0.last_states(rows0)) if heads is not None else (None, None)
        return logits, [None if p is None else p.to(logits[0].device) for p in hp]

    try:
        for r in runners:
            r.cache_rows = r.input_ids.shape[0]
        if streamer is not None:
            streamer.put(members[0][1].cpu())
        logits, (p_stop, p_dev) = forward()
        t_prefill = time.perf_counter() - t0
        dev = logits[0].device
        gens = None
        if seed is not None:
            gens = [torch.Generator(device=dev).manual_seed(seed + i) for i in range(B)]
        content = _content_mask(tokenizer, logits[0].shape[-1], dev) if (
            policy is not None and policy.abstains and tokenizer is not None) else None
        eos_t = torch.tensor(eos_ids or [-1], device=dev)
        finished = torch.zeros(B, dtype=torch.bool, device=dev)
        abstained = torch.zeros(B, dtype=torch.bool, device=dev)
        stopped = torch.zeros(B, dtype=torch.bool, device=dev)
        hit_eos = torch.zeros(B, dtype=torch.bool, device=dev)
        lengths = torch.zeros(B, dtype=torch.long, device=dev)
        toks, rec = [], {k: [] for k in ("p_stop", "p_dev", "temperature", "top_p", "weights",
                                          "retries")}
        d = control.decide(p_stop, p_dev, B, dev)

        def pick(dec: StepDecision, step: int) -> torch.Tensor:
            s = control.scores(logits, dec, ctx)
            if step < min_new_tokens and eos_ids:
                s = s.clone()
                s[:, eos_ids] = NEG_INF
            return decide_tokens(s, dec, eos_ids, gens)

        for t in range(max_new_tokens):
            ctx.step = t
            tok = torch.where(finished, pad_id, pick(d, t))
            last = t == max_new_tokens - 1 and heads is None
            prev_logits = logits
            retries = torch.zeros(B, dtype=torch.long, device=dev)
            if not last:
                logits, (p_stop, p_dev) = forward(tok)
                nd = control.decide(p_stop, p_dev, B, dev)
                for attempt in range(1, (policy.max_retries if policy else 0) + 1):
                    redo = nd.resample & ~finished
                    if not bool(redo.any()):
                        break
                    for r in runners:
                        r.undo()
                    logits, cur = prev_logits, logits
                    alt = pick(policy.retry(d, attempt), t)
                    tok = torch.where(redo, alt, tok)
                    retries += redo.long()
                    logits, (p_stop, p_dev) = forward(tok)
                    nd = control.decide(p_stop, p_dev, B, dev)
                    del cur
                if content is not None:
                    newly = nd.abstain & content[tok] & ~finished
                    abstained |= newly
            toks.append(tok)
            for k, v in (("p_stop", p_stop), ("p_dev", p_dev), ("temperature", d.temperature),
                         ("top_p", d.top_p), ("weights", d.weights), ("retries", retries)):
                rec[k].append(v)
            if streamer is not None and not bool(finished[0]):
                streamer.put(tok[:1].cpu())
            if on_token is not None:
                for i in (~finished).nonzero().flatten().tolist():
                    on_token(i, int(tok[i]), {"p_stop": None if p_stop is None else
                                              float(p_stop[i]), "p_dev": None if p_dev is None
                                              else float(p_dev[i])})
            control.observe(tok, ctx)
            lengths += (~finished).long()
            hit_eos |= torch.isin(tok, eos_t) & ~finished
            finished = finished | hit_eos | abstained
            if stopping_criteria is not None:
                so_far = torch.cat([members[0][1].to(dev), torch.stack(toks, 1)], 1)
                hit = stopping_criteria(so_far, None)
                hit = torch.as_tensor(hit, device=dev).expand(B) & ~finished
                stopped |= hit
                finished |= hit
            if bool(finished.all()):
                break
            d = nd if not last else d
    finally:
        for r in runners:
            r.close()
        if streamer is not None:
            streamer.end()
    out = _collect(toks, rec, lengths, hit_eos, abstained, stopped, B, t0, t_prefill)
    if keep_cache:
        out.kept, out.kept_rows = (r0.cache, r0.input_ids, r0.prompt_mask), rows0
    return out


def _collect(toks, rec, lengths, hit_eos, abstained, stopped, B, t0, t_prefill) -> DecodeOutput:
    tokens = torch.stack(toks, 1)  # (B, N)
    lengths = lengths.tolist()
    trace = {}
    for k, vals in rec.items():
        if not vals or vals[0] is None:
            trace[k] = [None] * B
            continue
        stacked = torch.stack(vals, 1).float().cpu().tolist()  # (B, N[, M])
        trace[k] = [row[:n] for row, n in zip(stacked, lengths, strict=True)]
    reasons = []
    for i in range(B):
        if bool(abstained[i]):
            reasons.append("abstain")
        elif bool(hit_eos[i]):
            reasons.append("eos")
        elif bool(stopped[i]):
            reasons.append("stopping_criteria")
        else:
            reasons.append("max_new_tokens")
    total = time.perf_counter() - t0
    n_new = sum(lengths)
    timings = {"prefill_s": t_prefill, "decode_s": total - t_prefill, "total_s": total,
               "new_tokens": float(n_new), "tokens_per_s": n_new / max(total, 1e-9)}
    return DecodeOutput(tokens, lengths, reasons, trace, timings)
