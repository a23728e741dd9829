import json, sys
from sklearn.metrics import roc_auc_score
res = json.load(open(sys.argv[1]))
for key, rows in res.items():
    y = [r["right"] for r in rows]
    f = [r["first"] is not None for r in rows]
    print(key, "n", len(rows), "right", sum(y), "has slot", sum(f),
          "P(right|slot)", sum(a and b for a, b in zip(y, f)) / max(sum(f), 1),
          "P(right|no slot)", sum(a and not b for a, b in zip(y, f)) / max(len(f) - sum(f), 1))
    for name, fn in [("max_slot", lambda r: r["max_slot"]), ("mean_lp", lambda r: r["mean_lp"]),
                     ("1-risk(slot)", lambda r: 1 - r["risk_first"] if r["first"] is not None else 0),
                     ("slot_lp", lambda r: r["slot_lp"] if r["slot_lp"] is not None else -50)]:
        print("  ", name, round(roc_auc_score(y, [fn(r) for r in rows]), 3))
