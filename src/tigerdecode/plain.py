"""Plain decoding through ``model.generate``: what tigerdecode is compared against, and the
answer path of the CLI until controlled decoding takes over."""

from __future__ import annotations

import time

import torch

from tigerdecode.prompting import context_window, encode_prompts


def validate_max_new_tokens(max_new_tokens: int, limit: int = 4096) -> int:
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
        raise ValueError(f"max_new_tokens must be an integer, got {max_new_tokens!r}")
    if not 1 <= max_new_tokens <= limit:
        raise ValueError(f"max_new_tokens must lie in [1, {limit}], got {max_new_tokens}")
    return max_new_tokens


@torch.inference_mode()
def plain_generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    raw: bool = False,
    seed: int | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> list[dict]:
    """Answer a batch of prompts with HF ``generate`` (greedy when ``temperature == 0``)."""
    validate_max_new_tokens(max_new_tokens)
    if temperature < 0 or temperature != temperature:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    device = next(model.parameters()).device
    window = context_window(model)
    inputs = encode_prompts(
        tokenizer, prompts, raw=raw,
        max_length=None if window is None else window - max_new_tokens, device=device,
    )
    if seed is not None:
        torch.manual_seed(seed)
    sampling = temperature > 0
    kwargs = {"do_sample": sampling}
    if sampling:
        kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    t0 = time.perf_counter()
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs
    )
    seconds = time.perf_counter() - t0
    new = out[:, inputs["input_ids"].shape[1]:]
    results = []
    eos = tokenizer.eos_token_id
    for p, row in zip(prompts, new.tolist(), strict=True):
        if eos in row:
            row = row[: row.index(eos)]
        results.append({
            "prompt": p,
            "text": tokenizer.decode(row, skip_special_tokens=True).strip(),
            "token_ids": row,
            "n_tokens": len(row),
            "seconds": round(seconds, 4),
        })
    return results
