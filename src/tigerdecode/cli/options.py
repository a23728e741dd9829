"""Options several commands share, each defined once, and the helpers that read them.

Meanings are the same in every command:
  --limit N     the first N items of the file (after --split), nothing else
  --sample N    a random N items of the file (after --split), drawn with --seed
  --json        print JSON to stdout (never a path)
  --out PATH    where to write (a file is written to a temp file, then renamed into place)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import click

from tigerdecode.fsutil import atomic_write

MODEL_HELP = "'default' (embedded SmolLM2-135M-Instruct), a local HF directory or a hub id."
SPLIT_CHOICES = ("all", "train", "validation", "test", "train+validation")


def model_option(help: str = MODEL_HELP):
    return click.option("--model", "model_name", default="default", show_default=True, help=help)


def qa_option(required: bool = False,
              help: str = "QA JSONL file ({'prompt', 'answers', 'topic'?} a line)."):
    return click.option("--qa", "qa_path", required=required, default=None,
                        type=click.Path(dir_okay=False), help=help)


def split_option(default: str = "all", choices=SPLIT_CHOICES):
    return click.option("--split", type=click.Choice(choices), default=default,
                        show_default=True,
                        help="Keep only the items of this topic split "
                             "(tigerdecode.qa.data.split_topics).")


def limit_option(help: str = "Use the first N items (after --split)."):
    return click.option("--limit", type=click.IntRange(1), default=None, metavar="N", help=help)


def sample_option(help: str = "Use a random N items (after --split), drawn with --seed."):
    return click.option("--sample", type=click.IntRange(1), default=None, metavar="N", help=help)


def seed_option(default: int | None = 0, help: str = "Seed for sampling (reproducible output)."):
    return click.option("--seed", type=click.IntRange(0), default=default,
                        show_default=default is not None, help=help)


def json_option(help: str = "Print the result as JSON on stdout."):
    return click.option("--json", "as_json", is_flag=True, help=help)


def out_option(help: str, *, required: bool = False, folder: bool = False, default=None):
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
    return click.option("--out", required=required, default=default, type=kind,
                        show_default=default is not None, help=help)


def dtype_option(default: str = "fp32"):
    return click.option("--dtype", type=click.Choice(["fp32", "bf16"]), default=default,
                        show_default=True,
                        help="Weights and activations in fp32, or bf16 (half the bytes read per "
                             "token; on a CPU with bf16 instructions, faster).")


def quant_option():
    return click.option("--quant", type=click.Choice(["none", "int8", "int4"]), default="none",
                        show_default=True,
                        help="Weight-only quantization on load: int8 per channel; int4 in "
                             "groups of 32 (output layer int8); fastest with --dtype bf16. A "
                             "`tigerdecode quantize` directory needs none.")


def fast_option():
    return click.option("--fast/--no-fast", default=False, show_default=True,
                        help="Decode on a static KV cache with a compiled step (same output; "
                             "the first call per batch shape compiles, which takes a while).")


def load_model_for(model_name: str, dtype: str = "fp32", quant: str = "none"):
    """``load_model`` with the --dtype / --quant options; a load error is a ClickException."""
    from tigerdecode.model.load import ModelLoadError, load_model

    try:
        return load_model(model_name, dtype=dtype, quant=None if quant == "none" else quant)
    except (ModelLoadError, ValueError) as e:
        raise click.ClickException(str(e)) from None


def batch_size_option(default: int, help: str = "Prompts decoded together."):
    return click.option("--batch-size", type=click.IntRange(1, 512), default=default,
                        show_default=True, help=help)


def max_new_tokens_option(default: int, low: int = 1, high: int = 4096,
                          help: str = "Tokens to generate at most per answer."):
    return click.option("--max-new-tokens", type=click.IntRange(low, high), default=default,
                        show_default=True, help=help)


class Creativity(click.ParamType):
    """A number in [0, 1]; ``many=True`` takes a comma-separated list of them."""

    name = "creativity"

    def __init__(self, many: bool = False):
        self.many = many

    def convert(self, value, param, ctx):
        if isinstance(value, (float, int, tuple)) and not isinstance(value, bool):
            return value
        out = []
        for part in str(value).split(",") if self.many else [str(value)]:
            try:
                c = float(part)
            except ValueError:
                self.fail(f"expected a number in [0, 1], got {part!r}", param, ctx)
            if not 0.0 <= c <= 1.0:  # also rejects nan
                self.fail(f"creativity must lie in [0, 1] (0 = factual and near-greedy, "
                          f"1 = free sampling), got {part}", param, ctx)
            out.append(c)
        return tuple(out) if self.many else out[0]


def creativity_option(default=0.5, many: bool = False,
                      help: str = "0 = factual, near-greedy; 1 = free sampling."):
    return click.option("--creativity", "creativities" if many else "creativity",
                        type=Creativity(many), default=default, show_default=True,
                        metavar="C,C,..." if many else "C", help=help)


def set_option(help: str = "Policy field, e.g. --set abstain_at=0.9 (repeatable)."):
    """``--set FIELD=VALUE``: the command receives ``{field: value}`` (see ``parse_sets``)."""
    return click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help=help,
                        callback=lambda ctx, param, value: parse_sets(value))


def parse_sets(sets) -> dict:
    """``--set FIELD=VALUE`` options as Policy overrides (values read as JSON where they parse:
    ``0.9``, ``false``; otherwise kept as strings). A name that is not a Policy field is a
    ``click.BadParameter``."""
    from tigerdecode.policy.knob import tunable_fields

    known = tunable_fields()
    overrides = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise click.BadParameter(f"expected FIELD=VALUE with a Policy field, got {item!r}; "
                                     f"fields: {', '.join(sorted(known))}", param_hint="--set")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


# ---- reading what the options say ----------------------------------------------------------

def select(items: list, split: str = "all") -> list:
    """The items of ``split`` ("all", one split, or two joined by '+'), in file order."""
    from tigerdecode.qa.data import select_split

    if split == "all":
        return list(items)
    return [it for s in split.split("+") for it in select_split(items, s)]


def pick(items: list, limit: int | None = None, sample: int | None = None, seed: int = 0,
         ) -> list:
    """``--limit``: the first N items; ``--sample``: a seeded random N (all of them, in file
    order, when N covers the list)."""
    if limit is not None and sample is not None:
        raise click.UsageError("give --limit N (the first N items) or --sample N (a random N), "
                               "not both")
    if limit is not None:
        return items[:limit]
    if sample is not None and sample < len(items):
        return random.Random(seed).sample(items, sample)
    return items


def load_items(path, split: str = "all", limit: int | None = None, sample: int | None = None,
               seed: int = 0, open_prompts: bool = False, skip_bad: bool | None = None) -> list:
    """QA items (or open prompts) of a file: ``--split`` first, then ``--limit`` / ``--sample``.
    A malformed file is a ``click.ClickException`` naming the bad lines; with ``skip_bad``
    (default: ``tigerdecode --skip-bad``) the good lines are used and the skipped ones are
    reported on stderr."""
    import warnings

    from tigerdecode.qa.data import BadLinesSkipped, QAFormatError, load_prompts, load_qa

    if skip_bad is None:
        ctx = click.get_current_context(silent=True)
        skip_bad = bool(ctx is not None and ctx.find_root().params.get("skip_bad"))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BadLinesSkipped)
            items = (load_prompts if open_prompts else load_qa)(path, skip_bad=skip_bad)
    except QAFormatError as e:
        raise click.ClickException(str(e)) from None
    for w in caught:
        if issubclass(w.category, BadLinesSkipped):
            click.echo(f"warning: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return pick(select(items, split), limit, sample, seed)


def write_json(path, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` through a temp file and a rename, so an interrupted
    run never leaves half a file behind (nor, after ``kill -9``, a temp: the next write sweeps
    it)."""
    return atomic_write(path, json.dumps(obj, indent=indent))


def forms_option(help_extra: str = ""):
    return click.option(
        "--forms", default="completion", show_default=True,
        help="Prompt forms of each QA item, comma-separated: completion (as in the file), "
             "question (\"What is the capital of X?\"), mixed (a creative request that must "
             "name the fact); see tigerdecode.qa.forms." + help_extra)


def with_forms_option(items, forms: str, seed: int):
    from tigerdecode.qa.forms import with_forms

    try:
        return with_forms(items, tuple(f.strip() for f in forms.split(",") if f.strip()),
                          seed=seed)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--forms") from None
