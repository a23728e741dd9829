"""``tigerdecode generate`` and ``tigerdecode examples``: controlled answers with a coloured
per-token risk view (each token coloured by its ``p_dev``; bold where ``p_stop`` > 0.5,
underlined where it was undone and resampled)."""

from __future__ import annotations

import json
import re

import click

from tigerdecode.cli.options import (
    creativity_option,
    dtype_option,
    fast_option,
    json_option,
    load_model_for,
    max_new_tokens_option,
    model_option,
    quant_option,
    seed_option,
)
from tigerdecode.settings import MAX_CONSENSUS

METHOD_CHOICES = ("tigerdecode", "greedy", "temperature", "top_p", "min_p", "factual_nucleus",
                  "dola")
FACTUAL_EXAMPLES = [
    "What is the capital of Japan?",
    "Who wrote the play Romeo and Juliet?",
]
CREATIVE_EXAMPLES = [
    "Write one sentence about a lighthouse keeper who finds a strange map.",
]
EXAMPLE_PROMPTS = FACTUAL_EXAMPLES + CREATIVE_EXAMPLES
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def risk_colour(p_dev: float | None) -> str | None:
    if p_dev is None:
        return None
    return "green" if p_dev < 0.3 else "yellow" if p_dev < 0.6 else "red"


def risk_tokens(result, factual_at: float = 0.5) -> list[str]:
    """Each generated token as styled text (newlines shown as spaces). An answer to a request
    the heads call creative (``p_factual < factual_at``) is not coloured by ``p_dev``: it states
    no fact to deviate from."""
    out = []
    shown = result.trace[:len(result.token_ids)] if result.stop_reason == "eos" else result.trace
    factual = result.p_factual is None or result.p_factual >= factual_at
    for t in shown:
        text = t.token.replace("\n", " ")
        if not text:
            continue
        out.append(click.style(text, fg=risk_colour(t.p_dev if factual else None),
                               bold=t.p_stop is not None and t.p_stop > 0.5,
                               underline=t.rewritten))
    return out


def wrap_styled(pieces: list[str], width: int) -> list[str]:
    """Wrap styled pieces into lines of at most ``width`` visible characters."""
    lines, cur, n = [], "", 0
    for p in pieces:
        vis = len(_ANSI.sub("", p))
        while n + vis > width and n > 0:
            lines.append(cur)
            cur, n = "", 0
            p = p.lstrip() if _ANSI.sub("", p).startswith(" ") else p
            vis = len(_ANSI.sub("", p))
        cur, n = cur + p, n + vis
    if cur:
        lines.append(cur)
    return lines or [""]


def summary(result) -> str:
    devs = [t.p_dev for t in result.trace if t.p_dev is not None]
    parts = [f"{len(result.token_ids)} tokens", f"stop: {result.stop_reason}"]
    if devs:
        worst = max(range(len(devs)), key=devs.__getitem__)
        parts.append(f"max p_dev {devs[worst]:.2f} at {result.trace[worst].token.strip()!r}")
        stops = [t.p_stop for t in result.trace if t.p_stop is not None]
        parts.append(f"last p_stop {stops[-1]:.2f}")
    retried = sum(t.rewritten for t in result.trace)
    if retried:
        parts.append(f"{retried} resampled")
    if result.abstained:
        parts.append("abstained")
    if result.judge is not None:
        j = result.judge
        parts.append(f"judge: {j.verdict} (P(wrong) {j.score:.2f}, threshold {j.threshold:.2f}, "
                     f"{len(j.rewrites) - 1} rewrites)")
    return ", ".join(parts)


def legend(has_heads: bool) -> str:
    if not has_heads:
        return "risk view: no control heads for this model, so no p_stop/p_dev to show"
    return ("risk view: p_dev " + click.style("<0.3", fg="green") + " " +
            click.style("<0.6", fg="yellow") + " " + click.style(">=0.6", fg="red") +
            ", " + click.style("bold", bold=True) + ": p_stop>0.5, " +
            click.style("underlined", underline=True) + ": undone and resampled")


def _generator(model_name, no_heads, ensemble, dtype="fp32", quant="none", fast=False,
               backend="transformers", threads=None):
    import warnings

    from tigerdecode.api import ControlledGenerator

    if backend == "llama-cpp":
        if dtype != "fp32" or quant != "none" or fast:
            raise click.UsageError("--dtype / --quant / --fast apply to the transformers "
                                   "backend; llama.cpp runs the GGUF's own weights")
        return ControlledGenerator(model_name, None, heads=None if no_heads else "auto",
                                   ensemble="self" if ensemble else None, backend=backend,
                                   n_threads=threads)
    model, tok = load_model_for(model_name, dtype, quant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ControlledGenerator(model, tok, heads=None if no_heads else "auto",
                                   ensemble="self" if ensemble else None, fast=fast)


def _errors():
    from tigerdecode.decode.sampling import NonFiniteLogitsError
    from tigerdecode.heads import HeadsError
    from tigerdecode.model.load import ModelLoadError

    return (ModelLoadError, HeadsError, NonFiniteLogitsError, ValueError)


@click.command()
@click.argument("prompt")
@model_option()
@creativity_option(0.5)
@click.option("--method", type=click.Choice(METHOD_CHOICES), default="tigerdecode",
              show_default=True, help="Controlled decoding or a baseline.")
@click.option("--temperature", type=float, default=None,
              help="Baselines only: their temperature (temperature/top_p/min_p methods).")
@max_new_tokens_option(64)
@seed_option(None)
@click.option("--raw", is_flag=True, help="Plain completion: skip the chat template.")
@click.option("--trace", is_flag=True, help="Show the coloured per-token risk view.")
@click.option("--no-heads", is_flag=True, help="Run without control heads.")
@click.option("--ensemble/--no-ensemble", default=False, show_default=True,
              help="Blend a factual and a creative persona of the model.")
@json_option("Print the whole GenerationResult as JSON.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Settings JSON (e.g. exported by the demo's Trade-off tab); options given on "
                   "the command line win over it.")
@click.option("--judge", "use_judge", is_flag=True,
              help="Judge the finished answer (shipped judge) and rewrite or abstain if rejected.")
@click.option("--max-rewrites", type=int, default=None,
              help="With --judge: rewrites before abstaining (default 1; 0 = judge only).")
@click.option("--rewrite-budget", type=click.FloatRange(0, 100), default=None,
              help="With --judge: tokens all rewrites may write, as a share of the answer's "
                   "(default 0.3; the shortest rewound spans go first).")
@click.option("--min-rewind", type=click.IntRange(0, 4096), default=None,
              help="With --judge: the answer tokens a rewrite keeps at least; an answer the "
                   "judge would rewind earlier is not rewritten (default 4; 0: no bar).")
@fast_option()
@dtype_option()
@quant_option()
@click.option("--backend", type=click.Choice(["transformers", "llama-cpp"]),
              default="transformers", show_default=True,
              help="llama-cpp: decode a GGUF exported with heads (`tigerdecode export --format "
                   "gguf`) in llama.cpp (needs llama-cpp-python); no judge or ensemble there.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="--backend llama-cpp: llama.cpp threads (default: its own choice).")
@click.option("--consensus", type=click.IntRange(1, MAX_CONSENSUS), default=None,
              help="Draw this many samples and print the one whose names (capitalised words) "
                   "the others agree with most: creative text that must name a fact names it "
                   "right more often, at that many times the decoding (default 1: off).")
def generate(prompt, model_name, creativity, method, temperature, max_new_tokens, seed, raw,
             trace, no_heads, ensemble, as_json, config_file, use_judge, max_rewrites,
             rewrite_budget, min_rewind, fast, dtype, quant, backend, threads, consensus):
    """Answer PROMPT at a chosen creativity.

    Controlled decoding by default, or a baseline with --method.
    """
    overrides = {}
    if (max_rewrites, rewrite_budget, min_rewind) != (None, None, None) and not use_judge:
        raise click.UsageError("--max-rewrites, --rewrite-budget and --min-rewind apply with "
                               "--judge")
    if config_file is not None:
        from tigerdecode.settings import ConfigError, for_command

        ctx = click.get_current_context()
        given = {k for k in ctx.params if ctx.get_parameter_source(k).name == "COMMANDLINE"}
        try:
            p = for_command(config_file, ctx.params, given)
        except ConfigError as e:
            raise click.ClickException(str(e)) from e
        creativity, method, temperature = p["creativity"], p["method"], p["temperature"]
        max_new_tokens, seed, raw, ensemble = p["max_new_tokens"], p["seed"], p["raw"], p["ensemble"]
        overrides = p["overrides"]
    if temperature is not None:
        if method not in ("temperature", "top_p", "min_p"):
            raise click.UsageError("--temperature applies to --method temperature/top_p/min_p; "
                                   "for controlled decoding set --creativity")
        overrides["temperature"] = temperature
    if use_judge:
        overrides["judge"] = True
        if max_rewrites is not None:
            overrides["max_rewrites"] = max_rewrites
        if rewrite_budget is not None:
            overrides["rewrite_budget"] = rewrite_budget
        if min_rewind is not None:
            overrides["min_rewind"] = min_rewind
    if consensus is not None:
        overrides["consensus"] = consensus
    try:
        gen = _generator(model_name, no_heads, ensemble, dtype, quant, fast, backend, threads)
        (res,) = gen.generate_text([prompt], creativity=creativity, max_new_tokens=max_new_tokens,
                                   seed=seed, raw=raw, method=method, **overrides)
    except _errors() as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps({**res.to_dict(), "model": model_name}, ensure_ascii=False))
        return
    if not trace:
        click.echo(res.text)
        return
    body = res.text if res.abstained else "".join(risk_tokens(res))
    click.echo(body)
    click.echo(click.style(summary(res), dim=True))
    click.echo(click.style(legend(gen.heads is not None), dim=True))


@click.command()
@model_option()
@max_new_tokens_option(48)
@seed_option(0)
@click.option("--ensemble/--no-ensemble", default=False, show_default=True,
              help="Blend a factual and a creative persona of the model.")
@click.option("--width", type=int, default=None, help="Terminal width (default: detected).")
@click.option("--judge/--no-judge", "use_judge", default=True, show_default=True,
              help="Judge each answer with the shipped judge (when the model has one).")
@fast_option()
@dtype_option()
@quant_option()
def examples(model_name, max_new_tokens, seed, ensemble, width, use_judge, fast, dtype, quant):
    """Answer the example prompts at creativity 0, 0.5 and 1.

    Side by side, each with its per-token risk view.
    """
    import shutil
    import time

    from tigerdecode.judge.model import find_shipped_judge

    levels = (0.0, 0.5, 1.0)
    t0 = time.perf_counter()
    try:
        gen = _generator(model_name, False, ensemble, dtype, quant, fast)
        judge = {"judge": True} if use_judge and find_shipped_judge(gen.model, gen.tokenizer) \
            else {}
        # The judge is trained to spot wrong facts, so only the factual prompts go to it.
        rows = {c: gen.generate_text(FACTUAL_EXAMPLES, creativity=c,
                                     max_new_tokens=max_new_tokens, seed=seed, **judge)
                + gen.generate_text(CREATIVE_EXAMPLES, creativity=c,
                                    max_new_tokens=max_new_tokens, seed=seed)
                for c in levels}
    except _errors() as e:
        raise click.ClickException(str(e)) from e
    heads = "shipped heads" if gen.heads is not None else "no heads"
    click.echo(f"model: {model_name} ({type(gen.model).__name__}, {heads}, "
               f"{'self-ensemble' if ensemble else 'one member'}, "
               f"{time.perf_counter() - t0:.1f}s)")
    click.echo(legend(gen.heads is not None) + "\n")
    total = width or shutil.get_terminal_size((120, 40)).columns
    col = max(24, (total - 3 * (len(levels) - 1)) // len(levels))
    for i, prompt in enumerate(EXAMPLE_PROMPTS):
        click.echo(click.style(f"Q: {prompt}", bold=True))
        cols = []
        for c in levels:
            r = rows[c][i]
            head = click.style(f"creativity {c:g}", underline=True)
            body = [r.text] if r.abstained else risk_tokens(r)
            cols.append([head] + wrap_styled(body, col) +
                        [click.style(s, dim=True) for s in _wrap_plain(summary(r), col)])
        height = max(map(len, cols))
        for j in range(height):
            cells = []
            for c in cols:
                cell = c[j] if j < len(c) else ""
                cells.append(cell + " " * (col - len(_ANSI.sub("", cell))))
            click.echo(" │ ".join(cells).rstrip())
        click.echo("")


def _wrap_plain(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
