"""The risk–coverage curve behind the policy's abstention bar (``risk_at``, ``risk_rise``).

Every QA item is decoded once per creativity with the risk gate off (``use_risk=False``; the
policy's other abstention, on ``p_dev``, acts as it will in use, and the answers it ends count
as abstained at every bar); each answer's *peak* is the highest ``p_risk`` the policy would have
checked on it -- at a step that is a fact slot
(``slot_gain * p_slot >= abstain_slot``) of a factual request (``p_factual >= factual_at``).
Abstention changes nothing before the step where it fires, so an answer abstains under bar
``b`` exactly when its peak reaches ``b``: one decode gives the whole curve. For each bar: the
answers kept (coverage), the right answers lost, the wrong ones caught, the error rate among
the answers given, and how many creative requests (mixed prompts, open prompts) would have
abstained. The bar for a creativity is the lowest one that loses at most ``budget`` of the right
answers -- the error budget, stated up front -- and ``risk_at`` / ``risk_rise`` follow from the
bars at two creativities.

    tigerdecode policy risk --split validation --sample 150 --creativity 0,0.5 --budget 0.05
"""

from __future__ import annotations

import numpy as np

BARS = tuple(round(0.05 + 0.025 * i, 3) for i in range(38))  # 0.05 .. 0.975


def peak_risk(result, policy) -> float:
    """The highest ``p_risk`` the policy checks on this answer (0 when it checks none)."""
    if result.p_factual is not None and result.p_factual < policy.factual_at:
        return 0.0
    peaks = [t.p_risk for t in result.trace if t.p_risk is not None and t.p_slot is not None
             and min(1.0, policy.slot_gain * t.p_slot) >= policy.abstain_slot]
    return max(peaks, default=0.0)


def curve(right: np.ndarray, wrong: np.ndarray, creative: np.ndarray, bars=BARS,
          n_abstained: int = 0) -> list[dict]:
    """Per bar: what abstaining at ``peak >= bar`` keeps and catches (arrays of peaks; answers
    the decode already abstained on count in the coverage's denominator only)."""
    n = len(right) + len(wrong) + n_abstained
    rows = []
    for b in bars:
        kept_r, kept_w = int((right < b).sum()), int((wrong < b).sum())
        answered = kept_r + kept_w
        rows.append({"bar": b, "coverage": answered / max(n, 1),
                     "right_kept": kept_r / max(len(right), 1),
                     "wrong_caught": 1 - kept_w / max(len(wrong), 1),
                     "error_among_answered": kept_w / answered if answered else 0.0,
                     "creative_abstain": int((creative >= b).sum()),
                     "n_creative": int(len(creative))})
    return rows


def choose_bar(rows: list[dict], budget: float) -> float:
    """The lowest bar that keeps at least ``1 - budget`` of the right answers (1.0 if none)."""
    ok = [r["bar"] for r in rows if r["right_kept"] >= 1 - budget - 1e-12]
    return min(ok) if ok else 1.0


def run(gen, items, creative_prompts: list[str], creativities, *, budget: float = 0.05,
        max_new_tokens: int = 24, creative_tokens: int = 40, batch: int = 16, seed: int = 0,
        overrides: dict | None = None, progress: bool = True) -> dict:
    """Decode, label, and build the curve and the bar at each creativity."""
    from tqdm import tqdm

    from tigerdecode.policy.knob import Policy
    from tigerdecode.qa.labels import label_answer
    from tigerdecode.qa.prompts import format_prompt

    kw = {**(overrides or {}), "use_risk": False}
    out = {"budget": budget, "levels": []}
    bar = tqdm(total=len(creativities) * (len(items) + len(creative_prompts)), disable=not progress,
               desc="risk curve")
    for c in creativities:
        policy = Policy(c, **{k: v for k, v in kw.items() if k in Policy.__dataclass_fields__})
        right, wrong, creative, abstained, creative_abstained = [], [], [], 0, 0
        for s in range(0, len(items), batch):
            chunk = items[s:s + batch]
            res = gen.generate_text([format_prompt(it.prompt) for it in chunk], creativity=c,
                                    max_new_tokens=max_new_tokens, seed=seed + s, **kw)
            for it, r in zip(chunk, res, strict=True):
                if r.abstained:
                    abstained += 1
                    continue
                ok = label_answer(it.prompt, it.answers, [r.text], True).correct
                (right if ok else wrong).append(peak_risk(r, policy))
            bar.update(len(chunk))
        for s in range(0, len(creative_prompts), batch):
            res = gen.generate_text(creative_prompts[s:s + batch], creativity=c,
                                    max_new_tokens=creative_tokens, seed=seed + 10_000 + s, **kw)
            creative += [peak_risk(r, policy) for r in res]
            creative_abstained += sum(r.abstained for r in res)
            bar.update(len(res))
        rows = curve(np.array(right), np.array(wrong), np.array(creative), n_abstained=abstained)
        out["levels"].append({"creativity": c, "n_right": len(right), "n_wrong": len(wrong),
                              "n_abstained_without_risk": abstained,
                              "creative_abstained_without_risk": creative_abstained,
                              "bar": choose_bar(rows, budget), "curve": rows})
    bar.close()
    lv = out["levels"]
    out["risk_at"] = lv[0]["bar"]
    if len(lv) > 1 and lv[-1]["creativity"] > lv[0]["creativity"]:
        rise = (lv[-1]["bar"] - lv[0]["bar"]) / (lv[-1]["creativity"] - lv[0]["creativity"])
        out["risk_rise"] = round(max(0.0, rise), 4)
    return out


def table(res: dict, every: int = 4) -> str:
    """The curve at every ``every``-th bar plus the chosen one, per creativity."""
    lines = [f"error budget: at most {res['budget']:.0%} of the right answers abstain", "",
             "| creativity | bar | answered | right kept | wrong caught | error among answered "
             "| creative requests abstaining |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for lv in res["levels"]:
        for i, r in enumerate(lv["curve"]):
            chosen = r["bar"] == lv["bar"]
            if i % every and not chosen:
                continue
            mark = "**" if chosen else ""
            lines.append(f"| {lv['creativity']:g} | {mark}{r['bar']:g}{mark} | "
                         f"{r['coverage']:.3f} | {r['right_kept']:.3f} | {r['wrong_caught']:.3f} "
                         f"| {r['error_among_answered']:.3f} | {r['creative_abstain']}/"
                         f"{r['n_creative']} |")
    lines.append("")
    for lv in res["levels"]:
        lines.append(f"creativity {lv['creativity']:g}: {lv['n_right']} right, {lv['n_wrong']} "
                     f"wrong, {lv['n_abstained_without_risk']} abstained (p_dev) without the risk "
                     f"gate; creative requests abstained {lv['creative_abstained_without_risk']}; "
                     f"bar {lv['bar']:g}")
    rise = res.get("risk_rise")
    lines.append(f"=> risk_at = {res['risk_at']:g}" + (f", risk_rise = {rise:g}"
                                                        if rise is not None else ""))
    return "\n".join(lines)


def plot(res: dict, path) -> None:
    """Error among the answers given against coverage, one curve per creativity."""
    from tigerdecode.eval.plot import line_plot

    curves = {f"c={lv['creativity']:g}": [
        (r["coverage"], r["error_among_answered"],
         f"bar {r['bar']:g}" if r["bar"] == lv["bar"] else "") for r in lv["curve"]]
        for lv in res["levels"]}
    line_plot(curves, path, title="Risk-coverage: abstaining on p_risk at a fact slot",
              xlabel="answered (coverage)", ylabel="error among answered")
