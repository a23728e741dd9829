"""The public entry points: ``ControlledGenerator`` (text in, ``GenerationResult`` out),
``generate`` (a drop-in for ``model.generate``) and ``wrap``."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from tigerdecode.baselines import METHODS, make_baseline
from tigerdecode.decoding import DecodeOutput, PolicyControl, decode
from tigerdecode.ensemble import Ensemble, Member
from tigerdecode.plain import validate_max_new_tokens
from tigerdecode.policy import Policy, check_creativity
from tigerdecode.processors import eos_ids_of
from tigerdecode.prompting import PromptError, context_window
from tigerdecode.result import GenerationResult, TokenTrace

NO_HEADS_NOTE = ("no control heads for this model: p_stop/p_dev are absent, so the policy runs "
                 "its creativity schedule alone (no EOS bias, no p_dev tightening)")


def resolve_heads(model, tokenizer, heads):
    """``"auto"`` → the shipped heads for this model or None; a path → loaded and checked; a
    ``ControlHeads`` → checked against the model; None/False → None."""
    from tigerdecode.heads import ControlHeads, HeadsError, check_fingerprint, find_shipped
    from tigerdecode.models import text_config
    from tigerdecode.taps import num_layers

    if heads is None or heads is False:
        return None
    if isinstance(heads, str) and heads == "auto":
        if tokenizer is None:
            return None
        cached = getattr(model, "_tigerdecode_auto_heads", None)
        if cached is not None and cached[0] == id(tokenizer):
            return cached[1]
        path = find_shipped(model, tokenizer)
        found = None if path is None else ControlHeads.load(path, model=model,
                                                            tokenizer=tokenizer)
        model._tigerdecode_auto_heads = (id(tokenizer), found)
        return found
    if isinstance(heads, str | Path):
        return ControlHeads.load(heads, model=model, tokenizer=tokenizer)
    if not isinstance(heads, ControlHeads):
        raise TypeError(f"heads must be 'auto', None, a checkpoint path or ControlHeads; got "
                        f"{type(heads).__name__}")
    checked = (id(model), id(tokenizer))
    if heads.fingerprint is not None and tokenizer is not None and \
            getattr(heads, "_checked_for", None) != checked:
        check_fingerprint(heads.fingerprint, model, tokenizer, "these heads")
        heads._checked_for = checked  # hashing the vocabulary once per pair is enough
    hidden, n = text_config(model).hidden_size, num_layers(model)
    if heads.config.hidden_size != hidden or max(heads.layers) > n:
        raise HeadsError(f"these heads read layers {heads.layers} of hidden size "
                         f"{heads.config.hidden_size}; the model has {n} layers of hidden size "
                         f"{hidden}. Use heads trained for this model.")
    return heads.to(next(model.parameters()).device).eval()


def _ensemble(model, tokenizer, ensemble):
    if ensemble is None or ensemble is False:
        return None
    if isinstance(ensemble, Ensemble):
        if ensemble.members[0].model is not model:
            raise ValueError("the ensemble's first (factual) member must be the model generating")
        return ensemble
    if ensemble is True or ensemble == "self":
        if tokenizer is None:
            raise ValueError("the self-ensemble needs tokenizer= to write its personas")
        return Ensemble.self_ensemble(model, tokenizer)
    raise TypeError(f"ensemble must be None, 'self'/True or an Ensemble, got {ensemble!r}")


class ControlledGenerator:
    """Controlled decoding for one model: heads (``"auto"``: the shipped ones when found),
    an optional ensemble, and every baseline through one call."""

    def __init__(self, model, tokenizer, heads="auto", ensemble=None):
        self.model, self.tokenizer = model, tokenizer
        self.heads = resolve_heads(model, tokenizer, heads)
        self.ensemble = _ensemble(model, tokenizer, ensemble)
        self.notes = [] if self.heads is not None else [NO_HEADS_NOTE]
        if self.heads is None and isinstance(heads, str) and heads == "auto":
            warnings.warn(NO_HEADS_NOTE, stacklevel=2)

    def control(self, method: str, creativity: float, overrides: dict, n_members: int):
        if method == "tigerdecode":
            return PolicyControl(Policy(creativity, **overrides), n_members)
        return make_baseline(method, model=self.model, tokenizer=self.tokenizer, **overrides)

    def generate_text(self, prompts: list[str], creativity: float = 0.5,
                      max_new_tokens: int = 64, seed: int | None = None, raw: bool = False,
                      method: str = "tigerdecode", on_token=None,
                      **overrides) -> list[GenerationResult]:
        """Answer ``prompts``; ``method`` is "tigerdecode" or a baseline name; ``overrides`` go
        to the Policy (or the baseline), plus ``min_new_tokens``, ``streamer``,
        ``stopping_criteria``; ``judge=True`` (or a judge checkpoint) with ``max_rewrites``,
        ``judge_threshold``, ``on_reject``, ``judge_abstain_message``: see ``rewrite.py``."""
        from tigerdecode.rewrite import apply_judge, pop_judge_options

        judging = pop_judge_options(overrides)
        if judging is not None and method != "tigerdecode":
            raise ValueError(f"judge=True rewrites with the controlled decoder; it needs "
                             f"method='tigerdecode', got {method!r}")
        if isinstance(prompts, str):
            prompts = [prompts]
        creativity = check_creativity(creativity)
        validate_max_new_tokens(max_new_tokens)
        if method != "tigerdecode" and method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose 'tigerdecode' or one of "
                             f"{METHODS}")
        loop = {k: overrides.pop(k) for k in ("min_new_tokens", "streamer", "stopping_criteria")
                if k in overrides}
        ens = self.ensemble if method == "tigerdecode" and self.ensemble is not None else \
            Ensemble([Member(self.model)], self.tokenizer)
        window = context_window(self.model)
        members = ens.encode(prompts, raw=raw,
                             max_length=None if window is None else window - max_new_tokens)
        control = self.control(method, creativity, overrides, len(ens))
        out = decode(members, control, max_new_tokens=max_new_tokens,
                     eos_ids=eos_ids_of(self.tokenizer.eos_token_id),
                     pad_id=_pad_id(self.tokenizer, self.model), heads=self.heads,
                     tokenizer=self.tokenizer, seed=seed, on_token=on_token,
                     keep_cache=judging is not None, **loop)
        results = to_results(out, self.tokenizer, prompts, creativity, method, control,
                             self.notes)
        if judging is not None:
            apply_judge(self, out, results, members, creativity, max_new_tokens, seed, judging,
                        overrides)
        return results


def _pad_id(tokenizer, model) -> int:
    for v in (getattr(tokenizer, "pad_token_id", None), model.generation_config.pad_token_id,
              getattr(tokenizer, "eos_token_id", None)):
        if v is not None:
            return int(v if isinstance(v, int) else eos_ids_of(v)[0])
    return 0


def to_results(out: DecodeOutput, tokenizer, prompts, creativity, method, control,
               notes) -> list[GenerationResult]:
    policy = getattr(control, "policy", None)
    eos = set(eos_ids_of(tokenizer.eos_token_id)) if tokenizer is not None else set()
    results = []
    ids_all = out.tokens.tolist()
    for i in range(len(ids_all)):
        ids = ids_all[i][: out.lengths[i]]
        tr = out.trace
        trace = [TokenTrace(
            token=tokenizer.decode([t]) if tokenizer is not None else str(t), token_id=t,
            p_stop=tr["p_stop"][i][j] if tr["p_stop"][i] is not None else None,
            p_dev=tr["p_dev"][i][j] if tr["p_dev"][i] is not None else None,
            temperature=tr["temperature"][i][j], top_p=tr["top_p"][i][j],
            member_weights=tr["weights"][i][j], retries=int(tr["retries"][i][j]),
            rewritten=tr["retries"][i][j] > 0) for j, t in enumerate(ids)]
        body = [t for t in ids if t not in eos]
        abstained = out.stop_reasons[i] == "abstain"
        text = tokenizer.decode(body, skip_special_tokens=True).strip() if tokenizer else ""
        results.append(GenerationResult(
            text=policy.abstain_message if abstained else text, token_ids=body, trace=trace,
            timings=dict(out.timings), prompt=prompts[i] if prompts else None,
            creativity=creativity, abstained=abstained, stop_reason=out.stop_reasons[i],
            method=method, notes=list(notes)))
    return results


_GENERATE_KW = ("pad_token_id", "eos_token_id", "min_new_tokens", "stopping_criteria", "method")


def generate(model, input_ids: torch.Tensor | None = None, attention_mask=None, *,
             max_new_tokens: int | None = None, creativity: float | None = None, tokenizer=None,
             heads="auto", ensemble=None, seed: int | None = None, streamer=None,
             return_result: bool = False, config=None, **kwargs):
    """Drop-in for ``model.generate``: same inputs, and by default the same output (a (B, T+N)
    tensor of sequences, prompt included, pad after each row's EOS). ``return_result=True``
    gives ``list[GenerationResult]``. Other settings: ``pad_token_id``, ``eos_token_id``,
    ``min_new_tokens``, ``stopping_criteria``, ``method`` (a baseline name) and Policy fields.
    ``config``: a settings file / dict (``tigerdecode.config``); explicit arguments win over it.
    ``creativity`` defaults to 0.5."""
    if config is not None:
        from tigerdecode.config import for_generate

        kwargs = for_generate(config, {"creativity": creativity, "max_new_tokens": max_new_tokens,
                                       "seed": seed, "ensemble": ensemble, **kwargs})
        creativity, max_new_tokens = kwargs.pop("creativity"), kwargs.pop("max_new_tokens", None)
        seed, ensemble = kwargs.pop("seed", None), kwargs.pop("ensemble", None)
    creativity = check_creativity(0.5 if creativity is None else creativity)
    if input_ids is None:
        raise PromptError("generate needs input_ids (e.g. **tokenizer(text, return_tensors='pt'))")
    if input_ids.ndim != 2 or input_ids.shape[1] == 0:
        raise PromptError(f"input_ids must be (batch, length) with length >= 1, got shape "
                          f"{tuple(input_ids.shape)}: the prompt is empty")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    empty = (attention_mask.sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise PromptError(f"prompt {empty[0]} is empty (its attention mask is all zero)")
    if max_new_tokens is None:
        max_new_tokens = int(getattr(model.generation_config, "max_new_tokens", None) or 20)
    validate_max_new_tokens(max_new_tokens)
    window = context_window(model)
    if window is not None and input_ids.shape[1] + max_new_tokens > window:
        raise PromptError(f"the prompt is {input_ids.shape[1]} tokens and max_new_tokens is "
                          f"{max_new_tokens}; the model's context window allows {window} in all. "
                          "Shorten the prompt or ask for fewer new tokens.")
    method = kwargs.pop("method", "tigerdecode")
    eos = kwargs.pop("eos_token_id", None)
    eos = eos if eos is not None else (tokenizer.eos_token_id if tokenizer is not None
                                       else model.generation_config.eos_token_id)
    pad = kwargs.pop("pad_token_id", None)
    pad = int(pad) if pad is not None else (_pad_id(tokenizer, model) if tokenizer is not None
                                            else int(model.generation_config.pad_token_id
                                                     or eos_ids_of(eos)[0]))
    loop = {k: kwargs.pop(k) for k in ("min_new_tokens", "stopping_criteria") if k in kwargs}
    from tigerdecode.rewrite import apply_judge, judged_tokens, pop_judge_options

    judging = pop_judge_options(kwargs)  # judge=True, max_rewrites=, judge_threshold=, ...
    if judging is not None and (method != "tigerdecode" or tokenizer is None):
        raise ValueError("judge=True needs method='tigerdecode' and tokenizer= (the judge reads "
                         "the answer's text positions and writes abstentions)")
    policy_fields = set(Policy.__dataclass_fields__) - {"creativity", "extra"}
    bad = [k for k in kwargs if method == "tigerdecode" and k not in policy_fields]
    if bad:
        raise TypeError(f"tigerdecode.generate got unexpected arguments {bad}; it takes "
                        f"{', '.join(_GENERATE_KW)} and Policy fields (set sampling through "
                        "creativity=, or method='top_p' etc. with temperature=/top_p=)")
    heads_m = resolve_heads(model, tokenizer, heads)
    ens = _ensemble(model, tokenizer, ensemble) if method == "tigerdecode" else None
    members = ens.encode_ids(input_ids, attention_mask) if ens is not None else \
        [(model, input_ids, attention_mask)]
    gen = ControlledGenerator.__new__(ControlledGenerator)
    gen.model, gen.tokenizer = model, tokenizer
    control = gen.control(method, creativity, kwargs, len(members))
    out = decode(members, control, max_new_tokens=max_new_tokens, eos_ids=eos_ids_of(eos),
                 pad_id=pad, heads=heads_m, tokenizer=tokenizer, seed=seed, streamer=streamer,
                 keep_cache=judging is not None, **loop)
    if judging is not None:
        gen.heads = heads_m
        res = to_results(out, tokenizer, None, creativity, method, control,
                         [] if heads_m is not None else [NO_HEADS_NOTE])
        apply_judge(gen, out, res, members, creativity, max_new_tokens, seed, judging, kwargs)
        if return_result:
            return res
        new = judged_tokens(res, tokenizer, pad, eos_ids_of(eos)[0]).to(input_ids.device)
        return torch.cat([input_ids, new], dim=1)
    if return_result:
        return to_results(out, tokenizer, None, creativity, method, control,
                          [] if heads_m is not None else [NO_HEADS_NOTE])
    return torch.cat([input_ids, out.tokens.to(input_ids.device)], dim=1)


class Wrapped:
    """``wrap(model, tokenizer).generate(**inputs, creativity=...)``; other attributes pass
    through to the model."""

    def __init__(self, model, tokenizer, **defaults):
        self.model, self.tokenizer, self.defaults = model, tokenizer, defaults

    def generate(self, *args, **kwargs):
        return generate(self.model, *args, **{"tokenizer": self.tokenizer, **self.defaults,
                                              **kwargs})

    def __getattr__(self, name):
        return getattr(self.model, name)


def wrap(model, tokenizer, **defaults) -> Wrapped:
    return Wrapped(model, tokenizer, **defaults)
