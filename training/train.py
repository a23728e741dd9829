"""``tigerdecode heads train``: fit ``p_stop`` / ``p_dev`` heads on stored features.

Recipe: features of the chosen layers, standardised with training statistics; one net per output
(linear or small MLP), class-weighted BCE (``pos_weight = negatives / positives``), AdamW with
early stopping on a validation split **by topic** (no validation topic is ever trained on). Each
candidate layer set (and kind) is trained; the one with the best validation ``p_dev`` token AUROC,
averaged over ``select_splits`` topic splits (one split of a few topics ranks candidates within a
few thousandths by chance), is kept: for linear heads, the average of its heads over those splits
(one linear map; ``average_splits``), calibrated on each split's own validation logits;
otherwise the first split's heads, calibrated on that split's. The calibrators (Platt by
default) fold into the checkpoint as tensors.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from tigerdecode.heads import Calibrator, ControlHeads, HeadConfig
from tigerdecode.model.load import Fingerprint
from tigerdecode.qa.data import split_topics
from tigerdecode.qa.labels import OPEN_TEXT
from tigerdecode.training.forward import next_token_signals, train_forward
from tigerdecode.training.report import score_split
from tigerdecode.training.store import FeatureStore


@dataclass
class TrainConfig:
    """What ``train_heads`` tries and how."""

    candidates: list[list[int]] = field(default_factory=lambda: [[16], [20], [24], [16, 20, 24]])
    kinds: list[str] = field(default_factory=lambda: ["linear"])
    mlp_hidden: int = 256
    calibration: str = "platt"
    val_fraction: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 4096
    max_epochs: int = 40
    patience: int = 4
    seed: int = 0
    # the layer set and kind are chosen on the mean over this many topic splits (seeds seed,
    # seed + 1, ...); the first split's validation numbers are the ones reported
    select_splits: int = 3
    # linear heads: p_stop / p_dev become the average of the selected candidate's heads over
    # those splits (one linear map), calibrated on each split's own validation logits
    average_splits: bool = True
    # train p_dev to 0 on the restatement of the prompt (labelled -1: it claims nothing new), so
    # the heads stay quiet until the fact slot; metrics still score the answer span only
    faithful_restatement: bool = True


def topic_split(answers: list[dict], val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over answers: True for those whose topic is in the validation split."""
    items = [SimpleNamespace(topic=a["topic"]) for a in answers]
    n_topics = len({a["topic"] for a in answers})
    if n_topics < 2:
        raise ValueError(f"the data holds {n_topics} topic(s); a validation split by topic "
                         "needs at least 2 (give the QA items a 'topic')")
    split = split_topics(items, test_fraction=val_fraction, validation_fraction=0.0,
                         max_heldout_topic_fraction=0.5, seed=seed)
    val = set(split["test"]) or {sorted({a["topic"] for a in answers})[0]}
    return np.array([a["topic"] in val for a in answers])


def _fit_one(x_tr, y_tr, x_va, y_va, cfg: HeadConfig, tc: TrainConfig) -> tuple[nn.Module, dict]:
    """Train one net with class-weighted BCE; keep the epoch with the lowest validation loss."""
    from tigerdecode.heads.control import _net

    torch.manual_seed(tc.seed)
    net = _net(cfg)
    pos = float(y_tr.sum())
    pos_weight = torch.tensor((len(y_tr) - pos) / max(pos, 1.0))
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr if cfg.kind == "linear" else tc.lr / 3,
                            weight_decay=tc.weight_decay)
    gen = torch.Generator().manual_seed(tc.seed)
    best, best_state, bad, epochs = float("inf"), None, 0, 0
    for epoch in range(tc.max_epochs):
        net.train()
        for idx in torch.randperm(len(y_tr), generator=gen).split(tc.batch_size):
            opt.zero_grad()
            loss_fn(net(x_tr[idx]).squeeze(-1), y_tr[idx]).backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(x_va).squeeze(-1), y_va))
        epochs = epoch + 1
        if val < best - 1e-4:
            best, best_state, bad = val, copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
            if bad >= tc.patience:
                break
    net.load_state_dict(best_state)
    return net.eval(), {"epochs": epochs, "val_loss": best, "pos_weight": float(pos_weight)}


def load_many(dirs: list, layers: list[int]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Load and concatenate several data directories built for the same model."""
    fps = {json.dumps(FeatureStore(d).manifest()["config"]["fingerprint"], sort_keys=True)
           for d in dirs}
    if len(fps) > 1:
        raise ValueError(f"data directories {[str(d) for d in dirs]} were built on different "
                         "models; train on data from one model")
    parts, answers = [], []
    for d in dirs:
        t, a = FeatureStore(d).load(layers)
        t["answer"] = t["answer"] + len(answers)
        parts.append(t)
        answers += a
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, answers


def load_prompts_many(dirs: list, layers: list[int]) -> dict[int, np.ndarray] | None:
    """The prompt states of :func:`load_many`'s answers, or None if a directory lacks them."""
    parts = [FeatureStore(d).load_prompt_states(layers) for d in dirs]
    if any(p is None for p in parts):
        return None
    return {x: np.concatenate([p[x] for p in parts]) for x in layers}


def dev_targets(dev: np.ndarray, faithful_restatement: bool) -> np.ndarray:
    """Training targets for ``p_dev``: open text is 0 (no fact to depart from); the restatement
    (-1) is 0 when ``faithful_restatement``, else left out (-1)."""
    y = dev.copy()
    y[y == OPEN_TEXT] = 0
    if faithful_restatement:
        y[y == -1] = 0
    return y


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _key(trial: dict) -> tuple[float, float]:
    """Selection key: p_dev token AUROC, then p_stop AUROC, each the mean over the topic splits
    (None counts as 0)."""
    sel = trial["select"]
    return (sel["dev_token_auroc"] or 0.0, sel["stop_auroc"] or 0.0)


MIN_SLOT_POSITIVES = 20


def slot_report(t: dict[str, np.ndarray], rows: np.ndarray, p_slot: np.ndarray) -> dict:
    """AUROC of ``p_slot`` on its own label beside entropy / 1 - top-1 probability of the next
    token's distribution, on the same rows (those with a label and both rivals)."""
    from tigerdecode.training.metrics import auroc

    y = t["slot"][rows].astype(np.int64)
    ent, low = (s[rows] for s in next_token_signals(t))
    keep = (y >= 0) & np.isfinite(ent)
    if keep.sum() == 0 or len(np.unique(y[keep])) < 2:
        return {"n_tokens": int(keep.sum()), "auroc": None}
    return {"n_tokens": int(keep.sum()), "positives": int(y[keep].sum()),
            "auroc": auroc(y[keep], p_slot[keep]),
            "baselines": {"entropy": auroc(y[keep], ent[keep]),
                          "1-maxprob": auroc(y[keep], low[keep])}}


def _train_slot(heads: ControlHeads, t, tr, va, tc: TrainConfig, log) -> dict | None:
    """Add the forward-looking ``slot`` output to the selected heads (same layers and kind),
    calibrate it on validation topics, and report it beside the training-free signals."""
    y = torch.from_numpy(t["slot"].astype(np.float32))
    m_tr, m_va = y[tr] >= 0, y[va] >= 0
    if int((y[tr][m_tr] == 1).sum()) < MIN_SLOT_POSITIVES or int(m_va.sum()) == 0:
        log(f"  slot: fewer than {MIN_SLOT_POSITIVES} labelled fact-slot tokens; not trained")
        return None
    cfg = heads.config
    x_tr = (_features(t, cfg.layers, tr) - heads.feat_mean) / heads.feat_std
    x_va = (_features(t, cfg.layers, va) - heads.feat_mean) / heads.feat_std
    net, info = _fit_one(x_tr[m_tr], y[tr][m_tr], x_va[m_va], y[va][m_va], cfg, tc)
    cfg.outputs = ["stop", "dev", "slot"]
    heads.nets["slot"] = net
    heads.calibrators["slot"] = Calibrator(cfg.calibration)
    with torch.no_grad():
        z = net(x_va).squeeze(-1).numpy()
    keep = m_va.numpy()
    if tc.calibration != "none" and len(np.unique(t["slot"][va][keep])) == 2:
        heads.calibrators["slot"].fit(z[keep], t["slot"][va][keep], tc.calibration)
    with torch.no_grad():
        p = heads.calibrators["slot"](torch.from_numpy(z)).numpy()
    rep = {"train": info, **slot_report(t, va, p)}
    b = rep.get("baselines") or {}
    log(f"  slot (validation topics): AUROC {_fmt(rep.get('auroc'))} vs entropy "
        f"{_fmt(b.get('entropy'))}, 1-maxprob {_fmt(b.get('1-maxprob'))}")
    return rep


def add_slot(base_dir, data_dir, out=None, tc: TrainConfig | None = None,
             log=print) -> tuple[ControlHeads, dict]:
    """Keep a checkpoint's ``p_stop`` / ``p_dev`` as they are and train only the forward-looking
    ``slot`` output beside them (same layers, kind and feature standardisation), on the data
    in ``data_dir``; validation by topic as in :func:`train_heads`."""
    tc = tc or TrainConfig()
    t0 = time.perf_counter()
    heads = ControlHeads.load(base_dir)
    base_metrics = json.loads((Path(base_dir) / "metrics.json").read_text()) \
        if (Path(base_dir) / "metrics.json").is_file() else {}
    dirs = [data_dir] if isinstance(data_dir, str | Path) else list(data_dir)
    fp = Fingerprint.from_dict(FeatureStore(dirs[0]).manifest()["config"]["fingerprint"])
    if heads.fingerprint is not None and heads.fingerprint != fp:
        raise ValueError(f"{base_dir} was trained for {heads.fingerprint}; the data was built "
                         f"on {fp}")
    t, answers = load_many(dirs, heads.layers)
    val_ans = topic_split(answers, tc.val_fraction, tc.seed)
    is_val = val_ans[t["answer"]]
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    rep = _train_slot(heads, t, tr, va, tc, log)
    if rep is None:
        raise ValueError(f"the data in {[str(d) for d in dirs]} holds too few fact-slot tokens "
                         f"(need {MIN_SLOT_POSITIVES}); build it with --forms")
    fwd = train_forward(heads, t, answers, load_prompts_many(dirs, heads.layers), val_ans,
                        calibration=tc.calibration, log=log)
    metrics = {**base_metrics, "slot": {**rep, "data": [str(d) for d in dirs],
                                        "base": str(base_dir),
                                        "train_seconds": round(time.perf_counter() - t0, 1)},
               **fwd}
    if out is not None:
        heads.save(out, metrics)
    return heads, metrics


def _features(t: dict[str, np.ndarray], layers: list[int], rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([t[f"layer_{x}"][rows] for x in layers], axis=1)
                            ).float()  # (N, L*H)


def training_targets(t: dict[str, np.ndarray], answers: list[dict], faithful_restatement: bool
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-token targets of ``p_stop`` / ``p_dev`` (-1: left out of the loss), and which tokens
    belong to open or mixed answers (left out of the factual metrics: open text is reported on
    its own, mixed text only through the slot head)."""
    form = np.array([a.get("form") for a in answers])[t["answer"]]
    is_open = np.array([bool(a.get("open")) for a in answers])[t["answer"]] | (form == "mixed")
    targets = {"stop": t["stop"], "dev": dev_targets(t["dev"], faithful_restatement)}
    # a creative text that must name a fact (mixed form) may name a wrong one: its tokens are
    # not "no claim" as open text is, and have no deviation label either, so p_dev skips them
    targets["dev"][form == "mixed"] = -1
    return targets, is_open


def _mean(xs: list[float | None]) -> float | None:
    """Mean of the values that exist (a split whose validation holds one class gives None)."""
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


@torch.no_grad()
def average_linear(heads: ControlHeads, others: list[ControlHeads],
                   outputs: tuple[str, ...] = ("stop", "dev")) -> None:
    """Make ``heads``' linear ``outputs`` the mean logit of ``heads`` and ``others`` (each with
    its own feature standardisation), folded into one linear map over ``heads``' standardised
    features: w_k . (x - m_k) / s_k + b_k with x = z s + m is (w_k s / s_k) . z + b_k +
    w_k . (m - m_k) / s_k."""
    m, s = heads.feat_mean, heads.feat_std
    for o in outputs:
        ws, bs = [], []
        for h in (heads, *others):
            lin = h.nets[o]
            if not isinstance(lin, nn.Linear):
                raise ValueError(f"only linear heads can be averaged; {o!r} is {type(lin).__name__}")
            scale = lin.weight[0] / h.feat_std
            ws.append(scale * s)
            bs.append(lin.bias[0] + (scale * (m - h.feat_mean)).sum())
        heads.nets[o].weight.copy_(torch.stack(ws).mean(0)[None])
        heads.nets[o].bias.copy_(torch.stack(bs).mean().reshape(1))


def _trial(t, answers, fp, hidden, kind, layers, targets, tr, va, va_qa, tc: TrainConfig):
    """Train one candidate (layer set and kind) on ``tr``, score it on ``va``'s factual answers.
    Returns the heads (uncalibrated), their validation logits and the trial's record."""
    cfg = HeadConfig(layers=layers, hidden_size=hidden, kind=kind, mlp_hidden=tc.mlp_hidden,
                     calibration=tc.calibration)
    heads = ControlHeads(cfg, fp)
    x_tr = _features(t, layers, tr)
    mean, std = x_tr.mean(0), x_tr.std(0).clamp_min(1e-4)
    heads.feat_mean.copy_(mean)
    heads.feat_std.copy_(std)
    x_tr = (x_tr - mean) / std
    x_va = (_features(t, layers, va) - mean) / std
    info = {}
    for out_name in ("stop", "dev"):
        y = torch.from_numpy(targets[out_name].astype(np.float32))
        m_tr, m_va = y[tr] >= 0, y[va] >= 0
        net, info[out_name] = _fit_one(x_tr[m_tr], y[tr][m_tr], x_va[m_va], y[va][m_va], cfg, tc)
        heads.nets[out_name] = net
    with torch.no_grad():
        z_va = {o: heads.nets[o](x_va).squeeze(-1).numpy() for o in ("stop", "dev")}
    rep = score_split(t, answers, va[va_qa], z_va["dev"][va_qa], z_va["stop"][va_qa])
    trial = {"kind": kind, "layers": layers, "train": info,
             "val_dev_token_auroc": rep["p_dev"]["token_auroc"],
             "val_dev_answer_auroc": rep["p_dev"]["answer_auroc"],
             "val_stop_auroc": rep["p_stop"]["auroc"]}
    return heads, z_va, trial


def train_heads(data_dir, out=None, tc: TrainConfig | None = None, log=print) -> tuple[
        ControlHeads, dict]:
    """Train, select, calibrate; save to ``out`` when given. Returns the heads and metrics."""
    tc = tc or TrainConfig()
    t0 = time.perf_counter()
    dirs = [data_dir] if isinstance(data_dir, str | Path) else list(data_dir)
    store = FeatureStore(dirs[0])
    manifest = store.manifest()
    stored = sorted(set(manifest["config"]["layers"]) | set(store.extra_layers()))
    cands = [c for c in tc.candidates if all(x in stored for x in c)]
    if not cands:
        raise ValueError(f"none of the candidate layer sets {tc.candidates} is stored in "
                         f"{dirs[0]} (it stores {stored}); pass --layers from those")
    t, answers = load_many(dirs, sorted({x for c in cands for x in c}))
    val_ans = topic_split(answers, tc.val_fraction, tc.seed)
    is_val = val_ans[t["answer"]]
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    targets, is_open = training_targets(t, answers, tc.faithful_restatement)
    va_qa = ~is_open[va]
    hidden = t[f"layer_{cands[0][0]}"].shape[1]
    fp = Fingerprint.from_dict(manifest["config"]["fingerprint"])
    # the layer set is chosen on the mean over ``tc.select_splits`` topic splits: on one split
    # of a few topics, candidates within a few thousandths swap places from run to run
    extra = []
    for k in range(1, tc.select_splits):
        v = topic_split(answers, tc.val_fraction, tc.seed + k)[t["answer"]]
        if v.any() and (~v).any():
            extra.append((np.flatnonzero(~v), np.flatnonzero(v)))
    trials = []
    best = None
    for kind in tc.kinds:
        for layers in cands:
            heads, z_va, trial = _trial(t, answers, fp, hidden, kind, layers, targets, tr, va,
                                        va_qa, tc)
            members = [(heads, va, z_va)]  # each split's heads, validation rows and logits
            token, stop = [trial["val_dev_token_auroc"]], [trial["val_stop_auroc"]]
            for tr_k, va_k in extra:
                h_k, z_k, tk = _trial(t, answers, fp, hidden, kind, layers, targets, tr_k, va_k,
                                      ~is_open[va_k], tc)
                members.append((h_k, va_k, z_k))
                token.append(tk["val_dev_token_auroc"])
                stop.append(tk["val_stop_auroc"])
            trial["select"] = {"splits": len(token), "dev_token_auroc": _mean(token),
                               "stop_auroc": _mean(stop), "dev_token_auroc_each": token}
            log(f"  {kind} layers {layers}: val p_dev token AUROC "
                f"{_fmt(trial['val_dev_token_auroc'])}, answer "
                f"{_fmt(trial['val_dev_answer_auroc'])}, p_stop {_fmt(trial['val_stop_auroc'])}"
                + (f"; over {len(token)} topic splits: token "
                   f"{_fmt(trial['select']['dev_token_auroc'])}, p_stop "
                   f"{_fmt(trial['select']['stop_auroc'])}" if extra else ""))
            trials.append(trial)
            if best is None or _key(trial) > _key(best[0]):
                best = (trial, heads, z_va, members)
    trial, heads, z_va, members = best
    # linear heads of every split are averaged into one (less spread from which topics
    # early-stopped a run); the calibrators then fit every split's own out-of-topic logits
    average = tc.average_splits and trial["kind"] == "linear" and len(members) > 1
    for o in ("stop", "dev"):
        fit_on = members if average else members[:1]
        y = np.concatenate([t[o][rows] for _, rows, _ in fit_on])
        z = np.concatenate([zs[o] for _, _, zs in fit_on])
        keep = y >= 0
        if len(np.unique(y[keep])) < 2 and tc.calibration != "none":
            log(f"  warning: validation {o} labels hold one class; {o} left uncalibrated")
            continue
        heads.calibrators[o].fit(z[keep], y[keep], tc.calibration)
    slot_rep = _train_slot(heads, t, tr, va, tc, log) if "slot" in t else None
    fwd = train_forward(heads, t, answers, load_prompts_many(dirs, heads.layers), val_ans,
                        calibration=tc.calibration, log=log) if slot_rep is not None else {}
    with torch.no_grad():
        states = {x: torch.from_numpy(t[f"layer_{x}"][va]) for x in heads.layers}
        p_stop, p_dev, p_slot = heads(states)
    val_report = score_split(t, answers, va[va_qa], z_va["dev"][va_qa], z_va["stop"][va_qa],
                             p_dev=p_dev.numpy()[va_qa], p_stop=p_stop.numpy()[va_qa])
    if (~va_qa).any():
        open_dev = p_dev.numpy()[~va_qa]
        val_report["open_text"] = {"n_tokens": int(len(open_dev)),
                                   "mean_p_dev": float(open_dev.mean()),
                                   "share_p_dev_ge_0.5": float((open_dev >= 0.5).mean())}
        log(f"  open text (validation kinds): mean p_dev {open_dev.mean():.3f}, "
            f"{(open_dev >= 0.5).mean():.1%} of tokens >= 0.5")
    if average:
        average_linear(heads, [m[0] for m in members[1:]])
        log(f"  p_stop / p_dev: the {len(members)} topic splits' linear heads averaged into one "
            "(the validation numbers above are the first split's own)")
    n_val_topics = len({a["topic"] for a, v in zip(answers, val_ans, strict=True) if v})
    metrics = {
        "selected": {"kind": trial["kind"], "layers": trial["layers"],
                     "averaged_splits": len(members) if average else 1},
        "data": {"dirs": [str(d) for d in dirs], "n_answers": len(answers), "n_tokens": int(len(t["dev"])),
                 "n_open_answers": sum(bool(a.get("open")) for a in answers),
                 "answer_accuracy": float(np.mean([bool(a["correct"]) for a in answers
                                                   if not a.get("open")])),
                 "n_topics": len({a["topic"] for a in answers}), "n_val_topics": n_val_topics,
                 "val_topics": sorted({a["topic"] for a, v in zip(answers, val_ans, strict=True)
                                       if v}),
                 "settings": [s["name"] for s in manifest["config"]["settings"]],
                 "max_new_tokens": manifest["config"]["max_new_tokens"]},
        "trials": trials,
        "validation": val_report,
        "slot": slot_rep,
        **fwd,
        "calibration": {"method": tc.calibration, "fitted_on": "validation-topic predictions"},
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    if out is not None:
        heads.save(out, metrics)
    return heads, metrics
