"""Which use of the heads improves the factual trade-off? An ablation for choosing the defaults.

Every variant decodes the same chat-formatted qa_wikidata prompts (default: the *validation*
relations, so the evaluation's test relations stay untouched by the choice) and the same open
prompts from ``data/open_prompts_train.jsonl`` (the heads' creative training prompts, not the
evaluation's), with the same creativity schedule and seeds; only the head uses differ: none
(plain sampling at the policy's temperature/top-p), EOS bias from p_stop, tightening on p_dev,
undo-and-resample on p_dev, abstention. Facts are judged right/wrong by the rule that labelled
the heads' training data; on the open prompts it reports how often the guard fires (abstentions,
resamples) and the distinct-2 it leaves, since a guard that fires on free text kills the knob.

    tigerdecode policy tune --sample 96 --creativity 0.25,0.5 --out out.json \
        --set abstain_at=0.8 --set resample_at=0.6
"""

from __future__ import annotations

import random
import time
import warnings

VARIANTS = {
    "plain": dict(use_eos_bias=False, use_tighten=False, use_resample=False, use_abstain=False),
    "eos_bias": dict(use_eos_bias=True, use_tighten=False, use_resample=False, use_abstain=False),
    "tighten": dict(use_eos_bias=True, use_tighten=True, use_resample=False, use_abstain=False),
    "resample": dict(use_eos_bias=True, use_tighten=False, use_resample=True, use_abstain=False),
    "abstain": dict(use_eos_bias=True, use_tighten=False, use_resample=False, use_abstain=True),
    "resample+abstain": dict(use_eos_bias=True, use_tighten=False, use_resample=True,
                             use_abstain=True),
    "all": dict(use_eos_bias=True, use_tighten=True, use_resample=True, use_abstain=True),
}


def qa_items(split: str = "validation", limit: int | None = None, sample: int | None = None,
             seed: int = 0) -> list:
    """The qa_wikidata items of ``split``: the first ``limit``, or a seeded random ``sample``.

    The sample is drawn as the first N of a seeded shuffle, the draw the documented ablations
    (docs/results) used, so they reproduce."""
    from tigerdecode.qa.data import load_qa, qa_wikidata_path, select_split

    items = select_split(load_qa(qa_wikidata_path()), split)
    if limit is not None:
        return items[:limit]
    if sample is not None:
        random.Random(seed).shuffle(items)
        return items[:sample]
    return items


def open_prompts(limit: int) -> list[str]:
    """``limit`` of the heads' open training prompts (a fixed seeded shuffle, as measured)."""
    from tigerdecode.qa.data import dataset_path, load_prompts

    items = load_prompts(dataset_path("open_prompts_train.jsonl"))
    random.Random(0).shuffle(items)
    return [it.prompt for it in items[:limit]]


def run(limit=None, creativities=(0.25, 0.5), variants=None, max_new_tokens=16, batch=16,
        seed=0, progress=True, split="validation", n_open=24, open_tokens=32,
        overrides=None, bars=(), sample=None, model_name="default") -> dict:
    """Decode every variant at every creativity; one row each (right/wrong/abstain on the QA
    items, abstentions, resampled tokens and distinct-2 on the open prompts)."""
    from tqdm import tqdm

    from tigerdecode.api import ControlledGenerator
    from tigerdecode.decode.loop import content_mask
    from tigerdecode.eval.metrics import distinct_n
    from tigerdecode.heads import HeadsError
    from tigerdecode.model.load import load_model
    from tigerdecode.qa.labels import label_answer
    from tigerdecode.qa.prompts import format_prompt  # the heads' training prompt

    model, tok = load_model(model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gen = ControlledGenerator(model, tok, heads="auto")
    if gen.heads is None:
        raise HeadsError(f"no shipped heads for model {model_name!r}; the variants differ only "
                         "in how they use the heads, so there is nothing to compare")
    content = content_mask(tok, model.config.vocab_size, "cpu") if bars else None
    items = qa_items(split, limit, sample, seed)
    opens = open_prompts(n_open)
    names = list(variants or VARIANTS)
    rows = []
    bar = tqdm(total=len(names) * len(creativities) * (len(items) + len(opens)),
               disable=not progress)
    for c in creativities:
        for name in names:
            kw = {**VARIANTS[name], **(overrides or {})}
            right = wrong = abstain = tokens = 0
            peaks = {"right": [], "wrong": []}  # each answer's highest content-token p_dev
            t0 = time.perf_counter()
            for s in range(0, len(items), batch):
                chunk = items[s:s + batch]
                res = gen.generate_text([format_prompt(it.prompt) for it in chunk], creativity=c,
                                        max_new_tokens=max_new_tokens, seed=seed + s, **kw)
                for it, r in zip(chunk, res, strict=True):
                    tokens += len(r.token_ids)
                    if r.abstained:
                        abstain += 1
                        continue
                    ok = label_answer(it.prompt, it.answers, [r.text], True).correct
                    right, wrong = right + ok, wrong + (not ok)
                    if content is not None:
                        peaks["right" if ok else "wrong"].append(max(
                            (t.p_dev for t in r.trace if content[t.token_id] and t.p_dev is not None),
                            default=0.0))
                bar.update(len(chunk))
            seconds = time.perf_counter() - t0
            texts, o_abstain, o_retried, o_tokens = [], 0, 0, 0
            for s in range(0, len(opens), batch):
                res = gen.generate_text(opens[s:s + batch], creativity=c,
                                        max_new_tokens=open_tokens, seed=seed + 10_000 + s, **kw)
                for r in res:
                    o_abstain += r.abstained
                    o_retried += sum(t.retries > 0 for t in r.trace)
                    o_tokens += len(r.trace)
                    texts.append(r.text)
                bar.update(len(res))
            n = len(items)
            rows.append({"creativity": c, "variant": name, "n": n, "right": right,
                         "wrong": wrong, "abstain": abstain, "accuracy": right / n,
                         "error_rate": wrong / n,
                         "precision": right / max(1, right + wrong),
                         "mean_tokens": tokens / n, "seconds": round(seconds, 1),
                         "open_n": len(opens), "open_abstain": o_abstain,
                         "open_resampled_tokens": o_retried / max(1, o_tokens),
                         "open_distinct_2": distinct_n(texts, 2)})
            if bars and not abstain:
                # What an abstention bar would do to these answers: a right answer is kept when
                # its peak stays below the bar, a wrong one caught when its peak reaches it.
                rows[-1]["bars"] = [
                    {"bar": b, "right_kept": sum(x < b for x in peaks["right"]),
                     "right": len(peaks["right"]),
                     "wrong_caught": sum(x >= b for x in peaks["wrong"]),
                     "wrong": len(peaks["wrong"])} for b in bars]
    bar.close()
    return {"rows": rows, "settings": {"limit": limit, "sample": sample, "model": model_name,
                                       "max_new_tokens": max_new_tokens,
                                       "seed": seed, "split": split, "n_open": len(opens),
                                       "open_tokens": open_tokens,
                                       "overrides": overrides or {}, "bars": list(bars),
                                       "prompts": "chat, tigerdecode.qa.prompts.format_prompt"}}


def table(res: dict) -> str:
    lines = ["| creativity | variant | right | wrong | abstain | precision | mean tokens "
             "| open: abstain | open: resampled tokens | open: distinct-2 |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['creativity']:g} | {r['variant']} | {r['right']} | {r['wrong']} | "
                     f"{r['abstain']} | {r['precision']:.3f} | {r['mean_tokens']:.1f} | "
                     f"{r['open_abstain']}/{r['open_n']} | {r['open_resampled_tokens']:.1%} | "
                     f"{r['open_distinct_2']:.3f} |")
    return "\n".join(lines)


def bars_table(res: dict) -> str:
    """Per creativity and bar: right answers kept and wrong answers caught by the answer's peak
    content-token ``p_dev`` (variants decoded without abstention only)."""
    lines = ["| creativity | variant | bar | right kept | wrong caught |", "|---:|---|---:|---:|---:|"]
    for r in res["rows"]:
        for b in r.get("bars", []):
            lines.append(f"| {r['creativity']:g} | {r['variant']} | {b['bar']:g} | "
                         f"{b['right_kept']}/{b['right']} ({b['right_kept'] / max(1, b['right']):.0%}) | "
                         f"{b['wrong_caught']}/{b['wrong']} ({b['wrong_caught'] / max(1, b['wrong']):.0%}) |")
    return "\n".join(lines)
