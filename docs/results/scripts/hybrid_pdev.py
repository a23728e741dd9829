"""Does p_dev gain from the model's own confidence as extra inputs? Logistic p_dev probes on a
fit's training data (``tigerdecode fit``'s work directory), scored on its validation topics (the
heads' own split): from the tapped hidden states (h), from the drawn token's log-probability,
top probability and entropy (s), or both (hs). Quoted in docs/results/knob.md.

    python docs/results/scripts/hybrid_pdev.py runs/fit_default/work
"""

import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tigerdecode.qa.labels import OPEN_TEXT
from tigerdecode.training.report import score_split
from tigerdecode.training.train import dev_targets, load_many, topic_split

LAYERS = [16, 20, 24]
work = sys.argv[1]
t, ans = load_many([f"{work}/data_qa", f"{work}/data_open"], LAYERS)


def feats(which: str, rows: np.ndarray) -> np.ndarray:
    parts = []
    if "h" in which:
        parts.append(np.concatenate([t[f"layer_{x}"][rows].astype(np.float32) for x in LAYERS], 1))
    if "s" in which:
        lp = np.clip(t["logprob"][rows], -30, 0)
        mp = t["maxprob"][rows]
        parts.append(np.stack([lp, np.log(np.clip(mp, 1e-9, 1)), t["entropy"][rows], mp], 1))
    return np.concatenate(parts, 1).astype(np.float32)


y = dev_targets(t["dev"], True)
is_val = topic_split(ans, 0.2, 0)[t["answer"]]
is_open = np.array([bool(a.get("open")) for a in ans])[t["answer"]]
question = np.array([a.get("form") == "question" for a in ans])[t["answer"]]
tr = np.where(~is_val & (y >= 0))[0]
va = np.where(is_val & ~is_open & (t["dev"] != OPEN_TEXT))[0]
print(f"train tokens {len(tr)}, validation tokens {len(va)}, answers {len(ans)}")
print("| C | inputs | token AUROC | answer AUROC | question form: token | answer |")
print("|---|---|---:|---:|---:|---:|")
for C in (0.01, 0.05):
    for which in ("s", "h", "hs"):
        X = feats(which, tr)
        sc = StandardScaler().fit(X)
        clf = LogisticRegression(C=C, max_iter=500, class_weight="balanced")
        clf.fit(sc.transform(X), y[tr])
        z = clf.decision_function(sc.transform(feats(which, va)))
        r = score_split(t, ans, va, z, np.zeros_like(z))["p_dev"]
        q = question[va]
        rq = score_split(t, ans, va[q], z[q], np.zeros_like(z[q]))
        print(f"| {C} | {which} | {r['token_auroc']:.3f} | {r['answer_auroc']:.3f} | "
              f"{rq['p_dev']['token_auroc']:.3f} | {rq['p_dev']['answer_auroc']:.3f} |")
print("training-free, question form:", {k: (round(v["token_auroc"], 3), round(v["answer_auroc"], 3))
                                        for k, v in rq["baselines"].items() if "answer_auroc" in v})
