"""Facts inside creative text: contrast the request against a request without its subject, at
name slots only (train / validation relations; a harness, not a shipped method).

``oracle<k>`` in name_hold.py shows the right name is often among the model's top candidates
where a creative text reaches a name, just not first. This tries to move it up without knowing
the fact: a second stream of the same model continues the same text after a neutral request
(NEUTRAL below) that does not mention the subject; where the top next token starts a
capitalised word, the scores become ``(1 + a) log p(. | request) - a log p(. | neutral)``
(context-aware decoding, Shi et al., 2023, "Trusting Your Evidence: Hallucinate Less with
Context-aware Decoding", applied at name slots only), so a name the request makes likelier gains
over one the model writes anywhere; every other token is the policy's as it is. Modes
``cad<a>``; ``policy`` is the shipped knob. Prints fact accuracy and pooled distinct-2 on the
known facts' mixed prompts (3 samples, 48 tokens, the eval's seeds).

    python docs/results/scripts/name_contrast.py OUT.json policy,cad0.5,cad1 0.5 train 120
"""
import argparse
import json
import time

import torch

from tigerdecode.api import ControlledGenerator
from tigerdecode.cli.options import load_items, load_model_for
from tigerdecode.decode.sampling import name_masks
from tigerdecode.eval import creative_facts as cf
from tigerdecode.fsutil import atomic_write
from tigerdecode.methods.ensemble import Ensemble, Member
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.policy.control import PolicyControl
from tigerdecode.qa.data import qa_wikidata_path

NEUTRAL = "Write a short creative text."
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("modes")
ap.add_argument("creativities")
ap.add_argument("split")
ap.add_argument("n_facts", type=int)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
model, tok = load_model_for("default")
items = cf.known_mixed_items(model, tok, load_items(qa_wikidata_path(), a.split), a.n_facts)
print("items", len(items), flush=True)
V = model.get_output_embeddings().weight.shape[0]
cap, _ = name_masks(tok, V, torch.device("cpu"))  # tokens that start a capitalised word


class Neutral(Ensemble):
    """Member 0 reads the request; member 1 the neutral request, for every row."""

    def encode(self, prompts, *, raw=False, max_length=None):
        return [(model, *encode_prompts(tok, p, raw=raw, max_length=max_length).values())
                for p in (prompts, [NEUTRAL] * len(prompts))]


class Contrast(PolicyControl):
    def __init__(self, policy, n, alpha):
        super().__init__(policy, n)
        self.alpha = alpha

    def scores(self, logits, d, ctx):
        z = logits[0].float()
        slot = cap[z.argmax(-1).cpu()].to(z.device)
        if not bool(slot.any()):
            return z
        lp0, lp1 = torch.log_softmax(z, -1), torch.log_softmax(logits[1].float(), -1)
        s = torch.log_softmax(z, -1).clone()
        s[slot] = (1 + self.alpha) * lp0[slot] - self.alpha * lp1[slot]
        return s


ens = ControlledGenerator(model, tok, ensemble=Neutral([Member(model), Member(model)], tok))
one = ControlledGenerator(model, tok)
res = {}
prompts = [it for it in items for _ in range(3)]
for mode in a.modes.split(","):
    for c in (float(x) for x in a.creativities.split(",")):
        t0, outs = time.time(), []
        gen = one if mode == "policy" else ens
        if mode != "policy":
            alpha = float(mode[3:])
            gen.control = lambda req, n, alpha=alpha: Contrast(req.policy(), n, alpha)
        for s in range(0, len(prompts), 30):
            chunk = prompts[s:s + 30]
            out = gen.generate_text([it.prompt for it in chunk], creativity=c, max_new_tokens=48,
                                    seed=s)
            outs += [{"prompt": it.prompt, "answers": it.answers, "text": r.text,
                      "abstained": r.abstained} for it, r in zip(chunk, out, strict=True)]
        row = cf.row_from_outputs({"method": mode, "setting": f"c={c}", "creativity": c,
                                   "gen_method": "tigerdecode"}, outs)
        res[f"{mode}:{c}"] = {"row": row, "outputs": outs}
        print(mode, f"c={c}", f"{time.time() - t0:.0f}s", f"fact {row['fact_accuracy']:.3f}",
              f"distinct-2 {row['distinct_2']:.3f}", flush=True)
        atomic_write(a.out, json.dumps(res))
