"""CLI groups ``tigerdecode data`` (build the special data) and ``tigerdecode heads`` (train and
evaluate control heads). Heavy imports happen inside the commands so ``--help`` stays fast."""

from __future__ import annotations

import json

import click

from tigerdecode.cli.options import (
    batch_size_option,
    forms_option,
    json_option,
    limit_option,
    load_items,
    max_new_tokens_option,
    model_option,
    out_option,
    qa_option,
    sample_option,
    seed_option,
    split_option,
    with_forms_option,
)

SETTINGS_HELP = "Decoding settings: 'greedy' or TEMPERATURE[:TOP_P], comma-separated."


def _settings(settings: str):
    from tigerdecode.training.sampling import parse_settings

    try:
        return parse_settings(settings)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--settings") from None


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


@click.group("data")
def data_group() -> None:
    """Build the labelled data the control heads learn from."""


@data_group.command("build")
@qa_option()
@click.option("--open", "open_path", default=None, type=click.Path(dir_okay=False),
              help="Instead of --qa: open (creative) prompts ({'prompt', 'kind'?} a line); their "
                   "answers teach p_dev that free text claims no fact.")
@out_option("Data directory (created; rerun with the same options to resume).", required=True,
            folder=True)
@model_option()
@split_option()
@limit_option()
@sample_option()
@forms_option()
@click.option("--layers", default="12,16,20,24", show_default=True,
              help="Comma-separated 1-based layers whose hidden states are stored.")
@click.option("--settings", default="greedy,0.7:0.9,1.0:0.95", show_default=True,
              help=SETTINGS_HELP)
@max_new_tokens_option(24, low=2, high=256)
@batch_size_option(32)
@seed_option(0, "Seed for the --sample draw and for sampling answers.")
@click.option("--max-minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop cleanly after this long (finished units stay usable; rerun resumes).")
@click.option("--bare-questions", is_flag=True,
              help="Ask half the questions as users type them, without the 'Answer briefly.' "
                   "template (a fixed half, by id), so the heads learn both.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
def build_cmd(qa_path, open_path, out, model_name, split, limit, sample, forms, layers,
              settings, max_new_tokens, batch_size, seed, max_minutes, bare_questions,
              threads) -> None:
    """Sample, label and store the model's own answers.

    Hidden states of --layers are stored with every answer; rerun to resume.
    """
    import time

    from tigerdecode.model.load import load_model
    from tigerdecode.training.build import build_data

    _threads(threads)
    try:
        layer_list = [int(x) for x in layers.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"layers must be comma-separated integers, got {layers!r}",
                                 param_hint="--layers") from None
    if (qa_path is None) == (open_path is None):
        raise click.UsageError("give exactly one of --qa (facts) or --open (creative prompts)")
    if open_path is not None and split != "all":
        raise click.BadParameter("open prompts have no topic split; leave --split out",
                                 param_hint="--split")
    setting_list = _settings(settings)
    items = load_items(qa_path or open_path, split, limit, sample, seed,
                       open_prompts=open_path is not None)
    if open_path is None:
        items = with_forms_option(items, forms, seed)
    model, tok = load_model(model_name)
    t0 = time.perf_counter()
    store = build_data(model, tok, items, out, layers=layer_list, settings=setting_list,
                       max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                       max_seconds=None if max_minutes is None else 60 * max_minutes,
                       bare_questions=bare_questions)
    m = store.manifest()
    n_tok = sum(u["n_tokens"] for u in m["units"])
    n_ans = sum(u["n_answers"] for u in m["units"])
    click.echo(f"{out}: {n_ans} answers, {n_tok} tokens, {len(m['units'])} units "
               f"({time.perf_counter() - t0:.0f} s this run)")


@data_group.command("add-layers")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Data directory written by `tigerdecode data build`.")
@click.option("--layers", required=True,
              help="Comma-separated layers to add; 'final' is the final normed state (what "
                   "lm_head reads, and what engine-packed heads need).")
@model_option()
@batch_size_option(32)
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
def add_layers_cmd(data_dir, layers, model_name, batch_size, threads) -> None:
    """Add layers' states to a built data directory (no new sampling).

    Every stored answer is re-read teacher-forced, as it was decoded; one stored layer is
    recomputed alongside and checked. Rerun to resume.
    """
    from tigerdecode.model.load import load_model
    from tigerdecode.model.taps import num_layers
    from tigerdecode.training.restate import add_layers
    from tigerdecode.training.store import DataStoreError

    _threads(threads)
    model, tok = load_model(model_name)
    wanted = [x for s in _layer_sets(layers, num_layers(model)) for x in s]
    try:
        extra = add_layers(model, tok, data_dir, wanted, batch_size=batch_size, log=click.echo)
    except (DataStoreError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{data_dir}: layers added after the build: {extra}")


@click.group("heads")
def heads_group() -> None:
    """Train and evaluate the control heads (p_stop, p_dev)."""


def _layer_sets(spec: str, n_layers: int | None = None) -> list[list[int]]:
    """``"16,20,24,16+20+24"`` -> layer sets; ``final`` is layer ``n_layers + 1``."""
    def one(x: str) -> int:
        x = x.strip()
        if x == "final" and n_layers is not None:
            return n_layers + 1
        return int(x)

    try:
        return [[one(x) for x in part.split("+")] for part in spec.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"use layer sets like '16,20,24,16+20+24' (or 'final'), got "
                                 f"{spec!r}", param_hint="--layers") from None


@heads_group.command("train")
@click.option("--data", "data_dir", required=True, multiple=True,
              type=click.Path(file_okay=False, exists=True),
              help="Data directory written by `tigerdecode data build` (repeat to combine).")
@out_option("Checkpoint directory to write (replaced atomically).", required=True, folder=True)
@click.option("--layers", default="16,20,24,16+20+24", show_default=True,
              help="Candidate layer sets, comma-separated; '+' joins layers into one set. "
                   "The best on the validation topics is kept. 'final': the final normed "
                   "state (heads that `tigerdecode export` can pack into lm_head).")
@click.option("--kind", "kinds", default="linear", show_default=True,
              help="Head kinds to try: linear, mlp, or linear,mlp.")
@click.option("--calibration", type=click.Choice(["platt", "isotonic", "none"]),
              default="platt", show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True,
              help="Share of answers whose topics form the validation split.")
@click.option("--max-epochs", type=click.IntRange(1, 1000), default=40, show_default=True)
@click.option("--select-splits", type=click.IntRange(1, 10), default=3, show_default=True,
              help="Topic splits the layer set / kind is chosen on (mean validation AUROC); the "
                   "first split's validation numbers are the ones reported.")
@click.option("--average-splits/--no-average-splits", default=True, show_default=True,
              help="Linear heads: p_stop / p_dev become the average of the chosen candidate's "
                   "heads over the topic splits (one linear map), calibrated on each split's "
                   "own validation logits.")
@seed_option(0, "Seed for training (reproducible heads).")
@click.option("--restatement", type=click.Choice(["faithful", "skip"]), default="faithful",
              show_default=True, help="p_dev target on the prompt's restatement: 0 (faithful) "
                                      "or left out of the loss (skip).")
@click.option("--add-slot-to", "base_dir", default=None, type=click.Path(file_okay=False,
              exists=True), help="Keep this checkpoint's p_stop / p_dev and train only the "
                                 "forward-looking p_slot beside them (same layers).")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
def train_cmd(data_dir, out, layers, kinds, calibration, val_fraction, max_epochs, select_splits,
              average_splits, seed, restatement, base_dir, threads) -> None:
    """Train p_stop / p_dev (and p_slot) heads on stored features.

    Early-stopped on validation topics; the best layer set and kind is kept. p_slot trains
    when the data holds fact-slot labels (`data build --forms ...`).
    """
    from tigerdecode.training.train import TrainConfig, add_slot, train_heads

    _threads(threads)
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in kind_list if k not in ("linear", "mlp")]
    if bad or not kind_list:
        raise click.BadParameter(f"kinds must be 'linear' and/or 'mlp', got {kinds!r}",
                                 param_hint="--kind")
    from tigerdecode.training.store import DataStoreError, FeatureStore

    try:
        n = FeatureStore(data_dir[0]).manifest()["config"]["fingerprint"]["num_layers"]
    except (DataStoreError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    tc = TrainConfig(candidates=_layer_sets(layers, n), kinds=kind_list, calibration=calibration,
                     val_fraction=val_fraction, max_epochs=max_epochs, seed=seed,
                     select_splits=select_splits, average_splits=average_splits,
                     faithful_restatement=restatement == "faithful")
    if base_dir is not None:
        try:
            _, metrics = add_slot(base_dir, data_dir, out, tc, log=click.echo)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        s = metrics["slot"]
        click.echo(f"saved {out}: p_stop/p_dev of {base_dir}, p_slot validation AUROC "
                   f"{s['auroc']:.3f} (entropy {s['baselines']['entropy']:.3f})")
        return
    try:
        _, metrics = train_heads(data_dir, out, tc, log=click.echo)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    from tigerdecode.training.train import _fmt

    v = metrics["validation"]
    click.echo(f"saved {out}: {metrics['selected']}; validation p_dev token AUROC "
               f"{_fmt(v['p_dev']['token_auroc'])}, answer AUROC "
               f"{_fmt(v['p_dev']['answer_auroc'])}, p_stop AUROC {_fmt(v['p_stop']['auroc'])} "
               f"({metrics['train_seconds']} s)")


@heads_group.command("eval")
@click.option("--heads", "heads_dir", default=None, type=click.Path(file_okay=False),
              help="Checkpoint directory; default: the heads shipped for the model.")
@qa_option(required=True)
@model_option()
@split_option()
@limit_option()
@sample_option()
@forms_option()
@click.option("--settings", default="greedy,0.7:0.9,1.0:0.95", show_default=True,
              help=SETTINGS_HELP)
@max_new_tokens_option(24, low=2, high=256)
@batch_size_option(32)
@seed_option(1, "Seed for the --sample draw and for sampling answers.")
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Keep the sampled features here (resumable); default: a temporary folder.")
@click.option("--open", "open_path", default=None, type=click.Path(dir_okay=False),
              help="Also answer these open (creative) prompts: p_factual is scored on them as "
                   "creative requests (p_dev / p_stop metrics stay on the facts).")
@click.option("--record", default=None,
              help="Also store the full report in the checkpoint's metrics.json under this key.")
@json_option("Print the summary as JSON.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
def eval_cmd(heads_dir, qa_path, model_name, split, limit, sample, forms, settings,
             max_new_tokens, batch_size, seed, work_dir, open_path, record, as_json,
             threads) -> None:
    """Score the heads on a QA file beside the baselines.

    Samples and labels answers, then scores heads and training-free baselines.
    """

    from tigerdecode.heads import ControlHeads, HeadsError, find_shipped
    from tigerdecode.model.load import load_model
    from tigerdecode.training.evaluate import evaluate_heads, format_table, summary

    _threads(threads)
    setting_list = _settings(settings)
    items = with_forms_option(load_items(qa_path, split, limit, sample, seed), forms, seed)
    if open_path is not None:
        items += load_items(open_path, open_prompts=True)
    model, tok = load_model(model_name)
    if heads_dir is None:
        heads_dir = find_shipped(model, tok)
        if heads_dir is None:
            raise click.ClickException(f"no heads ship for model {model_name!r}; train some "
                                       "(`tigerdecode heads train`) and pass --heads DIR")
    try:
        heads = ControlHeads.load(heads_dir, model=model, tokenizer=tok)
    except HeadsError as e:
        raise click.ClickException(str(e)) from None
    rep = evaluate_heads(model, tok, heads, items, settings=setting_list,
                         max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                         work_dir=work_dir, progress=not as_json)
    if record:
        _record(heads_dir, record, qa_path, split, limit, sample, seed, rep)
    click.echo(json.dumps(summary(rep), indent=2) if as_json else format_table(rep))


def _record(heads_dir, key: str, qa_path, split, limit, sample, seed, rep: dict) -> None:
    """Add an evaluation report to the checkpoint's metrics.json (atomic replace)."""
    from pathlib import Path

    from tigerdecode.cli.options import write_json

    path = Path(heads_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    picked = {"limit": limit} if sample is None else {"sample": sample, "seed": seed}
    metrics.setdefault("evaluations", {})[key] = {
        "qa": str(qa_path), "split": split, **picked, **rep}
    write_json(path, metrics)
