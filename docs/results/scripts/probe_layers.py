"""Logistic-regression probes for p_dev on the stored states (docs/results/engines.md §1):
the final normed state (31), it plus the logits' own max prob / entropy / token log-prob, those
alone, and layers 16+20+24, trained on the heads' training topics, scored on their validation
topics with the heads' own metric. Needs runs/data_forms and runs/data_open with layer 31 added
(`tigerdecode data add-layers --layers final`).
Run: python docs/results/scripts/probe_layers.py"""
import numpy as np, sys
sys.path.insert(0, ".")
from training.train import load_many, topic_split, dev_targets
from training.report import score_split
from sklearn.linear_model import LogisticRegression
t, answers = load_many(["runs/data_forms", "runs/data_open"], [16, 20, 24, 31])
val = topic_split(answers, 0.2, 0)
isv = val[t["answer"]]
y = dev_targets(t["dev"], True).astype(float)
mixed = np.array([a.get("form") == "mixed" for a in answers])[t["answer"]]
openm = np.array([bool(a.get("open")) or a.get("form")=="mixed" for a in answers])[t["answer"]]
y[mixed] = -1
tr_all = np.flatnonzero(~isv); va = np.flatnonzero(isv); va_qa = va[~openm[va]]
lf = np.stack([np.log(t["maxprob"]+1e-9), t["entropy"], t["logprob"]], 1).astype(np.float32)
def feats(L, logit):
    parts = [t[f"layer_{x}"].astype(np.float32) for x in L]
    if logit: parts.append(lf)
    return np.concatenate(parts, 1) if parts else lf
for L, logit in (([31], False), ([31], True), ([], True), ([16,20,24], False)):
    x = feats(L, logit)
    m = (y[tr_all] >= 0)
    idx = tr_all[m]
    mu, s = x[idx].mean(0), x[idx].std(0).clip(1e-4)
    lr = LogisticRegression(C=0.01, max_iter=500, class_weight="balanced").fit((x[idx]-mu)/s, y[idx])
    z = lr.decision_function((x[va_qa]-mu)/s)
    rep = score_split(t, answers, va_qa, z, z)
    print(L, logit, "token", round(rep["p_dev"]["token_auroc"],3), "answer", round(rep["p_dev"]["answer_auroc"],3), {k: round(v["token_auroc"],3) for k,v in rep["baselines"].items() if "token_auroc" in v})
