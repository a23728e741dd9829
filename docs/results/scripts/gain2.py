import json, sys, time, random, torch
torch.set_num_threads(2)
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.cli.options import load_items
from tigerdecode.qa.data import qa_wikidata_path, dataset_path
from tigerdecode.qa.forms import question_form
from tigerdecode.qa.prompts import format_prompt
from tigerdecode.eval.runner import judge_outcome
from tigerdecode.eval.metrics import distinct_n
m, t = load_model("default")
g = ControlledGenerator(m, t)
pool = [q for q in (question_form(it) for it in load_items(qa_wikidata_path(), "validation")) if q is not None]
random.Random(0).shuffle(pool)
known = []
t0 = time.time()
for s in range(0, 900, 60):
    ch = pool[s:s+60]
    out = g.generate_text([format_prompt(it.prompt) for it in ch], method="greedy", max_new_tokens=24)
    known += [it for it, r in zip(ch, out) if judge_outcome(it, r.text, r.abstained) == "right"]
    if len(known) >= 40: break
known = known[:40]
print("known", len(known), "of", s + 60, f"({time.time()-t0:.0f}s)", [k.prompt for k in known[:5]], flush=True)
creative = [it.prompt for it in load_items(dataset_path("creative_prompts.jsonl"), limit=20, open_prompts=True)]
for name, kw in [("T0.5", dict(method="temperature", temperature=0.5)),
                 ("c.5 g1", dict(creativity=0.5)), ("c.5 g3", dict(creativity=0.5, slot_gain=3.0)),
                 ("c.5 g10", dict(creativity=0.5, slot_gain=10.0)),
                 ("c.75 g1", dict(creativity=0.75)), ("c.75 g10", dict(creativity=0.75, slot_gain=10.0))]:
    kw.setdefault("creativity", 0.5)
    o = []
    for seed in range(5):
        out = g.generate_text([format_prompt(it.prompt) for it in known], max_new_tokens=24, seed=1000 * seed, **kw)
        o += [judge_outcome(it, r.text, r.abstained) for it, r in zip(known, out)]
    cr = []
    for s in range(3):
        cr += g.generate_text(creative, max_new_tokens=40, seed=100 * s, **kw)
    n = len(o)
    print(f"{name:10s} right {o.count('right')/n:.3f} wrong {o.count('wrong')/n:.3f} abstain {o.count('abstain')/n:.3f} "
          f"creative-d2 {distinct_n([r.text for r in cr], 2):.3f} ({time.time()-t0:.0f}s)", flush=True)
