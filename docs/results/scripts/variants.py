import json, sys, time, torch
torch.set_num_threads(2)
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.policy.control import PolicyControl
from tigerdecode.qa.data import QAItem
from tigerdecode.qa.labels import label_mixed
from tigerdecode.eval.metrics import distinct_n

src = json.load(open("runs/exp/bestof_validation.json"))
seen, items = set(), []
for o in src:
    if o["id"] not in seen:
        seen.add(o["id"]); items.append(QAItem(prompt=o["prompt"], answers=o["answers"], id=o["id"]))
K = 4

class Var(PolicyControl):
    def __init__(self, policy, n, hold=0, min_p=None, t_scale=1.0, slot_gain_x=1.0, ent=0.0):
        super().__init__(policy, n); self.hold, self.mp, self.ts, self.t = hold, min_p, t_scale, 0
        self.ss = slot_gain_x
    def decide(self, signals, batch, device):
        if self.ss != 1.0 and signals.p_slot is not None:
            import dataclasses
            signals = dataclasses.replace(signals, p_slot=(signals.p_slot * self.ss).clamp(0, 1))
        d = super().decide(signals, batch, device)
        d.temperature.mul_(self.ts)
        if self.t < self.hold: d.temperature.zero_()
        if self.mp is not None: d.min_p.fill_(self.mp)
        return d
    def observe(self, tokens, ctx):
        self.t += 1

class Gen(ControlledGenerator):
    var = {}
    def control(self, req, n):
        if req.method == "tigerdecode" and self.var:
            return Var(req.policy(), n, **self.var)
        return super().control(req, n)

model, tok = load_model("default")
gen = Gen(model, tok)
cells = [x.split(":") for x in sys.argv[2].split(";")]
outf = sys.argv[1]
try: res = json.load(open(outf))
except Exception: res = {}
t0 = time.time()
for name, spec in cells:
    if name in res: continue
    kw = dict(a.split("=") for a in spec.split(",")) if spec else {}
    method = kw.pop("method", "tigerdecode")
    c = float(kw.pop("c", 0.5))
    var = {k: (int(v) if k == "hold" else float(v)) for k, v in kw.items() if k in ("hold", "min_p", "t_scale", "slot_gain_x")}
    extra = {k: float(v) for k, v in kw.items() if k not in var}
    gen.var = var
    prompts = [it for it in items for _ in range(K)]
    outs = []
    for s in range(0, len(prompts), 40):
        chunk = prompts[s:s + 40]
        r = gen.generate_text([it.prompt for it in chunk], creativity=c, max_new_tokens=48, seed=s,
                              method=method, **extra)
        outs += [{"id": it.id, "text": x.text, "right": label_mixed(it.answers, [x.text]).correct,
                  "abstained": x.abstained} for it, x in zip(chunk, r)]
    acc = sum(o["right"] for o in outs) / len(outs)
    d2 = distinct_n([o["text"] for o in outs], 2)
    res[name] = {"acc": acc, "d2": d2, "outs": outs}
    print(f"{name:24s} acc {acc:.3f} d2 {d2:.3f}  ({time.time()-t0:.0f}s)", flush=True)
    json.dump(res, open(outf, "w"))
