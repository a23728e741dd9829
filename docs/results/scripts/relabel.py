"""What the labelling rule's fix (knob.md §8) changes, re-read from saved answers:

    python docs/results/scripts/relabel.py store runs/data_forms          # heads' training data
    python docs/results/scripts/relabel.py recording runs/easy/easy_c0.json   # abstain_record.py
    python docs/results/scripts/relabel.py cells runs/eval-question6      # a saved eval

``store``: factual answers of a data build (`shard-*.jsonl`; gold answers from qa_wikidata by
id), counted by form and by (label then, label now). ``recording``: the label stored at
recording time against today's (easy validation facts). ``cells``: each cached eval cell's
right / wrong / abstain as saved and as rescored by today's rule (`eval.runner.rescored`).
"""
import glob
import json
import sys
from collections import Counter

from tigerdecode.eval.runner import rescored
from tigerdecode.qa.data import load_qa, qa_wikidata_path
from tigerdecode.qa.labels import label_answer

kind, path = sys.argv[1], sys.argv[2]
if kind == "store":
    gold = {it.id: it.answers for it in load_qa(qa_wikidata_path())}
    n = Counter()
    for f in sorted(glob.glob(f"{path}/shard-*.jsonl")):
        for line in open(f):
            a = json.loads(line)
            if a.get("form") in ("open", "mixed") or a.get("correct") is None:
                continue
            now = label_answer(a["prompt"], gold[a["id"].split("#")[0]], [a["text"]],
                              True).correct
            n[(a["form"], a["correct"], now)] += 1
    for (form, then, now), k in sorted(n.items()):
        print(f"{form:10} right then {then!s:5} right now {now!s:5} {k}")
    print(f"changed {sum(k for (_, a, b), k in n.items() if a != b)} of {sum(n.values())}")
elif kind == "recording":
    gold = {it.prompt: it.answers for it in load_qa("data/easy_validation_facts.jsonl")}
    rows = json.load(open(path))["rows"]
    now = [label_answer(r["prompt"], gold[r["prompt"]], [r["text"]], True).correct for r in rows]
    for r, b in zip(rows, now):
        if b != r["right"]:
            print(f"{r['right']!s:5} -> {b!s:5} {r['text'][:70]!r}")
    print(f"right then {sum(r['right'] for r in rows)}, now {sum(now)} of {len(rows)}")
elif kind == "cells":
    for f in sorted(glob.glob(f"{path}/cells/*.json")):
        d = json.load(open(f))
        old, new = d["row"], rescored(d)
        fmt = lambda r: " / ".join(f"{r[k]:.3f}" for k in ("accuracy", "error_rate",  # noqa: E731
                                                            "abstain_rate"))
        print(f"{d['cell']['method']:12} {d['cell']['setting']:8} saved {fmt(old)}  "
              f"rescored {fmt(new)}")
else:
    sys.exit("usage: relabel.py store|recording|cells PATH")
