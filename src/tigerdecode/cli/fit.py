"""``tigerdecode fit MODEL``: heads and judge for any model in one command (training/fit.py)."""

from __future__ import annotations

import shlex
import sys

import click

from tigerdecode.cli.options import out_option, seed_option


@click.command("fit")
@click.argument("model_name", metavar="MODEL")
@click.option("--budget-minutes", type=float, default=None, metavar="M",
              help="Fit in about M minutes: measures the model's speed, then scales the data "
                   "(and evaluations) to fit, and says what it chose. Default: the full recipe.")
@click.option("--quick", is_flag=True,
              help="A tiny configuration (tests, a first look): minutes, weak heads.")
@out_option("Heads checkpoint folder; the judge goes beside it as DIR-judge. Default: "
            "$TIGERDECODE_CACHE/heads/<architecture-hidden x layers-tokenizer>/, where "
            "heads=\"auto\" finds it.", folder=True)
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Data and stage records (resumable). Default: $TIGERDECODE_CACHE/fit/<name>/.")
@click.option("--qa", "qa_path", type=click.Path(dir_okay=False), default=None,
              help="QA JSONL with topics (default: the vendored qa_wikidata); its train + "
                   "validation relations train, its test relations evaluate.")
@click.option("--open", "open_path", type=click.Path(dir_okay=False), default=None,
              help="Open prompts for the data (default: data/open_prompts_train.jsonl).")
@click.option("--creative", "creative_path", type=click.Path(dir_okay=False), default=None,
              help="Creative prompts for the evaluations (default: data/creative_prompts.jsonl).")
@seed_option(0, "Seed for the fact sample, sampling and training.")
@click.option("--restart", is_flag=True, help="Discard the work directory and start over.")
@click.option("--clean", is_flag=True,
              help="Delete the work directory (the stored hidden states) after success.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@click.option("--no-progress", is_flag=True, help="No progress bars (logs only).")
@click.option("--dry-run", is_flag=True,
              help="Choose the plan (measuring the model with --budget-minutes), print it and "
                   "the estimated minutes per stage, build nothing.")
def fit_cmd(model_name, budget_minutes, quick, out, work_dir, qa_path, open_path, creative_path,
            seed, restart, clean, threads, no_progress, dry_run) -> None:
    """Build data, train and evaluate control heads and judge for MODEL.

    MODEL is 'default', a Hugging Face directory, a .gguf file or a cached hub id. Stages:
    data (facts in three forms, open prompts), heads, judge, evaluation on held-out relations
    beside the training-free signals, abstention bars chosen on validation relations, model
    card. Kill it and rerun the same command: it
    resumes (finished stages and data units are kept).
    """
    import shutil
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from tigerdecode.cli.judge import evaluate
    from tigerdecode.training.fit import FitRequest, fit

    if threads:
        torch.set_num_threads(threads)
    req = FitRequest(model=model_name, qa_path=qa_path, open_path=open_path,
                     creative_path=creative_path, budget_minutes=budget_minutes, quick=quick,
                     out=out, work_dir=work_dir, seed=seed, restart=restart,
                     progress=not no_progress,
                     command="tigerdecode " + shlex.join(sys.argv[1:]) if sys.argv[1:2] ==
                     ["fit"] else f"tigerdecode fit {model_name}")
    log = click.echo if no_progress else (lambda msg: tqdm.write(str(msg)))
    res = fit(req, judge_eval=evaluate, log=log, dry_run=dry_run)
    if dry_run:
        return
    h = res["results"]["eval-heads"]
    click.echo(f"heads: {res['out']}\njudge: {res['judge_out']}\nmodel card: "
               f"{res['out']}/MODEL_CARD.md")
    hd, jd = h["heads"], h["judge"]
    best = max(hd["baselines"].values(), key=lambda b: b.get("answer_auroc") or 0)
    click.echo(f"held-out relations: p_dev answer AUROC {_f(hd['p_dev']['answer_auroc'])} "
               f"(best training-free {_f(best.get('answer_auroc'))}), p_stop AUROC "
               f"{_f(hd['p_stop']['auroc'])}; judge AUROC {_f(jd['auroc'])} (best signal "
               f"{jd['best_signal']} {_f(jd['signal_auroc'].get(jd['best_signal']))})")
    for kind, path in res["auto"].items():
        note = "" if path is not None and Path(path).resolve() == Path(
            res["out" if kind == "heads" else "judge_out"]).resolve() else \
            " (not these: pass the folder above explicitly)"
        how = 'heads="auto"' if kind == "heads" else "judge=True"
        click.echo(f"{how} for this model uses: {path}{note}")
    if clean:
        shutil.rmtree(res["work"], ignore_errors=True)
        click.echo(f"removed {res['work']}")
    else:
        click.echo(f"work data kept in {res['work']} (delete it, or pass --clean, once done)")


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"

