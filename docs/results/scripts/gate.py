import time, torch
torch.set_num_threads(2)
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.cli.options import load_items
from tigerdecode.cli.eval import _spread
from tigerdecode.qa.data import qa_wikidata_path, dataset_path
from tigerdecode.qa.forms import with_forms
from tigerdecode.qa.prompts import format_prompt
from tigerdecode.eval.runner import judge_outcome
from tigerdecode.eval import creative_facts as cf
m, t = load_model("default")
g = ControlledGenerator(m, t)
val = load_items(qa_wikidata_path(), "validation")
items = with_forms(_spread(val, 150), ("question",))
mixed = cf.mixed_items(val, 40, 0)
creative = [it.prompt for it in load_items(dataset_path("creative_prompts.jsonl"), limit=20, open_prompts=True)]
t0 = time.time()
for c in (0.0, 0.5):
    for gate in (0.5, 0.05, 0.2):
        kw = dict(creativity=c, abstain_slot=gate)
        out = []
        for s in range(0, len(items), 50):
            out += g.generate_text([format_prompt(it.prompt) for it in items[s:s+50]], max_new_tokens=24, seed=s, **kw)
        o = [judge_outcome(it, r.text, r.abstained) for it, r in zip(items, out)]
        mx = g.generate_text([it.prompt for it in mixed], max_new_tokens=48, seed=0, **kw)
        cr = g.generate_text(creative, max_new_tokens=40, seed=0, **kw)
        n = len(o)
        print(f"c={c} gate={gate}: right {o.count('right')}/{n} wrong {o.count('wrong')} abstain {o.count('abstain')} | "
              f"mixed abstain {sum(r.abstained for r in mx)}/{len(mx)} creative abstain {sum(r.abstained for r in cr)}/{len(cr)} ({time.time()-t0:.0f}s)", flush=True)
