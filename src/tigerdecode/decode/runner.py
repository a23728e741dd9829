"""ModelRunner: one model, a batch of left-padded rows, their KV cache, positions and taps.

Members of an ensemble that share one set of weights run as extra rows of one runner (one
batched forward a step, each member still with its own cache rows and its own persona prefix);
members with different weights get a runner each. Nothing here names a device: inputs go to
the device of the input embeddings, and outputs stay where the model put them, so a model
spread over devices by ``device_map`` works unchanged.
"""

from __future__ import annotations

import warnings

import torch
from transformers import DynamicCache

from tigerdecode.model.taps import HiddenStateTap

# transformers 5.24 renames the forward's past_key_values= to cache= (5.17 ignores cache=); until
# the floor moves we use the name both understand and silence only that notice.
warnings.filterwarnings("ignore", message=r".*past_key_values.* is deprecated", category=FutureWarning)


def input_device(model) -> torch.device:
    return model.get_input_embeddings().weight.device


def vocab_size(model) -> int:
    out = model.get_output_embeddings()
    if out is not None and getattr(out, "weight", None) is not None:
        return int(out.weight.shape[0])
    return int(model.config.vocab_size)


def left_pad(rows: list[tuple[torch.Tensor, torch.Tensor]], pad_id: int):
    """Stack (ids, mask) pairs of shape (B_i, T_i) into one left-padded (sum B_i, max T_i)."""
    width = max(ids.shape[1] for ids, _ in rows)
    out_ids, out_mask = [], []
    for ids, mask in rows:
        extra = width - ids.shape[1]
        out_ids.append(torch.nn.functional.pad(ids, (extra, 0), value=pad_id))
        out_mask.append(torch.nn.functional.pad(mask, (extra, 0), value=0))
    return torch.cat(out_ids), torch.cat(out_mask)


class ModelRunner:
    """Prefill once, then one token per row per step; ``undo()`` drops the last step."""

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 tap_layers: list[int] | None = None, cache: DynamicCache | None = None):
        self.model = model
        dev = input_device(model)
        self.input_ids = input_ids.to(dev)  # (R, T)
        self.mask = attention_mask.to(dev).long()  # (R, T)
        self.prompt_mask = self.mask
        # a given cache already holds the first positions of input_ids (a judge rewrite's
        # rewound prefix): prefill then feeds only the rest
        self.cache = cache if cache is not None else DynamicCache(config=model.config)
        self.tap = HiddenStateTap(model, tap_layers).attach() if tap_layers else None
        self.pos = None  # (R,) position of each row's last token

    def _forward(self, ids, position_ids):
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=position_ids,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]  # (R, V)

    @torch.inference_mode()
    def prefill(self) -> torch.Tensor:
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)  # (R, T) left padding → real positions
        self.pos = pos[:, -1]
        n = self.cache.get_seq_length()
        return self._forward(self.input_ids[:, n:], pos[:, n:])

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (R,) → next logits (R, V)."""
        dev = self.mask.device
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.pos = self.pos + 1
        return self._forward(tokens.to(dev)[:, None], self.pos[:, None])

    def undo(self) -> None:
        """Forget the last step: truncate the cache by one, not recompute it."""
        self.cache.crop(-1)
        self.mask = self.mask[:, :-1]
        self.pos = self.pos - 1

    def last_states(self, rows: slice) -> dict[int, torch.Tensor]:
        """Tapped states at the last position for ``rows``: {layer: (B, H)}."""
        return {k: v[rows, -1] for k, v in self.tap.states.items()}

    def close(self) -> None:
        if self.tap is not None:
            self.tap.detach()
