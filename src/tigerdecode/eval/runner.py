"""The trade-off evaluation: every method and setting on a factual and a creative task.

Each (method, setting) cell runs through ``ControlledGenerator.generate_text`` with the same
prompts and seeds, and is saved as its own JSON file as soon as it finishes, so an interrupted
run resumes where it stopped (a cell whose configuration changed is recomputed).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from tigerdecode.eval.metrics import distinct_n, factual_rates, is_degenerate, self_bleu
from tigerdecode.qa.data import QAItem

EVAL_FORMAT = 1
CONSENSUS = 9  # samples per prompt of the +consensus cells (3 answers of 9 in creative_facts)


@dataclass(frozen=True)
class Cell:
    """One row of the results: a method name as reported and how to run it."""

    method: str  # reported name: greedy, temperature, ..., tigerdecode+ensemble
    setting: str  # human-readable setting, e.g. "T=0.7" or "c=0.5"
    gen_method: str  # what generate_text takes: "tigerdecode" or a baseline name
    creativity: float = 0.5
    overrides: tuple = ()  # ((name, value), ...) for generate_text
    ensemble: bool = False

    @property
    def slug(self) -> str:
        s = f"{self.method}__{self.setting}".replace("=", "").replace(" ", "")
        return "".join(c if c.isalnum() or c in "._+-" else "_" for c in s)


def _c(c: float, ensemble: bool = False, judge: bool = False) -> Cell:
    name = "tigerdecode+judge" if judge else "tigerdecode+ensemble" if ensemble else "tigerdecode"
    return Cell(name, f"c={c:g}", "tigerdecode", creativity=c, ensemble=ensemble,
                overrides=(("judge", True),) if judge else ())


def grid(quick: bool = False, methods: list[str] | None = None, judge: bool = False) -> list[Cell]:
    """The cells of a run. Full: baselines over their usual ranges and the creativity sweep
    with and without the self-ensemble (and with the judge when ``judge``, i.e. a judge exists
    for the model). Quick: a handful, for CI. ``tigerdecode+consensus`` and
    ``temperature+consensus`` (each answer the most agreed-with of ``CONSENSUS`` samples of its
    prompt) only when ``methods`` names them: they cost that many decodes per prompt."""
    if quick:
        cells = [Cell("greedy", "-", "greedy"),
                 Cell("temperature", "T=1", "temperature", overrides=(("temperature", 1.0),)),
                 _c(0.0), _c(0.5), _c(1.0), _c(0.5, ensemble=True)]
    else:
        # The creativity sweep first: an interrupted run has the curve the others are read against.
        cells = [Cell("greedy", "-", "greedy")] + [_c(c) for c in (0.0, 0.25, 0.5, 0.75, 1.0)]
        cells += [Cell("temperature", f"T={t:g}", "temperature", overrides=(("temperature", t),))
                  for t in (0.3, 0.5, 0.6, 0.9, 1.2)]
        cells += [Cell("top_p", f"p={p:g}", "top_p", overrides=(("top_p", p),))
                  for p in (0.5, 0.8, 0.95)]
        cells += [Cell("min_p", f"min_p={m:g}", "min_p", overrides=(("min_p", m),))
                  for m in (0.3, 0.1, 0.05)]
        cells += [_c(c, ensemble=True) for c in (0.0, 0.5, 1.0)]
        cells += [Cell("factual_nucleus", f"p={p:g}", "factual_nucleus",
                       overrides=(("top_p", p),)) for p in (0.9, 0.95)]
        cells += [Cell("dola", "high", "dola")]
    if judge:
        cells += [_c(c, judge=True) for c in ((0.0, 0.5) if quick else (0.0, 0.25, 0.5, 0.75, 1.0))]
    if methods:
        # on request only: each answer is chosen among CONSENSUS samples (that many decodes)
        cons = (("consensus", CONSENSUS),)
        cells += [Cell("tigerdecode+consensus", f"c={c:g}", "tigerdecode", creativity=c,
                       overrides=cons) for c in (0.5, 0.75, 1.0)]
        cells += [Cell("temperature+consensus", f"T={t:g}", "temperature",
                       overrides=(("temperature", t), *cons)) for t in (0.6, 0.9)]
        unknown = set(methods) - {c.method for c in cells}
        if unknown:
            raise ValueError(f"unknown method(s) {sorted(unknown)}; this grid has "
                             f"{sorted({c.method for c in cells})}")
        cells = [c for c in cells if c.method in methods]
    return cells


@dataclass
class EvalConfig:
    qa: list[QAItem]
    creative: list[str]
    samples: int = 3  # samples per creative prompt (self-BLEU needs >= 2)
    fact_tokens: int = 32
    creative_tokens: int = 64
    batch_size: int = 16
    seed: int = 0
    extra: dict = field(default_factory=dict)  # recorded in the hash (model fingerprint, ...)
    # Policy fields for the tigerdecode cells (``tigerdecode eval --set``); the CLI records
    # them, merged with the defaults, in ``extra["policy"]`` so that they key the cache.
    policy_overrides: dict = field(default_factory=dict)

    def digest(self, cell: Cell) -> str:
        extra = dict(self.extra)
        if cell.gen_method != "tigerdecode":
            # baselines read neither the heads, the judge nor the policy's head uses
            extra.pop("heads", None)
            extra.pop("policy", None)
        if "judge" not in dict(cell.overrides):
            extra.pop("judge", None)
        payload = {"format": EVAL_FORMAT, "cell": asdict(cell), "samples": self.samples,
                   "fact_tokens": self.fact_tokens, "creative_tokens": self.creative_tokens,
                   "seed": self.seed, "extra": extra, "creative": self.creative,
                   "qa": [it.to_dict() for it in self.qa]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def policy_defaults() -> dict:
    """The Policy's default fields (creativity aside): part of a tigerdecode cell's digest, so a
    change of a default (say, abstention switched on) recomputes the cells instead of reusing
    them."""
    from tigerdecode.policy.knob import Policy

    d = asdict(Policy(0.0))
    d.pop("creativity", None)
    d.pop("extra", None)
    return d


def judge_outcome(item: QAItem, text: str, abstained: bool) -> str:
    """right / wrong / abstain, by the same rule that labels the heads' training data: a gold
    answer (normalised, aliases allowed) completed before the answer departs from it."""
    from tigerdecode.qa.labels import label_answer

    if abstained:
        return "abstain"
    return "right" if label_answer(item.prompt, item.answers, [text], True).correct else "wrong"


def _batched(gen, prompts: list[str], cell: Cell, max_new_tokens: int, cfg: EvalConfig,
             seed_offset: int, bar) -> tuple[list, int, float]:
    results, tokens, seconds = [], 0, 0.0
    policy = cfg.policy_overrides if cell.gen_method == "tigerdecode" else {}
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start:start + cfg.batch_size]
        t0 = time.perf_counter()
        out = gen.generate_text(chunk, creativity=cell.creativity, max_new_tokens=max_new_tokens,
                                seed=cfg.seed + seed_offset + start, method=cell.gen_method,
                                **policy, **dict(cell.overrides))
        seconds += time.perf_counter() - t0
        tokens += sum(len(r.token_ids) for r in out)
        results.extend(out)
        bar.update(len(chunk))
    return results, tokens, seconds


def run_cell(gen, cell: Cell, cfg: EvalConfig, bar) -> dict:
    """Generate both tasks for one cell and compute its row from the outputs."""
    from tigerdecode.qa.prompts import format_prompt

    fact, ft, fs = _batched(gen, [format_prompt(it.prompt) for it in cfg.qa], cell,
                            cfg.fact_tokens, cfg, 0, bar)
    outcomes = [judge_outcome(it, r.text, r.abstained) for it, r in zip(cfg.qa, fact, strict=True)]
    creative_prompts = [p for p in cfg.creative for _ in range(cfg.samples)]
    crea, ct, cs = _batched(gen, creative_prompts, cell, cfg.creative_tokens, cfg, 1_000_000, bar)
    texts = [r.text for r in crea]
    by_prompt = [texts[i:i + cfg.samples] for i in range(0, len(texts), cfg.samples)]
    row = {"method": cell.method, "setting": cell.setting,
           "creativity": cell.creativity if cell.gen_method == "tigerdecode" else None,
           **factual_rates(outcomes),
           "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
           "distinct_3": distinct_n(texts, 3),
           "self_bleu": sum(map(self_bleu, by_prompt)) / len(by_prompt),
           "degenerate_rate": sum(map(is_degenerate, texts)) / len(texts),
           "fact_mean_len": sum(len(r.token_ids) for r in fact) / len(fact),
           "creative_mean_len": sum(len(r.token_ids) for r in crea) / len(crea),
           "tokens_per_s": (ft + ct) / max(fs + cs, 1e-9),
           "n_qa": len(cfg.qa), "n_creative": len(texts)}
    outputs = {"factual": [{"id": it.id, "prompt": it.prompt, "answers": it.answers,
                            "text": r.text, "outcome": o, **({"meta": it.meta} if it.meta else {})}
                           for it, r, o in zip(cfg.qa, fact, outcomes, strict=True)],
               "creative": [{"prompt": p, "text": t}
                            for p, t in zip(creative_prompts, texts, strict=True)]}
    return {"row": row, "outputs": outputs}


def rescored(saved: dict) -> dict:
    """A saved cell's row with its factual rates recomputed from the saved answers by today's
    labelling rule (a fix to the rule reaches cached cells without decoding them again); the
    answers abstained on stay abstained."""
    fact = saved.get("outputs", {}).get("factual")
    if not fact:
        return saved["row"]
    outcomes = [judge_outcome(QAItem(id=o["id"], prompt=o["prompt"], answers=o["answers"]),
                              o["text"], o["outcome"] == "abstain") for o in fact]
    return {**saved["row"], **factual_rates(outcomes)}


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1))
    tmp.replace(path)


def run_eval(generators: dict[bool, object], cells: list[Cell], cfg: EvalConfig,
             out: str | Path, progress: bool = True, cached_only: bool = False) -> list[dict]:
    """Run (or resume) every cell; ``generators[ensemble]`` is a ControlledGenerator without
    (False) and with (True) the self-ensemble. Returns the rows in grid order. With
    ``cached_only``, cells not yet computed are left out instead of generated."""
    cell_dir = Path(out) / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    per_cell = len(cfg.qa) + len(cfg.creative) * cfg.samples
    bar = tqdm(total=per_cell * len(cells), desc="eval", unit="answer", disable=not progress)
    for cell in cells:
        path = cell_dir / f"{cell.slug}.json"
        digest = cfg.digest(cell)
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                if saved.get("digest") == digest:
                    rows.append(rescored(saved))
                    bar.update(per_cell)
                    continue
            except (json.JSONDecodeError, KeyError):
                pass  # a damaged cell file is recomputed
        if cached_only:
            bar.update(per_cell)
            continue
        bar.set_postfix_str(f"{cell.method} {cell.setting}")
        res = run_cell(generators[cell.ensemble], cell, cfg, bar)
        _write_json(path, {"digest": digest, "cell": asdict(cell), **res})
        rows.append(res["row"])
    bar.close()
    return rows
