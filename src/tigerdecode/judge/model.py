"""Judge: a calibrated probability that a finished answer is wrong.

It reads what the model computed along prompt + answer (``judge.features``: kept by the decode
that wrote the answer, or one re-encoding pass): pooled states of chosen layers plus aggregates of the token-level signals (log-probs, entropies, and the control
heads' ``p_dev`` when trained with them), standardised, through a linear head and a calibrator.
Checkpoints follow the heads' rules: ``config.json`` (with the model fingerprint),
``judge.safetensors`` (calibration inside, no pickle) and ``metrics.json``.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path

import torch
from torch import nn

from tigerdecode.heads.calibration import METHODS, Calibrator
from tigerdecode.heads.checkpoint import (
    check_fingerprint,
    check_state,
    find_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from tigerdecode.judge.features import PromptCache, Reencoded, features_from_reads, reencode
from tigerdecode.model.load import Fingerprint

JUDGE_FORMAT = 1


class JudgeError(ValueError):
    """A judge checkpoint is missing, corrupt, made for another model, or used wrongly."""


@dataclass
class JudgeConfig:
    """What the judge reads, and its default thresholds (linear in creativity)."""

    layers: list[int]
    hidden_size: int
    scalar_names: list[str]
    heads_digest: str | None = None  # the control heads whose p_dev it reads (None: no heads)
    threshold_at_0: float = 0.5  # reject when P(wrong) >= this, at creativity 0 ...
    threshold_at_1: float = 0.9  # ... and at creativity 1
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.layers, list | tuple) or not self.layers or \
                any(isinstance(x, bool) or not isinstance(x, Integral) or x < 1 for x in self.layers):
            raise JudgeError(f"layers must be a non-empty list of ints >= 1, got {self.layers}")
        if isinstance(self.hidden_size, bool) or not isinstance(self.hidden_size, Integral) or \
                self.hidden_size < 1:
            raise JudgeError(f"hidden_size must be an integer >= 1, got {self.hidden_size!r}")
        if not isinstance(self.scalar_names, list) or \
                not all(isinstance(n, str) for n in self.scalar_names):
            raise JudgeError(f"scalar_names must be a list of feature names, got "
                             f"{self.scalar_names!r:.80}")
        for name in ("threshold_at_0", "threshold_at_1"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
                raise JudgeError(f"{name} must lie in (0, 1], got {getattr(self, name)}")
        self.layers = [int(x) for x in self.layers]

    @property
    def in_features(self) -> int:
        return 2 * len(self.layers) * self.hidden_size + len(self.scalar_names)


def heads_digest(heads) -> str | None:
    """A short hash of the heads' tensors: the judge must run with the heads it learned from."""
    if heads is None:
        return None
    h = hashlib.sha256()
    for k, v in sorted(heads.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class Judge(nn.Module):
    """``score(...)`` → P(answer wrong) per row, calibrated."""

    def __init__(self, config: JudgeConfig, fingerprint: Fingerprint | None = None):
        super().__init__()
        self.config, self.fingerprint = config, fingerprint
        self.register_buffer("feat_mean", torch.zeros(config.in_features))
        self.register_buffer("feat_std", torch.ones(config.in_features))
        self.net = nn.Linear(config.in_features, 1)
        self.calibrator = Calibrator("none")

    def threshold(self, creativity: float) -> float:
        """The default rejection threshold for a creativity: stricter when asked for facts."""
        c = self.config
        return c.threshold_at_0 + (c.threshold_at_1 - c.threshold_at_0) * float(creativity)

    def check_heads(self, heads) -> None:
        want, got = self.config.heads_digest, heads_digest(heads)
        if want != got:
            raise JudgeError(
                f"this judge was trained with control heads {want or 'none'} but is given "
                f"{got or 'none'}; pass the heads it was trained with (or retrain it with "
                "`tigerdecode judge train --heads ...`)")

    def features(self, r: Reencoded) -> torch.Tensor:
        """(B, F) standardised features in the config's order."""
        if r.scalar_names != self.config.scalar_names:
            raise JudgeError(f"features {r.scalar_names} differ from the judge's "
                             f"{self.config.scalar_names}")
        x = torch.cat([r.states, r.scalars], dim=-1).to(self.feat_mean.device)
        return (x - self.feat_mean) / self.feat_std

    def logits(self, r: Reencoded) -> torch.Tensor:
        return self.net(self.features(r)).squeeze(-1)  # (B,)

    def forward(self, r: Reencoded) -> torch.Tensor:
        return self.calibrator(self.logits(r))  # (B,) P(wrong)

    @torch.inference_mode()
    def score(self, model, prompts: PromptCache, answer_ids, ended, *, eos_id: int,
              pad_id: int, heads=None) -> tuple[torch.Tensor, Reencoded]:
        """Re-encode the answers once and score them: ``(P(wrong) (B,), the pass)``."""
        self.check_heads(heads)
        r = reencode(model, prompts, answer_ids, ended, eos_id=eos_id, pad_id=pad_id,
                     layers=self.config.layers, heads=heads)
        return self(r).float().cpu(), r

    @torch.inference_mode()
    def score_reads(self, reads, answer_ids, ended, *, heads=None) -> tuple[torch.Tensor,
                                                                          Reencoded]:
        """Score answers from what the decode that wrote them kept (``decode(...,
        read_layers=...)``): the numbers :meth:`score` gives, without its pass."""
        self.check_heads(heads)
        r = features_from_reads(reads, answer_ids, ended, layers=self.config.layers,
                                heads=heads)
        return self(r).float().cpu(), r

    # ---- checkpoints -------------------------------------------------------------------------

    def save(self, path: str | Path, metrics: dict | None = None) -> Path:
        """Write ``config.json``, ``judge.safetensors`` and ``metrics.json`` atomically."""
        cfg = {"format": JUDGE_FORMAT, "kind": "judge", "judge": asdict(self.config),
               "calibration": self.calibrator.method,
               "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None}
        return save_checkpoint(path, cfg, self.state_dict(), "judge.safetensors", metrics)

    @classmethod
    def load(cls, path: str | Path, *, model=None, tokenizer=None, device=None) -> Judge:
        """Load a checkpoint; with ``model`` and ``tokenizer`` given, check the fingerprint."""
        cfg, fp, state = read_checkpoint(path, "judge.safetensors", JUDGE_FORMAT, JudgeError,
                                         "judge")
        try:
            config = JudgeConfig(**cfg["judge"])
        except (KeyError, TypeError, ValueError) as e:
            raise JudgeError(f"judge checkpoint {path}/config.json is corrupt: {e}") from e
        method = cfg.get("calibration", "none")
        if not isinstance(method, str) or method not in METHODS:
            raise JudgeError(f"judge checkpoint {path}/config.json is corrupt: 'calibration' "
                             f"must be one of {METHODS}, got {method!r:.80}")
        if model is not None and tokenizer is not None:
            check_judge_fingerprint(fp, model, tokenizer, path)

        def build() -> Judge:
            judge = cls(config, fp)
            judge.calibrator.method = method
            judge.calibrator.resize_for_state(state, "calibrator.")
            return judge

        try:
            check_state(build, state, JudgeError, f"judge checkpoint {path}")
        except ValueError as e:  # JudgeError is one; a calibration table that is not 1-D
            raise JudgeError(f"judge checkpoint {path}: {e}") from None
        judge = build()
        judge.load_state_dict(state)
        if device is None and model is not None:
            device = next(model.parameters()).device
        return judge.to(device).eval() if device is not None else judge.eval()


def check_judge_fingerprint(expected: Fingerprint | None, model, tokenizer, where) -> None:
    check_fingerprint(expected, model, tokenizer, f"judge {where}", JudgeError,
                      "Use a judge trained on this model (`tigerdecode judge train`).")


def find_shipped_judge(model, tokenizer) -> Path | None:
    """The judge checkpoint made for this model (shipped first, then the user's), if any."""
    return find_checkpoint(model, tokenizer, "judge")


_AUTO_JUDGE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_judge(model, tokenizer, judge) -> Judge:
    """``True``/``"auto"`` → the shipped judge (a clear error when there is none); a path →
    loaded and checked; a ``Judge`` → checked against the model."""
    if judge is True or judge == "auto":
        cached = _AUTO_JUDGE.get(model)
        if cached is not None and cached[0] == id(tokenizer):
            return cached[1]
        path = find_shipped_judge(model, tokenizer)
        if path is None:
            raise JudgeError("no shipped judge for this model; train one with `tigerdecode "
                             "judge train --data DIR --out DIR` and pass judge=DIR")
        found = Judge.load(path, model=model, tokenizer=tokenizer)
        _AUTO_JUDGE[model] = (id(tokenizer), found)
        return found
    if isinstance(judge, str | Path):
        return Judge.load(judge, model=model, tokenizer=tokenizer)
    if isinstance(judge, Judge):
        check_judge_fingerprint(judge.fingerprint, model, tokenizer, "given")
        return judge.to(next(model.parameters()).device).eval()
    raise TypeError(f"judge must be True/'auto', a checkpoint path or a Judge; got "
                    f"{type(judge).__name__}")
