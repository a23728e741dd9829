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
    forward = forward_report(heads, t, answers, store.load_prompt_states(heads.layers))
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
    rep.update(forward)
    return rep


@torch.no_grad()
def forward_report(heads: ControlHeads, t, answers, prompt) -> dict:
    """``p_risk`` at the fact slots of factual answers and ``p_factual`` on the requests, beside
    the training-free signals (when the heads have them and the data has prompt states)."""
    from tigerdecode.training.forward import (
        factual_rows,
        risk_features,
        risk_report,
        risk_rows,
    )
    from tigerdecode.training.metrics import auroc

    out: dict = {}
    if prompt is None:
        return out
    if "risk" in heads.config.outputs:
        rows = risk_rows(t, answers, prompt)
        if len(rows["y"]):
            x = torch.from_numpy(risk_features(heads, t, prompt, rows))
            p = heads.calibrators["risk"](heads.nets["risk"](x).squeeze(-1)).numpy()
            greedy = np.array([answers[a]["setting"] == "greedy" for a in rows["answer"]])
            out["p_risk"] = {"all": risk_report(rows, p),
                             "greedy": risk_report(rows, p, greedy) if greedy.any() else None}
    if "factual" in heads.config.outputs:
        rows = factual_rows(answers)
        x = torch.from_numpy(np.concatenate([prompt[x_][rows["idx"]].astype(np.float32)
                                             for x_ in heads.layers], axis=1))
        x = (x - heads.feat_mean) / heads.feat_std
        p = heads.calibrators["factual"](heads.nets["factual"](x).squeeze(-1)).numpy()
        y = rows["y"]
        out["p_factual"] = {
            "n_factual": int(y.sum()), "n_creative": int((y == 0).sum()),
            "auroc": auroc(y, p) if len(np.unique(y)) == 2 else None,
            "creative_called_factual": float((p[y == 0] >= 0.5).mean()) if (y == 0).any()
            else None,
            "factual_called_creative": float((p[y == 1] < 0.5).mean()) if y.any() else None}
    return out


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
        **({k: rep[k] for k in ("p_risk", "p_factual") if rep.get(k)}),
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
    for name, r in (rep.get("p_risk") or {}).items():
        if r is None:
            continue
        fs = r["first_slot"]
        lines.append(f"p_risk ({name} answers, first fact slot of {fs['n']}, {fs['positives']} "
                     f"wrong): AUROC {f(fs['auroc'])} vs 1-maxprob "
                     f"{f(fs['baselines']['1-maxprob'])}, entropy {f(fs['baselines']['entropy'])}")
    if rep.get("p_factual"):
        pf = rep["p_factual"]
        lines.append(f"p_factual ({pf['n_factual']} factual, {pf['n_creative']} creative "
                     f"requests): AUROC {f(pf['auroc'])}; creative called factual "
                     f"{f(pf['creative_called_factual'])}, factual called creative "
                     f"{f(pf['factual_called_creative'])}")
    for name, v in rep.get("settings", {}).items():
        best_tok = max((b.get("token_auroc") or 0 for b in v["baselines"].values()), default=0)
        best_ans = max((b.get("answer_auroc") or 0 for b in v["baselines"].values()), default=0)
        lines.append(f"setting {name}: {v['n_answers']} answers, accuracy {v['accuracy']:.3f}; "
                     f"p_dev token AUROC {f(v['p_dev']['token_auroc'])} (best baseline "
                     f"{f(best_tok)}), answer {f(v['p_dev']['answer_auroc'])} ({f(best_ans)}), "
                     f"p_stop {f(v['p_stop']['auroc'])}")
    return "\n".join(lines)
