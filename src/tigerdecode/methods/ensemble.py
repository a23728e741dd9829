"""Ensemble: members are (model, optional persona system prompt) sharing one tokenizer.

The default is a self-ensemble: one set of weights with a factual persona (the model's own
default system turn, the context the control heads were trained in) and a creative persona.
Members that share weights run as rows of one batched forward (each with its own cache rows);
two checkpoints of one family work the same way with a runner each. The policy's weights blend
the members in log-probability space (``decode.sampling.blend``); members are ordered factual first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tigerdecode.decode.runner import vocab_size
from tigerdecode.model.prompting import encode_prompts, has_chat_template

FACTUAL_PERSONA = None  # the model's default assistant turn
CREATIVE_PERSONA = ("You are an imaginative storyteller. Answer with vivid, original and "
                    "surprising ideas; invent freely.")


class EnsembleError(ValueError):
    """Members cannot be blended (different vocabularies, no members, ...)."""


@dataclass
class Member:
    model: object
    system: str | None = None
    name: str = ""
    tokenizer: object | None = None  # only to check it matches the ensemble's tokenizer


def _vocab_of(tok) -> dict:
    return tok.get_vocab()


class Ensemble:
    """An ordered list of members (factual first, creative last) and their shared tokenizer."""

    def __init__(self, members, tokenizer):
        if tokenizer is None:
            raise EnsembleError("an Ensemble needs the tokenizer its members share")
        ms = []
        for m in members:
            if isinstance(m, Member):
                ms.append(m)
            elif isinstance(m, tuple):
                ms.append(Member(*m))
            else:
                ms.append(Member(m))
        if not ms:
            raise EnsembleError("an Ensemble needs at least one member")
        vocab = None
        for i, m in enumerate(ms):
            if m.tokenizer is not None and m.tokenizer is not tokenizer and \
                    _vocab_of(m.tokenizer) != _vocab_of(tokenizer):
                raise EnsembleError(
                    f"member {i} ({m.name or type(m.model).__name__}) has a different tokenizer "
                    f"({len(m.tokenizer)} tokens) from the ensemble's ({len(tokenizer)} tokens); "
                    "members must share one vocabulary: use checkpoints of one model family.")
            v = vocab_size(m.model)
            if v < len(tokenizer):
                raise EnsembleError(
                    f"member {i} ({m.name or type(m.model).__name__}) predicts {v} tokens but the "
                    f"tokenizer has {len(tokenizer)}; the model and tokenizer do not belong "
                    "together.")
            if vocab is not None and v != vocab:
                raise EnsembleError(
                    f"member {i} ({m.name or type(m.model).__name__}) predicts {v} tokens, member "
                    f"0 predicts {vocab}; members must share one vocabulary to be blended.")
            vocab = v
        self.members, self.tokenizer = ms, tokenizer

    @classmethod
    def self_ensemble(cls, model, tokenizer, factual: str | None = FACTUAL_PERSONA,
                      creative: str | None = CREATIVE_PERSONA) -> Ensemble:
        """One set of weights, a factual and a creative persona."""
        return cls([Member(model, factual, "factual"), Member(model, creative, "creative")],
                   tokenizer)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def names(self) -> list[str]:
        return [m.name or f"member{i}" for i, m in enumerate(self.members)]

    def encode(self, prompts: list[str], *, raw: bool = False, max_length: int | None = None):
        """Per member: ``(model, input_ids, attention_mask)`` for the prompts in its persona."""
        return [(m.model, *encode_prompts(self.tokenizer, prompts, raw=raw, system=m.system,
                                          max_length=max_length).values())
                for m in self.members]

    def encode_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Per member, for token-level input: the persona is prepended as a system turn (with a
        chat template) or as a text line (without one)."""
        out = []
        for m in self.members:
            if m.system is None:
                out.append((m.model, input_ids, attention_mask))
                continue
            if has_chat_template(self.tokenizer):
                text = self.tokenizer.apply_chat_template(
                    [{"role": "system", "content": m.system}], tokenize=False)
            else:
                text = m.system + "\n\n"
            pre = torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"],
                               dtype=input_ids.dtype, device=input_ids.device)
            pre = pre.expand(input_ids.shape[0], -1)  # (B, P)
            ids, mask = _prepend_left_padded(pre, input_ids, attention_mask,
                                             self.tokenizer.pad_token_id or 0)
            out.append((m.model, ids, mask))
        return out


def _prepend_left_padded(pre, ids, mask, pad_id):
    """Insert ``pre`` (B, P) between each row's left padding and its tokens."""
    rows, masks = [], []
    width = ids.shape[1] + pre.shape[1]
    for i in range(ids.shape[0]):
        real = ids[i][mask[i].bool()]
        row = torch.cat([pre[i], real])
        pad = width - row.shape[0]
        rows.append(torch.cat([row.new_full((pad,), pad_id), row]))
        masks.append(torch.cat([mask.new_zeros(pad), mask.new_ones(row.shape[0])]))
    return torch.stack(rows), torch.stack(masks)

