"""Shipped heads vs the heads of `tigerdecode fit default --budget-minutes 45` on the fit's own
held-out store (same answers, same stored states). More checkpoints to score beside them:
NAME=DIR arguments (e.g. `more=runs/fit_default/heads_more`)."""
import json, random, shutil, sys
from pathlib import Path
import torch
from tigerdecode.heads import ControlHeads
from tigerdecode.model.load import load_model
from tigerdecode.qa.data import load_qa, load_prompts, select_split, qa_wikidata_path
from tigerdecode.training.evaluate import evaluate_heads, summary
from tigerdecode.training.sampling import parse_settings
torch.set_num_threads(1)
plan = json.load(open("runs/fit_default/work/plan.json"))
p = plan.get("plan", plan)
pool = select_split(load_qa(qa_wikidata_path()), "test")
n = p["n_eval"]
items = random.Random(1).sample(pool, n) if n < len(pool) else pool
items += load_prompts(Path("data/creative_prompts.jsonl"))[:p["n_creative_eval"]]
model, tok = load_model("default")
extra = [tuple(a.split("=", 1)) for a in sys.argv[1:]]
for name, d in [("shipped", "heads/smollm2-135m-instruct"), ("fit45", "runs/fit_default/heads"),
                *extra]:
    store = Path(f"runs/exp/fitstore_{name}")
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree("runs/fit_default/work/eval_heads", store)
    h = ControlHeads.load(d, model=model, tokenizer=tok)
    rep = evaluate_heads(model, tok, h, items, settings=parse_settings(p["eval_settings"]),
                         max_new_tokens=p["eval_max_new_tokens"], batch_size=p["batch_size"],
                         seed=1, work_dir=store, progress=False)
    print(name, json.dumps(summary(rep)))
