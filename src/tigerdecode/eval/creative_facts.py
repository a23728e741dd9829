"""Facts inside creative text: creative requests that must name a fact ("a two-line poem about
X that names its capital"), several samples each, scored on the *same* outputs for fact
accuracy (is a gold answer named, word-bounded) and diversity (pooled distinct-2, self-BLEU).

The knob should vary the poem while keeping the city right, i.e. sit above temperature on the
fact-accuracy-vs-diversity plane. Cells are the evaluation grid's (``eval.runner.grid``); each is
saved as soon as it is done (resumable) with its outputs, and its row is recomputed from the
saved outputs by :func:`row_from_outputs`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tigerdecode.eval.metrics import distinct_n, self_bleu
from tigerdecode.eval.report import TIGER, _interp
from tigerdecode.eval.runner import Cell, _write_json
from tigerdecode.qa.data import QAItem
from tigerdecode.qa.forms import mixed_forms
from tigerdecode.qa.labels import label_mixed

TASK = "creative_facts"
FORMAT = 1


def mixed_items(items: list[QAItem], n: int, seed: int = 0) -> list[QAItem]:
    """``n`` items' mixed prompts (a seeded sample; the template rotates through the kinds')."""
    pool = [it for it in items if mixed_forms(it)]
    random.Random(seed).shuffle(pool)
    out = []
    for k, it in enumerate(pool[:n]):
        ms = mixed_forms(it)
        out.append(ms[k % len(ms)])
    return out


def known_mixed_items(model, tokenizer, pool: list[QAItem], n: int, seed: int = 0,
                      batch_size: int = 30) -> list[QAItem]:
    """The mixed prompts of up to ``n`` items of ``pool`` (those with a mixed form, in seeded
    order) that the model knows: its greedy answer to the item's completion prompt is right."""
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.eval.runner import judge_outcome
    from tigerdecode.qa.prompts import format_prompt

    gen = ControlledGenerator(model, tokenizer, heads=None, warn=False)
    pool = [it for it in pool if mixed_forms(it)]
    random.Random(seed).shuffle(pool)
    known = []
    for s in range(0, len(pool), batch_size):
        chunk = pool[s:s + batch_size]
        out = gen.generate_text([format_prompt(it.prompt) for it in chunk], method="greedy",
                                max_new_tokens=16)
        known += [it for it, r in zip(chunk, out, strict=True)
                  if judge_outcome(it, r.text, r.abstained) == "right"]
        if len(known) >= n:
            break
    return mixed_items(known[:n], n, seed)


@dataclass
class FactsConfig:
    items: list[QAItem]  # mixed prompts (QAItems with gold answers)
    samples: int = 3
    max_new_tokens: int = 48
    batch_size: int = 24
    seed: int = 0
    policy_overrides: dict | None = None
    extra: dict | None = None  # recorded in the digest (model fingerprint, heads, ...)

    def digest(self, cell: Cell) -> str:
        extra = dict(self.extra or {})
        if cell.gen_method != "tigerdecode":
            extra.pop("heads", None)
            extra.pop("policy", None)
        payload = {"format": FORMAT, "task": TASK, "cell": asdict(cell), "samples": self.samples,
                   "tokens": self.max_new_tokens, "seed": self.seed, "extra": extra,
                   "policy": self.policy_overrides if cell.gen_method == "tigerdecode" else None,
                   "items": [it.to_dict() for it in self.items]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def row_from_outputs(cell: dict, outputs: list[dict]) -> dict:
    """The task's row from saved outputs (``{"prompt", "answers", "text", "abstained"}`` each,
    samples of one prompt adjacent)."""
    texts = [o["text"] for o in outputs]
    right = [not o["abstained"] and label_mixed(o["answers"], [o["text"]]).correct
             for o in outputs]
    groups: dict[str, list[str]] = {}
    for o in outputs:
        groups.setdefault(o["prompt"], []).append(o["text"])
    return {"task": TASK, "method": cell["method"], "setting": cell["setting"],
            "creativity": cell["creativity"] if cell["gen_method"] == "tigerdecode" else None,
            "fact_accuracy": sum(right) / max(len(right), 1),
            "distinct_2": distinct_n(texts, 2),
            "self_bleu": sum(map(self_bleu, groups.values())) / max(len(groups), 1),
            "abstain_rate": sum(o["abstained"] for o in outputs) / max(len(outputs), 1),
            "n": len(outputs)}


def run_cell(gen, cell: Cell, cfg: FactsConfig, bar=None) -> dict:
    prompts = [it for it in cfg.items for _ in range(cfg.samples)]
    policy = (cfg.policy_overrides or {}) if cell.gen_method == "tigerdecode" else {}
    outputs = []
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start:start + cfg.batch_size]
        res = gen.generate_text([it.prompt for it in chunk], creativity=cell.creativity,
                                max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + start,
                                method=cell.gen_method, **policy, **dict(cell.overrides))
        for it, r in zip(chunk, res, strict=True):
            outputs.append({"id": it.id, "prompt": it.prompt, "answers": it.answers,
                            "text": r.text, "abstained": r.abstained})
        if bar is not None:
            bar.update(len(chunk))
    return {"row": row_from_outputs(asdict(cell), outputs), "outputs": outputs}


def run(generators: dict[bool, object], cells: list[Cell], cfg: FactsConfig, out: str | Path,
        progress: bool = True) -> list[dict]:
    """Run (or resume) every cell of the task into ``out/creative_facts/``."""
    d = Path(out) / TASK
    d.mkdir(parents=True, exist_ok=True)
    per = len(cfg.items) * cfg.samples
    bar = tqdm(total=per * len(cells), desc=TASK, unit="answer", disable=not progress)
    rows = []
    for cell in cells:
        path, digest = d / f"{cell.slug}.json", cfg.digest(cell)
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                if saved.get("digest") == digest:
                    rows.append(row_from_outputs(saved["cell"], saved["outputs"]))
                    bar.update(per)
                    continue
            except (json.JSONDecodeError, KeyError):
                pass  # a damaged cell is recomputed
        res = run_cell(generators[cell.ensemble], cell, cfg, bar)
        _write_json(path, {"digest": digest, "cell": asdict(cell), **res})
        rows.append(res["row"])
    bar.close()
    return rows


def targets(rows: list[dict], method: str = "tigerdecode", ratio: float = 1.3) -> dict:
    """At every baseline setting's diversity, ``method``'s fact accuracy (interpolated along its
    creativity curve) >= ``ratio`` x the baseline's; at T=0.6's diversity >= 90% of greedy's;
    abstentions on these creative requests <= 1%. A ``+consensus`` baseline (answers chosen
    among several samples) counts only against a ``+consensus`` method, which spends as many
    decodes."""
    sweep = sorted((r for r in rows if r["method"] == method), key=lambda r: r["creativity"])
    curve = [(r["distinct_2"], r["fact_accuracy"]) for r in sweep]
    checks = []
    for b in rows:
        if b["method"] in TIGER or (b["method"].endswith("+consensus")
                                    and not method.endswith("+consensus")):
            continue
        a = _interp(curve, b["distinct_2"])
        checks.append({"baseline": b["method"], "setting": b["setting"],
                       "distinct_2": b["distinct_2"], "baseline_fact_accuracy": b["fact_accuracy"],
                       "ours_fact_accuracy": a,
                       "ok": None if a is None else a >= ratio * b["fact_accuracy"]})
    greedy = next((r for r in rows if r["method"] == "greedy"), None)
    t06 = next((r for r in rows if r["method"] == "temperature" and r["setting"] == "T=0.6"), None)
    at06 = None if t06 is None else _interp(curve, t06["distinct_2"])
    return {"dominance": checks,
            "dominated": sum(1 for c in checks if c["ok"]),
            "comparable": sum(1 for c in checks if c["ok"] is not None),
            "at_T0.6_vs_greedy": None if at06 is None or greedy is None or not
            greedy["fact_accuracy"] else at06 / greedy["fact_accuracy"],
            "max_abstain_rate": max((r["abstain_rate"] for r in sweep), default=None)}


def markdown(rows: list[dict]) -> str:
    cols = ["method", "setting", "fact_accuracy", "distinct_2", "self_bleu", "abstain_rate", "n"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    return "\n".join(lines)
