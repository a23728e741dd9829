"""Experiment: best-of-k by the heads on validation QA (question form)."""
import json, sys, time, random
import torch
from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_model_for, load_items
from tigerdecode.eval.runner import judge_outcome
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.forms import question_form
from tigerdecode.qa.prompts import format_prompt
from tigerdecode.model.prompting import encode_prompts

torch.set_num_threads(2)
out_path = sys.argv[1]
settings = [s.split(":") for s in sys.argv[2].split(",")]
K = int(sys.argv[3])
split = sys.argv[4] if len(sys.argv) > 4 else "validation"
model, tok = load_model_for("default")
pool = [q for q in (question_form(it) for it in load_items(qa_wikidata_path(), split)) if q]
random.Random(0).shuffle(pool)
items = pool[:150]
gen = ControlledGenerator(model, tok)

@torch.inference_mode()
def logprob(prompt, ids):
    enc = encode_prompts(tok, [prompt])
    full = torch.cat([enc["input_ids"], torch.tensor([ids])], 1)
    lp = torch.log_softmax(model(full).logits[0, enc["input_ids"].shape[1] - 1:-1].float(), -1)
    return lp[torch.arange(len(ids)), torch.tensor(ids)].tolist()

res = {}
for method, val in settings:
    t0 = time.time()
    k = 1 if (method == "tigerdecode" and float(val) == 0) else K
    prompts = [it for it in items for _ in range(k)]
    rows = []
    for s in range(0, len(prompts), 40):
        chunk = prompts[s:s + 40]
        kw = dict(creativity=float(val)) if method == "tigerdecode" else dict(
            method="temperature", temperature=float(val), creativity=0.5)
        out = gen.generate_text([format_prompt(it.prompt) for it in chunk], max_new_tokens=32,
                                seed=1000 + s, **kw)
        for it, r in zip(chunk, out):
            tr = r.trace
            slot = [t.p_slot or 0 for t in tr]
            first = next((j for j, p in enumerate(slot) if p >= 0.5), None)
            lps = logprob(format_prompt(it.prompt), r.token_ids) if r.token_ids else []
            rows.append({"prompt": it.prompt, "text": r.text, "abstained": r.abstained,
                         "outcome": judge_outcome(it, r.text, r.abstained),
                         "max_slot": max(slot, default=0), "first": first,
                         "risk_first": None if first is None else tr[first].p_risk,
                         "dev_max": max([t.p_dev or 0 for t in tr[first:]], default=0) if first is not None else None,
                         "dev_all": max([t.p_dev or 0 for t in tr], default=0),
                         "slot_lp": None if first is None or first >= len(lps) else lps[first],
                         "mean_lp": sum(lps) / max(len(lps), 1), "n": len(lps)})
    res[f"{method}:{val}"] = rows
    oc = [r["outcome"] for r in rows]
    print(method, val, f"{time.time()-t0:.0f}s", {o: oc.count(o) / len(oc) for o in set(oc)}, flush=True)
    json.dump(res, open(out_path, "w"))
