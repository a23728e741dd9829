"""``tigerdecode policy show`` (the numbers the knob produces), ``tigerdecode policy tune`` (the
ablation of the head uses that chose the defaults, ``tigerdecode.eval.tune``) and ``tigerdecode
policy risk`` (the risk-coverage curve behind the abstention bar, ``tigerdecode.eval.risk``)."""

from __future__ import annotations

import json

import click

from tigerdecode.cli.options import (
    batch_size_option,
    creativity_option,
    forms_option,
    json_option,
    limit_option,
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

SHOW_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
TUNE_SAMPLE = 96  # QA items when neither --limit nor --sample is given


@click.group("policy")
def policy_group() -> None:
    """Show the creativity policy; ablate its head uses."""


def _cell(v) -> str:
    if isinstance(v, list):
        return "/".join(f"{x:g}" for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return "—" if v is None else str(v)


def policy_table(rows: list[dict]) -> str:
    """``Policy.describe()`` rows as a markdown table, one row per creativity."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---:|" * len(keys)]
    lines += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


@policy_group.command("show")
@set_option("Policy field for every level, e.g. --set abstain_rise=0 (repeatable).")
@json_option("Print the rows as a JSON list.")
def show_cmd(sets, as_json):
    """Print the Policy's numbers at creativity 0 to 1.

    Rows for 0, .25, .5, .75 and 1 from ``Policy(c).describe()`` (no model needed).
    """
    from tigerdecode.policy.knob import Policy

    try:
        rows = [Policy(c, **sets).describe() for c in SHOW_LEVELS]
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(rows) if as_json else policy_table(rows))


@policy_group.command("tune")
@model_option()
@split_option("validation", choices=("train", "validation", "test"))
@limit_option("Use the first N items of the qa_wikidata split.")
@sample_option(f"Use a random N items of the split, drawn with --seed (the default, with "
               f"N = {TUNE_SAMPLE}).")
@seed_option(0, "Seed for the --sample draw and for decoding.")
@creativity_option("0.25,0.5", many=True, help="Comma-separated creativities to decode at.")
@click.option("--variants", default=None,
              help="Comma-separated subset of the head uses: "
                   "plain, eos_bias, tighten, resample, abstain, resample+abstain, all.")
@max_new_tokens_option(16)
@batch_size_option(16)
@click.option("--n-open", type=click.IntRange(0, 200), default=24, show_default=True,
              help="Open prompts (data/open_prompts_train.jsonl, a fixed shuffle) to check the "
                   "guard on.")
@set_option("Policy field for every variant, e.g. --set abstain_at=0.8 (repeatable).")
@click.option("--bars", default=None,
              help="Comma-separated abstention bars, e.g. 0.9,0.95: for variants decoded without "
                   "abstention, how many right answers each would keep and wrong ones catch.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="torch CPU threads (1 keeps a shared machine's timings steady).")
@json_option("Print the results (rows and settings) as JSON instead of the tables.")
@out_option("Also write the results to this JSON file.")
def tune_cmd(model_name, split, limit, sample, seed, creativities, variants, max_new_tokens,
             batch_size, n_open, sets, bars, threads, as_json, out):
    """Ablate the head uses on QA and open prompts.

    Variants: none, EOS bias, tighten, resample, abstain; same prompts, seeds, creativities.
    """
    import torch

    from tigerdecode.eval.tune import VARIANTS, bars_table, run, table
    from tigerdecode.heads import HeadsError
    from tigerdecode.model.load import ModelLoadError

    names = variants.split(",") if variants else None
    if names and set(names) - set(VARIANTS):
        raise click.BadParameter(f"unknown variants {sorted(set(names) - set(VARIANTS))}; "
                                 f"choose from {list(VARIANTS)}", param_hint="--variants")
    try:
        bar_list = tuple(float(x) for x in bars.split(",")) if bars else ()
    except ValueError:
        raise click.BadParameter(f"expected numbers like 0.9,0.95, got {bars!r}",
                                 param_hint="--bars") from None
    if any(not 0 <= b <= 1 for b in bar_list):
        raise click.BadParameter(f"bars must lie in [0, 1], got {bars!r}", param_hint="--bars")
    if limit is not None and sample is not None:
        raise click.UsageError("give --limit N (the first N items) or --sample N (a random N), "
                               "not both")
    if limit is None and sample is None:
        sample = TUNE_SAMPLE
    torch.set_num_threads(threads)
    try:
        res = run(limit, creativities, names, max_new_tokens, batch=batch_size, seed=seed,
                  progress=not as_json, split=split, n_open=n_open, overrides=sets,
                  bars=bar_list, sample=sample, model_name=model_name)
    except (ModelLoadError, HeadsError) as e:
        raise click.ClickException(str(e)) from None
    if out:
        write_json(out, res)
    if as_json:
        click.echo(json.dumps(res))
        return
    click.echo(table(res))
    if bar_list:
        click.echo("\n" + bars_table(res))


@policy_group.command("risk")
@model_option()
@click.option("--heads", "heads_dir", default=None, type=click.Path(file_okay=False),
              help="Heads checkpoint to measure; default: the heads found for the model.")
@qa_option(help="QA file; default: the bundled qa_wikidata facts.")
@split_option("validation", choices=("all", "train", "validation", "test"))
@sample_option("Use a random N items of the split, drawn with --seed (default 150).")
@seed_option(0, "Seed for the --sample draw and for decoding.")
@forms_option()
@creativity_option("0,0.5", many=True, help="Comma-separated creativities; the first and last "
                                            "give risk_at and risk_rise.")
@click.option("--topic", "topics", multiple=True,
              help="Keep only this topic (repeatable), e.g. the heads' own validation topics "
                   "(metrics.json: data.val_topics), which their training never saw.")
@click.option("--budget", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Error budget: the share of right answers abstention may lose (in every "
                   "part, with --also-qa).")
@click.option("--also-qa", "also_qa", multiple=True, type=click.Path(dir_okay=False),
              help="Another QA file, every item asked as written, as a part of its own: the "
                   "budget then holds in each part (repeatable), e.g. "
                   "data/easy_validation_facts.jsonl, validation facts the model mostly knows.")
@click.option("--n-open", type=click.IntRange(0, 200), default=24, show_default=True,
              help="Open prompts (data/open_prompts_train.jsonl) checked beside the items' "
                   "mixed prompts: creative requests must never abstain.")
@click.option("--relax", type=click.FloatRange(0, 1), default=None,
              help="How far the log-probability bar relaxes with creativity: 1 follows the line "
                   "on which it catches (1 - c) of the wrong answers it catches at the first "
                   "creativity, 0 keeps it flat (default: half way, "
                   "tigerdecode.eval.risk.RELAX).")
@max_new_tokens_option(24)
@batch_size_option(16)
@set_option("Policy field, e.g. --set use_logprob=false (repeatable).")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="torch CPU threads.")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Also draw the risk-coverage curves to this PNG.")
@json_option("Print the results as JSON instead of the table.")
@out_option("Also write the results to this JSON file.")
@click.option("--write", is_flag=True,
              help="Store the chosen bars with --heads DIR (its metrics.json 'policy'): "
                   "generating with those heads then uses them by default.")
def risk_cmd(model_name, heads_dir, qa_path, split, sample, seed, forms, creativities, topics,
             budget, also_qa, n_open, relax, max_new_tokens, batch_size, sets, threads,
             plot_path, as_json, out, write):
    """Print the risk-coverage curves and the abstention bars they imply.

    Decodes the QA items (in --forms) with abstention off and reports, for every bar on p_dev
    (from the first fact slot on) and on p_risk (at the first fact slot), the right answers
    kept, the wrong ones caught and the creative requests that would abstain; the bars at each
    creativity are the lowest within the --budget. With the policy's use_logprob on (the
    default), the p_dev bar and the bar on the answer's mean top-token log-probability are chosen
    together: the pair catching the most wrong answers within the budget; the log-probability
    bar then relaxes with creativity (logprob_drop; --relax).
    """
    import random

    import torch

    from tigerdecode.api import ControlledGenerator
    from tigerdecode.cli.options import load_items, with_forms_option
    from tigerdecode.eval import risk
    from tigerdecode.eval.tune import open_prompts
    from tigerdecode.heads import ControlHeads, HeadsError
    from tigerdecode.model.load import ModelLoadError, load_model
    from tigerdecode.qa.data import qa_wikidata_path
    from tigerdecode.qa.forms import form_of, with_forms

    torch.set_num_threads(threads)
    items = load_items(qa_path or qa_wikidata_path(), split)
    if topics:
        keep = set(topics)
        items = [it for it in items if it.topic in keep]
        if not items:
            raise click.BadParameter(f"no item of split {split!r} has a topic in {sorted(keep)}",
                                     param_hint="--topics")
    random.Random(seed).shuffle(items)
    items = items[:sample or 150]
    asked = [it for it in with_forms_option(items, forms, seed) if form_of(it) != "mixed"]
    mixed = [it.prompt for it in with_forms(items, ("mixed",), seed=seed)]
    parts = None
    if also_qa:
        from pathlib import Path

        parts = ["qa"] * len(asked)
        for path in also_qa:
            extra = load_items(path, "all")
            asked += extra
            parts += [Path(path).stem] * len(extra)
    if write and (heads_dir is None or split == "test"):
        raise click.UsageError("--write stores bars with the heads given by --heads DIR, chosen "
                               "on non-test data: give --heads and a --split other than test")
    try:
        model, tok = load_model(model_name)
        heads = ControlHeads.load(heads_dir, model=model, tokenizer=tok) if heads_dir else "auto"
        gen = ControlledGenerator(model, tok, heads=heads, warn=False)
    except (ModelLoadError, HeadsError) as e:
        raise click.ClickException(str(e)) from None
    if gen.heads is None or "risk" not in gen.heads.config.outputs:
        raise click.ClickException("these heads have no p_risk output; train it with "
                                   "`tigerdecode heads train` on data built with --forms")
    res = risk.run(gen, asked, mixed + open_prompts(n_open), creativities, budget=budget,
                   max_new_tokens=max_new_tokens, batch=batch_size, seed=seed, overrides=sets,
                   progress=not as_json, parts=parts,
                   relax=risk.RELAX if relax is None else relax)
    res["settings"] = {"split": split, "topics": list(topics), "sample": len(items), "seed": seed,
                       "also_qa": list(also_qa),
                       "forms": forms,
                       "n_mixed": len(mixed), "n_open": n_open, "heads": str(heads_dir or "auto"),
                       "overrides": sets, "max_new_tokens": max_new_tokens}
    if out:
        write_json(out, res)
    if write:
        _write_bars(heads_dir, res, split, topics, also_qa)
    if plot_path:
        risk.plot(res, plot_path)
    click.echo(json.dumps(res) if as_json else risk.table(res))


def _write_bars(heads_dir, res: dict, split: str, topics, also_qa=()) -> None:
    """Record the chosen bars in the checkpoint's metrics.json (``policy``), atomically."""
    from pathlib import Path

    from tigerdecode.eval.risk import chosen_bars

    bars = chosen_bars(res)
    if bars is None:
        raise click.ClickException(f"no bars were chosen ({res.get('too_few_right')} right "
                                   "answers are too few), so nothing was written; choose them "
                                   "on items the model knows more of (--qa, --topic)")
    path = Path(heads_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["policy"] = bars
    metrics["policy_source"] = (f"tigerdecode policy risk, split {split}"
                                + (f", topics {list(topics)}" if topics else "")
                                + (f", also {list(also_qa)}" if also_qa else "")
                                + f", error budget {res['budget']}")
    write_json(path, metrics)
    click.echo(f"wrote the bars {bars} to {path}", err=True)
