"""Baselines in the same API as controlled decoding, for side-by-side evaluation.

Each is a *control* for :func:`tigerdecode.decode.loop.decode` (single member, no policy): greedy,
temperature, top-p, min-p, factual-nucleus sampling (Lee et al. 2022) and DoLa (Chuang et al.
2024). Heads, when loaded, still observe every token (their p_stop/p_dev land in the trace) but
do not steer.
"""

from __future__ import annotations

import math

import torch

from tigerdecode.decode.loop import Control, Signals
from tigerdecode.decode.sampling import StepDecision

METHODS = ("greedy", "temperature", "top_p", "min_p", "factual_nucleus", "dola")


def _check(name, v, lo, hi, lo_open=False):
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and (
        lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        raise ValueError(f"{name} must lie in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")
    return float(v)


class Baseline(Control):
    """Fixed temperature / top-p / min-p for every row and step."""

    def __init__(self, name: str, temperature: float = 1.0, top_p: float = 1.0,
                 min_p: float = 0.0):
        self.name = name
        self.temperature = _check("temperature", temperature, 0.0, 10.0)
        self.top_p = _check("top_p", top_p, 0.0, 1.0, lo_open=True)
        self.min_p = _check("min_p", min_p, 0.0, 1.0)

    def decide(self, signals: Signals, batch: int, device) -> StepDecision:
        d = StepDecision.fixed(batch, device, self.temperature, min_p=self.min_p)
        d.top_p = self.row_top_p(batch, device)
        return d

    def row_top_p(self, batch, device) -> torch.Tensor:
        return torch.full((batch,), self.top_p, device=device)

    def scores(self, logits, d: StepDecision, ctx) -> torch.Tensor:
        """Scores before temperature and truncation (the loop's ``draw`` applies those from
        the decision)."""
        return self.raw_scores(logits[0], ctx).float()

    def raw_scores(self, logits: torch.Tensor, ctx) -> torch.Tensor:
        return logits



class FactualNucleus(Baseline):
    """Top-p that decays within a sentence and resets at its start (Lee et al. 2022):
    ``p_t = max(omega, p * lambda ** k)``, k = tokens since the sentence began."""

    def __init__(self, temperature=1.0, top_p=0.9, decay=0.9, floor=0.3, tokenizer=None):
        super().__init__("factual_nucleus", temperature, top_p)
        self.decay = _check("decay", decay, 0.0, 1.0, lo_open=True)
        self.floor = _check("floor (omega)", floor, 0.0, 1.0, lo_open=True)
        if tokenizer is None:
            raise ValueError("factual_nucleus needs the tokenizer to find sentence ends")
        self.tokenizer = tokenizer
        self.since = None  # (B,) tokens since the current sentence began
        self._ends = None

    def _sentence_ends(self, vocab, device):
        if self._ends is None or self._ends.shape[0] != vocab:
            toks = self.tokenizer.convert_ids_to_tokens(list(range(min(vocab, len(self.tokenizer)))))
            ends = [any(c in (t or "") for c in ".!?\n") or "Ċ" in (t or "") for t in toks]
            self._ends = torch.tensor(ends + [False] * (vocab - len(ends)), device=device)
        return self._ends

    def row_top_p(self, batch, device):
        if self.since is None:
            self.since = torch.zeros(batch, device=device)
        return (self.top_p * self.decay ** self.since).clamp(min=self.floor)

    def scores(self, logits, d, ctx):
        self._sentence_ends(logits[0].shape[-1], logits[0].device)
        return super().scores(logits, d, ctx)

    def observe(self, tokens, ctx):
        ends = self._ends[tokens]
        self.since = torch.where(ends, torch.zeros_like(self.since), self.since + 1)


class DoLa(Baseline):
    """Decoding by contrasting layers (Chuang et al. 2024), implemented here because
    transformers no longer ships it offline.

    The premature layer is chosen per step and row among ``candidates`` as the one whose
    early-exit distribution (final norm + LM head on its hidden state) is furthest from the final
    one by Jensen-Shannon divergence; scores are ``log p_final - log p_premature`` over tokens with
    ``p_final >= alpha * max p_final`` (the adaptive plausibility constraint), then a repetition
    penalty as in the paper's setup. Greedy by default."""

    def __init__(self, model, layers: str | list[int] = "high", alpha: float = 0.1,
                 repetition_penalty: float = 1.2, temperature: float = 0.0):
        from tigerdecode.model.taps import num_layers

        super().__init__("dola", temperature)
        n = num_layers(model)
        if layers == "low":
            layers = list(range(2, n // 2 + 1, 2))
        elif layers == "high":
            layers = list(range(n // 2 + (n // 2) % 2, n, 2))
        if not layers or any(not 1 <= x < n for x in layers):
            raise ValueError(f"DoLa candidate layers must lie in [1, {n - 1}] for this {n}-layer "
                             f"model, got {layers}")
        self.tap_layers = list(layers)
        self.alpha = _check("alpha", alpha, 0.0, 1.0)
        self.penalty = _check("repetition_penalty", repetition_penalty, 1.0, 10.0)
        self.norm = final_norm(model)
        self.head = model.get_output_embeddings()
        self.seen = None

    def raw_scores(self, logits, ctx):
        final = torch.log_softmax(logits.float(), -1)  # (B, V)
        states = ctx.runner.last_states(ctx.rows)
        early = torch.stack([torch.log_softmax(self.head(self.norm(states[x].to(
            self.head.weight.device))).float().to(final.device), -1) for x in self.tap_layers],
            1)  # (B, L, V)
        pf, pe = final.exp()[:, None], early.exp()
        mid = 0.5 * (pf + pe)
        jsd = 0.5 * (pf * (final[:, None] - mid.log())).sum(-1) + \
            0.5 * (pe * (early - mid.log())).sum(-1)  # (B, L)
        best = jsd.argmax(1)
        prem = early[torch.arange(final.shape[0]), best]  # (B, V)
        s = final - prem
        keep = final >= final.max(-1, keepdim=True).values + math.log(self.alpha)
        s = s.masked_fill(~keep, float("-inf"))
        if self.seen is not None and self.penalty != 1.0:
            pen = torch.where(s > 0, s / self.penalty, s * self.penalty)
            s = torch.where(self.seen & keep, pen, s)
        return s

    def observe(self, tokens, ctx):
        if self.seen is None:
            self.seen = torch.zeros(tokens.shape[0], self.head.weight.shape[0], dtype=torch.bool,
                                    device=tokens.device)
        self.seen = self.seen.clone()
        self.seen[torch.arange(tokens.shape[0]), tokens] = True


def final_norm(model):
    for path in ("model.norm", "transformer.ln_f", "model.decoder.final_layer_norm",
                 "gpt_neox.final_layer_norm", "model.language_model.norm"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if obj is not None:
            return obj
    raise ValueError(f"DoLa cannot find the final norm of {type(model).__name__}")


def make_baseline(method: str, *, model=None, tokenizer=None, **kw) -> Baseline:
    """A baseline control by name with its settings (``temperature=``, ``top_p=``, ...)."""
    simple = {"greedy": {}, "temperature": {"temperature": 1.0},
              "top_p": {"temperature": 1.0, "top_p": 0.9},
              "min_p": {"temperature": 1.0, "min_p": 0.1}}
    if method in simple:
        extra = sorted(set(kw) - set(simple[method]))
        if extra:
            raise ValueError(f"method {method!r} takes {sorted(simple[method]) or 'no settings'};"
                             f" got unexpected {extra}")
        args = {**simple[method], **kw}
        if method == "greedy":
            args["temperature"] = 0.0
        return Baseline(method, **args)
    if method == "factual_nucleus":
        return FactualNucleus(tokenizer=tokenizer, **kw)
    if method == "dola":
        return DoLa(model, **kw)
    raise ValueError(f"unknown method {method!r}; choose 'tigerdecode' or one of {METHODS}")
