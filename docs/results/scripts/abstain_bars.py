"""Abstention bars on a validation set that mixes hard and easy facts, from recordings of
docs/results/scripts/abstain_record.py (answers labelled by today's rule, re-read here).

For each rule (which tokens' p_dev may end an answer), the lowest bar keeping >= 95% of the
right answers in *each* part (the eight non-test relations; the easy validation facts) and what
it catches of the wrong ones, per part and pooled; then each part's answer-level AUROC of the
p_dev peak and of the mean log-probability.

    python docs/results/scripts/abstain_bars.py runs/easy/rel_c0.json runs/easy/easy_c0.json
"""
import json
import sys

import numpy as np

from tigerdecode.qa.data import load_qa
from tigerdecode.qa.labels import label_answer

EASY = {it.prompt: it.answers for it in load_qa("data/easy_validation_facts.jsonl")}
BARS = np.round(np.arange(0.5, 1.0001, 0.0125), 4)


def load(path):
    d = json.load(open(path))
    rows = d["rows"]
    for r in rows:
        if r["prompt"] in EASY:  # re-read the label with today's rule
            r["right"] = label_answer(r["prompt"], EASY[r["prompt"]], [r["text"]], True).correct
    return d["creativity"], rows


def peak(r, veto=1.01, until_stop=None, slot_at=0.5):
    toks = r["toks"]
    first = next((j for j, t in enumerate(toks) if (t[2] or 0) >= slot_at), None)
    if first is None:
        return 0.0
    out = 0.0
    for j in range(first, len(toks)):
        tok, dev, _, _, stop, p = toks[j]
        if until_stop is not None and j > first and (toks[j - 1][4] or 0) >= until_stop:
            break
        if dev is not None and any(ch.isalnum() for ch in tok) and p < veto:
            out = max(out, dev)
    return out


def evaluate(parts, **rule):
    pk = {name: (np.array([peak(r, **rule) for r in rows if r["right"]]),
                 np.array([peak(r, **rule) for r in rows if not r["right"]]))
          for name, rows in parts.items()}
    for b in BARS:
        if all((pr < b).mean() >= 0.95 for pr, _ in pk.values() if len(pr)):
            break
    res = {"bar": float(b)}
    for name, (pr, pw) in pk.items():
        res[name] = ((pr < b).mean(), (pw >= b).mean(), len(pr), len(pw))
    allr = np.concatenate([pr for pr, _ in pk.values()])
    allw = np.concatenate([pw for _, pw in pk.values()])
    res["pooled"] = ((allr < b).mean(), (allw >= b).mean(), len(allr), len(allw))
    return res


def mean_logprob(r):
    """The answer's mean drawn-token log-probability (the recorder keeps the drawn token's)."""
    return float(np.mean([np.log(max(t[5], 1e-9)) for t in r["toks"]])) if r["toks"] else 0.0


def read_parts(files):
    parts, c = {}, None
    for path in files:
        c, rows = load(path)
        parts["easy" if rows and rows[0]["prompt"] in EASY else "relations"] = rows
    return c, parts


def aurocs(parts):
    """Answer-level AUROC (wrong = positive) of the p_dev peak and of minus the mean
    log-probability, over the answers that reach a fact slot."""
    from sklearn.metrics import roc_auc_score

    for name, rows in parts.items():
        rows = [r for r in rows if any((t[2] or 0) >= 0.5 for t in r["toks"])]
        y = [not r["right"] for r in rows]
        print(f"{name}: {len(rows)} answers reach a fact slot; answer AUROC p_dev peak "
              f"{roc_auc_score(y, [peak(r) for r in rows]):.3f}, minus mean log-prob "
              f"{roc_auc_score(y, [-mean_logprob(r) for r in rows]):.3f}")


def main(files):
    c, parts = read_parts(files)
    print(f"creativity {c:g}; " + "; ".join(
        f"{k}: {sum(r['right'] for r in v)} right, {sum(not r['right'] for r in v)} wrong"
        for k, v in parts.items()))
    rules = {"p_dev from the first slot (shipped)": {},
             **{f"veto p >= {v:g}": {"veto": v} for v in (0.95, 0.9, 0.8, 0.7, 0.5)},
             **{f"until p_stop >= {s:g}": {"until_stop": s} for s in (0.5, 0.8)}}
    print("| rule | bar | " + " | ".join(f"{k} right kept | {k} wrong caught" for k in
                                         [*parts, "pooled"]) + " |")
    print("|---|---:|" + "---:|---:|" * (len(parts) + 1))
    for name, rule in rules.items():
        res = evaluate(parts, **rule)
        cells = " | ".join(f"{res[k][0]:.3f} | {res[k][1]:.3f}" for k in [*parts, "pooled"])
        print(f"| {name} | {res['bar']:g} | {cells} |")
    aurocs(parts)


if __name__ == "__main__":
    main(sys.argv[1:])
