"""``tigerdecode eval``: the factuality–creativity trade-off, every method side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tigerdecode.cli.options import (
    batch_size_option,
    json_option,
    limit_option,
    load_items,
    model_option,
    out_option,
    pick,
    qa_option,
    sample_option,
    seed_option,
    set_option,
)

# (QA items, creative prompts, samples per prompt, fact tokens, creative tokens)
QUICK = dict(n_qa=6, n_creative=2, samples=2, fact_tokens=10, creative_tokens=12)
FULL = dict(n_qa=150, n_creative=20, samples=3, fact_tokens=24, creative_tokens=40)


def _digest_dir(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _spread(items: list, n: int) -> list:
    """The default QA set: ``n`` items evenly spaced over the file (every k-th), so every
    topic appears; every documented eval was drawn this way."""
    step = max(1, len(items) // n)
    return items[::step][:n]


@click.command("eval")
@model_option()
@qa_option(help="QA JSONL (default: held-out test topics of the vendored qa_wikidata).")
@click.option("--creative", "creative_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Creative prompts JSONL (default: data/creative_prompts.jsonl).")
@click.option("--quick", is_flag=True, help="A small run (minutes) for CI and smoke tests.")
@out_option("Output folder (default runs/eval-quick or runs/eval-full); resumable.", folder=True)
@limit_option("Use the first N QA items. Without --limit or --sample: 150 (6 with --quick) "
              "items spread evenly over the file.")
@sample_option("Use a random N QA items, drawn with --seed.")
@click.option("--n-creative", type=click.IntRange(1, 1000), default=None,
              help="The first N creative prompts (default: 20, or 2 with --quick).")
@click.option("--samples-per-prompt", "--samples", "samples", type=click.IntRange(2, 16),
              default=None, help="Answers sampled per creative prompt (default: 3, or 2 with "
                                 "--quick).")
@click.option("--methods", default=None, help="Comma-separated subset, e.g. greedy,tigerdecode.")
@batch_size_option(16)
@seed_option(0, "Seed for decoding (and the --sample draw).")
@click.option("--report-only", is_flag=True,
              help="Write the report from the cells already computed (no generation).")
@json_option("Print {'rows': [...], 'targets': ..., 'targets_by_method': ...} as JSON.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@set_option("Policy field for the tigerdecode cells, e.g. --set abstain_rise=0 (repeatable; "
            "part of the cache key).")
def eval_cmd(model_name, qa_path, creative_path, quick, out, limit, sample, n_creative, samples,
             methods, batch_size, seed, report_only, as_json, threads, sets):
    """Evaluate every method on QA errors and text diversity.

    Factual QA items give error rates, open prompts give diversity; cells are cached in
    --out, so a rerun resumes.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.eval.report import markdown_table, targets_table, write_report
    from tigerdecode.eval.runner import EvalConfig, grid, policy_defaults, run_eval
    from tigerdecode.model.load import fingerprint, load_model
    from tigerdecode.qa.data import dataset_path, qa_wikidata_path

    policy_overrides = sets
    size = dict(QUICK if quick else FULL)
    if qa_path is None:
        items = load_items(qa_wikidata_path(), "test")
        qa_name = "qa_wikidata (test topics)"
    else:
        items, qa_name = load_items(qa_path), str(qa_path)
    if limit is None and sample is None:
        items, selection = _spread(items, size["n_qa"]), f"spread {size['n_qa']}"
    else:
        items = pick(items, limit, sample, seed)
        selection = f"first {limit}" if limit is not None else f"sample {sample} (seed {seed})"
    creative = [it.prompt for it in load_items(
        creative_path or dataset_path("creative_prompts.jsonl"),
        limit=n_creative or size["n_creative"], open_prompts=True)]
    out = out or Path("runs") / ("eval-quick" if quick else "eval-full")
    model, tok = load_model(model_name)
    from tigerdecode.judge.model import find_shipped_judge, heads_digest

    judge_path = find_shipped_judge(model, tok)
    has_judge = judge_path is not None
    cells = grid(quick, [m.strip() for m in methods.split(",")] if methods else None,
                 judge=has_judge)
    gens = {False: ControlledGenerator(model, tok)}
    # Cached cells are reused only while the model, heads, judge and policy are the same.
    cfg = EvalConfig(qa=items, creative=creative, samples=samples or size["samples"],
                     fact_tokens=size["fact_tokens"], creative_tokens=size["creative_tokens"],
                     batch_size=batch_size, seed=seed, policy_overrides=policy_overrides,
                     extra={"model": fingerprint(model, tok).to_dict(),
                            "heads": heads_digest(gens[False].heads),
                            "judge": None if judge_path is None else _digest_dir(judge_path),
                            "policy": {**policy_defaults(), **policy_overrides}})
    if any(c.ensemble for c in cells):
        gens[True] = ControlledGenerator(model, tok, ensemble="self")
    rows = run_eval(gens, cells, cfg, out, progress=not as_json, cached_only=report_only)
    if not rows:
        raise click.ClickException(f"no computed cells in {out} match this configuration")
    meta = {"model": model_name, "qa": qa_name, "qa_selection": selection, "n_qa": len(items),
            "n_creative": len(creative), "samples": cfg.samples, "fact_tokens": cfg.fact_tokens,
            "creative_tokens": cfg.creative_tokens, "seed": seed, "quick": quick,
            "heads": None if gens[False].heads is None else "shipped",
            "judge": "shipped" if has_judge else None,
            "complete": len(rows) == len(cells), "policy_overrides": policy_overrides}
    doc = write_report(rows, out, meta)
    if as_json:
        from tigerdecode.eval.report import _finite

        click.echo(json.dumps(_finite({"rows": doc["rows"], "targets": doc["targets"],
                                       "targets_by_method": doc["targets_by_method"]})))
        return
    click.echo(markdown_table(rows))
    for t in doc["targets_by_method"].values() or [doc["targets"]]:
        click.echo("\n" + targets_table(t))
    click.echo(f"\nwrote {out}/results.json, results.csv, results.md, tradeoff.png, tradeoff-right.png")
