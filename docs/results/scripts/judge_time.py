"""Where a judged decode's time goes: batches of validation questions decoded plain, then with
the judge at its defaults; the judge's parts timed by wrapping them. Quoted in
docs/results/judge.md.

    python docs/results/scripts/judge_time.py --items 48 --threads 1 [--min-rewind K]
"""

import argparse
import time
import warnings

import torch

import tigerdecode.judge.features as F
import tigerdecode.judge.model as JM
import tigerdecode.judge.rewrite as R
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.qa.data import load_qa, qa_wikidata_path, select_split
from tigerdecode.qa.prompts import format_prompt

warnings.simplefilter("ignore")
ap = argparse.ArgumentParser()
ap.add_argument("--items", type=int, default=48)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--repeats", type=int, default=2)
ap.add_argument("--min-rewind", type=int, default=None, help="the judge's (default: its own)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
T: dict[str, float] = {}


def timed(mod, name: str, key: str) -> None:
    if not hasattr(mod, name):  # parts that older or newer code does not have
        return
    f = getattr(mod, name)

    def g(*args, **kw):
        t0 = time.perf_counter()
        out = f(*args, **kw)
        T[key] = T.get(key, 0.0) + time.perf_counter() - t0
        return out
    setattr(mod, name, g)


timed(JM, "reencode", "re-read of the answers")
timed(JM, "features_from_reads", "features from the decode's reads")
timed(R, "rewind_cache", "rewind")
timed(F, "rewind_cache", "rewind")
timed(R, "decode", "rewrite decodes")
REWRITES: list[str] = []
_decode = R.decode


def rewrite_decode(members, *args, **kw):
    """The rewrites' decode, with its batch: rows, tokens written, lockstep steps, ms a token."""
    out = _decode(members, *args, **kw)
    n, s = sum(out.lengths), out.timings["decode_s"] + out.timings["prefill_s"]
    REWRITES.append(f"{members[0][1].shape[0]} rows, {n} tokens, {out.tokens.shape[1]} steps, "
                    f"{1000 * s / max(n, 1):.1f} ms a token")
    return out


R.decode = rewrite_decode
model, tok = load_model("default")
items = select_split(load_qa(qa_wikidata_path()), "validation")[:a.items]
prompts = [format_prompt(it.prompt) for it in items]
gen = ControlledGenerator(model, tok)
gen.generate_text(prompts[:4], max_new_tokens=4, judge="auto")  # load the judge, warm up
for _ in range(a.repeats):
    T.clear()
    REWRITES.clear()
    t0 = time.perf_counter()
    plain = gen.generate_text(prompts, max_new_tokens=16, seed=0)
    t1 = time.perf_counter()
    out = gen.generate_text(prompts, max_new_tokens=16, seed=0, judge="auto",
                            **({} if a.min_rewind is None else {"min_rewind": a.min_rewind}))
    t2 = time.perf_counter()
    verdicts = {v: sum(r.judge.verdict == v for r in out) for v in ("accept", "rewritten",
                                                                    "abstain")}
    print(f"plain {t1 - t0:.2f} s, judged {t2 - t1:.2f} s ({(t2 - t1) / (t1 - t0):.2f}x); "
          f"inside the judged call: {', '.join(f'{k} {v:.2f} s' for k, v in T.items())}; "
          f"verdicts {verdicts}")
    pt = plain[0].timings  # the call's decode: every row's tokens
    print(f"  plain decode: {1000 * pt['decode_s'] / pt['new_tokens']:.1f} ms a token after "
          f"a {pt['prefill_s']:.2f} s prefill; rewrite decodes: {'; '.join(REWRITES) or 'none'}")
