"""The decode loop: KV-cached steps over left-padded rows, heads on the tapped states, a
control's decisions, undo-and-resample, stopping, streaming, seeded sampling.

Read :func:`decode` top to bottom: **prefill**, then per token **draw** → **step** (forward +
heads + decide) → **retry** (undo and redraw rows the control asks to) → **record** → **stop**.
Per step it does one forward pass per distinct model (members sharing weights are rows of one
batch), the heads on states that pass already computed, and a handful of tensor ops; the only
host syncs are the "is anything left to do" checks.

What drives the loop is a :class:`Control`: tigerdecode's policy, each baseline and the judge's
rewrite ban all implement it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from transformers import DynamicCache

from tigerdecode.decode.fast import runner_factory
from tigerdecode.decode.reads import AnswerRead
from tigerdecode.decode.runner import ModelRunner, left_pad
from tigerdecode.decode.sampling import (
    NEG_INF,
    RepeatGuard,
    StepDecision,
    blend,
    draw,
    name_masks,
    names_next,
    spell_masks,
    spelling_next,
    token_flags,
)


@dataclass
class Signals:
    """What the heads say about each row's last position (None without heads, or heads without
    that output): ``p_stop`` the answer is complete, ``p_dev`` it has left the facts, ``p_slot``
    the next token commits to a fact and ``p_risk`` that fact would be wrong (both read before
    it is drawn), ``p_factual`` the request asks for a fact (read once, at the prompt);
    ``p_name`` (no heads needed: read from member 0's logits) 1 where the top next token starts
    a capitalised word inside a sentence, else 0; ``p_spell`` (the same way) 1 where a
    capitalised word is open and the top next token goes on with it; ``p_open`` 1 at the
    answer's first token (the one that decides how it is phrased), else None. Each (B,)."""

    p_stop: torch.Tensor | None = None
    p_dev: torch.Tensor | None = None
    p_slot: torch.Tensor | None = None
    p_risk: torch.Tensor | None = None
    p_factual: torch.Tensor | None = None
    p_name: torch.Tensor | None = None
    p_spell: torch.Tensor | None = None
    p_open: torch.Tensor | None = None


@dataclass
class DecodeContext:
    """What a control may read at a step (DoLa reads the runner's tapped states)."""

    eos_ids: list[int]
    runner: ModelRunner
    rows: slice
    step: int = 0


class Control:
    """The protocol between the loop and whatever decides each step.

    ``decide`` turns the heads' signals into one :class:`StepDecision` per row; ``scores`` gives
    the scores to draw from (members blended; DoLa contrasts layers); ``observe`` sees every
    drawn token. ``tap_layers``: layers the control reads beyond the heads'. ``max_retries`` /
    ``retry``: how often and how a row flagged ``resample`` is redrawn. ``abstains``: whether a
    row flagged ``abstain`` on a content token ends as an abstention; with ``abstain_slot`` set
    and the heads giving ``p_slot``, only on a token drawn at a fact slot (``p_slot`` at least
    that) or, with ``abstain_latch``, at or after the row's first fact slot, so text that never
    reaches a fact never abstains; a row flagged ``abstain_now`` at its first fact slot ends as
    an abstention before that token is drawn. ``no_repeat_ngram`` > 1: a row never writes the
    same n-gram twice (the token that would repeat one is banned). With ``abstain_unslotted`` a
    factual request (``p_factual`` at least ``factual_at``) whose answer ends without ever
    reaching a fact slot ends as an abstention too: it never committed to the fact asked for.
    With ``abstain_logprob`` set (a number <= 0), a factual request whose answer's mean
    top-token log-probability under member 0 (at each step, the log-probability of the model's
    most likely next token in its raw logits, before the control's changes; end-of-sequence
    steps left out) ends below it abstains at its end: the model was unsure along the way. The
    most likely token's, not the drawn one's: at a higher creativity the policy draws less likely
    tokens by design, which says nothing about what the model knows.
    ``reads_names``: the loop fills ``Signals.p_name`` and ``p_spell`` (needs the tokenizer). ``policy``: the
    :class:`~tigerdecode.policy.knob.Policy` when there is one (recorded in results)."""

    name = "control"
    tap_layers: list[int] = []
    policy = None
    max_retries = 0
    abstains = False
    abstain_slot: float | None = None
    abstain_latch = False
    abstain_unslotted = False
    abstain_logprob: float | None = None
    factual_at = 0.5
    no_repeat_ngram = 0
    reads_names = False

    def decide(self, signals: Signals, batch: int, device) -> StepDecision:
        raise NotImplementedError

    def scores(self, logits: list[torch.Tensor], d: StepDecision, ctx: DecodeContext):
        return blend(logits, d.weights)

    def observe(self, tokens: torch.Tensor, ctx: DecodeContext) -> None:
        pass

    def retry(self, d: StepDecision, attempt: int) -> StepDecision:
        return d


@dataclass
class DecodeOutput:
    tokens: torch.Tensor  # (B, N) generated ids, pad after a row's end
    lengths: list[int]  # tokens per row up to and including its EOS
    stop_reasons: list[str]  # "eos" | "abstain" | "stopping_criteria" | "max_new_tokens"
    trace: dict[str, list]  # per key: B lists of per-token values
    timings: dict[str, float] = field(default_factory=dict)
    kept: tuple | None = None  # keep_cache=True: (cache, input_ids, prompt mask) of member 0
    kept_rows: slice | None = None  # member 0's rows in that cache
    p_factual: list[float] | None = None  # per row: the request asks for a fact (the heads')
    # read_layers=: per row, member 0's states and distributions along what it wrote
    reads: list[AnswerRead] | None = None


TRACE_KEYS = ("p_stop", "p_dev", "p_slot", "p_risk", "p_name", "p_spell", "logprob",
              "top_logprob", "temperature", "top_p", "weights", "retries")


def _has_alnum(t: str) -> bool:
    return any(ch.isalnum() for ch in t)


def content_mask(tokenizer, vocab: int, device) -> torch.Tensor:
    """(V,) bool: tokens with a letter or digit (where a fact can sit)."""
    return token_flags(tokenizer, vocab, device, _has_alnum)


class _Members:
    """The members' runners: one per distinct model, members sharing weights as row blocks."""

    def __init__(self, members, heads, control: Control, pad_id: int, prefix_cache,
                 new_runner=ModelRunner, read_layers=()):
        self.B, self.n, self.heads = members[0][1].shape[0], len(members), heads
        groups: dict[int, list[int]] = {}
        for m, (model, _, _) in enumerate(members):
            groups.setdefault(id(model), []).append(m)
        layers = sorted(set(heads.layers if heads is not None else []) | set(control.tap_layers)
                        | set(read_layers))
        self.runners, self.where = [], {}
        for gi, idxs in enumerate(groups.values()):
            ids, mask = left_pad([(members[m][1], members[m][2]) for m in idxs], pad_id)
            self.runners.append(new_runner(members[idxs[0]][0], ids, mask,
                                           layers if 0 in idxs else None,
                                           cache=prefix_cache if 0 in idxs else None))
            for k, m in enumerate(idxs):
                self.where[m] = (gi, slice(k * self.B, (k + 1) * self.B))
        self.r0, self.rows0 = self.runners[self.where[0][0]], self.where[0][1]
        self.p_factual = None  # read once, from the prompt's last state

    def forward(self, tokens: torch.Tensor | None = None, live: torch.Tensor | None = None,
                share_prefix: bool = False):
        """Prefill (``tokens`` None) or one step → (per-member (B, V) logits, Signals).
        ``live`` (B,) bool: the rows still decoding; runners that can drop the others from
        their batch do (their logits and signals are then zeros, which the loop never reads).
        ``share_prefix``: at the prefill, runners that can compute a prompt prefix common to
        every row once do (``ModelRunner.prefill``)."""
        outs = [self._prefill(r, share_prefix) if tokens is None else
                self._step(r, tokens, live) for r in self.runners]
        dev = outs[self.where[0][0]].device
        logits = [outs[g][s].to(dev) for g, s in (self.where[m] for m in range(self.n))]
        if self.heads is None:
            return logits, Signals()
        p = {k: v.to(dev) for k, v in self.heads.signals(self.r0.last_states(self.rows0)).items()}
        if tokens is None:
            self.p_factual = p.get("factual")
        return logits, Signals(p["stop"], p["dev"], p.get("slot"), p.get("risk"),
                               self.p_factual)

    @staticmethod
    def _prefill(r, share: bool):
        return r.prefill(share_prefix=True) if share and getattr(r, "shares_prefix", False) \
            else r.prefill()

    def _step(self, r, tokens, live):
        k = r.input_ids.shape[0] // self.B  # member blocks in this runner
        if live is None or not getattr(r, "compacts", False):
            return r.step(tokens.repeat(k))
        return r.step(tokens.repeat(k), keep=live.repeat(k))

    def undo(self) -> None:
        for r in self.runners:
            r.undo()

    def close(self) -> None:
        for r in self.runners:
            r.close()


@torch.inference_mode()
def decode(members: list[tuple], control: Control, *, max_new_tokens: int,
           eos_ids: list[int], pad_id: int, heads=None, tokenizer=None,
           min_new_tokens: int = 0, seed: int | None = None, streamer=None, on_token=None,
           stopping_criteria=None, keep_cache: bool = False,
           prefix_cache=None, fast: bool = False, new_runner=None,
           read_layers: list[int] | None = None, keep_answers: bool = False,
           row_max_new_tokens: list[int] | None = None) -> DecodeOutput:
    """Generate up to ``max_new_tokens`` for B rows (``row_max_new_tokens``: a smaller limit per
    row, where it ends as at ``max_new_tokens``).

    ``members``: one ``(model, input_ids (B, T_m), attention_mask (B, T_m))`` per ensemble
    member, factual member first (the heads read its rows). ``on_token(row, token_id, info)``
    is called for every accepted token; ``streamer`` gets HF's ``put``/``end`` calls (batch 1).
    ``keep_cache``: return member 0's KV cache, at least its prompt positions; with
    ``keep_answers`` every position each row wrote too (rows then stay in the batch to the end:
    the judge rewinds into them);
    ``prefix_cache``: a cache already holding the first positions of member 0's rows (the
    judge's rewind), so the prefix is not recomputed; the decode extends it and may drop rows
    from it, so hand over a cache that is not needed afterwards. ``fast``: run each model on a static KV
    cache with a compiled step (``decode/fast.py``; same outputs, falls back when it cannot).
    ``new_runner``: what builds each model's runner instead (``ModelRunner``'s signature; the
    llama.cpp backend passes its own). ``read_layers``: keep, per row, member 0's states at
    these layers at every position it wrote (and at the prompt's last token) and its own
    distribution at every drawn token (``DecodeOutput.reads``): what the judge reads, so it
    need not read the answer again.
    """
    t0 = time.perf_counter()
    run = _Members(members, heads, control, pad_id, prefix_cache,
                   new_runner or runner_factory(fast, max_new_tokens), read_layers or ())
    B = run.B
    # rows that finished leave the batch (unless their cache is wanted whole), and a prompt
    # prefix common to every row is prefilled once (not when the decode starts from a given
    # cache: the runner sees it is not empty)
    compact = B > 1 and not (keep_cache and keep_answers)
    ctx = DecodeContext(eos_ids, run.r0, run.rows0)
    toks, rec = [], {k: [] for k in TRACE_KEYS}
    try:
        # ---- prefill ----
        if streamer is not None:
            streamer.put(members[0][1].cpu())
        logits, sig = run.forward(share_prefix=B > 1)
        t_prefill = time.perf_counter() - t0
        reads = _Reads(read_layers, run) if read_layers else None
        # what keep_cache hands on is the prompts' cache, every row: keep references to its
        # tensors before rows leave the batch (the cache grows into new tensors, so these stay)
        prompt_kv = ([(layer.keys, layer.values) for layer in run.r0.cache.layers]
                     if keep_cache and compact and getattr(run.r0, "compacts", False) else None)
        dev = logits[0].device
        names = (name_masks(tokenizer, logits[0].shape[-1], dev),
                 spell_masks(tokenizer, logits[0].shape[-1], dev)) if (
            control.reads_names and tokenizer is not None) else None
        # rows whose last written token began or went on with a capitalised word: before the
        # step's token (``was``), and with it (``now``, kept once no retry replaces the token)
        spelling = {"was": torch.zeros(B, dtype=torch.bool, device=dev)}
        if names is not None:  # the first token starts a sentence and no word is open
            sig.p_name = sig.p_spell = torch.zeros(B, device=dev)
        if prefix_cache is None:  # the first token of the answer (not of a judge's rewrite)
            sig.p_open = torch.ones(B, device=dev)

        def name_signal(logits, sig, tok):
            if names is not None:
                sig.p_name = names_next(names[0], logits[0], tok)
                sig.p_spell, spelling["now"] = spelling_next(names[1], logits[0], tok,
                                                             spelling["was"])
            return logits, sig
        gens = None if seed is None else [
            torch.Generator(device=dev).manual_seed(seed + i) for i in range(B)]
        content = content_mask(tokenizer, logits[0].shape[-1], dev) if (
            control.abstains and tokenizer is not None) else None
        eos_t = torch.tensor(eos_ids or [-1], device=dev)
        finished, abstained, stopped, hit_eos, past_slot = (
            torch.zeros(B, dtype=torch.bool, device=dev) for _ in range(5))
        lengths = torch.zeros(B, dtype=torch.long, device=dev)
        row_limit = None if row_max_new_tokens is None else torch.as_tensor(
            row_max_new_tokens, dtype=torch.long, device=dev).clamp(min=1)
        slot_seen = False
        # the answer's summed top-token log-probability under member 0, for abstain_logprob
        lp_sum, lp_n = torch.zeros(B, device=dev), torch.zeros(B, device=dev)
        guard = RepeatGuard(control.no_repeat_ngram, B) if control.no_repeat_ngram > 1 else None
        d, sig_d = control.decide(sig, B, dev), sig  # sig_d: the signals d was decided from

        def pick(logits, dec: StepDecision, step: int, idle: torch.Tensor) -> torch.Tensor:
            """Draw the next tokens; ``idle`` rows (ended, or not redrawn) draw nothing: they
            leave their generator as it is and take the argmax, which the caller discards."""
            s = control.scores(logits, dec, ctx)
            if step < min_new_tokens and eos_ids:
                s = s.clone()
                s[:, eos_ids] = NEG_INF
            if guard is not None:
                s = guard.apply(s)
            if bool(idle.any()):
                dec = replace(dec, temperature=dec.temperature.masked_fill(idle, 0.0))
            return draw(s, dec, eos_ids, gens)

        for t in range(max_new_tokens):
            ctx.step = t
            # ---- draw (or abstain before drawing: a fact slot whose fact is likely wrong) ----
            at_slot = None
            if sig_d.p_slot is not None and control.abstain_slot is not None:
                at_slot = sig_d.p_slot >= control.abstain_slot  # this token decides a fact
                slot_seen = True
            if d.abstain_now is not None and control.abstains:
                early = d.abstain_now & ~finished & ~past_slot  # at the row's first fact slot
                abstained |= early
                finished = finished | early
            drawn_from = logits
            tok = torch.where(finished, pad_id, pick(logits, d, t, finished))
            retries = torch.zeros(B, dtype=torch.long, device=dev)
            # the last token's forward feeds nothing more; the heads and reads still want it
            last = t == max_new_tokens - 1 and heads is None and reads is None
            if not last:
                # ---- step: feed the token, read the heads, decide the next draw ----
                live = ~finished if compact else None
                prev, (logits, sig) = logits, name_signal(*run.forward(tok, live), tok)
                nd = control.decide(sig, B, dev)
                # ---- retry: undo and redraw the rows the control flags ----
                for attempt in range(1, control.max_retries + 1):
                    redo = nd.resample & ~finished
                    if not bool(redo.any()):
                        break
                    run.undo()
                    tok = torch.where(redo, pick(prev, control.retry(d, attempt), t, ~redo), tok)
                    retries += redo.long()
                    logits, sig = name_signal(*run.forward(tok, live), tok)
                    nd = control.decide(sig, B, dev)
                if content is not None:
                    gate = content[tok]
                    if at_slot is not None:
                        gate = gate & ((at_slot | past_slot) if control.abstain_latch else at_slot)
                    abstained |= nd.abstain & gate & ~finished
            if at_slot is not None:
                past_slot |= at_slot & ~finished
            # under member 0's own logits: the drawn token's log-probability, and that of the
            # most likely token (the model's confidence, whatever the policy drew)
            logp = torch.log_softmax(drawn_from[0].float(), -1)
            lp = logp.gather(1, tok.clamp(0, logp.shape[-1] - 1)[:, None])[:, 0]
            top_lp = logp.max(-1).values
            is_eos = torch.isin(tok, eos_t)
            live = ~finished & ~is_eos
            lp_sum += torch.where(live, top_lp, 0.0)
            lp_n += live.float()
            if reads is not None:
                reads.add(logp, lp, top_lp)
            # ---- record ----
            toks.append(tok)
            if guard is not None:
                guard.push(tok.tolist())
            for k, v in (("p_stop", sig.p_stop), ("p_dev", sig.p_dev), ("p_slot", sig_d.p_slot),
                         ("p_risk", sig_d.p_risk), ("p_name", sig_d.p_name),
                         ("p_spell", sig_d.p_spell), ("logprob", lp),
                         ("top_logprob", top_lp),
                         ("temperature", d.temperature),
                         ("top_p", d.top_p),
                         ("weights", d.weights), ("retries", retries)):
                rec[k].append(v)
            if streamer is not None and not bool(finished[0]):
                streamer.put(tok[:1].cpu())
            if on_token is not None:
                for i in (~finished).nonzero().flatten().tolist():
                    on_token(i, int(tok[i]), {
                        "p_stop": None if sig.p_stop is None else float(sig.p_stop[i]),
                        "p_dev": None if sig.p_dev is None else float(sig.p_dev[i])})
            control.observe(tok, ctx)
            # ---- stop ----
            lengths += (~finished).long()
            hit_eos |= is_eos & ~finished
            finished = finished | hit_eos | abstained
            if row_limit is not None:  # a row at its own limit ends as at max_new_tokens
                finished = finished | (lengths >= row_limit)
            if stopping_criteria is not None:
                so_far = torch.cat([members[0][1].to(dev), torch.stack(toks, 1)], 1)
                hit = torch.as_tensor(stopping_criteria(so_far, None), device=dev)
                hit = hit.expand(B) & ~finished
                stopped |= hit
                finished |= hit
            if bool(finished.all()):
                break
            if not last:
                d, sig_d = nd, sig
                spelling["was"] = spelling.get("now", spelling["was"])
    finally:
        run.close()
        if streamer is not None:
            streamer.end()
    if (control.abstains and control.abstain_unslotted and slot_seen
            and run.p_factual is not None):
        # a factual request answered without a fact slot: it never committed to the fact
        factual = run.p_factual.to(dev) >= control.factual_at
        abstained |= factual & ~past_slot & ~stopped
    if control.abstains and control.abstain_logprob is not None and run.p_factual is not None:
        # a factual answer the model was unsure along, on average
        factual = run.p_factual.to(dev) >= control.factual_at
        unsure = (lp_n > 0) & (lp_sum / lp_n.clamp(min=1) < control.abstain_logprob)
        abstained |= factual & unsure & ~stopped
    out = _collect(toks, rec, lengths, hit_eos, abstained, stopped, B, t0, t_prefill)
    if reads is not None:
        out.reads = reads.rows(out.lengths)
    if run.p_factual is not None:
        out.p_factual = run.p_factual.float().cpu().tolist()
    if keep_cache:
        cache = run.r0.cache if prompt_kv is None else _cache_of(prompt_kv, members[0][0])
        out.kept, out.kept_rows = (cache, run.r0.input_ids, run.r0.prompt_mask), run.rows0
    return out


class _Reads:
    """Member 0's states and next-token distributions at every position, kept during the
    decode for :class:`~tigerdecode.decode.reads.AnswerRead` (see ``decode(read_layers=)``).
    The state of a token is read from the forward that feeds it, so it is taken at the next
    :meth:`add` (after any retry: the token that stays), the prompt's last one at the start."""

    def __init__(self, layers: list[int], run: _Members):
        self.layers, self.run = sorted(set(layers)), run
        self.states = [self._now()]  # per position: (B, L*H)
        self.lp, self.ent, self.maxp = [], [], []

    def _now(self) -> torch.Tensor:
        st = self.run.r0.last_states(self.run.rows0)
        return torch.cat([st[x].float() for x in self.layers], dim=-1)

    def add(self, logp: torch.Tensor, lp: torch.Tensor, top_lp: torch.Tensor) -> None:
        """One drawn token per row: ``logp`` (B, V) member 0's log-distribution it was drawn
        under, ``lp`` its log-probability there, ``top_lp`` the top one's; the state it was fed
        into comes from the runner (the step already ran, unless it was the decode's last)."""
        self.lp.append(lp.float())
        self.ent.append(-(logp.exp() * logp).sum(-1))  # as the judge's own pass computes it
        self.maxp.append(top_lp.exp())
        self.states.append(self._now())

    def rows(self, lengths: list[int]) -> list[AnswerRead]:
        S = torch.stack(self.states, 1)  # (B, N + 1, L*H)
        cols = [torch.stack(v, 1) if v else S.new_zeros(S.shape[0], 0)
                for v in (self.lp, self.ent, self.maxp)]
        H = S.shape[-1] // len(self.layers)
        out = []
        for i, n in enumerate(lengths):
            st = S[i, :n + 1]
            out.append(AnswerRead({x: st[:, k * H:(k + 1) * H] for k, x in enumerate(self.layers)},
                                  *(c[i, :n] for c in cols)))
        return out


def _cache_of(layers, model) -> DynamicCache:
    """A cache holding these per-layer (keys, values)."""
    cache = DynamicCache(config=model.config)
    for i, (k, v) in enumerate(layers):
        cache.update(k, v, i)
    return cache


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
