"""How much the fit's p_dev gains from more training answers: heads on the fit's three-layer
candidate trained on a share of the training topics' factual answers (open-prompt answers all
kept), scored on validation topics only (mean over topic splits), never on the held-out test
relations.

    python docs/results/scripts/fit_learning_curve.py runs/fit_default/work --threads 2
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from tigerdecode.model.load import Fingerprint
from tigerdecode.training.store import FeatureStore
from tigerdecode.training.train import (
    TrainConfig,
    _trial,
    load_many,
    topic_split,
    training_targets,
)

ap = argparse.ArgumentParser()
ap.add_argument("work", type=Path, help="a fit's work directory (data_qa, data_open)")
ap.add_argument("--layers", default="16,20,24")
ap.add_argument("--shares", default="0.25,0.5,0.75,1.0")
ap.add_argument("--splits", type=int, default=3)
ap.add_argument("--max-epochs", type=int, default=40)
ap.add_argument("--threads", type=int, default=2)
args = ap.parse_args()
torch.set_num_threads(args.threads)
layers = [int(x) for x in args.layers.split(",")]
dirs = [args.work / "data_qa", args.work / "data_open"]
t, answers = load_many(dirs, layers)
fp = Fingerprint.from_dict(FeatureStore(dirs[0]).manifest()["config"]["fingerprint"])
tc = TrainConfig(max_epochs=args.max_epochs)
targets, is_open = training_targets(t, answers, tc.faithful_restatement)
mixed = np.array([a.get("form") == "mixed" for a in answers])
factual = np.array([not a.get("open") and a.get("form") != "mixed" for a in answers])
hidden = t[f"layer_{layers[0]}"].shape[1]

print(f"{len(answers)} answers ({int(factual.sum())} factual in completion / question form, "
      f"{int(mixed.sum())} mixed, {sum(bool(a.get('open')) for a in answers)} open); "
      f"layers {layers}; {args.splits} topic splits")
print("| share of training prompts | factual training answers | val p_dev token AUROC | "
      "val p_dev answer AUROC | val p_stop AUROC |")
print("|---:|---:|---:|---:|---:|")
for share in (float(s) for s in args.shares.split(",")):
    rows = {"token": [], "answer": [], "stop": [], "n": []}
    for k in range(args.splits):
        val_ans = topic_split(answers, tc.val_fraction, k)
        # a share of the training split's factual answers, by prompt (both settings' answers of
        # a prompt stay together), the same prompts for every split's seed
        prompts = sorted({a["prompt"] for a, v, f in zip(answers, val_ans, factual, strict=True)
                          if f and not v})
        keep = set(np.random.default_rng(0).permutation(prompts)[:round(share * len(prompts))])
        use = np.array([(not v) and (not f or a["prompt"] in keep)
                        for a, v, f in zip(answers, val_ans, factual, strict=True)])
        tr = np.flatnonzero(use[t["answer"]])
        va = np.flatnonzero(val_ans[t["answer"]])
        *_, trial = _trial(t, answers, fp, hidden, "linear", layers, targets, tr, va,
                           ~is_open[va], tc)
        rows["token"].append(trial["val_dev_token_auroc"])
        rows["answer"].append(trial["val_dev_answer_auroc"])
        rows["stop"].append(trial["val_stop_auroc"])
        rows["n"].append(int((use & factual).sum()))
    print(f"| {share:.2f} | {np.mean(rows['n']):.0f} | {np.mean(rows['token']):.3f} | "
          f"{np.mean(rows['answer']):.3f} | {np.mean(rows['stop']):.3f} |", flush=True)
