"""``tigerdecode eval``: the factuality–creativity trade-off, every method side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tigerdecode.cli.options import (
    batch_size_option,
    forms_option,
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
    with_forms_option,
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
@click.option("--task", type=click.Choice(["tradeoff", "creative_facts"]), default="tradeoff",
              show_default=True,
              help="tradeoff: QA errors and open-prompt diversity; creative_facts: creative "
                   "requests that must name a fact (mixed prompts of the QA items), fact "
                   "accuracy and diversity of the same outputs.")
@click.option("--heads", "heads_spec", default="auto", show_default=True,
              help="Control heads: 'auto' (shipped or user heads for the model), 'none', or a "
                   "checkpoint directory.")
@click.option("--known-only", is_flag=True,
              help="creative_facts: only facts the model knows (its greedy answer to the "
                   "completion prompt is right), so the task measures keeping a known fact "
                   "right while the text varies.")
@click.option("--n-facts", type=click.IntRange(1, 2000), default=None,
              help="creative_facts: how many QA items become mixed prompts (default 40; 4 with "
                   "--quick).")
@qa_option(help="QA JSONL (default: the vendored qa_wikidata).")
@click.option("--split", type=click.Choice(["all", "train", "validation", "test"]), default=None,
              help="Topic split of the QA items (tigerdecode.qa.data.split_topics); default: test "
                   "for the vendored qa_wikidata, all for a --qa file. Tune on validation, "
                   "report test.")
@forms_option(" tradeoff task: the QA items in these forms (items without a question form "
              "are kept only in completion form).")
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
@click.option("--methods", default=None,
              help="Comma-separated subset, e.g. greedy,tigerdecode; tigerdecode+consensus and "
                   "temperature+consensus (each answer chosen among 9 samples of its prompt) "
                   "run only when named here.")
@batch_size_option(16)
@seed_option(0, "Seed for decoding (and the --sample draw).")
@click.option("--report-only", is_flag=True,
              help="Write the report from the cells already computed (no generation).")
@json_option("Print {'rows': [...], 'targets': ..., 'targets_by_method': ...} as JSON.")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@set_option("Policy field for the tigerdecode cells, e.g. --set abstain_rise=0 (repeatable; "
            "part of the cache key).")
def eval_cmd(model_name, task, heads_spec, known_only, n_facts, qa_path, split, forms, creative_path,
             quick,
             out, limit,
             sample, n_creative, samples, methods, batch_size, seed, report_only, as_json,
             threads, sets):
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
        split = split or "test"
        items = load_items(qa_wikidata_path(), split)
        qa_name = f"qa_wikidata ({split} topics)"
    else:
        split = split or "all"
        items = load_items(qa_path, split)
        qa_name = str(qa_path) if split == "all" else f"{qa_path} ({split} topics)"
    if limit is None and sample is None:
        items, selection = _spread(items, size["n_qa"]), f"spread {size['n_qa']}"
    else:
        items = pick(items, limit, sample, seed)
        selection = f"first {limit}" if limit is not None else f"sample {sample} (seed {seed})"
    if forms != "completion":
        if "mixed" in forms:
            raise click.BadParameter("the tradeoff task asks QA items as completions or questions; "
                                     "mixed prompts are --task creative_facts",
                                     param_hint="--forms")
        items = with_forms_option(items, forms, seed)
        selection += f", forms {forms}"
    creative = [it.prompt for it in load_items(
        creative_path or dataset_path("creative_prompts.jsonl"),
        limit=n_creative or size["n_creative"], open_prompts=True)]
    out = out or Path("runs") / ("eval-quick" if quick else "eval-full")
    heads_spec = None if heads_spec == "none" else heads_spec
    model, tok = load_model(model_name)
    if task == "creative_facts":
        return _creative_facts(model, tok, model_name, heads_spec, qa_path, split, n_facts, quick,
                               out, samples, methods, batch_size, seed, as_json, sets,
                               known_only)
    from tigerdecode.judge.model import find_shipped_judge, heads_digest

    judge_path = find_shipped_judge(model, tok)
    has_judge = judge_path is not None
    cells = grid(quick, [m.strip() for m in methods.split(",")] if methods else None,
                 judge=has_judge)
    gens = {False: ControlledGenerator(model, tok, heads=heads_spec)}
    # Cached cells are reused only while the model, heads, judge and policy are the same.
    cfg = EvalConfig(qa=items, creative=creative, samples=samples or size["samples"],
                     fact_tokens=size["fact_tokens"], creative_tokens=size["creative_tokens"],
                     batch_size=batch_size, seed=seed, policy_overrides=policy_overrides,
                     extra={"model": fingerprint(model, tok).to_dict(),
                            "heads": heads_digest(gens[False].heads),
                            "judge": None if judge_path is None else _digest_dir(judge_path),
                            "policy": {**policy_defaults(), **policy_overrides}})
    if any(c.ensemble for c in cells):
        gens[True] = ControlledGenerator(model, tok, heads=heads_spec, ensemble="self")
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


def _creative_facts(model, tok, model_name, heads_spec, qa_path, split, n_facts, quick, out,
                    samples, methods, batch_size, seed, as_json, sets, known_only=False):
    """``--task creative_facts``: mixed prompts from the QA items (test topics by default)."""
    from tigerdecode.api import ControlledGenerator
    from tigerdecode.cli.options import write_json
    from tigerdecode.eval import creative_facts as cf
    from tigerdecode.eval.plot import line_plot
    from tigerdecode.eval.runner import CONSENSUS, grid, policy_defaults
    from tigerdecode.judge.model import heads_digest
    from tigerdecode.model.load import fingerprint
    from tigerdecode.qa.data import qa_wikidata_path

    pool = load_items(qa_wikidata_path() if qa_path is None else qa_path, split)
    n = n_facts or (4 if quick else 40)
    items = (cf.known_mixed_items(model, tok, pool, n, seed, batch_size) if known_only
             else cf.mixed_items(pool, n, seed))
    if not items:
        raise click.ClickException("none of the QA items is of a relation with mixed prompts "
                                   "(see tigerdecode.qa.forms.RELATIONS)")
    cells = [c for c in grid(quick, [m.strip() for m in methods.split(",")] if methods else None)
             if not dict(c.overrides).get("judge")]
    gens = {False: ControlledGenerator(model, tok, heads=heads_spec)}
    if any(c.ensemble for c in cells):
        gens[True] = ControlledGenerator(model, tok, heads=heads_spec, ensemble="self")
    cfg = cf.FactsConfig(items=items, samples=samples or (2 if quick else 3),
                         max_new_tokens=12 if quick else 48, batch_size=batch_size, seed=seed,
                         policy_overrides=sets,
                         extra={"model": fingerprint(model, tok).to_dict(),
                                "heads": heads_digest(gens[False].heads),
                                "policy": {**policy_defaults(), **sets}})
    rows = cf.run(gens, cells, cfg, out, progress=not as_json)
    tg = cf.targets(rows)
    tg_cons = cf.targets(rows, "tigerdecode+consensus") \
        if any(r["method"] == "tigerdecode+consensus" for r in rows) else None
    doc = {"task": cf.TASK, "meta": {"model": model_name, "n_facts": len(items), "split": split,
                                     "known_only": known_only,
                                     "samples": cfg.samples, "tokens": cfg.max_new_tokens,
                                     "seed": seed, "heads": heads_spec, "policy_overrides": sets},
           "rows": rows, "targets": tg,
           **({"targets_consensus": tg_cons} if tg_cons is not None else {})}
    d = Path(out) / cf.TASK
    write_json(d / "results.json", doc)
    curves: dict[str, list] = {}
    for r in rows:
        curves.setdefault(r["method"], []).append(
            (r["distinct_2"], r["fact_accuracy"], r["setting"] if r["setting"] != "-" else ""))
    try:
        line_plot(curves, d / "facts-tradeoff.png", title="Facts inside creative text",
                  xlabel="pooled distinct-2 (diversity)", ylabel="fact named right")
    except ValueError:
        pass  # nothing finite to draw
    if as_json:
        click.echo(json.dumps(doc))
        return
    click.echo(cf.markdown(rows))
    ok = f"{tg['dominated']}/{tg['comparable']}"
    at06 = tg["at_T0.6_vs_greedy"]
    click.echo(f"\nat each baseline's diversity, tigerdecode's fact accuracy >= 1.3x: {ok} "
               f"settings; at T=0.6's diversity vs greedy: "
               f"{'n/a' if at06 is None else f'{at06:.2f}'}; max abstain rate on these "
               f"creative requests: {tg['max_abstain_rate']}")
    if tg_cons is not None:
        at06 = tg_cons["at_T0.6_vs_greedy"]
        click.echo(f"tigerdecode+consensus ({CONSENSUS} samples a prompt): >= 1.3x at "
                   f"{tg_cons['dominated']}/{tg_cons['comparable']} baseline settings "
                   f"(temperature+consensus included); at T=0.6's diversity vs greedy: "
                   f"{'n/a' if at06 is None else f'{at06:.2f}'}")
    click.echo(f"wrote {d}/results.json, facts-tradeoff.png")
