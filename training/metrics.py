"""Metrics for the heads and the training-free baselines: AUROC, AUPRC, ECE, Brier, and the
answer-level aggregate of token scores."""

from __future__ import annotations

import numpy as np

# Training-free baselines, each turned into a "higher = more likely wrong" token score.
BASELINES = ("max_softmax_prob", "entropy", "mean_logprob")


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve; ``None`` when only one class is present."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def auprc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    return float(average_precision_score(labels, scores))


def ece(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error with equal-width bins over [0, 1]."""
    labels, probs = np.asarray(labels, float), np.asarray(probs, float)
    if len(labels) == 0:
        return float("nan")
    idx = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(probs[m].mean() - labels[m].mean())
    return float(total / len(labels))


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean((np.asarray(probs, float) - np.asarray(labels, float)) ** 2))


def answer_aggregate(answer: np.ndarray, scores: np.ndarray, n_answers: int,
                     how: str = "max") -> np.ndarray:
    """One score per answer from its tokens' scores: ``max`` (an answer is as risky as its
    riskiest token; what ``p_dev`` uses) or ``mean``. Answers with no token get NaN."""
    out = np.full(n_answers, -np.inf if how == "max" else 0.0)
    if how == "max":
        np.maximum.at(out, answer, scores)
    else:
        np.add.at(out, answer, scores)
        counts = np.bincount(answer, minlength=n_answers)
        out = np.where(counts > 0, out / np.maximum(counts, 1), np.nan)
    out[np.bincount(answer, minlength=n_answers) == 0] = np.nan
    return out


def baseline_token_scores(t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-token risk scores of the baselines (higher = more likely deviating)."""
    return {"max_softmax_prob": -t["maxprob"], "entropy": t["entropy"],
            "mean_logprob": -t["logprob"]}


def baseline_answer_how(name: str) -> str:
    """The answer-level aggregate per baseline: the mean for the answer's mean log-prob,
    the same ``max`` as the heads for the per-token confidence signals."""
    return "mean" if name == "mean_logprob" else "max"


def binary_report(labels: np.ndarray, scores: np.ndarray, probs: np.ndarray | None = None) -> dict:
    out = {"n": int(len(labels)), "positive_rate": float(np.mean(labels)) if len(labels) else None,
           "auroc": auroc(labels, scores), "auprc": auprc(labels, scores)}
    if probs is not None:
        out.update(ece=ece(labels, probs), brier=brier(labels, probs))
    return out
