"""ControlHeads: per-token ``p_stop``, ``p_dev`` and (when trained) ``p_slot``, ``p_risk`` and
``p_factual`` from a frozen model's hidden states.

- ``p_slot`` is forward-looking: read from the state of the last token, it says whether the
  *next* token decides a fact.
- ``p_risk`` is forward-looking too: read at a fact slot, before its token is drawn, how likely
  the fact the model is about to write (near-greedy) is wrong. It is what lets the policy abstain
  *before* a wrong fact is written; ``p_dev`` only says that one has been.
- ``p_factual`` is read once, from the prompt's last state: does the request ask for a fact
  in a short answer (a question, a sentence to finish) rather than for creative text? The policy
  abstains and biases EOS only on factual requests, so a poem never gets "I don't know."

The heads read one or more tapped layers (see ``tigerdecode.model.taps``), concatenate them,
standardise the features with statistics fitted at training time, and apply a linear probe or
a small MLP per output, followed by a calibrator. Checkpoints are safetensors + JSON, never pickle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path

import torch
from torch import nn

from tigerdecode.heads.calibration import METHODS, Calibrator
from tigerdecode.heads.checkpoint import check_fingerprint as _check
from tigerdecode.heads.checkpoint import (
    check_state,
    find_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from tigerdecode.model.load import Fingerprint

OUTPUTS = ("stop", "dev", "slot", "risk", "factual")
DEFAULT_OUTPUTS = ("stop", "dev")
KINDS = ("linear", "mlp")
CHECKPOINT_FORMAT = 1


class HeadsError(ValueError):
    """A heads checkpoint is missing, corrupt, or made for another model."""


@dataclass
class HeadConfig:
    """What a head reads and how it is built."""

    layers: list[int]
    hidden_size: int
    kind: str = "linear"
    mlp_hidden: int = 256
    calibration: str = "none"
    outputs: list[str] = field(default_factory=lambda: list(DEFAULT_OUTPUTS))

    def __post_init__(self):
        bad = [o for o in self.outputs if o not in OUTPUTS]
        if bad or "stop" not in self.outputs or "dev" not in self.outputs:
            raise ValueError(f"head outputs must include 'stop' and 'dev' and may add 'slot', "
                             f"'risk' and 'factual'; got {self.outputs}")
        self.outputs = [o for o in OUTPUTS if o in self.outputs]
        if self.kind not in KINDS:
            raise ValueError(f"head kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.layers, list | tuple) or not self.layers or \
                any(isinstance(x, bool) or not isinstance(x, Integral) or x < 1 for x in self.layers):
            raise ValueError(f"layers must be a non-empty list of ints >= 1, got {self.layers}")
        for name in ("hidden_size", "mlp_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.layers = [int(x) for x in self.layers]

    @property
    def in_features(self) -> int:
        return self.hidden_size * len(self.layers)


def _net(cfg: HeadConfig) -> nn.Module:
    if cfg.kind == "linear":
        return nn.Linear(cfg.in_features, 1)
    return nn.Sequential(nn.Linear(cfg.in_features, cfg.mlp_hidden), nn.GELU(),
                         nn.Linear(cfg.mlp_hidden, 1))


class ControlHeads(nn.Module):
    """``p_stop``, ``p_dev`` (and the optional outputs) for each row of tapped hidden states.

    ``forward(states)`` takes ``{layer: (..., H)}`` (e.g. ``HiddenStateTap.last()``) and returns
    ``(p_stop, p_dev, p_slot)``, each of shape ``(...)``, calibrated, on the heads' device;
    ``p_slot`` is None for heads trained without it. :meth:`signals` returns every output.
    """

    def __init__(self, config: HeadConfig, fingerprint: Fingerprint | None = None):
        super().__init__()
        self.config = config
        self.fingerprint = fingerprint
        # Policy fields chosen for these heads on validation data (their abstention bars),
        # from metrics.json's "policy" (`tigerdecode policy risk --write`); the generator
        # applies them as defaults for controlled decoding
        self.policy: dict = {}
        self.register_buffer("feat_mean", torch.zeros(config.in_features))
        self.register_buffer("feat_std", torch.ones(config.in_features))
        self.nets = nn.ModuleDict({o: _net(config) for o in config.outputs})
        self.calibrators = nn.ModuleDict({o: Calibrator(config.calibration)
                                          for o in config.outputs})

    @property
    def layers(self) -> list[int]:
        return self.config.layers

    def features(self, states: dict[int, torch.Tensor]) -> torch.Tensor:
        """Concatenate the tapped layers in config order and standardise: ``(..., L*H)``."""
        missing = [x for x in self.config.layers if x not in states]
        if missing:
            raise KeyError(f"heads read layers {self.config.layers}; states lack {missing}")
        dev = self.feat_mean.device
        x = torch.cat([states[x].to(dev, torch.float32) for x in self.config.layers], dim=-1)
        return (x - self.feat_mean) / self.feat_std

    def logits(self, states: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = self.features(states)
        return {o: self.nets[o](x).squeeze(-1) for o in self.config.outputs}

    def signals(self, states: dict[int, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every output's calibrated probability, ``{"stop": (...), "dev": ..., ...}``."""
        z = self.logits(states)
        return {o: self.calibrators[o](z[o]) for o in self.config.outputs}

    def forward(self, states: dict[int, torch.Tensor]) -> tuple:
        p = self.signals(states)
        return p["stop"], p["dev"], p.get("slot")

    # ---- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Write ``config.json``, ``heads.safetensors`` and ``metrics.json`` atomically."""
        cfg = {"format": CHECKPOINT_FORMAT, "head": asdict(self.config),
               "calibration": {o: self.calibrators[o].method for o in self.config.outputs},
               "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None}
        return save_checkpoint(path, cfg, self.state_dict(), "heads.safetensors", metrics)

    @classmethod
    def load(cls, path: str | Path, *, model=None, tokenizer=None,
             device: torch.device | str | None = None) -> ControlHeads:
        """Load a checkpoint; with ``model`` and ``tokenizer`` given, check the fingerprint."""
        cfg, fp, state = read_checkpoint(path, "heads.safetensors", CHECKPOINT_FORMAT,
                                         HeadsError, "heads")
        try:
            config = HeadConfig(**cfg["head"])
        except (KeyError, TypeError, ValueError) as e:
            raise HeadsError(f"heads checkpoint {path}/config.json is corrupt: {e}") from e
        calibration = cfg.get("calibration", {})
        if not isinstance(calibration, dict) or not set(calibration) <= set(config.outputs) \
                or not all(isinstance(m, str) and m in METHODS for m in calibration.values()):
            raise HeadsError(f"heads checkpoint {path}/config.json is corrupt: 'calibration' "
                             f"must map outputs {config.outputs} to one of {METHODS}, got "
                             f"{calibration!r:.120}")
        if model is not None and tokenizer is not None:
            check_fingerprint(fp, model, tokenizer, path)

        def build() -> ControlHeads:
            heads = cls(config, fp)
            for o, method in calibration.items():
                heads.calibrators[o].method = method
            for o in config.outputs:
                heads.calibrators[o].resize_for_state(state, f"calibrators.{o}.")
            return heads

        try:
            check_state(build, state, HeadsError, f"heads checkpoint {path}")
        except ValueError as e:  # a calibration table that is not 1-D
            raise HeadsError(f"heads checkpoint {path}: {e}") from None
        heads = build()
        heads.load_state_dict(state)
        heads.policy = _policy_of(Path(path))
        if device is None and model is not None:
            device = next(model.parameters()).device
        return heads.to(device).eval() if device is not None else heads.eval()


def _policy_of(path: Path) -> dict:
    """The ``policy`` a checkpoint's metrics.json records (empty when none)."""
    import json

    f = path / "metrics.json"
    try:
        policy = json.loads(f.read_text(encoding="utf-8")).get("policy") if f.is_file() else None
    except (OSError, ValueError, AttributeError) as e:
        raise HeadsError(f"heads checkpoint {f} is corrupt: {e}") from None
    if policy is not None and not isinstance(policy, dict):
        raise HeadsError(f"heads checkpoint {f}: 'policy' must map Policy fields to values, got "
                         f"{policy!r:.80}")
    return dict(policy or {})


def check_fingerprint(expected: Fingerprint | None, model, tokenizer, where) -> None:
    _check(expected, model, tokenizer, where, HeadsError,
           "Use heads trained on this model (`tigerdecode heads train`) or load the model they "
           "were made for.")


def find_shipped(model, tokenizer) -> Path | None:
    """The heads checkpoint made for this model (shipped first, then the user's), if any."""
    return find_checkpoint(model, tokenizer, "heads")
