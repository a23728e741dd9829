"""ControlledLogitsProcessor: the policy and the heads inside plain HF ``model.generate``.

HF's loop gives processors only ``(input_ids, scores)``, so a forward hook on the tapped layers
hands the heads the hidden states of the last forward pass. The scores it returns come from
the same pipeline tigerdecode's own loop samples from (:func:`tigerdecode.decode.sampling.process`).
"""

from __future__ import annotations

import torch

from tigerdecode.decode.sampling import (
    RepeatGuard,
    check_finite,
    eos_ids_of,
    name_masks,
    names_next,
    process,
    spell_masks,
    spelling_next,
)
from tigerdecode.model.taps import HiddenStateTap
from tigerdecode.policy.knob import Policy


class ControlledLogitsProcessor:
    """The policy and heads inside plain ``model.generate``.

    >>> proc = ControlledLogitsProcessor(model, tok, creativity=0.2, heads=heads)
    >>> with proc:
    ...     model.generate(**inputs, logits_processor=[proc], do_sample=True,
    ...                    temperature=1.0, top_p=1.0, top_k=0)

    Use ``do_sample=True`` with HF's own warpers neutral (temperature 1, top_p 1, top_k 0): this
    processor applies the policy's temperature and top-p itself. Without ``heads`` it applies the
    schedule only. The processor returns new scores and never modifies its input. The per-token
    policy acts as in tigerdecode's own loop (fact slots cooled, EOS bias only on factual
    requests, ``p_factual`` read at the first step of each generation, no n-gram written twice,
    capitalised words inside a sentence held like fact slots when ``tokenizer`` is given);
    abstention cannot end a row inside HF's loop, so it does not happen here.
    """

    def __init__(self, model, tokenizer=None, *, creativity: float = 0.5, heads=None,
                 policy: Policy | None = None, eos_token_id=None):
        self.policy = policy if policy is not None else Policy(creativity)
        self.heads = heads
        if eos_token_id is None:
            eos_token_id = tokenizer.eos_token_id if tokenizer is not None else \
                model.generation_config.eos_token_id
        self.eos_ids = eos_ids_of(eos_token_id)
        self.tokenizer = tokenizer if self.policy.reads_names else None
        self._names = None  # (name_masks, spell_masks), once
        self._open: torch.Tensor | None = None  # rows with a capitalised word open (p_spell)
        self.tap = HiddenStateTap(model, heads.layers) if heads is not None else None
        self.last: dict[str, torch.Tensor] = {}
        self._factual: torch.Tensor | None = None
        self._len = -1  # input length at the last call: a shorter or equal one is a new run
        self._guard: RepeatGuard | None = None  # the current run's written n-grams

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
        new_run = input_ids.shape[-1] <= self._len or self._len < 0
        n = self.policy.no_repeat_ngram
        if n > 1:
            if new_run:  # the input is the prompt: nothing written yet
                self._guard = RepeatGuard(n, input_ids.shape[0])
            else:  # the token written since the last call
                self._guard.push(input_ids[:, -1].tolist())
        p: dict[str, torch.Tensor] = {}
        if self.tap is not None:
            if not self.tap.attached:
                raise RuntimeError("ControlledLogitsProcessor with heads must be used inside "
                                   "`with proc:` (that attaches the hidden-state hooks)")
            with torch.no_grad():
                p = {k: v.to(scores.device) for k, v in self.heads.signals(self.tap.last()).items()}
            if new_run or self._factual is None:
                self._factual = p.get("factual")  # the first step reads the prompt's state
        self._len = input_ids.shape[-1]
        p_name = p_spell = None
        if self.tokenizer is not None:  # as the loop: read before the repetition guard
            if self._names is None or self._names[0][0].shape[0] != scores.shape[-1]:
                V, dev = scores.shape[-1], scores.device
                self._names = (name_masks(self.tokenizer, V, dev),
                               spell_masks(self.tokenizer, V, dev))
            if new_run:  # the first token starts a sentence and no word is open
                self._open = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
                p_name = p_spell = torch.zeros(scores.shape[0], device=scores.device)
            else:
                prev = input_ids[:, -1].to(scores.device)
                p_name = names_next(self._names[0], scores, prev)
                p_spell, self._open = spelling_next(self._names[1], scores, prev, self._open)
        if self._guard is not None:
            scores = self._guard.apply(scores)
        p_stop, p_dev = p.get("stop"), p.get("dev")
        d = self.policy.step(p_stop, p_dev, 1, batch=scores.shape[0], device=scores.device,
                             p_slot=p.get("slot"), p_factual=self._factual, p_name=p_name,
                             p_spell=p_spell,
                             p_open=torch.ones(scores.shape[0], device=scores.device)
                             if new_run else None)
        self.last = {"p_stop": p_stop, "p_dev": p_dev, "temperature": d.temperature}
        return process([scores], d, self.eos_ids).to(scores.dtype)
