import json, sys
import numpy as np
rows = json.load(open(sys.argv[1]))
def alnum(t): return any(ch.isalnum() for ch in t)
def peak(tr, rule):
    first = next((j for j, t in enumerate(tr) if t[3] is not None and t[3] >= 0.5), None)
    if first is None: return 0.0
    if rule == "slot":
        return max((t[1] for t in tr if t[3] is not None and t[3] >= 0.5 and alnum(t[0])), default=0.0)
    end = len(tr)
    if rule == "done":
        end = next((j + 1 for j in range(first, len(tr)) if (tr[j][2] or 0) >= 0.5), len(tr))
    return max((t[1] for t in tr[first:end] if t[1] is not None and alnum(t[0])), default=0.0)
for c in sorted({r["c"] for r in rows}):
    R = [r for r in rows if r["c"] == c and (r["p_factual"] or 1) >= 0.5]
    right = [r for r in R if r["right"]]; wrong = [r for r in R if not r["right"]]
    print(f"c={c}: {len(right)} right {len(wrong)} wrong")
    for rule in ("latch", "done", "slot"):
        pr = np.array([peak(r["trace"], rule) for r in right]); pw = np.array([peak(r["trace"], rule) for r in wrong])
        line = []
        for b in (0.8, 0.85, 0.875, 0.9, 0.925, 0.95):
            line.append(f"{b}: kept {np.mean(pr < b):.3f} caught {np.mean(pw >= b):.3f}")
        # lowest bar within 5% budget
        bars = np.round(np.arange(0.05, 1.0001, 0.025), 3)
        ok = [b for b in bars if np.mean(pr < b) >= 0.95 - 1e-12]
        b = min(ok); 
        print(f"  {rule:5s} bar@5% {b}: kept {np.mean(pr < b):.3f} caught {np.mean(pw >= b):.3f} | " + " | ".join(line))
