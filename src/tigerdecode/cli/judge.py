"""``tigerdecode judge train`` and ``tigerdecode judge eval``."""

from __future__ import annotations

import json
import math
import time

import click

from tigerdecode.cli.options import (
    batch_size_option,
    creativity_option,
    json_option,
    limit_option,
    load_items,
    max_new_tokens_option,
    model_option,
    out_option,
    qa_option,
    sample_option,
    seed_option,
    set_option,
    split_option,
    write_json,
)

EVAL_KEYS = ("n", "judge_auroc", "judge_ece", "wrong_rate_without", "wrong_rate_with",
             "flip_rate", "abstain_rate", "latency_ratio")


@click.group("judge")
def judge_group() -> None:
    """Train and evaluate the whole-answer judge."""


def _layers(spec: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in spec.split(",") if x.strip())
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise click.BadParameter(f"layers must be comma-separated integers >= 1, got {spec!r}",
                                 param_hint="--layers")
    return out


@judge_group.command("train")
@click.option("--data", "data_dirs", required=True, multiple=True,
              type=click.Path(file_okay=False, exists=True),
              help="A `tigerdecode data build` directory or a judge-data directory; repeatable.")
@out_option("Checkpoint directory to write (replaced atomically).", required=True, folder=True)
@model_option()
@click.option("--layers", default="12,16,20,24", show_default=True,
              help="Comma-separated 1-based layers the judge reads.")
@click.option("--heads", "heads_spec", default="none", show_default=True,
              help="Control heads whose p_dev the judge reads: none, auto or a path.")
@qa_option(help="The QA file whose topic split defines train/validation (default: "
                "qa_wikidata).")
@click.option("--threads", type=click.IntRange(1), default=None)
def train_cmd(data_dirs, out, model_name, layers, heads_spec, qa_path, threads):
    """Fit the judge on answer-level labels.

    Validation split by topic; Platt calibration.
    """
    import torch

    from tigerdecode.api import resolve_heads
    from tigerdecode.model.load import load_model
    from tigerdecode.training.judge_train import JudgeTrainConfig, train_judge

    if threads:
        torch.set_num_threads(threads)
    model, tok = load_model(model_name)
    heads = None if heads_spec == "none" else resolve_heads(model, tok, heads_spec)
    if heads_spec != "none" and heads is None:
        raise click.ClickException("no control heads found for this model (--heads auto)")
    try:
        train_judge(model, tok, list(data_dirs), out, JudgeTrainConfig(layers=_layers(layers)),
                    heads=heads, qa_path=qa_path, log=click.echo)
    except ValueError as e:
        raise click.ClickException(str(e)) from None


def _budget(text: str):
    """--rewrite-budget: 'default', 'none' or a number in [0, 100]."""
    if text in ("default", "none"):
        return math.inf if text == "none" else "default"
    try:
        b = float(text)
    except ValueError:
        b = -1.0
    if not 0 <= b <= 100:
        raise click.BadParameter(f"{text!r}: give a number in [0, 100] (a share of the first "
                                 "answers' tokens), 'none' or 'default'",
                                 param_hint="--rewrite-budget")
    return b


def evaluate(model, tok, items, *, creativity=0.5, max_new_tokens=16, batch_size=32,
             max_rewrites=None, judge="auto", seed=0, bar=None, policy=None,
             open_prompts=(), rewrite_budget="default", min_rewind=None) -> dict:
    """Answer ``items`` without and with the judge; the issue's metrics plus details.
    ``policy``: Policy overrides for both arms. ``open_prompts``: creative prompts (asked as
    they are) also decoded with the judge, to count how often it abstains on free text."""
    import numpy as np

    from tigerdecode.api import ControlledGenerator
    from tigerdecode.eval.runner import judge_outcome
    from tigerdecode.training.judge_train import SIGNAL_SIGN
    from tigerdecode.training.metrics import auroc, ece

    policy = dict(policy or {})
    judging = {} if max_rewrites is None else {"max_rewrites": max_rewrites}
    if rewrite_budget != "default":
        judging["rewrite_budget"] = rewrite_budget
    if min_rewind is not None:
        judging["min_rewind"] = min_rewind
    gen = ControlledGenerator(model, tok)
    base, with_j, t_base, t_judge = [], [], 0.0, 0.0
    for s in range(0, len(items), batch_size):
        prompts = _prompts(items[s:s + batch_size])
        t0 = time.perf_counter()
        base += gen.generate_text(prompts, creativity=creativity, max_new_tokens=max_new_tokens,
                                  seed=seed + s, **policy)
        t1 = time.perf_counter()
        with_j += gen.generate_text(prompts, creativity=creativity,
                                    max_new_tokens=max_new_tokens, seed=seed + s, judge=judge,
                                    **judging, **policy)
        t_base, t_judge = t_base + t1 - t0, t_judge + time.perf_counter() - t1
        if bar is not None:
            bar.update(len(prompts))
    o0 = [judge_outcome(it, r.text, r.abstained) for it, r in zip(items, base, strict=True)]
    o1 = [judge_outcome(it, r.text, r.abstained) for it, r in zip(items, with_j, strict=True)]
    first = [r.judge.rewrites[0] for r in with_j]
    scored = [(judge_outcome(it, c["text"], False) == "wrong", c["score"], c["signals"])
              for it, c in zip(items, first, strict=True)]  # the first answer, as generated
    y = np.array([w for w, _, _ in scored], dtype=float)
    p = np.array([s for _, s, _ in scored])
    n = len(items)
    signals = {k: auroc(y, sign * np.array([sg[k] for _, _, sg in scored]))
               for k, sign in SIGNAL_SIGN.items() if k in scored[0][2]}
    verdicts = [r.judge.verdict for r in with_j]
    top, rest = _rates(o0, o1)
    res = {"n": n, "judge_auroc": auroc(y, p), "judge_ece": float(ece(y, p)), **top,
           "latency_ratio": t_judge / max(t_base, 1e-9)}
    res["details"] = {
        **rest, "outcomes_without": o0, "outcomes_with": o1,
        "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        "signal_auroc": signals, "seconds_without": t_base, "seconds_with": t_judge,
        "threshold": with_j[0].judge.threshold, "creativity": creativity,
        "max_new_tokens": max_new_tokens,
        "max_rewrites": "default" if max_rewrites is None else max_rewrites,
        "rewrite_budget": ("none" if rewrite_budget == math.inf else rewrite_budget),
        "min_rewind": "default" if min_rewind is None else min_rewind,
        "policy": policy,
        "seed": seed}
    if open_prompts:
        opened = []
        for s in range(0, len(open_prompts), batch_size):
            opened += gen.generate_text(list(open_prompts[s:s + batch_size]),
                                        creativity=creativity, max_new_tokens=2 * max_new_tokens,
                                        seed=seed + s, judge=judge, **judging, **policy)
        res["details"]["open"] = {"n": len(opened),
                                  "abstained": sum(r.abstained for r in opened),
                                  "rewritten": sum(r.judge.verdict == "rewritten" for r in opened)}
    return res


def _rates(o0: list[str], o1: list[str]) -> tuple[dict, dict]:
    """The outcome rates without (``o0``) and with (``o1``) the judge: (summary, details)."""
    n, both = len(o0), list(zip(o0, o1, strict=True))
    pair = lambda a, b: sum(x == a and y == b for x, y in both)  # noqa: E731
    top = {"wrong_rate_without": o0.count("wrong") / n, "wrong_rate_with": o1.count("wrong") / n,
           "flip_rate": pair("right", "wrong") / n, "abstain_rate": o1.count("abstain") / n}
    rest = {"right_rate_without": o0.count("right") / n, "right_rate_with": o1.count("right") / n,
            "abstain_rate_without": o0.count("abstain") / n,
            "right_to_abstain_rate": pair("right", "abstain") / n,
            "wrong_to_right_rate": pair("wrong", "right") / n,
            # of the answers right without the judge, the share still right with it (accepted
            # or rewritten into another right answer)
            "right_kept_rate": (pair("right", "right") / o0.count("right")
                                if o0.count("right") else None)}
    return top, rest


def pooled(runs: list[dict]) -> dict:
    """One report from ``evaluate`` runs over several seeds: rates pooled over every answer."""
    if len(runs) == 1:
        return runs[0]
    o0 = [o for r in runs for o in r["details"]["outcomes_without"]]
    o1 = [o for r in runs for o in r["details"]["outcomes_with"]]
    top, rest = _rates(o0, o1)
    res = {"n": len(o0),
           # AUROC/ECE are not additive: the mean over seeds (each on its own n answers)
           "judge_auroc": _mean([r["judge_auroc"] for r in runs]),
           "judge_ece": _mean([r["judge_ece"] for r in runs]), **top,
           "latency_ratio": sum(r["details"]["seconds_with"] for r in runs)
           / max(sum(r["details"]["seconds_without"] for r in runs), 1e-9)}
    verdicts: dict[str, int] = {}
    for r in runs:
        for k, v in r["details"]["verdicts"].items():
            verdicts[k] = verdicts.get(k, 0) + v
    res["details"] = {
        "seeds": [r["details"]["seed"] for r in runs], **rest, "verdicts": verdicts,
        "signal_auroc": {k: _mean([r["details"]["signal_auroc"][k] for r in runs])
                         for k in runs[0]["details"]["signal_auroc"]},
        "per_seed": [{k: r[k] for k in EVAL_KEYS} | {
            "right_rate_without": r["details"]["right_rate_without"],
            "right_kept_rate": r["details"]["right_kept_rate"]} for r in runs],
        "outcomes_without": o0, "outcomes_with": o1}
    for k in ("threshold", "creativity", "max_new_tokens", "max_rewrites", "policy"):
        res["details"][k] = runs[0]["details"][k]
    if "open" in runs[0]["details"]:
        res["details"]["open"] = {k: sum(r["details"]["open"][k] for r in runs)
                                  for k in ("n", "abstained", "rewritten")}
    return res


def _mean(xs):
    xs = [x for x in xs if x is not None and x == x]
    return sum(xs) / len(xs) if xs else None


def _seed_list(spec: str) -> list[int]:
    try:
        out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"--seeds takes comma-separated integers like 0,1,2,3,4; got "
                                 f"{spec!r}", param_hint="--seeds") from None
    if not out or min(out) < 0 or len(out) > 64 or len(set(out)) != len(out):
        raise click.BadParameter(f"--seeds needs 1-64 distinct integers >= 0; got {spec!r}",
                                 param_hint="--seeds")
    return out


def _prompts(items):
    from tigerdecode.qa.prompts import format_prompt

    return [format_prompt(it.prompt) for it in items]


@judge_group.command("eval")
@qa_option(required=True)
@split_option()
@limit_option()
@sample_option()
@json_option("Print the metrics as one JSON object.")
@model_option()
@click.option("--judge", "judge_spec", default="auto", show_default=True,
              help="auto (the shipped judge) or a checkpoint directory.")
@creativity_option(0.5)
@max_new_tokens_option(16, high=512)
@click.option("--max-rewrites", type=click.IntRange(0, 8), default=None,
              help="Rewrites before abstaining (default: the judge's, 1; 0 judges only).")
@click.option("--rewrite-budget", default="default", show_default=True,
              help="Tokens all rewrites may write, as a share of the first answers' tokens "
                   "(a number in [0, 100]), 'none' for no limit, or 'default' (0.3).")
@click.option("--min-rewind", type=click.IntRange(0, 4096), default=None,
              help="The answer tokens a rewrite keeps at least (default: the judge's, 4; 0: no "
                   "bar).")
@batch_size_option(32)
@seed_option(0, "Seed for decoding (and the --sample draw).")
@click.option("--seeds", default=None, metavar="S,S,...",
              help="Decode every item once per seed (e.g. 0,1,2,3,4) and pool the rates over all "
                   "answers; --seed still draws --sample.")
@out_option("Also write the full report (extra rates, signal AUROCs) to this JSON file.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@set_option("Policy field for both arms, e.g. --set use_abstain=false (repeatable).")
@click.option("--open", "open_path", default=None, type=click.Path(dir_okay=False),
              help="Open prompts JSONL (e.g. data/creative_prompts.jsonl): also count how often "
                   "the judge abstains on free text.")
@click.option("--n-open", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="The first N open prompts.")
def eval_cmd(qa_path, split, limit, sample, as_json, model_name, judge_spec, creativity,
             max_new_tokens, max_rewrites, rewrite_budget, min_rewind, batch_size, seed, seeds,
             out, threads, sets, open_path, n_open):
    """Score the judge end to end on a QA file.

    Answers without and with the judge; prints judge AUROC / ECE, wrong-answer rates, correct→wrong flips, abstentions and the
    latency ratio."""
    import torch
    from tqdm import tqdm

    from tigerdecode.model.load import load_model

    policy = sets
    budget = _budget(rewrite_budget)
    opens = ([it.prompt for it in load_items(open_path, limit=n_open, open_prompts=True)]
             if open_path else [])
    if threads:
        torch.set_num_threads(threads)
    items = load_items(qa_path, split, limit, sample, seed)
    if not items:
        raise click.ClickException(f"{qa_path} has no items in split {split!r}")
    model, tok = load_model(model_name)
    judge = judge_spec if judge_spec != "auto" else True
    seed_list = _seed_list(seeds) if seeds is not None else [seed]
    with tqdm(total=len(items) * len(seed_list), desc="judge eval", unit="item",
              disable=as_json) as bar:
        res = pooled([evaluate(model, tok, items, creativity=creativity,
                               max_new_tokens=max_new_tokens, batch_size=batch_size,
                               max_rewrites=max_rewrites, judge=judge, seed=s, bar=bar,
                               rewrite_budget=budget, min_rewind=min_rewind,
                               policy=policy, open_prompts=opens) for s in seed_list])
    if out:
        write_json(out, res, indent=1)
    if as_json:
        click.echo(json.dumps({k: res[k] for k in EVAL_KEYS}
                              | {k: res["details"][k] for k in ("right_rate_without",
                                                                "right_kept_rate")}))
        return
    for k in EVAL_KEYS:
        v = res[k]
        click.echo(f"{k:20s} {v if isinstance(v, int) or v is None else f'{v:.4f}'}")
    d = res["details"]
    best = max(d["signal_auroc"], key=lambda k: d["signal_auroc"][k] or 0)
    click.echo(f"best token-level signal: {best} AUROC {d['signal_auroc'][best]:.4f}; "
               f"verdicts {d['verdicts']}; right→abstain {d['right_to_abstain_rate']:.4f}")
    kept = d["right_kept_rate"]
    click.echo(f"right without the judge {d['right_rate_without']:.4f}, with it "
               f"{d['right_rate_with']:.4f}; right answers the judge keeps "
               f"{'n/a' if kept is None else f'{kept:.4f}'}")
    if "open" in d:
        click.echo(f"open prompts: {d['open']['abstained']} of {d['open']['n']} abstained with "
                   f"the judge ({d['open']['rewritten']} rewritten)")
