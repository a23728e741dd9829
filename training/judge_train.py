"""Training the whole-answer judge on the special data's answer-level labels.

The data directory (``tigerdecode data build``) holds every sampled answer's token ids and its
``correct`` label. Features are recomputed here by the very pass the judge runs at inference
(``judge.features.reencode``), so train and run time read the same numbers. The split is by
topic (``split_topics``: train topics fit the head, validation topics pick the L2 strength and fit
the Platt calibration); the test topics are never touched here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tigerdecode.qa.prompts import format_prompt
from tigerdecode.training.metrics import auroc, ece

# How each token-level aggregate points: +1 when larger means "more likely wrong".
SIGNAL_SIGN = {"mean_logprob": -1, "min_logprob": -1, "first_logprob": -1, "mean_entropy": 1,
               "max_entropy": 1, "min_maxprob": -1, "max_pdev": 1, "mean_pdev": 1,
               "first_pdev": 1, "last_pdev": 1}
C_GRID = (0.001, 0.01, 0.1, 1.0)
STATE_SCALES = (0.0, 0.03, 0.1, 0.3, 1.0)


def open_side(topic: str) -> str:
    """Split for topics outside the QA file: open-prompt kinds (``open:story``, ...) go one in
    three to validation (by a stable hash of the kind), so validation scores accepting free text
    too; anything else trains."""
    import zlib

    if topic.startswith("open:"):
        return "validation" if zlib.crc32(topic.encode()) % 3 == 0 else "train"
    return "train"


@dataclass
class JudgeTrainConfig:
    layers: tuple[int, ...] = (12, 16, 20, 24)
    batch_size: int = 32
    max_answers: int | None = None


def stored_answers(data_dir: str | Path) -> tuple[list[dict], list[list[int]], int]:
    """The data's answers, each answer's kept token ids, and the build's ``max_new_tokens``."""
    from tigerdecode.training.store import FeatureStore

    store = FeatureStore(data_dir)
    manifest = store.manifest()
    t, answers = store.load(layers=[])
    toks: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for a, p, tid in zip(t["answer"].tolist(), t["pos"].tolist(), t["token_id"].tolist(),
                         strict=True):
        toks[a].append((p, tid))
    ids = [[tid for _, tid in sorted(toks.get(i, []))] for i in range(len(answers))]
    return answers, ids, int(manifest["config"]["max_new_tokens"])


def judge_features(model, tokenizer, prompts, answer_ids, ended, layers, heads=None,
                   batch_size=32, desc="judge features"):
    """(N, F) features and the scalar names, in batches, through ``reencode``. ``prompts`` are
    the user messages as asked (``training.build.user_message``)."""
    from tigerdecode.judge.features import prompt_pass, reencode, strip_padding
    from tigerdecode.model.prompting import encode_prompts

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    feats, names = [], None
    for s in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch"):
        chunk = slice(s, s + batch_size)
        enc = encode_prompts(tokenizer, list(prompts[chunk]))
        pc = prompt_pass(model, strip_padding(enc["input_ids"], enc["attention_mask"]), pad)
        r = reencode(model, pc, answer_ids[chunk], ended[chunk], eos_id=eos, pad_id=pad, layers=layers,
                     heads=heads)
        feats.append(torch.cat([r.states, r.scalars], dim=-1).numpy())
        names = r.scalar_names
    return np.concatenate(feats), names


def load_training_set(model, tokenizer, data_dir, cfg: JudgeTrainConfig, heads=None):
    """Features, labels (1 = wrong), topics and scalar names from one data directory: a
    ``tigerdecode data build`` store (features recomputed here) or a ``judge_features.npz``
    written by ``judge_data.sample_judge_data`` (features already computed by the same pass)."""
    import json

    npz = Path(data_dir) / "judge_features.npz"
    if npz.is_file():
        meta = json.loads((Path(data_dir) / "judge_data.json").read_text())
        if list(meta["layers"]) != list(cfg.layers) or heads is not None:
            raise ValueError(f"{data_dir} holds features of layers {meta['layers']} without "
                             f"heads; asked for layers {list(cfg.layers)}"
                             f"{' with heads' if heads is not None else ''}")
        d = np.load(npz, allow_pickle=False)
        return d["x"], d["y"], d["topics"].tolist(), list(meta["scalar_names"])
    answers, ids, max_new = stored_answers(data_dir)
    # a creative text that must name a fact (a mixed prompt) is not judged: the judge reads
    # factual answers and open text; whether a poem named its city is not "wrong" for it
    keep = [i for i, a in enumerate(answers) if a.get("form") != "mixed"]
    answers, ids = [answers[i] for i in keep], [ids[i] for i in keep]
    if cfg.max_answers is not None:
        answers, ids = answers[:cfg.max_answers], ids[:cfg.max_answers]
    # an answer to an open prompt claims no fact: the judge should accept it (label 0)
    y = np.array([0 if a["correct"] or a.get("open") else 1 for a in answers])
    ended = [a["n_tokens"] < max_new for a in answers]
    # the message as it was asked (recorded since the build asks some questions bare)
    messages = [a.get("message") or (a["prompt"] if a.get("open") else format_prompt(a["prompt"]))
                for a in answers]
    x, names = judge_features(model, tokenizer, messages, ids, ended, list(cfg.layers), heads,
                              cfg.batch_size)
    return x, y, [a.get("topic") or "unknown" for a in answers], names


def train_judge(model, tokenizer, data_dirs, out, cfg: JudgeTrainConfig, heads=None,
                qa_path=None, log=print):
    """Fit, calibrate, evaluate on validation topics, save; returns (judge, metrics)."""
    from sklearn.linear_model import LogisticRegression

    from tigerdecode.judge.model import Judge, JudgeConfig, heads_digest
    from tigerdecode.model.load import fingerprint, text_config
    from tigerdecode.qa.data import load_qa, qa_wikidata_path, split_topics

    parts = [load_training_set(model, tokenizer, d, cfg, heads) for d in data_dirs]
    names = parts[0][3]
    if any(p[3] != names for p in parts):
        raise ValueError("the data directories hold different features; build them alike")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    topics = [t for p in parts for t in p[2]]
    split = split_topics(load_qa(qa_path or qa_wikidata_path()))
    part = {t: k for k, ts in split.items() for t in ts}
    side = np.array([part.get(t, open_side(t)) for t in topics])
    if (side == "test").any():
        raise ValueError(f"the data holds {(side == 'test').sum()} answers on test topics; "
                         "build the judge's data from train+validation topics only")
    tr, va = side == "train", side == "validation"
    for nm, m in (("train", tr), ("validation", va)):
        if len(np.unique(y[m])) < 2:
            raise ValueError(f"the {nm} topics need both right and wrong answers; build more data")
    mean, std = x[tr].mean(0), x[tr].std(0) + 1e-4
    z = (x - mean) / std
    # thousands of pooled-state dims against a handful of answer-level signals: the states get
    # their own scale (alpha) so one L2 strength does not drown the signals; alpha = 0 drops them
    n_states = z.shape[1] - len(names)
    best = None
    for alpha in STATE_SCALES:
        za = z.copy()
        za[:, :n_states] *= alpha
        for c in C_GRID:
            lr = LogisticRegression(C=c, max_iter=2000).fit(za[tr], y[tr])
            a = auroc(y[va], lr.decision_function(za[va]))
            log(f"  states x{alpha:g}, C={c:g}: validation AUROC {a:.3f}")
            if best is None or a > best[0]:
                best = (a, c, lr, alpha, za)
    _, c, lr, alpha, z = best
    coef = lr.coef_.copy()
    coef[:, :n_states] *= alpha  # fold the scale into the weights: the judge reads plain z
    jc = JudgeConfig(layers=list(cfg.layers), hidden_size=text_config(model).hidden_size,
                     scalar_names=names, heads_digest=heads_digest(heads))
    judge = Judge(jc, fingerprint(model, tokenizer))
    judge.feat_mean.copy_(torch.tensor(mean, dtype=torch.float32))
    judge.feat_std.copy_(torch.tensor(std, dtype=torch.float32))
    judge.net.weight.data.copy_(torch.tensor(coef, dtype=torch.float32))
    judge.net.bias.data.copy_(torch.tensor(lr.intercept_, dtype=torch.float32))
    logit_va = lr.decision_function(z[va])
    judge.calibrator.fit(logit_va, y[va], "platt")
    with torch.no_grad():
        p_va = judge.calibrator(torch.tensor(logit_va)).numpy()
    signals = {n: auroc(y[va], SIGNAL_SIGN[n] * x[va, -len(names) + i])
               for i, n in enumerate(names) if n in SIGNAL_SIGN}
    best_sig = max(signals, key=lambda k: signals[k] or 0)
    metrics = {"n_train": int(tr.sum()), "n_validation": int(va.sum()),
               "wrong_rate_train": float(y[tr].mean()), "wrong_rate_validation": float(y[va].mean()),
               "C": c, "state_scale": alpha, "validation_auroc": float(auroc(y[va], logit_va)),
               "validation_ece": float(ece(y[va], p_va)),
               "validation_signal_auroc": signals, "best_signal": best_sig,
               "layers": list(cfg.layers), "scalars": names,
               "data": [str(d) for d in data_dirs],
               "heads_digest": jc.heads_digest}
    judge.save(out, metrics)
    log(f"saved {out}: validation AUROC {metrics['validation_auroc']:.3f}, ECE "
        f"{metrics['validation_ece']:.3f}; best single signal {best_sig} "
        f"{signals[best_sig]:.3f} ({metrics['n_train']} train / {metrics['n_validation']} "
        "validation answers)")
    return judge, metrics
