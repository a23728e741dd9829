"""Turning user prompts into model inputs: the chat template when the tokenizer has one, a
plain-text dialogue (:data:`BASE_TEMPLATE`) for base models without one, raw completion when
asked, left padding for batches, and a bound on the prompt length."""

from __future__ import annotations

import torch

MAX_PROMPT_CHARS = 20_000
# A base model (a tokenizer without a chat template, e.g. Gemma-3-270M's GGUF) is asked through
# this plain-text dialogue, so "Write a poem" is answered rather than continued and QA prompts
# read as a request; a system text goes first, on its own paragraph. ``raw=True`` skips it.
BASE_TEMPLATE = "User: {prompt}\nAssistant:"


class PromptError(ValueError):
    """A prompt cannot be used as given; the message says why and what is allowed."""


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def build_prompt(tokenizer, prompt: str, *, raw: bool = False, system: str | None = None) -> str:
    """The text the model sees for ``prompt``.

    With ``raw=False`` and a tokenizer that has a chat template, the prompt becomes a user turn
    (after an optional system turn) followed by the assistant header; a tokenizer without one
    (a base model) gets :data:`BASE_TEMPLATE`. ``raw=True`` uses the prompt as plain completion
    text.
    """
    if not isinstance(prompt, str):
        raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise PromptError("prompt is empty; give some text to answer or continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are accepted"
        )
    if raw or not has_chat_template(tokenizer):
        text = prompt if raw else BASE_TEMPLATE.format(prompt=prompt)
        return text if system is None else f"{system}\n\n{text}"
    messages = [{"role": "user", "content": prompt}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(
    tokenizer,
    prompts: list[str],
    *,
    raw: bool = False,
    system: str | None = None,
    max_length: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenize a batch of prompts, left-padded, as ``input_ids`` and ``attention_mask``.

    ``max_length`` (the model's context window, usually) bounds the prompt: a longer prompt is a
    ``PromptError`` rather than a silent truncation.
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise PromptError("no prompts given; pass at least one")
    texts = [build_prompt(tokenizer, p, raw=raw, system=system) for p in prompts]
    # The chat template already wrote the BOS/special tokens it wants.
    add_special = raw or not has_chat_template(tokenizer)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
    finally:
        tokenizer.padding_side = old_side
    if max_length is not None:
        lengths = enc["attention_mask"].sum(dim=1)
        too_long = (lengths > max_length).nonzero().flatten().tolist()
        if too_long:
            i = too_long[0]
            raise PromptError(
                f"prompt {i} is {int(lengths[i])} tokens; the model's context window allows "
                f"{max_length} (prompt plus new tokens). Shorten the prompt."
            )
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if device is not None:
        out = {k: v.to(device) for k, v in out.items()}
    return out


def context_window(model) -> int | None:
    """The model's maximum sequence length, when its config says."""
    from tigerdecode.model.load import text_config

    cfg = text_config(model)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None
