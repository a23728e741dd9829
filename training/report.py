"""Scoring a set of labelled answers: heads against the training-free baselines, on the same
tokens and answers.

- ``p_dev`` token level: every token inside an answer span (``dev >= 0``), label ``dev``.
- ``p_dev`` answer level: label "the answer is wrong"; score = the **max** of ``p_dev`` over the
  answer's span tokens (over all its kept tokens when the span holds none; answers with no kept
  token are left out). The baselines use the same tokens: max of ``1 - max_prob`` and of entropy,
  and the mean of ``-log p`` (the answer's mean log-probability).
- ``p_stop``: every kept token, label ``stop``; its baseline is the model's own probability of
  end-of-sequence right after the token.
"""

from __future__ import annotations

import numpy as np

from tigerdecode.training.metrics import (
    BASELINES,
    answer_aggregate,
    auprc,
    auroc,
    baseline_answer_how,
    baseline_token_scores,
    binary_report,
    brier,
    ece,
)


def _answer_rows(t: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The rows each answer is judged on: its span tokens, or all its tokens if none."""
    ans, in_span = t["answer"][rows], t["dev"][rows] >= 0
    has_span = np.zeros(int(ans.max()) + 1 if len(ans) else 0, bool)
    has_span[ans[in_span]] = True
    return rows[in_span | ~has_span[ans]]


def score_split(t: dict[str, np.ndarray], answers: list[dict], rows: np.ndarray,
                z_dev: np.ndarray, z_stop: np.ndarray, p_dev: np.ndarray | None = None,
                p_stop: np.ndarray | None = None) -> dict:
    """Metrics over the token ``rows`` (aligned with the given head logits / probabilities)."""
    rows = np.asarray(rows)
    pos = {r: i for i, r in enumerate(rows)}
    n_ans = len(answers)
    wrong = np.array([not a["correct"] for a in answers], float)
    dev_rows = rows[t["dev"][rows] >= 0]
    dev_idx = np.array([pos[r] for r in dev_rows], int)
    y_dev = t["dev"][dev_rows].astype(float)
    arows = _answer_rows(t, rows)
    aidx = np.array([pos[r] for r in arows], int)
    score_dev = z_dev if p_dev is None else p_dev
    agg = answer_aggregate(t["answer"][arows], score_dev[aidx], n_ans, "max")
    judged = ~np.isnan(agg)
    out = {
        "n_answers": int(judged.sum()),
        "answer_error_rate": float(wrong[judged].mean()) if judged.any() else None,
        "p_dev": {
            "n_tokens": int(len(dev_rows)),
            "token_positive_rate": float(y_dev.mean()) if len(y_dev) else None,
            "token_auroc": auroc(y_dev, score_dev[dev_idx]),
            "token_auprc": auprc(y_dev, score_dev[dev_idx]),
            "answer_auroc": auroc(wrong[judged], agg[judged]),
            "answer_auprc": auprc(wrong[judged], agg[judged]),
        },
        "p_stop": binary_report(t["stop"][rows].astype(float),
                                z_stop if p_stop is None else p_stop, p_stop),
        "baselines": {},
    }
    if p_dev is not None:
        out["p_dev"].update(ece=ece(y_dev, p_dev[dev_idx]), brier=brier(y_dev, p_dev[dev_idx]))
    base_tok = baseline_token_scores({k: t[k][rows] for k in ("maxprob", "entropy", "logprob")})
    for name in BASELINES:
        s = base_tok[name]
        a = answer_aggregate(t["answer"][arows], s[aidx], n_ans, baseline_answer_how(name))
        out["baselines"][name] = {"token_auroc": auroc(y_dev, s[dev_idx]),
                                  "answer_auroc": auroc(wrong[judged], a[judged])}
    out["baselines"]["next_eos_prob"] = {"stop_auroc": auroc(t["stop"][rows],
                                                             t["next_eos_prob"][rows])}
    return out
