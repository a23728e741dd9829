"""Hidden-state taps: forward hooks that hand the control heads the layers they read.

Layer numbering follows HF's ``output_hidden_states``: layer ``L`` (1-based) is the output of
decoder block ``L``, equal to ``hidden_states[L]`` for every ``L`` below the last (HF applies the
final norm to the last entry; a tap on the last layer gives the block output before that norm).
One more number, ``n + 1`` for an ``n``-layer model (:func:`final_layer`), is the final normed
state: the output of the final norm, the very vector ``lm_head`` reads. A linear head on it is
one more row of ``lm_head``, which is how heads ride inside engines (``tigerdecode export``).
The hooks store references to tensors the forward pass computes anyway, so a tap costs nothing
measurable, and each tensor stays on the device its block ran on (models spread over devices by
``device_map`` work unchanged).
"""

from __future__ import annotations

import torch
from torch import nn

_BLOCK_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers",
                "model.language_model.layers", "transformer.blocks")
_NORM_PATHS = ("model.norm", "transformer.ln_f", "model.decoder.final_layer_norm",
               "gpt_neox.final_layer_norm", "model.language_model.norm", "transformer.norm_f")


def _get(model: nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks, for every architecture tigerdecode supports."""
    for path in _BLOCK_PATHS:
        blocks = _get(model, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks
    raise ValueError(
        f"cannot find the decoder blocks of {type(model).__name__}; looked for "
        f"{', '.join(_BLOCK_PATHS)}. Pass a model whose blocks live at one of these paths."
    )


def num_layers(model: nn.Module) -> int:
    return len(decoder_blocks(model))


def final_layer(model: nn.Module) -> int:
    """The layer number of the final normed state (one past the last block)."""
    return num_layers(model) + 1


def final_norm(model: nn.Module) -> nn.Module:
    """The model's final norm, whose output ``lm_head`` reads."""
    for path in _NORM_PATHS:
        norm = _get(model, path)
        if isinstance(norm, nn.Module):
            return norm
    raise ValueError(
        f"cannot find the final norm of {type(model).__name__}; looked for "
        f"{', '.join(_NORM_PATHS)}. Read block layers (1..{num_layers(model)}) on this model.")


def tap_module(model: nn.Module, layer: int) -> nn.Module:
    """The module whose forward output is ``layer``'s state: block ``layer`` for ``1..n``, the
    final norm for ``n + 1``."""
    blocks = decoder_blocks(model)
    if not 1 <= layer <= len(blocks) + 1:
        raise ValueError(f"layer {layer} is out of range for this {len(blocks)}-layer model: "
                         f"use 1..{len(blocks)} (block outputs) or {len(blocks) + 1} (the final "
                         "normed state)")
    return blocks[layer - 1] if layer <= len(blocks) else final_norm(model)


class HiddenStateTap:
    """Capture the hidden states of chosen layers on every forward pass.

    >>> with HiddenStateTap(model, [20, 30]) as tap:
    ...     model(input_ids)
    ...     h20 = tap.states[20]          # (B, T, H) of the last forward pass
    """

    def __init__(self, model: nn.Module, layers: list[int]):
        n = num_layers(model)
        layers = sorted(set(int(x) for x in layers))
        bad = [x for x in layers if not 1 <= x <= n + 1]
        if not layers or bad:
            raise ValueError(f"layers must be a non-empty list of ints in [1, {n + 1}] for this "
                             f"{n}-layer model ({n + 1}: the final normed state); got "
                             f"{bad or layers}")
        self.model = model
        self.layers = layers
        self.states: dict[int, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, layer: int):
        def fn(_module, _inputs, output):
            self.states[layer] = output[0] if isinstance(output, tuple) else output

        return fn

    def attach(self) -> HiddenStateTap:
        if self._handles:
            return self
        for layer in self.layers:
            module = tap_module(self.model, layer)
            self._handles.append(module.register_forward_hook(self._hook(layer)))
        return self

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.states.clear()

    def __enter__(self) -> HiddenStateTap:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def last(self, position: int = -1) -> dict[int, torch.Tensor]:
        """Each tapped layer's state at one position: ``{layer: (B, H)}``."""
        if not self.states:
            raise RuntimeError("no forward pass has run since the tap was attached")
        return {k: v[:, position] for k, v in self.states.items()}
