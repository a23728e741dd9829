import json, sys, random, itertools
import numpy as np
out = json.load(open(sys.argv[1]))
from collections import defaultdict
def scores(o):
    tr = o["trace"]
    ps = [t[1] or 0 for t in tr]; pd = [t[2] or 0 for t in tr]
    mx = max(ps) if ps else 0
    # p_dev on tokens drawn at a slot (p_slot > .5)
    slot_dev = [d for s, d in zip(ps, pd) if s > 0.5]
    return {"max_slot": mx, "sum_slot": sum(ps), "slot_ok": mx * (1 - (max(slot_dev) if slot_dev else 1)),
            "neg_maxdev": -max(pd) if pd else 0, "n_slot": sum(s > .5 for s in ps),
            "slot_then": mx - 0.5 * (max(slot_dev) if slot_dev else 0)}
for c in sorted({o["c"] for o in out}):
    g = defaultdict(list)
    for o in out:
        if o["c"] == c: g[o["id"]].append(o)
    base = np.mean([o["right"] for v in g.values() for o in v])
    oracle = np.mean([any(o["right"] for o in v) for v in g.values()])
    print(f"c={c} mean {base:.3f} oracle@4 {oracle:.3f}")
    for key in ["max_slot", "sum_slot", "slot_ok", "neg_maxdev", "n_slot", "slot_then"]:
        for kk in (2, 4):
            acc = []
            for v in g.values():
                # all subsets of size kk in order: use consecutive groups
                for s in range(0, len(v), kk):
                    grp = v[s:s+kk]
                    best = max(grp, key=lambda o: scores(o)[key])
                    acc.append(best["right"])
            print(f"  {key:10s} k={kk} {np.mean(acc):.3f}")
    # AUROC of max_slot for right
    from sklearn.metrics import roc_auc_score
    ys = [o["right"] for v in g.values() for o in v]
    for key in ["max_slot", "sum_slot", "slot_ok", "neg_maxdev"]:
        xs = [scores(o)[key] for v in g.values() for o in v]
        print(f"  AUROC {key} {roc_auc_score(ys, xs):.3f}")
