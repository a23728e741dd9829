"""Probability calibration stored as tensors: Platt scaling or isotonic regression.

Fitted with scikit-learn at training time, then folded into the checkpoint as plain tensors so
loading needs neither pickle nor scikit-learn, and applying it is a couple of torch ops.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

METHODS = ("none", "platt", "isotonic")


class Calibrator(nn.Module):
    """Maps a raw logit to a calibrated probability.

    - ``none``: ``sigmoid(logit)``
    - ``platt``: ``sigmoid(a * logit + b)``
    - ``isotonic``: piecewise-linear interpolation of ``sigmoid(logit)`` through the fitted
      isotonic thresholds ``(x, y)``, clamped at the ends (what sklearn's ``predict`` does).
    """

    def __init__(self, method: str = "none", n_points: int = 2):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))
        self.register_buffer("iso_x", torch.linspace(0, 1, max(n_points, 2)))
        self.register_buffer("iso_y", torch.linspace(0, 1, max(n_points, 2)))

    def forward(self, logit: torch.Tensor) -> torch.Tensor:
        logit = logit.float()
        if self.method == "platt":
            a, b = self.platt.to(logit.device)
            return torch.sigmoid(a * logit + b)
        p = torch.sigmoid(logit)
        if self.method == "isotonic":
            return _interp(p, self.iso_x.to(p.device), self.iso_y.to(p.device))
        return p

    @torch.no_grad()
    def fit(self, logits: np.ndarray, labels: np.ndarray, method: str) -> Calibrator:
        """Fit on held-out logits and 0/1 labels (fit on data the head was not trained on)."""
        if method not in METHODS:
            raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
        logits = np.asarray(logits, dtype=np.float64).ravel()
        labels = np.asarray(labels, dtype=np.float64).ravel()
        if len(logits) != len(labels) or len(logits) == 0:
            raise ValueError(f"need equal, non-zero numbers of logits and labels; got "
                             f"{len(logits)} and {len(labels)}")
        self.method = method
        if method == "platt":
            from sklearn.linear_model import LogisticRegression

            if len(np.unique(labels)) < 2:
                raise ValueError("Platt scaling needs both classes among the labels")
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(logits[:, None], labels)
            self.platt = torch.tensor([lr.coef_[0, 0], lr.intercept_[0]], dtype=torch.float32)
        elif method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            p = 1.0 / (1.0 + np.exp(-logits))
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, labels)
            self.iso_x = torch.tensor(iso.X_thresholds_, dtype=torch.float32)
            self.iso_y = torch.tensor(iso.y_thresholds_, dtype=torch.float32)
        return self

    def resize_for_state(self, state: dict, prefix: str) -> None:
        """Make the isotonic buffers the size a saved state holds, before ``load_state_dict``."""
        for name in ("iso_x", "iso_y"):
            key = prefix + name
            if key in state:
                if state[key].ndim != 1 or state[key].numel() < 1:
                    raise ValueError(f"{key} has shape {list(state[key].shape)}; expected a "
                                     "non-empty 1-D table")
                setattr(self, name, torch.empty(state[key].shape, device=self.iso_x.device))
        if self.iso_x.shape != self.iso_y.shape:
            raise ValueError(f"{prefix}iso_x and iso_y differ in length ({self.iso_x.numel()} "
                             f"and {self.iso_y.numel()}); expected one (x, y) pair per point")


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` in torch: piecewise-linear through (xp, fp), clamped outside."""
    if xp.numel() == 1:
        return fp.expand_as(x).clone()
    x = x.clamp(xp[0], xp[-1])
    idx = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    y0, y1 = fp[idx - 1], fp[idx]
    w = torch.where(x1 > x0, (x - x0) / (x1 - x0).clamp_min(1e-12), torch.zeros_like(x))
    return y0 + w * (y1 - y0)
