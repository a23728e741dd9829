"""Convert BIG-bench's qa_wikidata task.json into tigerdecode's QA JSONL (one-off, kept for provenance).

Usage: python data/convert_qa_wikidata.py path/to/bigbench/benchmark_tasks/qa_wikidata/task.json
Writes data/qa_wikidata.jsonl beside this file. The topic is the Wikidata relation read off the
prompt template ("The country of X is" -> "country").
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_PREFIX = re.compile(
    r"^The (?P<rel>sport played|language used|material used|languages spoken, written or signed)"
    r" (?:by|in) (?P<subj>.+) is$"
)
_OF = re.compile(r"^The (?P<rel>.+?) (?:of|for) (?P<subj>.+) is$")
_SUFFIXES = [
    "is located in or next to body of water", "is located in", "shares a border with",
    "is capital of", "is facet of", "is indigenous to", "is followed by", "is studied by",
    "is used by", "is territory claimed by", "writing languages", "given name", "convicted of",
    "named after", "replaced by", "follows", "influenced by", "endemic to", "practiced by", "calculated from",
]


def clean_prompt(prompt: str) -> str:
    """A handful of source prompts end in a stray "[MASK]" token; drop it."""
    return prompt.removesuffix(" [MASK]").strip()


def relation(prompt: str) -> str:
    for pat in (_PREFIX, _OF):
        m = pat.match(prompt)
        if m:
            return m.group("rel")
    for suf in _SUFFIXES:
        if prompt.endswith(" " + suf):
            return suf.removeprefix("is ")
    return " ".join(prompt.split()[-2:])


def main(task_json: str) -> None:
    task = json.loads(Path(task_json).read_text())
    out = Path(__file__).with_name("qa_wikidata.jsonl")
    tmp = out.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for i, ex in enumerate(task["examples"]):
            tgt = ex["target"]
            answers = [tgt] if isinstance(tgt, str) else list(tgt)
            prompt = clean_prompt(ex["input"])
            rec = {"id": f"qa_wikidata-{i:05d}", "prompt": prompt, "answers": answers,
                   "topic": relation(prompt)}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(out)
    print(f"wrote {len(task['examples'])} items to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
