"""Hidden-state taps: forward hooks that hand the control heads the layers they read.

Layer numbering follows HF's ``output_hidden_states``: layer ``L`` (1-based) is the output of
decoder block ``L``, equal to ``hidden_states[L]`` for every ``L`` below the last (HF applies the
final norm to the last entry; a tap on the last layer gives the block output before that norm).
The hooks store references to tensors the forward pass computes anyway, so a tap costs nothing
measurable, and each tensor stays on the device its block ran on (models spread over devices by
``device_map`` work unchanged).
"""

from __future__ import annotations

import torch
from torch import nn

_BLOCK_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers",
                "model.language_model.layers", "transformer.blocks")


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


class HiddenStateTap:
    """Capture the hidden states of chosen layers on every forward pass.

    >>> with HiddenStateTap(model, [20, 30]) as tap:
    ...     model(input_ids)
    ...     h20 = tap.states[20]          # (B, T, H) of the last forward pass
    """

    def __init__(self, model: nn.Module, layers: list[int]):
        n = num_layers(model)
        layers = sorted(set(int(x) for x in layers))
        bad = [x for x in layers if not 1 <= x <= n]
        if not layers or bad:
            raise ValueError(f"layers must be a non-empty list of ints in [1, {n}] for this "
                             f"{n}-layer model; got {bad or layers}")
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
        blocks = decoder_blocks(self.model)
        for layer in self.layers:
            self._handles.append(blocks[layer - 1].register_forward_hook(self._hook(layer)))
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
