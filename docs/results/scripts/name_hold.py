"""Facts inside creative text: the name hold, the ceiling an oracle would reach, and temperature,
on the same known facts' mixed prompts (3 samples each, 48 tokens, seeds as `tigerdecode eval`).

Modes: ``policy`` (tigerdecode as configured; ``--set name_hold=0`` gives the policy before the
name hold), ``caps`` (name_hold 0, and the top token drawn greedily whenever it starts any
capitalised word, sentence starts included), ``oracle`` (name_hold 0, and the top token drawn
greedily whenever it is the first token of a gold answer: a ceiling for holding fact tokens,
not a method), ``oracle<k>`` (name_hold 0; where the top token starts a capitalised word, a
gold answer's first token among the top k is drawn: could *any* choice among the model's own
candidates at a name slot write the fact?), ``first<k>`` (the policy, and each answer's first k tokens drawn greedily: does
the opening decide whether a creative text ever names the fact?), ``T<x>`` (plain temperature x). Prints fact accuracy and pooled distinct-2.

    python docs/results/scripts/name_hold.py OUT.json policy,caps,oracle 0.5,0.75 train 120 \
        --set name_hold=0
"""
import argparse
import json
import time

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for, parse_sets
from tigerdecode.decode.sampling import blend, name_masks
from tigerdecode.eval import creative_facts as cf
from tigerdecode.fsutil import atomic_write
from tigerdecode.policy.control import PolicyControl
from tigerdecode.qa.data import qa_wikidata_path

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("modes")
ap.add_argument("creativities")
ap.add_argument("split")
ap.add_argument("n_facts", type=int)
ap.add_argument("--set", action="append", default=[])
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
sets = parse_sets(a.set)
model, tok = load_model_for("default")
items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), a.split), a.n_facts)
print("items", len(items), flush=True)
gen = ControlledGenerator(model, tok)
V = model.get_output_embeddings().weight.shape[0]
cap, _ = name_masks(tok, V, torch.device("cpu"))  # tokens that start a capitalised word


def gold_first(answers):
    s = set()
    for ans in answers:
        for v in (ans, " " + ans, ans[:1].upper() + ans[1:], " " + ans[:1].upper() + ans[1:]):
            ids = tok(v, add_special_tokens=False)["input_ids"]
            if ids:
                s.add(ids[0])
    return s


class Forced(PolicyControl):
    """The policy, with the top token made (near-)certain where the mode says."""

    def __init__(self, policy, n, mode, golds):
        super().__init__(policy, n)
        self.mode, self.golds = mode, golds

    def scores(self, logits, d, ctx):
        s = blend(logits, d.weights)
        top = s.argmax(-1)
        if self.mode.startswith("oracle") and self.mode != "oracle":
            cand = s.topk(int(self.mode[6:]), -1).indices.cpu()
            s = s.clone()
            for i in cap[top.cpu()].nonzero().flatten().tolist():
                good = [t for t in cand[i].tolist() if t in self.golds[i]]
                if good:
                    s[i, good[0]] += 50.0
            return s
        if self.mode == "oracle":
            hit = torch.tensor([int(t) in g for t, g in zip(top.tolist(), self.golds, strict=True)])
        elif self.mode.startswith("first"):
            hit = torch.full(top.shape, ctx.step < int(self.mode[5:]))
        else:
            hit = cap[top.cpu()]
        if hit.any():
            s = s.clone()
            rows = hit.nonzero().flatten()
            s[rows, top[rows]] += 50.0
        return s


res = {}
prompts = [it for it in items for _ in range(3)]
for mode in a.modes.split(","):
    for c in ([0.5] if mode.startswith("T") else [float(x) for x in a.creativities.split(",")]):
        t0, outs = time.time(), []
        for s in range(0, len(prompts), 30):
            chunk = prompts[s:s + 30]
            golds = [gold_first(it.answers) for it in chunk]
            kw = dict(sets)
            if mode.startswith("T"):
                kw = dict(method="temperature", temperature=float(mode[1:]))
                gen.control = ControlledGenerator.control.__get__(gen)
            elif mode == "policy":
                gen.control = ControlledGenerator.control.__get__(gen)
            else:
                if not mode.startswith("first"):
                    kw["name_hold"] = 0.0
                gen.control = lambda req, n, golds=golds, mode=mode: Forced(req.policy(), n, mode, golds)
            out = gen.generate_text([it.prompt for it in chunk], creativity=c, max_new_tokens=48,
                                    seed=s, **kw)
            for it, r in zip(chunk, out, strict=True):
                outs.append({"prompt": it.prompt, "answers": it.answers, "text": r.text,
                             "abstained": r.abstained})
        row = cf.row_from_outputs({"method": mode, "setting": f"c={c}", "creativity": c,
                                   "gen_method": "tigerdecode"}, outs)
        res[f"{mode}:{c}"] = {"row": row, "outputs": outs}
        print(mode, "" if mode.startswith("T") else f"c={c}", f"{time.time() - t0:.0f}s",
              f"fact {row['fact_accuracy']:.3f}", f"distinct-2 {row['distinct_2']:.3f}", flush=True)
        atomic_write(a.out, json.dumps(res))
