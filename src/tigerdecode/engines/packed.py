"""Control heads packed as extra vocabulary rows: what an engine computes, and how to read it.

A linear head on the final normed state (layer ``n + 1``, see ``tigerdecode.model.taps``) is
``w · (h - mean) / std + b``: one more row of ``lm_head`` (``w / std``) plus a constant. Appended
to ``lm_head``, the heads are computed by every engine that returns logits (llama.cpp, vLLM,
HF), at no cost beyond one more output row each. What the engine cannot hold — the constant
and the calibration — travels beside the weights as a small JSON document
(``tigerdecode_heads.json`` in an HF export, the ``tigerdecode.heads`` key of a GGUF export),
and :class:`PackedHeads` applies it to the raw row scores. The engine's policy must mask the
extra rows so they are never sampled; :func:`split_scores` does that by cutting them off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tigerdecode.heads.calibration import METHODS, Calibrator
from tigerdecode.heads.control import ControlHeads, HeadsError
from tigerdecode.model.taps import final_layer

FORMAT = 1
PACKED = -1  # the states key under which a runner hands the row scores to PackedHeads


def token_name(output: str) -> str:
    """The reserved vocabulary entry of one head row."""
    return f"<|tigerdecode_{output}|>"


@dataclass
class PackedHeads:
    """The heads as rows ``row_ids`` of an engine's logits, plus the constants and calibration.

    ``signals({PACKED: scores})`` with ``scores`` the rows' raw logits ``(B, k)`` (in
    ``outputs`` order) gives what :meth:`ControlHeads.signals` gives on the final normed state.
    """

    outputs: list[str]
    row_ids: list[int]
    bias: list[float]
    calibration: dict[str, dict]
    fingerprint: dict | None = None
    policy: dict = field(default_factory=dict)  # Policy fields chosen for these heads

    layers = [PACKED]  # what the decode loop asks a runner to hand over

    def __post_init__(self):
        if not (len(self.outputs) == len(self.row_ids) == len(self.bias)) or \
                "stop" not in self.outputs or "dev" not in self.outputs:
            raise HeadsError(f"packed heads need one row and one bias per output, 'stop' and "
                             f"'dev' among them; got outputs {self.outputs}, rows "
                             f"{self.row_ids}, bias {self.bias}")
        self._cal = nn.ModuleDict()
        for o in self.outputs:
            spec = self.calibration.get(o, {"method": "none"})
            if spec.get("method") not in METHODS:
                raise HeadsError(f"packed heads: calibration of {o!r} is {spec!r}; expected "
                                 f"a method among {METHODS}")
            c = Calibrator(spec["method"])
            if "platt" in spec:
                c.platt = torch.tensor(spec["platt"], dtype=torch.float32)
            if "iso_x" in spec:
                c.iso_x = torch.tensor(spec["iso_x"], dtype=torch.float32)
                c.iso_y = torch.tensor(spec["iso_y"], dtype=torch.float32)
            self._cal[o] = c
        from tigerdecode.policy.knob import Policy, tunable_fields

        bad = sorted(set(self.policy) - tunable_fields())
        if bad:
            raise HeadsError(f"packed heads name unknown policy fields {bad}; known: "
                             f"{sorted(tunable_fields())}")
        try:
            Policy(**self.policy)
        except (TypeError, ValueError) as e:
            raise HeadsError(f"packed heads carry an invalid policy {self.policy}: {e}") from None

    @property
    def config(self):  # what the loop and the API read of heads: the outputs trained
        return _Config(self.outputs)

    @classmethod
    def from_heads(cls, heads: ControlHeads, model, first_row: int,
                   policy: dict | None = None) -> tuple[PackedHeads, np.ndarray]:
        """Fold ``heads`` (linear, reading only the final normed state of ``model``) into rows
        ``first_row, first_row + 1, ...``: returns the packed description and the rows
        ``(k, H)`` float32 to append to the output matrix. ``policy``: Policy fields chosen
        for these heads (their abstention bars), applied by default where they are decoded."""
        top = final_layer(model)
        if heads.layers != [top] or heads.config.kind != "linear":
            raise HeadsError(
                f"only linear heads on the final normed state (layer {top} of this model) can "
                f"be packed into lm_head; these are {heads.config.kind} heads on layers "
                f"{heads.layers}. Train them with `tigerdecode heads train --layers final`.")
        std, mean = heads.feat_std.detach().float(), heads.feat_mean.detach().float()
        rows, bias, cal = [], [], {}
        for o in heads.config.outputs:
            w = heads.nets[o].weight.detach().float()[0] / std  # (H,)
            b = float(heads.nets[o].bias.detach().float()[0]) - float((w * mean).sum())
            rows.append(w.numpy())
            bias.append(b)
            c = heads.calibrators[o]
            spec = {"method": c.method}
            if c.method == "platt":
                spec["platt"] = c.platt.float().tolist()
            elif c.method == "isotonic":
                spec.update(iso_x=c.iso_x.float().tolist(), iso_y=c.iso_y.float().tolist())
            cal[o] = spec
        fp = heads.fingerprint.to_dict() if heads.fingerprint is not None else None
        packed = cls(list(heads.config.outputs),
                     list(range(first_row, first_row + len(rows))), bias, cal, fp,
                     dict(policy or {}))
        return packed, np.stack(rows).astype(np.float32)

    def signals(self, states: dict) -> dict[str, torch.Tensor]:
        scores = states[PACKED].float()  # (B, k)
        bias = torch.tensor(self.bias, device=scores.device)
        z = scores + bias
        return {o: self._cal[o](z[..., i]) for i, o in enumerate(self.outputs)}

    def to(self, *_a, **_k) -> PackedHeads:
        return self

    def eval(self) -> PackedHeads:
        return self

    # ---- the JSON that travels with an export --------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "outputs": self.outputs, "row_ids": self.row_ids,
                           "tokens": [token_name(o) for o in self.outputs], "bias": self.bias,
                           "calibration": self.calibration, "fingerprint": self.fingerprint,
                           "policy": self.policy}, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str = "packed heads") -> PackedHeads:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                raise HeadsError(f"{where} have format {d.get('format')!r}; this tigerdecode "
                                 f"reads format {FORMAT}")
            return cls([str(o) for o in d["outputs"]], [int(r) for r in d["row_ids"]],
                       [float(b) for b in d["bias"]], dict(d["calibration"]),
                       d.get("fingerprint"), dict(d.get("policy") or {}))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, HeadsError):
                raise
            raise HeadsError(f"{where} are corrupt ({type(e).__name__}: {e}); export the model "
                             "again with `tigerdecode export`") from None


@dataclass
class _Config:
    outputs: list[str]


def split_scores(logits: torch.Tensor, packed: PackedHeads) -> tuple[torch.Tensor,
                                                                     torch.Tensor]:
    """An engine's logits ``(B, V + k)`` → the original vocabulary's ``(B, V)`` (the head rows
    cut off, so they are never sampled) and the head rows ``(B, k)``."""
    first = min(packed.row_ids)
    if logits.shape[-1] <= max(packed.row_ids):
        raise HeadsError(f"the engine returned {logits.shape[-1]} logits; the packed heads sit "
                         f"at rows {packed.row_ids}. Load the exported model, not the original.")
    return logits[..., :first], logits[..., packed.row_ids]
