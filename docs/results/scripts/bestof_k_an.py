import json, sys, math
from tigerdecode.eval.metrics import distinct_n
res = json.load(open(sys.argv[1]))
K = 12  # candidates per prompt in the file
def scores(r):
    f = r["first"] is not None
    rk = r["risk_first"] if f else 1.0
    return {
        "random": 0,
        "has_slot": (0 if r["abstained"] else 1) * (1 if f else 0),
        "max_slot": r["max_slot"],
        "1-risk": (1 - rk) if f else -1,
        "slot*(1-risk)": r["max_slot"] * (1 - rk) if f else r["max_slot"] - 1,
        "mean_lp": r["mean_lp"],
        "slot_lp": r["slot_lp"] if r["slot_lp"] is not None else -99,
        "has_slot+mean_lp": (1 if f else 0) * 10 + r["mean_lp"],
        "has_slot+slot_lp": (1 if f else 0) * 100 + (r["slot_lp"] or -99),
        "has_slot-risk": (1 if f else 0) * 10 - (rk if f else 0),
    }
for key, rows in res.items():
    groups = {}
    for r in rows: groups.setdefault(r["prompt"], []).append(r)
    print(f"\n== {key}  ({len(groups)} prompts)")
    for k in (1, 2, 3, 4):
        line = []
        for name in scores(rows[0]):
            picks = []
            for p, g in groups.items():
                for start in range(0, 3 * k, k):
                    cand = g[start:start + k]
                    best = max(range(len(cand)), key=lambda j: (scores(cand[j])[name], -j))
                    picks.append(cand[best])
            acc = sum(r["right"] for r in picks) / len(picks)
            d2 = distinct_n([r["text"] for r in picks], 2)
            line.append(f"{name}={acc:.3f}/{d2:.3f}")
        print(f"k={k}: " + "  ".join(line))
