"""Experiment: best-of-k selection by the heads on validation known facts (creative requests)."""
import json, sys, time
import torch
from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_model_for, load_items
from tigerdecode.eval import creative_facts as cf
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.labels import label_mixed
from tigerdecode.model.prompting import encode_prompts

torch.set_num_threads(1)
out_path = sys.argv[1]
settings = [s.split(":") for s in sys.argv[2].split(",")]  # method:value
K = int(sys.argv[3]) if len(sys.argv) > 3 else 12
split = sys.argv[4] if len(sys.argv) > 4 else "validation"
model, tok = load_model_for("default")
items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), split), 40)
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
    prompts = [it for it in items for _ in range(K)]
    rows = []
    for s in range(0, len(prompts), 30):
        chunk = prompts[s:s + 30]
        kw = dict(creativity=float(val)) if method == "tigerdecode" else dict(
            method="temperature", temperature=float(val), creativity=0.5)
        out = gen.generate_text([it.prompt for it in chunk], max_new_tokens=48, seed=1000 + s, **kw)
        for it, r in zip(chunk, out):
            tr = r.trace
            slot = [t.p_slot or 0 for t in tr]
            first = next((j for j, p in enumerate(slot) if p >= 0.5), None)
            lps = logprob(it.prompt, r.token_ids) if r.token_ids else []
            rows.append({"prompt": it.prompt, "text": r.text, "abstained": r.abstained,
                         "right": (not r.abstained) and label_mixed(it.answers, [r.text]).correct,
                         "max_slot": max(slot, default=0), "first": first,
                         "risk_first": None if first is None else tr[first].p_risk,
                         "dev_max": max([t.p_dev or 0 for t in tr[first:]], default=0) if first is not None else None,
                         "slot_lp": None if first is None or first >= len(lps) else lps[first],
                         "mean_lp": sum(lps) / max(len(lps), 1), "n": len(lps)})
    res[f"{method}:{val}"] = rows
    print(method, val, f"{time.time()-t0:.0f}s", sum(r["right"] for r in rows) / len(rows), flush=True)
    json.dump(res, open(out_path, "w"))
