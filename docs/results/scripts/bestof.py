import json, sys, time, torch
torch.set_num_threads(2)
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.cli.options import load_items
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.labels import label_mixed
from tigerdecode.eval import creative_facts as cf

split, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cs = [float(x) for x in sys.argv[4].split(",")]
model, tok = load_model("default")
t0 = time.time()
items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), split), n, 0, 48)
print("known", len(items), time.time() - t0, flush=True)
gen = ControlledGenerator(model, tok)
out = []
for c in cs:
    prompts = [it for it in items for _ in range(k)]
    for s in range(0, len(prompts), 40):
        chunk = prompts[s:s + 40]
        res = gen.generate_text([it.prompt for it in chunk], creativity=c, max_new_tokens=48, seed=s)
        for it, r in zip(chunk, res):
            out.append({"c": c, "id": it.id, "prompt": it.prompt, "answers": it.answers, "text": r.text,
                        "right": label_mixed(it.answers, [r.text]).correct,
                        "trace": [(t.token, t.p_slot, t.p_dev, t.p_stop) for t in r.trace]})
    print("c", c, time.time() - t0, flush=True)
json.dump(out, open(f"runs/exp/bestof_{split}.json", "w"))
