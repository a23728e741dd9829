"""Sampling the model's own answers, batched, while recording what the heads and baselines read.

One ``model.generate`` call per batch and decoding setting. Forward hooks record, at every
decode step, the chosen layers' hidden state at the last input position (the state a control
head sees at run time) and the training-free signals of the step's raw (untempered)
next-token distribution: max softmax probability, entropy, the chosen token's log-prob, and the
probability of end-of-sequence right after each token (the stop baseline).
Step ``k >= 1`` feeds generated token ``k-1``, so its recorded state is that token's state; the
final token of a row cut at ``max_new_tokens`` is never fed back and is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tigerdecode.model.load import text_config
from tigerdecode.model.prompting import context_window, encode_prompts
from tigerdecode.model.taps import final_layer, tap_module


@dataclass(frozen=True)
class Setting:
    """One decoding setting: greedy when ``temperature == 0``."""

    name: str
    temperature: float = 0.0
    top_p: float = 1.0


DEFAULT_SETTINGS = (Setting("greedy"), Setting("t0.7-p0.9", 0.7, 0.9),
                    Setting("t1.0-p0.95", 1.0, 0.95))


def parse_settings(spec: str) -> tuple[Setting, ...]:
    """``"greedy,0.7:0.9,1.0"`` -> settings (temperature[:top_p]; ``greedy`` = temperature 0)."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part == "greedy":
            out.append(Setting("greedy"))
            continue
        try:
            t, _, p = part.partition(":")
            temp, top_p = float(t), float(p) if p else 1.0
        except ValueError:
            raise ValueError(f"bad decoding setting {part!r}; use 'greedy' or "
                             "TEMPERATURE[:TOP_P], e.g. 'greedy,0.7:0.9,1.0'") from None
        if not (0 < temp <= 5 and 0 < top_p <= 1):
            raise ValueError(f"setting {part!r}: temperature must be in (0, 5], top_p in (0, 1]")
        out.append(Setting(f"t{temp:g}-p{top_p:g}", temp, top_p))
    if not out:
        raise ValueError("no decoding settings given")
    return tuple(out)


class StepRecorder:
    """Forward hooks that keep, per decode step, the tapped states and the raw-logit signals."""

    def __init__(self, model, layers: list[int]):
        self.model, self.layers = model, layers
        self.states: dict[int, list[torch.Tensor]] = {x: [] for x in layers}
        self.maxprob: list[torch.Tensor] = []
        self.entropy: list[torch.Tensor] = []
        self.logprob: list[torch.Tensor] = []  # log-prob of the token fed at the next step
        self.eos_prob: list[torch.Tensor] = []
        self.eos_id = None
        self._prev_logp: torch.Tensor | None = None
        self._handles = []

    def __enter__(self) -> StepRecorder:
        for x in self.layers:
            self._handles.append(tap_module(self.model, x).register_forward_hook(
                self._block_hook(x)))
        self._handles.append(self.model.get_output_embeddings().register_forward_hook(self._lm))
        self._handles.append(self.model.register_forward_pre_hook(self._pre, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()

    def _block_hook(self, layer: int):
        def fn(_m, _i, out):
            h = out[0] if isinstance(out, tuple) else out
            self.states[layer].append(h[:, -1].detach().to("cpu", torch.float16))  # (B, H)
        return fn

    def _lm(self, _m, _i, logits):
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (B, V)
        p = logp.exp()
        self.maxprob.append(p.max(dim=-1).values.cpu())
        self.entropy.append(-(p * logp).sum(dim=-1).cpu())
        if self.eos_id is not None:
            self.eos_prob.append(p[:, self.eos_id].cpu())
        self._prev_logp = logp

    def _pre(self, _m, _args, kwargs):
        ids = kwargs.get("input_ids")
        if self._prev_logp is not None and ids is not None:
            self.logprob.append(self._prev_logp.gather(1, ids[:, -1:].to(
                self._prev_logp.device)).squeeze(1).cpu())

    def finish(self, last_tokens: torch.Tensor) -> None:
        """Gather the log-prob of the final step's token (never fed back)."""
        if self._prev_logp is not None:
            self.logprob.append(self._prev_logp.gather(
                1, last_tokens[:, None].to(self._prev_logp.device)).squeeze(1).cpu())


@torch.inference_mode()
def sample_answers(model, tokenizer, prompts: list[str], layers: list[int], setting: Setting,
                   max_new_tokens: int, seed: int) -> list[dict]:
    """Answer ``prompts`` (already formatted) with one setting; per answer: token ids, states
    ``{layer: (n, H)}`` fp16 and baseline signals ``(n,)`` for its ``n`` kept tokens, plus the
    prompt's last state ``{layer: (H,)}`` and the first token's max prob / entropy."""
    top = final_layer(model)
    if any(not 1 <= x <= top for x in layers):
        raise ValueError(f"layers {layers} out of range for this {top - 1}-layer model "
                         f"(1..{top - 1}: block outputs, {top}: the final normed state)")
    device = next(model.parameters()).device
    window = context_window(model)
    enc = encode_prompts(tokenizer, prompts, max_length=None if window is None
                         else window - max_new_tokens, device=device)
    kwargs = {"do_sample": setting.temperature > 0}
    if setting.temperature > 0:
        kwargs.update(temperature=setting.temperature, top_p=setting.top_p, top_k=0)
        torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    with StepRecorder(model, layers) as rec:
        rec.eos_id = eos
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=pad, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:]  # (B, S)
        rec.finish(new[:, -1])
    steps = new.shape[1]
    hidden = text_config(model).hidden_size
    # step k's state belongs to the token fed at step k, i.e. generated token k-1
    states = {x: torch.stack(v[1:], dim=1) if steps > 1 else None
              for x, v in rec.states.items()}  # (B, S-1, H)
    maxprob = torch.stack(rec.maxprob, dim=1)  # (B, S): distribution that produced token k
    entropy = torch.stack(rec.entropy, dim=1)
    logprob = torch.stack(rec.logprob, dim=1)
    eos_prob = torch.stack(rec.eos_prob, dim=1)  # (B, S): P(EOS) at step k
    # step 0's state is the prompt's last position: what the heads read before the first draw
    prompt_states = {x: v[0] for x, v in rec.states.items()}  # (B, H)
    results = []
    for b, row in enumerate(new.tolist()):
        ended = eos in row
        n_gen = row.index(eos) if ended else len(row)
        n_keep = min(n_gen, steps - 1)  # tokens whose state was recorded
        results.append({
            "token_ids": row[:n_gen], "n_keep": n_keep, "ended_by_eos": ended,
            "states": {x: (s[b, :n_keep].clone() if s is not None else
                           torch.zeros(0, hidden, dtype=torch.float16))
                       for x, s in states.items()},
            "maxprob": maxprob[b, :n_keep], "entropy": entropy[b, :n_keep],
            "logprob": logprob[b, :n_keep],
            "next_eos_prob": eos_prob[b, 1:n_keep + 1],  # P(EOS right after token k)
            "prompt_states": {x: s[b].clone() for x, s in prompt_states.items()},  # {L: (H,)}
            # the first token's distribution (read from the prompt state)
            "first_maxprob": float(maxprob[b, 0]), "first_entropy": float(entropy[b, 0]),
        })
    return results

