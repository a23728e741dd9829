"""Facts inside creative text: K samples of a prompt decoded side by side, each name slot leaning
toward the names its sibling samples lean to (train / validation; a harness, not a method).

`consensus` (knob.md §12) picks whole samples by the names they share; `oracle<k>` (§13) shows
the right name is often among a name slot's top candidates but not first. This moves the vote
inside the decode: the K samples of one prompt run in one batch; at a row's name slot (its top
next token starts a capitalised word and the token before did not end a sentence) its
distribution over name-starting tokens is added to the row's tally, and the row's scores on
those tokens get ``beta * log(lam + (1 - lam) q)``, where q is the siblings' summed tallies
scaled to a maximum of 1 (nothing where the siblings have none yet). A name the siblings also
reach for keeps its score; one none of them considers loses up to ``beta * log(lam)``.

Prints, per beta, fact accuracy / pooled distinct-2 of the first M samples of each prompt (one
decode each, as `tigerdecode eval` scores) and of the M most agreed-with of K (consensus on
top). Same prompts, chunks and seeds as consensus.py, so ``beta`` 0 repeats its samples.

    python docs/results/scripts/name_prior.py runs/exp/prior_tr.json 0.5 1,3 train 120 --k 9 --m 3
"""
import argparse
import json
import os
import time

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for
from tigerdecode.decode.sampling import name_masks
from tigerdecode.eval import creative_facts as cf
from tigerdecode.eval.metrics import distinct_n
from tigerdecode.fsutil import atomic_write
from tigerdecode.policy.consensus import consensus_order
from tigerdecode.policy.control import PolicyControl
from tigerdecode.qa.data import qa_wikidata_path
from tigerdecode.qa.labels import label_mixed

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("creativity", type=float)
ap.add_argument("betas")
ap.add_argument("split")
ap.add_argument("n_facts", type=int)
ap.add_argument("--k", type=int, default=9)
ap.add_argument("--m", type=int, default=3)
ap.add_argument("--lam", type=float, default=0.1)
ap.add_argument("--skip-prompt-words", action="store_true",
                help="leave out of the tallies and the bonus the tokens that start a word of the "
                     "row's own prompt (its subject: every sibling reaches for it)")
ap.add_argument("--chunks", type=int, default=0, help="decode only this many chunks (a check)")
ap.add_argument("--compare", help="a consensus.py output: count the beta-0 samples equal to its own")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model, tok = load_model_for("default")
items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), a.split), a.n_facts)
print("items", len(items), flush=True)
V = model.get_output_embeddings().weight.shape[0]
starts, ends = name_masks(tok, V, torch.device("cpu"))


def prompt_mask(prompt):
    """(V,) bool: tokens that start a word of the prompt (with and without a space before it)."""
    m = torch.zeros(V, dtype=torch.bool)
    for w in prompt.replace("'s", " ").split():
        w = w.strip(".,:;!?\"'()")
        for v in (w, " " + w):
            ids = tok(v, add_special_tokens=False)["input_ids"] if w else []
            if ids:
                m[ids[0]] = True
    return m


ROW_SKIP = None  # (B, V) bool for the chunk being decoded, with --skip-prompt-words


class NamePrior(PolicyControl):
    def __init__(self, policy, n, beta):
        super().__init__(policy, n)
        self.beta, self.tally, self.prev, self.pending = beta, None, None, None

    def scores(self, logits, d, ctx):
        s = super().scores(logits, d, ctx)
        B = s.shape[0]
        if self.tally is None:
            self.tally = torch.zeros(B, V)
            self.prev = torch.full((B,), -1)
        after_end = (self.prev < 0) | ends[self.prev.clamp(min=0)]
        slot = starts[s.argmax(-1)] & ~after_end
        self.pending = None
        if not bool(slot.any()):
            return s
        rows = slot.nonzero().flatten()
        keep = starts if ROW_SKIP is None else starts & ~ROW_SKIP[rows]
        p = torch.softmax(s[rows].float(), -1) * keep
        self.pending = (rows, p / p.sum(-1, keepdim=True).clamp(min=1e-9))
        if self.beta == 0:
            return s
        group = self.tally.view(B // a.k, a.k, V).sum(1)
        others = group[rows // a.k] - self.tally[rows]
        top = others.max(-1, keepdim=True).values
        q = others / top.clamp(min=1e-9)
        bonus = self.beta * torch.log(a.lam + (1 - a.lam) * q) * keep
        bonus[top.squeeze(-1) <= 0] = 0.0
        s = s.clone()
        s[rows] += bonus.to(s.dtype)
        return s

    def observe(self, tokens, ctx):
        super().observe(tokens, ctx)
        if self.pending is not None:
            rows, p = self.pending
            self.tally[rows] += p
        self.prev = tokens.flatten().cpu().clone()


res = json.load(open(a.out)) if os.path.exists(a.out) else {}
gen = ControlledGenerator(model, tok)
prompts = [it for it in items for _ in range(a.k)]
chunk_rows = 4 * a.k
for beta in (float(x) for x in a.betas.split(",")):
    key = f"c={a.creativity},beta={beta:g}" + (",skip" if a.skip_prompt_words else "")
    if key in res:
        continue
    gen.control = lambda req, n, beta=beta: NamePrior(req.policy(), n, beta)
    t0, outs = time.time(), []
    stop = len(prompts) if not a.chunks else a.chunks * chunk_rows
    for s in range(0, stop, chunk_rows):
        chunk = prompts[s:s + chunk_rows]
        if a.skip_prompt_words:
            ROW_SKIP = torch.stack([prompt_mask(it.prompt) for it in chunk])
        out = gen.generate_text([it.prompt for it in chunk], creativity=a.creativity,
                                max_new_tokens=48, seed=s)
        outs += [{"prompt": it.prompt, "answers": it.answers, "text": r.text,
                  "abstained": r.abstained} for it, r in zip(chunk, out, strict=True)]
    res[key] = outs
    print(key, f"{time.time() - t0:.0f}s", flush=True)
    atomic_write(a.out, json.dumps(res))


def right(o):
    return not o["abstained"] and label_mixed(o["answers"], [o["text"]]).correct


for key, outs in res.items():
    groups = {}
    for o in outs:
        groups.setdefault(o["prompt"], []).append(o)
    first = [x for xs in groups.values() for x in xs[:a.m]]
    picked = [xs[i] for p, xs in groups.items()
              for i in consensus_order(p, [x["text"] for x in xs])[:a.m]]
    for name, rows in ((f"first {a.m}", first), (f"{a.m} of {a.k}", picked)):
        print(f"{key:18s} {name:8s} n={len(rows):4d} fact {sum(map(right, rows)) / len(rows):.3f} "
              f"distinct-2 {distinct_n([r['text'] for r in rows], 2):.3f}")
if a.compare:
    theirs = json.load(open(a.compare))[f"c={a.creativity}"]
    ours = res.get(f"c={a.creativity},beta=0", [])
    same = sum(x["text"] == y["text"] for x, y in zip(ours, theirs, strict=False))
    print(f"beta 0 against {a.compare}: {same} of {len(ours)} samples identical")
