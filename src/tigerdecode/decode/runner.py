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


MIN_SHARED_PREFIX = 4  # a shorter common prefix is not worth a forward of its own


def has_sliding_window(model) -> bool:
    """Whether some layer attends over a sliding window (which counts cache columns, so a
    padding gap inside a row would shift it)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else (
        model.config)
    if "sliding_attention" in (getattr(cfg, "layer_types", None) or ()):
        return True
    return bool(getattr(cfg, "sliding_window", None)) and getattr(cfg, "use_sliding_window", True)


class ModelRunner:
    """Prefill once, then one token per row per step; ``undo()`` drops the last step.

    Rows whose output is no longer wanted (``step(..., keep=)``: rows that finished) leave the
    batch once a quarter of it has finished: their cache rows are dropped and later steps
    compute only the rest, so a batch whose answers end at different lengths stops paying for
    the ended ones. Their logits and tapped states read as zeros from then on."""

    compacts = True  # step() takes keep=
    shares_prefix = True  # prefill() takes share_prefix=

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
        self.rows = self.input_ids.shape[0]  # R: the rows the caller sees
        self.alive = None  # (A,) indices of the rows still in the batch; None: all R

    def _forward(self, ids, position_ids):
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=position_ids,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1]  # (R, V)

    @torch.inference_mode()
    def prefill(self, share_prefix: bool = False) -> torch.Tensor:
        """The prompts' forward → (R, V) logits of their last positions. With ``share_prefix``,
        a prefix of tokens every row starts with (a chat template's system turn, an instruction)
        is computed once and its cache copied to every row; the rows are laid out as [prefix]
        [padding][rest] so the prefix's cache columns are the same in every row."""
        if share_prefix and (P := self._shared_prefix()) > 0:
            self._prefill_prefix(P)
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)  # (R, T) padding → real positions
        self.pos = pos[:, -1]
        n = self.cache.get_seq_length()
        return self._forward(self.input_ids[:, n:], pos[:, n:])

    def _shared_prefix(self) -> int:
        """How many leading tokens all rows share (each row's own, after its left padding),
        at most the shortest row less one (every row keeps a token for the rest's forward);
        0 when sharing would save little or the layout does not allow it."""
        R, T = self.input_ids.shape
        if (R < 2 or self.cache.get_seq_length() > 0
                or has_sliding_window(self.model)
                or not bool((self.mask[:, 1:] >= self.mask[:, :-1]).all())):  # left-padded only
            return 0
        n = int(self.mask.sum(-1).min()) - 1
        if n < MIN_SHARED_PREFIX:
            return 0
        start = T - self.mask.sum(-1)  # (R,) first real column of each row
        lead = self.input_ids.gather(1, start[:, None] + torch.arange(n, device=start.device))
        differs = (lead != lead[:1]).any(0)  # (n,)
        P = int(differs.int().argmax()) if bool(differs.any()) else n
        return P if P >= MIN_SHARED_PREFIX else 0

    def _prefill_prefix(self, P: int) -> None:
        """Lay the rows out as [prefix][padding][rest], prefill the prefix once (one row) and
        give every row a copy of its cache; ``prefill`` then feeds the columns after it."""
        R, T = self.input_ids.shape
        dev = self.input_ids.device
        start = (T - self.mask.sum(-1))[:, None]  # (R, 1)
        c = torch.arange(T, device=dev)[None]  # (1, T)
        # new column c reads old column: the prefix (c < P), then the padding, then the rest
        # (which keeps its columns)
        src = torch.where(c < P, start + c, torch.where(c < start + P, c - P, c))
        self.input_ids, self.mask = self.input_ids.gather(1, src), self.mask.gather(1, src)
        self.prompt_mask = self.mask
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=self.input_ids[:1, :P], attention_mask=self.mask[:1, :P],
                   position_ids=torch.arange(P, device=dev)[None], past_key_values=cache,
                   use_cache=True, logits_to_keep=1)
        cache.batch_repeat_interleave(R)
        self.cache = cache

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Feed one token per row (R,) → next logits (R, V). ``keep`` (R,) bool: the rows whose
        output is still wanted (see the class note)."""
        dev = self.mask.device
        if keep is not None:
            self._compact(keep.to(dev))
        tokens = tokens.to(dev)
        if self.alive is not None:
            tokens = tokens[self.alive]
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        self.pos = self.pos + 1
        return self._spread(self._forward(tokens[:, None], self.pos[:, None]))

    def _compact(self, keep: torch.Tensor) -> None:
        """Drop the rows of the batch that ``keep`` no longer wants, once they are a quarter of
        it (copying the cache costs a fraction of a step; one row of sixteen is not worth it)."""
        alive = self.alive if self.alive is not None else torch.arange(self.rows,
                                                                      device=keep.device)
        wanted = keep[alive]
        n_keep = int(wanted.sum())
        if n_keep == 0 or (len(alive) - n_keep) < max(1, len(alive) // 4):
            return
        idx = wanted.nonzero().flatten()
        self.cache.batch_select_indices(idx)
        self.mask, self.pos, self.alive = self.mask[idx], self.pos[idx], alive[idx]

    def _spread(self, out: torch.Tensor) -> torch.Tensor:
        """(A, ...) outputs of the rows in the batch → (R, ...), zeros for rows that left."""
        if self.alive is None:
            return out
        full = out.new_zeros((self.rows, *out.shape[1:]))
        full[self.alive] = out
        return full

    def undo(self) -> None:
        """Forget the last step: truncate the cache by one, not recompute it."""
        self.cache.crop(-1)
        self.mask = self.mask[:, :-1]
        self.pos = self.pos - 1

    def last_states(self, rows: slice) -> dict[int, torch.Tensor]:
        """Tapped states at the last position for ``rows``: {layer: (B, H)}."""
        return {k: self._spread(v[:, -1])[rows] for k, v in self.tap.states.items()}

    def close(self) -> None:
        if self.tap is not None:
            self.tap.detach()
