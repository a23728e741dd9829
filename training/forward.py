"""The forward-looking outputs read before a token is drawn: ``risk`` and ``factual``.

- ``risk`` (``p_risk``): at a fact slot, before its token is drawn, is the fact the model is
  about to write wrong? Rows: the states just before each fact-slot token of a factual answer
  (completion or question form) -- the prompt's last state when the first token is a slot, else
  the state of the token before it -- labelled with whether that answer turned out wrong. The
  label is the answer the model actually wrote from there, so on greedy answers it is "would
  greedy be wrong here"; sampled answers add noise, which is why ``settings`` can restrict the
  rows (chosen on validation topics).
- ``factual`` (``p_factual``): from the prompt's last state, does the request ask for a fact in
  a short answer (completion or question form, templated or bare) rather than creative text
  (mixed prompts and open prompts)? One row per distinct message.

Both are a logistic regression on the heads' standardised features (L2 strength picked on
validation topics), copied into the heads' linear net and Platt-calibrated on validation
topics. Their reports put them beside the training-free signals of the same rows: the next
token's max probability and entropy.
"""

from __future__ import annotations

import numpy as np
import torch

from tigerdecode.heads import Calibrator, ControlHeads
from tigerdecode.training.metrics import auroc

FACTUAL_FORMS = ("completion", "question")
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
MIN_ROWS = 20


def next_token_signals(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per row k: (entropy, 1 - max prob) of the distribution that drew token k+1 of the same
    answer (NaN where token k+1 was not kept): the training-free rivals of ``p_slot``."""
    nxt = np.full(len(t["answer"]), np.nan), np.full(len(t["answer"]), np.nan)
    same = (t["answer"][1:] == t["answer"][:-1]) & (t["pos"][1:] == t["pos"][:-1] + 1)
    nxt[0][:-1][same] = t["entropy"][1:][same]
    nxt[1][:-1][same] = 1.0 - t["maxprob"][1:][same]
    return nxt


def _feat(heads: ControlHeads, arrays: dict[int, np.ndarray], rows: np.ndarray) -> np.ndarray:
    x = np.concatenate([arrays[x][rows].astype(np.float32) for x in heads.layers], axis=1)
    return (x - heads.feat_mean.numpy()) / heads.feat_std.numpy()  # (N, L*H)


def risk_rows(t: dict[str, np.ndarray], answers: list[dict], prompt: dict[int, np.ndarray],
              settings: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The ``risk`` rows: per row the source (``"token"`` row index into ``t`` or ``"prompt"``
    answer index), the answer, the label (answer wrong), whether it is the answer's first slot,
    and the next token's max probability / entropy (the training-free rivals)."""
    use = np.array([a.get("form") in FACTUAL_FORMS and not a.get("open")
                    and (settings is None or a["setting"] in settings) for a in answers])
    wrong = np.array([not a["correct"] for a in answers])
    ent_next, low_next = next_token_signals(t)
    tok = np.flatnonzero((t["slot"] == 1) & use[t["answer"]] & np.isfinite(ent_next))
    pr = np.flatnonzero(use & np.array([bool(a.get("slot0")) for a in answers]))
    src = np.concatenate([np.zeros(len(pr), int), np.ones(len(tok), int)])  # 0 prompt, 1 token
    idx = np.concatenate([pr, tok])
    ans = np.concatenate([pr, t["answer"][tok]])
    pos = np.concatenate([np.full(len(pr), -1), t["pos"][tok]])
    maxprob = np.concatenate([[answers[a]["first_maxprob"] for a in pr],
                              1.0 - low_next[tok]]).astype(np.float64)
    entropy = np.concatenate([[answers[a]["first_entropy"] for a in pr],
                              ent_next[tok]]).astype(np.float64)
    order = np.lexsort((pos, ans))
    src, idx, ans, pos, maxprob, entropy = (v[order] for v in (src, idx, ans, pos, maxprob,
                                                               entropy))
    first = np.ones(len(ans), bool)
    first[1:] = ans[1:] != ans[:-1]
    return {"src": src, "idx": idx, "answer": ans, "y": wrong[ans].astype(np.int64),
            "first": first, "maxprob": maxprob, "entropy": entropy}


def risk_features(heads: ControlHeads, t, prompt, rows: dict) -> np.ndarray:
    x = np.zeros((len(rows["y"]), heads.config.in_features), np.float32)
    p, k = rows["src"] == 0, rows["src"] == 1
    if p.any():
        x[p] = _feat(heads, prompt, rows["idx"][p])
    if k.any():
        x[k] = _feat(heads, {x_: t[f"layer_{x_}"] for x_ in heads.layers}, rows["idx"][k])
    return x


def factual_rows(answers: list[dict]) -> dict[str, np.ndarray]:
    """One row per distinct message: the first answer asked it, label 1 for a factual form."""
    seen, idx = set(), []
    for i, a in enumerate(answers):
        key = a.get("message") or a["prompt"]
        if key not in seen:
            seen.add(key)
            idx.append(i)
    idx = np.array(idx, int)
    y = np.array([answers[i].get("form") in FACTUAL_FORMS and not answers[i].get("open")
                  for i in idx], np.int64)
    return {"idx": idx, "answer": idx, "y": y}


def _logreg(x_tr, y_tr, x_va, y_va, log, name: str):
    """L2 logistic regression, strength picked by validation AUROC (class-balanced)."""
    from sklearn.linear_model import LogisticRegression

    best = None
    for c in C_GRID:
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        lr.fit(x_tr, y_tr)
        a = auroc(y_va, lr.decision_function(x_va))
        if best is None or (a or 0) > (best[0] or 0):
            best = (a, c, lr)
    log(f"  {name}: L2 C={best[1]} (validation AUROC {best[0]:.3f})")
    return best[2], best[1]


def _install(heads: ControlHeads, name: str, lr, z_va, y_va, calibration: str) -> None:
    from tigerdecode.heads.control import OUTPUTS

    cfg = heads.config
    cfg.outputs = [o for o in OUTPUTS if o in cfg.outputs or o == name]
    net = torch.nn.Linear(cfg.in_features, 1)
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(lr.coef_.astype(np.float32)))
        net.bias.copy_(torch.from_numpy(lr.intercept_.astype(np.float32)))
    heads.nets[name] = net.eval()
    heads.calibrators[name] = Calibrator(calibration)
    if calibration != "none" and len(np.unique(y_va)) == 2:
        heads.calibrators[name].fit(z_va, y_va, calibration)


def _rates(y: np.ndarray, s: np.ndarray) -> float | None:
    return auroc(y, s) if len(np.unique(y)) == 2 else None


def risk_report(rows: dict, p: np.ndarray, sel: np.ndarray | None = None) -> dict:
    """AUROC of ``p_risk`` on its rows and at each answer's first slot (where the policy
    decides to abstain), beside the next token's 1 - max prob and entropy."""
    sel = np.ones(len(rows["y"]), bool) if sel is None else sel
    out = {}
    for level, m in (("row", sel), ("first_slot", sel & rows["first"])):
        y = rows["y"][m]
        out[level] = {"n": int(m.sum()), "positives": int(y.sum()),
                      "auroc": _rates(y, p[m]),
                      "baselines": {"1-maxprob": _rates(y, 1 - rows["maxprob"][m]),
                                    "entropy": _rates(y, rows["entropy"][m])}}
    return out


def train_forward(heads: ControlHeads, t: dict[str, np.ndarray], answers: list[dict],
                  prompt: dict[int, np.ndarray] | None, val_ans: np.ndarray, *,
                  calibration: str = "platt", log=print,
                  risk_settings: tuple[tuple[str, ...] | None, ...] = (("greedy",), None)
                  ) -> dict:
    """Add ``risk`` and ``factual`` to ``heads`` (in place) from data with prompt states;
    ``val_ans`` marks the validation answers (by topic). Returns their reports."""
    if prompt is None:
        log("  risk/factual: the data has no prompt states (built before they were stored); "
            "not trained")
        return {}
    if heads.config.kind != "linear":  # one net kind per checkpoint; these are linear
        log(f"  risk/factual: trained only beside linear heads (these are {heads.config.kind!r})")
        return {}
    reps: dict = {}
    # ---- risk: which answers' rows to learn from is chosen on validation topics ----
    best = None
    for settings in risk_settings:
        rows = risk_rows(t, answers, prompt, settings)
        va = val_ans[rows["answer"]]
        if (~va).sum() < MIN_ROWS or len(np.unique(rows["y"][~va])) < 2 or \
                len(np.unique(rows["y"][va & rows["first"]])) < 2:
            continue
        x = risk_features(heads, t, prompt, rows)
        lr, c = _logreg(x[~va], rows["y"][~va], x[va], rows["y"][va], log,
                        f"risk ({'all settings' if settings is None else ','.join(settings)})")
        z = lr.decision_function(x[va])
        # the rows the policy acts on: each answer's first slot, greedy-like or not
        vrows = risk_rows(t, answers, prompt, None)
        vm = val_ans[vrows["answer"]]
        vz = lr.decision_function(risk_features(heads, t, prompt, vrows)[vm])
        score = _rates(vrows["y"][vm & vrows["first"]], vz[vrows["first"][vm]])
        log(f"    validation first-slot AUROC {score:.3f}")
        if best is None or (score or 0) > (best[0] or 0):
            best = (score, settings, lr, c, z, rows["y"][va])
    if best is None:
        log(f"  risk: too few labelled fact-slot rows (need {MIN_ROWS} and both outcomes); "
            "not trained")
    else:
        score, settings, lr, c, z, y = best
        _install(heads, "risk", lr, z, y, calibration)
        vrows = risk_rows(t, answers, prompt, None)
        vm = val_ans[vrows["answer"]]
        with torch.no_grad():
            zz = torch.from_numpy(lr.decision_function(
                risk_features(heads, t, prompt, vrows)[vm]).astype(np.float32))
            p = heads.calibrators["risk"](zz).numpy()
        sub = {k: v[vm] for k, v in vrows.items()}
        reps["risk"] = {"settings": None if settings is None else list(settings), "C": c,
                        "validation": risk_report(sub, p)}
        r = reps["risk"]["validation"]["first_slot"]
        log(f"  risk (validation topics, first slot of {r['n']} answers): AUROC "
            f"{r['auroc']:.3f} vs 1-maxprob {r['baselines']['1-maxprob']:.3f}, entropy "
            f"{r['baselines']['entropy']:.3f}")
    # ---- factual: the request kind, from the prompt state ----
    rows = factual_rows(answers)
    va = val_ans[rows["answer"]]
    y = rows["y"]
    if len(np.unique(y[~va])) < 2 or len(np.unique(y[va])) < 2:
        log("  factual: the data needs factual and creative requests on both sides of the "
            "validation split (add `data build --open` data); not trained")
        return reps
    x = _feat(heads, prompt, rows["idx"])
    lr, c = _logreg(x[~va], y[~va], x[va], y[va], log, "factual")
    z = lr.decision_function(x[va])
    _install(heads, "factual", lr, z, y[va], calibration)
    with torch.no_grad():
        p = heads.calibrators["factual"](torch.from_numpy(z.astype(np.float32))).numpy()
    creative = y[va] == 0
    reps["factual"] = {"C": c, "validation": {
        "n_factual": int((~creative).sum()), "n_creative": int(creative.sum()),
        "auroc": _rates(y[va], p),
        "creative_called_factual": float((p[creative] >= 0.5).mean()),
        "factual_called_creative": float((p[~creative] < 0.5).mean())}}
    v = reps["factual"]["validation"]
    log(f"  factual (validation topics, {v['n_factual']} factual / {v['n_creative']} creative "
        f"requests): AUROC {v['auroc']:.3f}; at 0.5, creative called factual "
        f"{v['creative_called_factual']:.1%}, factual called creative "
        f"{v['factual_called_creative']:.1%}")
    return reps
