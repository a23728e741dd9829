"""Does agreement between samples add to the shipped abstention bars, at equal right answers kept?

The data the bars were chosen on (knob.md §8: the eight non-test relations, 300 facts in question
and completion form, beside data/easy_validation_facts.jsonl), decoded the way `tigerdecode policy
risk` decodes it: tigerdecode at creativity 0 with abstention off, each answer's peaks read by
`eval.risk.peaks` (p_risk at the first fact slot, the p_dev peak, the no-slot flag, the mean
top-token log-probability) and labelled. Beside each answer, K samples at temperature T; its
agreement is the share of samples that use one of its names (capitalised words not in the
prompt; an answer without one is never abstained on by agreement).

Prints, for the shipped bars and for every lowest-part floor on right answers kept (0.95, 0.93,
0.90, 0.85): the most wrong answers any bar triple (p_dev, log-probability, p_risk) catches with
every part keeping that share of its right answers, and the same with an agreement bar beside
them; then answer-level AUROC (wrong = positive) of each signal and of a logistic fit of the
signals with and without agreement (5-fold, cross-validated); last, consensus as a way to *pick*
the answer to a question: the most agreed-with of the answer and its K samples (ties to the
answer), labelled like the answer.

    python docs/results/scripts/agree_bars.py runs/exp/agree_bars.json --k 6 --t 0.7
"""
import argparse
import json
import os
import random

import numpy as np
import torch

TOPICS = ["native language", "religion", "instrument", "located in",
          "languages spoken, written or signed", "headquarters location", "material used",
          "work location"]
EASY = "data/easy_validation_facts.jsonl"

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--k", type=int, default=6)
ap.add_argument("--t", type=float, default=0.7)
ap.add_argument("--batch", type=int, default=25)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()


def asked_items():
    from tigerdecode.cli.options import load_items
    from tigerdecode.qa.data import qa_wikidata_path
    from tigerdecode.qa.forms import form_of, with_forms

    items = [it for it in load_items(qa_wikidata_path(), "all") if it.topic in set(TOPICS)]
    random.Random(0).shuffle(items)  # as `policy risk --split all --topic ... --sample 300`
    items = items[:300]
    rel = [it for it in with_forms(items, ("question", "completion"), seed=0)
           if form_of(it) != "mixed"]
    return [("relations", it) for it in rel] + [("easy", it) for it in load_items(EASY, "all")]


def decode(path):
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.cli.options import load_model_for
    from tigerdecode.eval.risk import peaks
    from tigerdecode.fsutil import atomic_write
    from tigerdecode.policy.knob import Policy
    from tigerdecode.qa.labels import label_answer
    from tigerdecode.qa.prompts import format_prompt

    torch.set_num_threads(a.threads)
    rows = json.load(open(path))["rows"] if os.path.exists(path) else []
    if len(rows) >= len(asked):
        return rows
    model, tok = load_model_for("default")
    gen = ControlledGenerator(model, tok)
    policy = Policy(0.0)
    for s in range(len(rows), len(asked), a.batch):
        chunk = asked[s:s + a.batch]
        prompts = [format_prompt(it.prompt) for _, it in chunk]
        res = gen.generate_text(prompts, creativity=0, max_new_tokens=24, seed=s,
                                use_abstain=False)
        samples = gen.generate_text([p for p in prompts for _ in range(a.k)], method="temperature",
                                    temperature=a.t, max_new_tokens=24, seed=1000 + s)
        for i, ((part, it), r) in enumerate(zip(chunk, res, strict=True)):
            rows.append({"part": part, "prompt": it.prompt, "text": r.text,
                         "right": label_answer(it.prompt, it.answers, [r.text], True).correct,
                         "peaks": list(peaks(r, policy)),
                         "samples": [x.text for x in samples[i * a.k:(i + 1) * a.k]]})
        atomic_write(path, json.dumps({"k": a.k, "t": a.t, "rows": rows}))
        print(f"{len(rows)} of {len(asked)}", flush=True)
    return rows


asked = asked_items()
rows = decode(a.out)
from tigerdecode.eval.risk import BARS, LOGPROB_BARS  # noqa: E402
from tigerdecode.policy.consensus import names  # noqa: E402

part = np.array([r["part"] for r in rows])
y = np.array([r["right"] for r in rows])
pk = np.array([r["peaks"] for r in rows], float)  # risk, dev, no slot, mean log-prob
agree = []
for r in rows:
    ns = names(r["text"], r["prompt"])
    agree.append(np.nan if not ns else
                 sum(bool(ns & names(x, r["prompt"])) for x in r["samples"]) / len(r["samples"]))
agree = np.array(agree)
parts = sorted(set(part))
print(f"{len(rows)} answers at creativity 0; " + "; ".join(
    f"{p}: {int(y[part == p].sum())} right / {int((~y[part == p]).sum())} wrong" for p in parts)
    + f"; {int(np.isnan(agree).sum())} name nothing")


def score(ab):
    """(lowest part's right kept, per-part (right kept, wrong caught), pooled (kept, caught))."""
    per = {p: ((~ab[(part == p) & y]).mean(), ab[(part == p) & ~y].mean()) for p in parts}
    return min(v[0] for v in per.values()), per, ((~ab[y]).mean(), ab[~y].mean())


def rule(d, m, r, g):
    """Abstain: no fact slot, p_dev peak >= d, mean log-prob < m, p_risk >= r, agreement < g."""
    ab = (pk[:, 2] > 0) | (pk[:, 1] >= d) | (pk[:, 3] < m) | (pk[:, 0] >= r)
    return ab | (~np.isnan(agree) & (np.nan_to_num(agree, nan=1.0) < g - 1e-9))


def line(label, ab):
    _, per, pooled = score(ab)
    print(f"| {label} | " + " | ".join(f"{per[p][0]:.3f} / {per[p][1]:.3f}" for p in parts)
          + f" | {pooled[0]:.3f} / {pooled[1]:.3f} |")


head = "| rule | " + " | ".join(f"{p}: right kept / wrong caught" for p in parts) + " | pooled |"
print(head)
print("|---|" + "---|" * (len(parts) + 1))
line("shipped bars (p_dev 0.95, log-prob -0.85, p_risk 0.99)", rule(0.95, -0.85, 0.99, 0))
for g in range(1, a.k + 1):
    line(f"shipped bars + agreement >= {g}/{a.k}", rule(0.95, -0.85, 0.99, g / a.k))

devs = [b for b in BARS if b >= 0.5]
lps = [m for m in LOGPROB_BARS if m == float("-inf") or m >= -2.0]
risks = (0.9, 0.95, 0.99, 1.01)
agrees = [0.0] + [g / a.k for g in range(1, a.k + 1)]
print("\nThe most wrong answers caught with every part keeping >= the floor of its right answers:")
print(head.replace("rule", "floor | bars (p_dev, log-prob, p_risk[, agreement])"))
print("|---|---|" + "---|" * (len(parts) + 1))
for floor in (0.95, 0.93, 0.90, 0.85):
    for with_agree in (False, True):
        best = None
        for d in devs:
            for m in lps:
                for r in risks:
                    for g in (agrees if with_agree else [0.0]):
                        ab = rule(d, m, r, g)
                        low, _, pooled = score(ab)
                        if low < floor - 1e-12:
                            continue
                        key = (pooled[1], pooled[0])
                        if best is None or key > best[0]:
                            best = (key, (d, m, r, g), ab)
        d, m, r, g = best[1]
        label = f"{floor:.2f} | {d:g}, {m:g}, {r:g}" + (f", {g * a.k:.0f}/{a.k}" if with_agree else "")
        line(label, best[2])

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import cross_val_predict  # noqa: E402

named = ~np.isnan(agree)
print(f"\nAnswer-level AUROC (wrong = positive), the {int(named.sum())} answers that name something "
      f"({int(y[named].sum())} right):")
feats = {"p_dev peak": pk[:, 1], "p_risk": pk[:, 0], "1 - agreement": 1 - np.nan_to_num(agree),
         "- mean log-prob": -pk[:, 3]}
for k, v in feats.items():
    print(f"  {k}: {roc_auc_score(~y[named], v[named]):.3f}")
X = np.stack([-pk[:, 3], pk[:, 1], pk[:, 0]], 1)[named]
for label, cols in (("log-prob + p_dev + p_risk", X),
                    ("the same + agreement", np.concatenate([X, (1 - agree[named])[:, None]], 1))):
    p = cross_val_predict(LogisticRegression(C=1.0, max_iter=1000), cols, ~y[named], cv=5,
                          method="predict_proba")[:, 1]
    print(f"  logistic ({label}), 5-fold: {roc_auc_score(~y[named], p):.3f}")

from tigerdecode.policy.consensus import consensus_scores  # noqa: E402
from tigerdecode.qa.labels import label_answer  # noqa: E402

print(f"\nRight answers: the creativity-0 answer, the most agreed-with of it and its {a.k} samples, "
      "and the samples' mean:")
for p in parts:
    base = picked = mean = 0.0
    for (q, it), r in zip(asked, rows, strict=True):
        if q != p:
            continue
        texts = [r["text"], *r["samples"]]
        sc = consensus_scores(r["prompt"], texts)
        best = max(range(len(texts)), key=lambda i: (sc[i], i == 0))
        ok = [label_answer(it.prompt, it.answers, [t], True).correct for t in texts]
        base, picked, mean = base + r["right"], picked + ok[best], mean + np.mean(ok[1:])
    print(f"  {p}: {base:.0f} / {picked:.0f} / {mean:.1f}")
