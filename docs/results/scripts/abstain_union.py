"""End-of-answer abstention on the answer's mean token log-probability, alone and beside the
p_dev bar, on the mixed validation set (recordings of abstain_record.py). For every p_dev bar
(1 = off) the highest log-probability bar keeping >= 95% of the right answers in *each* part,
and the wrong answers both rules together catch.

    python docs/results/scripts/abstain_union.py runs/easy/rel_c0.json runs/easy/easy_c0.json \
        --pair 0.9,off --pair 0.95,-0.85

``--pair D,M``: also print what the p_dev bar D with the log-probability bar M (or "off") does.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from abstain_bars import mean_logprob, peak, read_parts  # noqa: E402

args = sys.argv[1:]
pairs = [args[i + 1] for i, a in enumerate(args) if a == "--pair"]
files = [a for i, a in enumerate(args) if a != "--pair" and (i == 0 or args[i - 1] != "--pair")]
c, parts = read_parts(files)
data = {k: (np.array([peak(r) for r in v]), np.array([mean_logprob(r) for r in v]),
            np.array([r["right"] for r in v])) for k, v in parts.items()}
print(f"creativity {c:g}; " + "; ".join(f"{k}: {int(y.sum())} right, {int((~y).sum())} wrong"
                                        for k, (_, _, y) in data.items()))
print("| p_dev bar | log-prob bar | " + " | ".join(f"{k} right kept | {k} wrong caught"
                                                  for k in [*data, "pooled"]) + " |")
print("|---:|---:|" + "---:|---:|" * (len(data) + 1))


def row(d, m, label):
    cells, kr, kw = [], [], []
    for dv, lp, y in data.values():
        ab = (dv >= d) | (lp < m)
        cells.append(f"{(~ab)[y].mean():.3f} | {ab[~y].mean():.3f}")
        kr.append(ab[y])
        kw.append(ab[~y])
    kr, kw = np.concatenate(kr), np.concatenate(kw)
    cells.append(f"{(~kr).mean():.3f} | {kw.mean():.3f}")
    print(f"| {label} | " + " | ".join(cells) + " |")


for d in (0.875, 0.9, 0.925, 0.95, 1.01):
    best = None
    for m in np.round(np.arange(-3.0, 0.0001, 0.05), 3):  # abstain when mean log-prob < m
        ok = all((~((dv >= d) | (lp < m)))[y].mean() >= 0.95 for dv, lp, y in data.values())
        if ok:
            best = m
    if best is not None:
        row(d, best, f"{'off' if d > 1 else d} | {best:g}")
for pair in pairs:
    d, m = pair.split(",")
    row(float(d), float("-inf") if m == "off" else float(m), f"{d} | {m} (given)")
