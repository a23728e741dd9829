import json, sys, collections
res = json.load(open(sys.argv[1]))
def risk(r):
    if r["abstained"]: return 3
    if r["first"] is None: return 2
    return max(r["dev_max"], r["risk_first"])
def norm(t): return " ".join(t.lower().split()[:6])
for key, rows in res.items():
    groups = collections.OrderedDict()
    for r in rows: groups.setdefault(r["prompt"], []).append(r)
    K = len(next(iter(groups.values())))
    print(f"== {key} K={K}")
    for k in sorted({1, 2, 3, K}):
        if k > K: continue
        for name, fn in [("random", lambda c: 0), ("risk", risk), ("-mean_lp", lambda c: -c["mean_lp"]),
                         ("risk,abst-if>=2", risk)]:
            picks = []
            for g in groups.values():
                for st in range(0, K - k + 1, k):
                    cand = g[st:st + k]
                    picks.append(min(cand, key=fn))
            oc = collections.Counter(p["outcome"] for p in picks)
            n = len(picks)
            print(f"  k={k} {name:10s} right {oc['right']/n:.3f} wrong {oc['wrong']/n:.3f} abstain {oc['abstain']/n:.3f}")
