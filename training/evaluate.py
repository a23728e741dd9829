"""``tigerdecode heads eval``: run the model end to end on a QA file (sample, label, score) and
compare the heads with the training-free baselines on the same tokens and answers."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tigerdecode.heads import ControlHeads
from tigerdecode.qa.data import QAItem
from tigerdecode.training.build import build_data
from tigerdecode.training.report import score_split
from tigerdecode.training.sampling import DEFAULT_SETTINGS, Setting
from tigerdecode.training.store import FeatureStore


@torch.no_grad()
def score_store(heads: ControlHeads, store: FeatureStore) -> dict:
    """Head and baseline metrics over every answer stored in ``store``."""
    t, answers = store.load(heads.layers)
    factual = np.array([not a.get("open") and a.get("form") != "mixed" for a in answers])
    every = np.arange(len(t["answer"]))
    states = {x: torch.from_numpy(t[f"layer_{x}"]) for x in heads.layers}  # {L: (N, H)}
    z = heads.logits(states)
    p_stop, p_dev, p_slot = heads(states)
    if p_slot is not None:
        from tigerdecode.training.train import slot_report

        slot = slot_report(t, every, p_slot.cpu().numpy())
    # p_dev / p_stop are scored on factual answers (mixed text has neither label)
    keep = factual[t["answer"]]
    t = {k: v[keep] for k, v in t.items()}
    t["answer"] = _reindex(t["answer"], factual)
    answers = [a for a, f in zip(answers, factual, strict=True) if f]
    rows = np.arange(len(t["answer"]))
    z = {k: v[torch.from_numpy(keep)] for k, v in z.items()}
    p_stop, p_dev = p_stop[torch.from_numpy(keep)], p_dev[torch.from_numpy(keep)]
    rep = score_split(t, answers, rows, z["dev"].cpu().numpy(), z["stop"].cpu().numpy(),
                      p_dev=p_dev.cpu().numpy(), p_stop=p_stop.cpu().numpy())
    if p_slot is not None:
        rep["p_slot"] = slot
        rep["p_slot"].pop("train", None)
    by_setting = {}
    setting_of = np.array([a["setting"] for a in answers])
    for name in sorted(set(setting_of)):
        sel = setting_of[t["answer"]] == name
        sub = score_split(t, answers, rows[sel], z["dev"].cpu().numpy()[sel],
                          z["stop"].cpu().numpy()[sel], p_dev=p_dev.cpu().numpy()[sel],
                          p_stop=p_stop.cpu().numpy()[sel])
        by_setting[name] = {
            "n_answers": int((setting_of == name).sum()),
            "accuracy": float(np.mean([a["correct"] for a in answers if a["setting"] == name])),
            "p_dev": {k: sub["p_dev"][k] for k in ("token_auroc", "answer_auroc", "ece")},
            "p_stop": {"auroc": sub["p_stop"]["auroc"]},
            "baselines": sub["baselines"]}
    rep["settings"] = by_setting
    return rep


def _reindex(answer: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Answer indices after dropping the answers where ``kept`` is False."""
    new = np.cumsum(kept) - 1
    return new[answer]


def evaluate_heads(model, tokenizer, heads: ControlHeads, items: list[QAItem], *,
                   settings: tuple[Setting, ...] = DEFAULT_SETTINGS, max_new_tokens: int = 24,
                   batch_size: int = 32, seed: int = 1, work_dir: str | Path | None = None,
                   progress: bool = True) -> dict:
    """Sample answers to ``items`` under ``settings``, label them and score heads and baselines.

    Hidden states go through a feature store (in ``work_dir`` if given, so a long evaluation
    can resume, or reuse data built beforehand with ``tigerdecode data build`` and the same
    options; a temporary directory otherwise) and are read at the layers the heads use.
    """
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tigerdecode-eval-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        layers = heads.layers
        if (root / "manifest.json").is_file():  # resume a store that may hold more layers
            stored = FeatureStore(root).manifest()["config"]["layers"]
            if set(layers) <= set(stored):
                layers = stored
        store = build_data(model, tokenizer, items, root, layers=layers, settings=settings,
                           max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                           progress=progress)
        rep = score_store(heads, store)
    rep["n_items"] = len(items)
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    return rep


def summary(rep: dict) -> dict:
    """The compact JSON the CLI prints with ``--json`` (shape fixed by the issue)."""
    d, s = rep["p_dev"], rep["p_stop"]
    return {
        "n_answers": rep["n_answers"],
        "p_dev": {"token_auroc": d["token_auroc"], "answer_auroc": d["answer_auroc"],
                  "ece": d.get("ece"), "brier": d.get("brier"),
                  "token_auprc": d["token_auprc"], "answer_auprc": d["answer_auprc"]},
        "p_stop": {"auroc": s["auroc"], "auprc": s["auprc"], "ece": s.get("ece")},
        "baselines": {name: dict(b) for name, b in rep["baselines"].items()},
        "answer_error_rate": rep["answer_error_rate"],
        **({"p_slot": rep["p_slot"]} if rep.get("p_slot") else {}),
    }


def format_table(rep: dict) -> str:
    """Human-readable table: heads beside the baselines."""
    def f(x):
        return "  n/a" if x is None else f"{x:.3f}"

    d, s = rep["p_dev"], rep["p_stop"]
    lines = [f"answers: {rep['n_answers']} (error rate {f(rep['answer_error_rate'])}), "
             f"span tokens: {d['n_tokens']} (deviating {f(d['token_positive_rate'])})",
             "", f"{'signal':<22}{'token AUROC':>12}{'answer AUROC':>14}{'stop AUROC':>12}",
             f"{'heads p_dev / p_stop':<22}{f(d['token_auroc']):>12}{f(d['answer_auroc']):>14}"
             f"{f(s['auroc']):>12}"]
    for name, b in rep["baselines"].items():
        lines.append(f"{name:<22}{f(b.get('token_auroc')):>12}{f(b.get('answer_auroc')):>14}"
                     f"{f(b.get('stop_auroc')):>12}")
    lines += ["", f"p_dev token: AUPRC {f(d['token_auprc'])}  ECE {f(d.get('ece'))}  "
              f"Brier {f(d.get('brier'))}",
              f"p_stop: AUPRC {f(s['auprc'])}  ECE {f(s.get('ece'))}  Brier {f(s.get('brier'))}"]
    if rep.get("p_slot") and rep["p_slot"].get("auroc") is not None:
        ps = rep["p_slot"]
        lines.append(f"p_slot (next token decides a fact; {ps['positives']}/{ps['n_tokens']} "
                     f"tokens): AUROC {f(ps['auroc'])} vs entropy "
                     f"{f(ps['baselines']['entropy'])}, 1-maxprob "
                     f"{f(ps['baselines']['1-maxprob'])}")
    for name, v in rep.get("settings", {}).items():
        best_tok = max((b.get("token_auroc") or 0 for b in v["baselines"].values()), default=0)
        best_ans = max((b.get("answer_auroc") or 0 for b in v["baselines"].values()), default=0)
        lines.append(f"setting {name}: {v['n_answers']} answers, accuracy {v['accuracy']:.3f}; "
                     f"p_dev token AUROC {f(v['p_dev']['token_auroc'])} (best baseline "
                     f"{f(best_tok)}), answer {f(v['p_dev']['answer_auroc'])} ({f(best_ans)}), "
                     f"p_stop {f(v['p_stop']['auroc'])}")
    return "\n".join(lines)
