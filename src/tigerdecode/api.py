"""The public entry points: ``ControlledGenerator`` (text in, ``GenerationResult`` out),
``generate`` (a drop-in for ``model.generate``) and ``wrap``.

Both entry paths build one :class:`~tigerdecode.settings.GenerateRequest` and hand it to
:meth:`ControlledGenerator.run`, which calls the decode loop (``decode/loop.py``) and, when asked,
the judge.
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref
from pathlib import Path

import torch

from tigerdecode.decode.loop import decode
from tigerdecode.decode.output import pad_id_of, to_results
from tigerdecode.decode.sampling import eos_ids_of
from tigerdecode.heads import ControlHeads, HeadsError, check_fingerprint, find_shipped
from tigerdecode.judge.rewrite import (
    apply_judge,
    judge_of,
    judged_tokens,
    read_layers,
    rewrites_possible,
)
from tigerdecode.methods.baselines import make_baseline
from tigerdecode.methods.ensemble import Ensemble, Member
from tigerdecode.model.load import text_config
from tigerdecode.model.prompting import PromptError, context_window, encode_prompts
from tigerdecode.model.taps import num_layers
from tigerdecode.policy.consensus import consensus_scores
from tigerdecode.policy.control import PolicyControl
from tigerdecode.result import GenerationResult
from tigerdecode.settings import GenerateRequest, for_generate

NO_HEADS_NOTE = ("no control heads for this model: p_stop/p_dev are absent, so the policy runs "
                 "its creativity schedule alone (no EOS bias, no p_dev tightening)")

ENGINE_NOTE = ("decoded in llama.cpp: the heads are the engine heads packed into the GGUF (final "
               "normed state only); the judge and ensembles need the transformers backend")

# heads="auto" is resolved once per (model, tokenizer); kept here, not on the model object
_AUTO_HEADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_heads(model, tokenizer, heads):
    """``"auto"`` → the shipped heads for this model or None; a path → loaded and checked; a
    ``ControlHeads`` → checked against the model; None/False → None."""
    if heads is None or heads is False:
        return None
    if isinstance(heads, str) and heads == "auto":
        if tokenizer is None:
            return None
        cached = _AUTO_HEADS.get(model)
        if cached is not None and cached[0] == id(tokenizer):
            return cached[1]
        path = find_shipped(model, tokenizer)
        found = None if path is None else ControlHeads.load(path, model=model,
                                                            tokenizer=tokenizer)
        _AUTO_HEADS[model] = (id(tokenizer), found)
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
    if heads.config.hidden_size != hidden or max(heads.layers) > n + 1:
        raise HeadsError(f"these heads read layers {heads.layers} of hidden size "
                         f"{heads.config.hidden_size}; the model has {n} layers (and the final "
                         f"normed state, {n + 1}) of hidden size {hidden}. Use heads trained "
                         "for this model.")
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


BACKENDS = ("transformers", "llama-cpp")


def _llama_cpp(model, tokenizer, heads, ensemble, n_threads):
    """The llama.cpp backend's model, tokenizer and heads (see ``engines/llama_cpp.py``)."""
    from tigerdecode.engines.llama_cpp import LlamaCppModel

    if ensemble not in (None, False):
        raise ValueError("the llama.cpp backend decodes one model; ensembles need the "
                         "transformers backend")
    if not isinstance(model, LlamaCppModel):
        model = LlamaCppModel(model, n_threads=n_threads)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model.path.parent),
                                                  gguf_file=model.path.name)
    if not (heads is None or heads is False or (isinstance(heads, str) and heads == "auto")):
        raise ValueError("on the llama.cpp backend the heads are those packed into the GGUF "
                         "(`tigerdecode export`): pass heads='auto' or None")
    return model, tokenizer, model.packed if heads == "auto" else None


def head_defaults(heads, config=None, defaults: dict | None = None, **kwargs) -> GenerateRequest:
    """The request, with the Policy fields chosen for ``heads`` (their ``policy``: abstention
    bars read on validation data) under everything else, for controlled decoding only."""
    req = GenerateRequest.build(config, defaults=defaults, **kwargs)
    policy = getattr(heads, "policy", None)
    if not policy or req.method != "tigerdecode":
        return req
    from tigerdecode.policy.knob import tunable_fields

    bad = sorted(set(policy) - tunable_fields())
    if bad:
        raise HeadsError(f"these heads' policy names unknown Policy fields {bad}; fix their "
                         "metrics.json 'policy' or choose the bars again (`tigerdecode policy "
                         "risk --heads DIR --write`)")
    return GenerateRequest.build(config, defaults={**(defaults or {}), **policy}, **kwargs)


class ControlledGenerator:
    """Controlled decoding for one model: heads (``"auto"``: the shipped ones when found),
    an optional ensemble, and every baseline through one call. ``fast``: decode on a static KV
    cache with a compiled step unless a request says otherwise (``decode/fast.py``).

    ``backend="llama-cpp"``: ``model`` is a GGUF file (or a ``LlamaCppModel``) that llama.cpp
    runs, with the heads packed into it by ``tigerdecode export --format gguf``; the policy,
    repetition guard, abstention and trace are the same, the judge and ensembles are not
    available, and rows decode one after another (``engines/llama_cpp.py``)."""

    def __init__(self, model, tokenizer=None, heads="auto", ensemble=None, *,
                 warn: bool = True, fast: bool = False, backend: str = "transformers",
                 n_threads: int | None = None):
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be true or false, got {fast!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend, self.new_runner = backend, None
        if backend == "llama-cpp":
            from tigerdecode.engines.llama_cpp import LlamaCppRunner

            model, tokenizer, heads = _llama_cpp(model, tokenizer, heads, ensemble, n_threads)
            self.new_runner = LlamaCppRunner
        self.model, self.tokenizer, self.fast = model, tokenizer, fast
        self.heads = heads if backend == "llama-cpp" else resolve_heads(model, tokenizer, heads)
        self.ensemble = _ensemble(model, tokenizer, ensemble)
        self.notes = [] if self.heads is not None else [NO_HEADS_NOTE]
        if backend == "llama-cpp":
            self.notes.append(ENGINE_NOTE)
        if warn and self.heads is None and isinstance(heads, str) and heads == "auto":
            warnings.warn(NO_HEADS_NOTE, stacklevel=2)

    def control(self, req: GenerateRequest, n_members: int):
        if req.method == "tigerdecode":
            return PolicyControl(req.policy(), n_members)
        return make_baseline(req.method, model=self.model, tokenizer=self.tokenizer,
                             **req.overrides)

    def generate_text(self, prompts: list[str] | str, creativity: float | None = None, *,
                      config=None, **kwargs) -> list[GenerationResult]:
        """Answer ``prompts``. Keyword arguments are those of
        :class:`~tigerdecode.settings.GenerateRequest` (``creativity``, ``max_new_tokens``,
        ``seed``, ``method``, ``raw``, Policy fields or a baseline's settings, ``judge=True`` and
        its options, ``min_new_tokens``, ``streamer``, ``stopping_criteria``, ``on_token``,
        ``fast``, ``consensus``)."""
        req = head_defaults(self.heads, config, creativity=creativity, **kwargs)
        if isinstance(prompts, str):
            prompts = [prompts]
        if req.consensus > 1:
            return self._consensus(list(prompts), req)
        return self._generate(prompts, req)

    def _generate(self, prompts: list[str], req: GenerateRequest) -> list[GenerationResult]:
        if self.backend == "llama-cpp":
            enc = encode_prompts(self.tokenizer, prompts, raw=req.raw,
                                 max_length=self.model.n_ctx - req.max_new_tokens)
            return self.run([(self.model, enc["input_ids"], enc["attention_mask"])], req,
                            prompts)[0]
        ens = self.ensemble if req.method == "tigerdecode" and self.ensemble is not None else \
            Ensemble([Member(self.model)], self.tokenizer)
        window = context_window(self.model)
        members = ens.encode(prompts, raw=req.raw,
                             max_length=None if window is None else window - req.max_new_tokens)
        return self.run(members, req, prompts)[0]

    def _consensus(self, prompts: list[str], req: GenerateRequest) -> list[GenerationResult]:
        """``consensus=k``: ``k`` samples of each distinct prompt decoded in one batch; the rows
        asking that prompt get its most agreed-with samples, in that order. Where more than
        half of a prompt's samples abstained, its answers are abstentions (the samples did not
        agree on an answer worth giving); else abstentions rank last."""
        k = req.consensus
        if req.streamer is not None or req.on_token is not None:
            raise ValueError("consensus= decodes several samples and returns some of them at the "
                             "end; it cannot stream (drop streamer= / on_token=, or consensus=)")
        asked: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            asked.setdefault(p, []).append(i)
        for rows in asked.values():
            if len(rows) > k:
                raise ValueError(f"consensus={k} draws {k} samples per prompt and returns the most "
                                 f"agreed-with, but prompt {rows[0]} is asked {len(rows)} times; "
                                 f"ask for consensus >= {len(rows)} or fewer copies")
        distinct = list(asked)
        drawn = self._generate([p for p in distinct for _ in range(k)],
                               dataclasses.replace(req, consensus=1))
        out: list[GenerationResult | None] = [None] * len(prompts)
        for j, p in enumerate(distinct):
            group = drawn[j * k:(j + 1) * k]
            scores = consensus_scores(p, [r.text for r in group])
            abstain_first = 2 * sum(r.abstained for r in group) > k
            order = sorted(range(k), key=lambda i: (group[i].abstained != abstain_first,
                                                    -scores[i]))
            for row, i in zip(asked[p], order, strict=False):  # n <= k rows take the first n
                r = group[i]
                r.notes = [*r.notes, f"consensus: the most agreed-with {len(asked[p])} of {k} "
                                     f"samples (agreement {scores[i]:g}: its names counted in "
                                     "the others)"]
                out[row] = r
        return out

    def run(self, members: list[tuple], req: GenerateRequest, prompts=None, *,
            eos_ids: list[int] | None = None, pad_id: int | None = None):
        """Decode ``members`` (``(model, ids, mask)`` each, factual first) for ``req``; judge
        and rewrite when it asks."""
        tok = self.tokenizer
        if self.new_runner is not None:
            return self._run_rows(members, req, prompts)
        if eos_ids is None:
            eos_ids = eos_ids_of(tok.eos_token_id if tok is not None
                                 else self.model.generation_config.eos_token_id)
        if pad_id is None:
            pad_id = pad_id_of(tok, self.model)
        control = self.control(req, len(members))
        # the judge reads what the decode computes along the way, and rewrites into its cache
        reads = None if req.judge is None else read_layers(judge_of(self, req.judge), self.heads)
        rewrites = req.judge is not None and rewrites_possible(req.judge[1])
        out = decode(members, control, max_new_tokens=req.max_new_tokens, eos_ids=eos_ids,
                     pad_id=pad_id, heads=self.heads, tokenizer=tok, seed=req.seed,
                     min_new_tokens=req.min_new_tokens, streamer=req.streamer,
                     on_token=req.on_token, stopping_criteria=req.stopping_criteria,
                     keep_cache=rewrites, keep_answers=rewrites, read_layers=reads,
                     fast=self.fast if req.fast is None else req.fast)
        results = to_results(out, tok, prompts, req.creativity, req.method, control,
                             self.notes)
        if req.judge is not None:
            apply_judge(self, out, results, members, req.creativity, req.max_new_tokens,
                        req.seed, req.judge, req.overrides)
        return results, out

    def _run_rows(self, members, req: GenerateRequest, prompts):
        """An engine backend: each row decoded on its own (row ``i`` seeded ``seed + i``, as
        in a batch), through the engine's runner."""
        if req.judge is not None:
            raise ValueError("judge=True needs the transformers backend: the judge reads the "
                             "answer's hidden states, which llama.cpp does not hand out")
        if req.method not in ("tigerdecode", "greedy", "temperature", "top_p", "min_p"):
            raise ValueError(f"method {req.method!r} needs the transformers backend; on "
                             "llama.cpp: tigerdecode, greedy, temperature, top_p, min_p")
        tok = self.tokenizer
        eos_ids = eos_ids_of(tok.eos_token_id)
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        (model, ids, mask), = members
        results, out = [], None
        for i in range(ids.shape[0]):
            row = mask[i].bool()
            control = self.control(req, 1)
            out = decode([(model, ids[i:i + 1, row], mask[i:i + 1, row])], control,
                         max_new_tokens=req.max_new_tokens, eos_ids=eos_ids, pad_id=pad_id,
                         heads=self.heads, tokenizer=tok,
                         seed=None if req.seed is None else req.seed + i,
                         min_new_tokens=req.min_new_tokens, streamer=req.streamer,
                         on_token=None if req.on_token is None else
                         (lambda r, t, info, i=i: req.on_token(i, t, info)),
                         stopping_criteria=req.stopping_criteria, new_runner=self.new_runner)
            results += to_results(out, tok, None if prompts is None else prompts[i:i + 1],
                                  req.creativity, req.method, control, self.notes)
        return results, out


def generate(model, input_ids: torch.Tensor | None = None, attention_mask=None, *,
             tokenizer=None, heads="auto", ensemble=None, return_result: bool = False,
             config=None, pad_token_id=None, eos_token_id=None, **kwargs):
    """Drop-in for ``model.generate``: same inputs, and by default the same output (a (B, T+N)
    tensor of sequences, prompt included, pad after each row's EOS). ``return_result=True``
    gives ``list[GenerationResult]``. Other keyword arguments: those of
    :class:`~tigerdecode.settings.GenerateRequest` (``creativity`` defaults to 0.5,
    ``max_new_tokens`` to the model's generation config or 20). ``config``: a settings file /
    dict; explicit arguments win over it."""
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
    default_n = int(getattr(model.generation_config, "max_new_tokens", None) or 20)
    req = GenerateRequest.build(config, defaults={"max_new_tokens": default_n}, **kwargs)
    if req.method == "tigerdecode" and heads is not None and heads is not False:
        heads = resolve_heads(model, tokenizer, heads)
        req = head_defaults(heads, config, defaults={"max_new_tokens": default_n}, **kwargs)
    if req.consensus > 1:
        raise ValueError("consensus= chooses among answers by their text; use "
                         "ControlledGenerator(model, tokenizer).generate_text(prompts, "
                         "consensus=k) or `tigerdecode generate --consensus k`")
    if req.judge is not None and tokenizer is None:
        raise ValueError("judge=True needs tokenizer= (the judge reads the answer's text "
                         "positions and writes abstentions)")
    window = context_window(model)
    if window is not None and input_ids.shape[1] + req.max_new_tokens > window:
        raise PromptError(f"the prompt is {input_ids.shape[1]} tokens and max_new_tokens is "
                          f"{req.max_new_tokens}; the model's context window allows {window} in "
                          "all. Shorten the prompt or ask for fewer new tokens.")
    if ensemble is None and config is not None:
        ensemble = for_generate(config, {}).get("ensemble")
    gen = ControlledGenerator(model, tokenizer, heads,
                              ensemble if req.method == "tigerdecode" else None, warn=False)
    eos = eos_ids_of(eos_token_id if eos_token_id is not None else (
        tokenizer.eos_token_id if tokenizer is not None else model.generation_config.eos_token_id))
    if pad_token_id is not None:
        pad = int(pad_token_id)
    elif tokenizer is not None:
        pad = pad_id_of(tokenizer, model)
    else:
        pad = int(model.generation_config.pad_token_id or eos[0])
    members = gen.ensemble.encode_ids(input_ids, attention_mask) if gen.ensemble is not None \
        else [(model, input_ids, attention_mask)]
    results, out = gen.run(members, req, eos_ids=eos, pad_id=pad)
    if return_result:
        return results
    if req.judge is not None:
        new = judged_tokens(results, tokenizer, pad, eos[0])
    else:
        new = out.tokens
    return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


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
