"""MODEL_CARD.md for heads and judge written by ``tigerdecode fit``: what was built, how, and
every metric beside the training-free signals on the same held-out answers, with the command
that made them."""

from __future__ import annotations

import datetime


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _prompt_format(tokenizer) -> str:
    from tigerdecode.model.prompting import BASE_TEMPLATE, has_chat_template

    if has_chat_template(tokenizer):
        return "the tokenizer's chat template (a user turn, then the assistant header)"
    return ("no chat template (a base model): the plain-text dialogue "
            f"`{BASE_TEMPLATE!r}` (`tigerdecode.model.prompting.BASE_TEMPLATE`)")


def _bars_line(b: dict | None) -> str:
    if not b:
        return "Abstention bars: not chosen by this fit (it predates the bars stage)."
    if b.get("policy"):
        return (f"**Abstention bars** (`policy` in metrics.json, applied by default when "
                f"generating with these heads): {b['policy']}, chosen within an error budget "
                f"of {b['budget']:.0%} of the right answers on {b['n_items']} validation-relation "
                f"answers at creativity 0 ({b['n_right']} right, {b['n_wrong']} wrong"
                + (f"; {b['n_easy']} of them easy validation facts, the budget holding in both "
                   "parts" if b.get("n_easy") else "")
                + "), as `tigerdecode policy risk` chooses them.")
    return (f"**Abstention bars**: not chosen ({b.get('why')}); the policy's defaults apply, "
            "which were chosen for the default model and may abstain far too often here. "
            "Choose them on facts this model knows: `tigerdecode policy risk --heads DIR "
            "--qa FILE --split validation --also-qa data/easy_validation_facts.jsonl --write`.")


def render_card(req, plan, fp, tokenizer, done: dict, heads_metrics: dict, out, judge_out
                ) -> str:
    """The card's markdown. ``done``: each stage's summary (``Fit.stage``)."""
    h = done["eval-heads"]["heads"]
    j = done["eval-heads"]["judge"]
    e2e = done["eval-judge"]
    sel = heads_metrics["selected"]
    v = heads_metrics["validation"]
    base = h["baselines"]
    best_tok = max(base, key=lambda k: base[k].get("token_auroc") or 0)
    best_ans = max(base, key=lambda k: base[k].get("answer_auroc") or 0)
    dq = done["data-qa"]
    forms = ", ".join(f"{n} {k}" for k, n in dq.get("forms", {}).items())
    lines = [
        f"# Control heads and judge for `{req.model}`",
        "",
        f"Trained by `tigerdecode fit` on {datetime.date.today().isoformat()} for the model "
        f"with fingerprint `{fp}`. `heads=\"auto\"` and `judge=True` find them by that "
        "fingerprint when they sit under `$TIGERDECODE_CACHE/heads/` (heads shipped with "
        "tigerdecode for the same model come first; `tigerdecode info --model M` says which "
        "are used).",
        "",
        f"- **Command**: `{req.command or 'tigerdecode fit ' + req.model}`",
        f"- **Plan**: {plan.why}.",
        f"- **Prompt format**: {_prompt_format(tokenizer)}.",
        f"- **Data**: {dq['n_answers']} answers to {dq['n_prompts']} prompts ({forms}: "
        f"{dq['n_facts']} facts of the train + validation relations, each asked in the forms "
        f"its relation has; settings {plan.qa_settings}, at most "
        f"{plan.qa_max_new_tokens} new tokens), and {done['data-open']['n_answers']} answers to "
        f"{done['data-open']['n_prompts']} open prompts ({plan.open_settings}, "
        f"{plan.open_max_new_tokens} tokens); {heads_metrics['data']['answer_accuracy']:.1%} of "
        "the factual answers right.",
        f"- **Heads**: {sel['kind']} probes on layers {sel['layers']} of {fp.num_layers} "
        f"(tried {plan.candidates}), outputs {done['heads']['outputs']}, Platt-calibrated on "
        "validation relations.",
        f"- **Judge**: logistic regression on pooled states of layers {plan.layers} and the "
        "answer's token-level signals, without heads (it runs with any heads), Platt-calibrated.",
        "",
        "## Held-out relations",
        "",
        f"Fresh answers to {plan.n_eval} facts of the **test** relations (never trained on), "
        f"settings {plan.eval_settings}, at most {plan.eval_max_new_tokens} new tokens "
        "(the same measurement as `tigerdecode heads eval --split test`), beside the "
        "training-free signals on the same tokens and answers:",
        "",
        "| signal | token AUROC (p_dev) | answer AUROC | stop AUROC |",
        "|---|---|---|---|",
        f"| **heads** p_dev / p_stop | **{_f(h['p_dev']['token_auroc'])}** | "
        f"**{_f(h['p_dev']['answer_auroc'])}** | **{_f(h['p_stop']['auroc'])}** |",
    ]
    for name, b in base.items():
        lines.append(f"| {name} | {_f(b.get('token_auroc'))} | {_f(b.get('answer_auroc'))} | "
                     f"{_f(b.get('stop_auroc'))} |")
    lines += [
        "",
        f"{h['n_answers']} answers, {_f(h['answer_error_rate'])} of them wrong; p_dev ECE "
        f"{_f(h['p_dev'].get('ece'))}. Best training-free signal: {best_tok} (token), "
        f"{best_ans} (answer).",
    ]
    if h.get("p_slot") and h["p_slot"].get("auroc") is not None:
        s = h["p_slot"]
        lines.append(f"p_slot (the next token decides a fact): AUROC {_f(s['auroc'])} vs "
                     f"entropy {_f(s['baselines']['entropy'])}, 1 - max prob "
                     f"{_f(s['baselines']['1-maxprob'])}.")
    if h.get("p_factual"):
        pf = h["p_factual"]
        lines.append(f"p_factual on {pf['n_factual']} factual and {pf['n_creative']} creative "
                     f"requests: AUROC {_f(pf['auroc'])}, creative called factual "
                     f"{_f(pf['creative_called_factual'])}.")
    lines += [
        "",
        f"**Judge** P(wrong) on the {j['n_factual']} factual answers: AUROC {_f(j['auroc'])} "
        f"(ECE {_f(j['ece'])}) vs the best single signal it reads, {j['best_signal']} "
        f"{_f(j['signal_auroc'].get(j['best_signal']))}; mean P(wrong) on "
        f"{j['n_creative']} answers to creative prompts {_f(j['creative_mean_p_wrong'])}.",
    ]
    if "skipped" not in e2e:
        lines += [
            "",
            f"**Judge end to end** ({e2e['n']} test facts, creativity 0.5, "
            f"{e2e['max_new_tokens']} new tokens, policy abstention off, as `tigerdecode judge "
            f"eval --split test --judge {judge_out} --set use_abstain=false`): wrong answers "
            f"{_f(e2e['wrong_rate_without'])} → {_f(e2e['wrong_rate_with'])}, right → wrong "
            f"flips {_f(e2e['flip_rate'])}, abstentions {_f(e2e['abstain_rate'])}, right "
            f"answers kept {_f(e2e.get('right_kept_rate'))}, latency ×{e2e['latency_ratio']:.2f}"
            + (f"; creative prompts abstained {e2e['open']['abstained']} of {e2e['open']['n']}"
               if e2e.get("open") else "") + ".",
        ]
    lines += [
        "",
        "## Validation relations (used for selection and calibration)",
        "",
        f"p_dev token AUROC {_f(v['p_dev']['token_auroc'])}, answer AUROC "
        f"{_f(v['p_dev']['answer_auroc'])}, p_stop AUROC {_f(v['p_stop']['auroc'])}; judge "
        f"AUROC {_f(done['judge']['validation_auroc'])}.",
        "",
        _bars_line(done.get("bars")),
        "",
        "## Time",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {s} | {d.get('seconds', 'n/a')} |" for s, d in done.items()],
        f"| all (this card's runs; a resumed fit counts each stage once) | "
        f"{sum(d.get('seconds') or 0 for d in done.values()):.0f} |",
        "",
        f"Weights: `{out}/heads.safetensors`, `{judge_out}/judge.safetensors`; every number "
        "above is in their `metrics.json` (`evaluations.fit_*`, `fit`).",
        "",
    ]
    return "\n".join(lines)
