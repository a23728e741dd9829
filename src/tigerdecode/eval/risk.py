"""The risk–coverage curves behind the policy's two abstention bars.

Abstention acts only on factual requests (``p_factual >= factual_at``) and only once the answer
reaches its first fact slot (``p_slot >= abstain_slot``, read before the token is drawn):

- **before** that slot's token is drawn, when ``p_risk`` there reaches ``risk_at + risk_rise*c``;
- **after**, on any content token from that slot on whose ``p_dev`` reaches ``abstain_at +
  abstain_rise*c`` (the answer has left the facts).

Every QA item is decoded once per creativity with abstention off, and each answer gets two
*peaks*: ``p_risk`` at its first fact slot, and the highest ``p_dev`` of a content token from
there on. Abstention changes nothing before the step where it fires, so an answer abstains under
bars ``(r, d)`` exactly when a peak reaches its bar: one decode gives every curve. A factual
request whose answer never reaches a fact slot abstains at its end (``abstain_no_slot``); those
answers count as abstained under every bar, and the table says how many there are. The bars for
a creativity come from an error budget stated up front: first the lowest ``p_dev`` bar that
loses at most ``budget`` of the right answers, then the lowest ``p_risk`` bar that keeps the
union within the same budget (1.0, i.e. off, when the risk adds nothing there). With the
policy's ``use_logprob`` on, a third peak is the answer's mean top-token log-probability (the
loop abstains at the end of a factual answer below ``abstain_logprob``), and the ``p_dev`` bar and
that bar are chosen together: the pair that catches the most wrong answers within the budget.
That pair is chosen at the first creativity; the knob then relaxes the log-probability bar with
creativity (``logprob_drop``). The *relaxed line*: at creativity c the bar catches ``(1 - c)`` of
the share of wrong answers the first level's bar caught by log-probability alone, measured on
the answers decoded at c; the bar follows that line's slope times ``relax`` (default 0.5), so
that errors rise and "I don't know" falls as the knob turns (a bar the budget chose afresh at
each creativity may come out *higher* at c = 0.5, abstaining more the more creative).
Given ``parts`` (say, validation facts the model mostly knows beside ones it mostly does not),
the budget holds in every part, so one bar does not serve a hard set at the cost of an easy
one. The curves also count the creative requests (mixed and open prompts) that would abstain:
none should.

    tigerdecode policy risk --split validation --sample 150 --creativity 0,0.5 --budget 0.05
"""

from __future__ import annotations

import numpy as np

BARS = tuple(round(0.05 + 0.025 * i, 3) for i in range(38)) + (0.99, 1.0)  # 0.05 .. 1
# bars on the answer's mean top-token log-probability (abstain below); -inf: off
LOGPROB_BARS = (float("-inf"),) + tuple(round(-3.0 + 0.05 * i, 2) for i in range(60))


def mean_logprob(result) -> float:
    """The answer's mean top-token log-probability under the model (end-of-sequence left out),
    as the loop's ``abstain_logprob`` rule reads it; 0.0 when the trace has none."""
    lps = [t.top_logprob for t in result.trace[:len(result.token_ids)]
           if t.top_logprob is not None]
    return sum(lps) / len(lps) if lps else 0.0


def peaks(result, policy) -> tuple[float, float, float, float]:
    """(``p_risk`` at the first fact slot, highest content-token ``p_dev`` from that slot on,
    1.0 if the policy abstains on it at its end for never reaching a fact slot else 0.0, the
    answer's mean top-token log-probability); (0, 0, 0, 0) for a creative request, which no bar
    ends (p_factual gates every abstention)."""
    if result.p_factual is not None and result.p_factual < policy.factual_at:
        return 0.0, 0.0, 0.0, 0.0
    lp = mean_logprob(result) if result.p_factual is not None else 0.0
    tr = result.trace
    first = next((j for j, t in enumerate(tr)
                  if t.p_slot is not None and t.p_slot >= policy.abstain_slot), None)
    if first is None:
        unslotted = (policy.abstain_no_slot and policy.use_slot and result.p_factual is not None
                     and any(t.p_slot is not None for t in tr))
        return 0.0, 0.0, float(unslotted), lp
    risk = tr[first].p_risk or 0.0
    dev = max((t.p_dev for t in tr[first:] if t.p_dev is not None
               and any(ch.isalnum() for ch in t.token)), default=0.0)
    return risk, dev, 0.0, lp


def curve(right: np.ndarray, wrong: np.ndarray, creative: np.ndarray, bars=BARS,
          n_abstained: int = 0, fixed_right=None, fixed_wrong=None,
          fixed_creative=None) -> list[dict]:
    """Per bar: what abstaining at ``peak >= bar`` keeps and catches (arrays of peaks; answers
    already abstained count in the coverage's denominator only). ``fixed_*``: boolean arrays of
    answers another rule already ends (the union is reported)."""
    n = len(right) + len(wrong) + n_abstained
    fr = np.zeros(len(right), bool) if fixed_right is None else fixed_right
    fw = np.zeros(len(wrong), bool) if fixed_wrong is None else fixed_wrong
    fc = np.zeros(len(creative), bool) if fixed_creative is None else fixed_creative
    rows = []
    for b in bars:
        kept_r = int(((right < b) & ~fr).sum())
        kept_w = int(((wrong < b) & ~fw).sum())
        answered = kept_r + kept_w
        rows.append({"bar": b, "coverage": answered / max(n, 1),
                     "right_kept": kept_r / max(len(right), 1),
                     "wrong_caught": 1 - kept_w / max(len(wrong), 1),
                     "error_among_answered": kept_w / answered if answered else 0.0,
                     "creative_abstain": int(((creative >= b) | fc).sum()),
                     "n_creative": int(len(creative))})
    return rows


# fewer right answers than this at some creativity: no bars are chosen (an error budget of 5%
# on three right answers would pick the lowest bar there is)
MIN_RIGHT = 20
# with parts, each part needs this many too: the budget then keeps all of a part's right answers
# up to 19 (one lost of 10 is 10%), a strict bar rather than a handful read as a distribution
MIN_PART_RIGHT = 10
# how far the log-probability bar follows the relaxed line (run): half way, chosen on the
# validation split so that errors rise with creativity while creativity 0.5 keeps abstaining
# on the answers the model is least sure of (docs/results/knob.md §9)
RELAX = 0.5


def choose_bar(rows: list[dict], budget: float) -> float:
    """The lowest bar that keeps at least ``1 - budget`` of the right answers (1.0 if none)."""
    ok = [r["bar"] for r in rows if r["right_kept"] >= 1 - budget - 1e-12]
    return min(ok) if ok else 1.0


def _peak_array(x) -> np.ndarray:
    """Peaks as an (N, 4) array: (risk, dev) pairs get a 0 "no fact slot" column, and peaks
    without a mean log-probability get 0 (no log-probability bar ends them)."""
    a = np.asarray(x, float)
    a = a.reshape(-1, a.shape[-1] if a.size else 4)
    return np.concatenate([a, np.zeros((len(a), 4 - a.shape[1]))], axis=1)


def _kept_everywhere(kept: np.ndarray, parts: np.ndarray | None, budget: float) -> bool:
    """Whether ``kept`` (a boolean per right answer) keeps >= 1 - budget in every part."""
    groups = [kept] if parts is None else [kept[parts == p] for p in np.unique(parts)]
    return all(g.mean() >= 1 - budget - 1e-12 for g in groups if len(g))


def joint_bars(right: np.ndarray, wrong: np.ndarray, budget: float,
               parts: np.ndarray | None = None) -> tuple[float, float]:
    """The (``p_dev`` bar, log-probability bar) pair that catches the most wrong answers while
    every part keeps >= 1 - budget of its right answers; ties go to the fewest right answers
    lost, then, like the single bar's "lowest within the budget", to the pair that abstains
    most readily (lower ``p_dev`` bar, higher log-probability bar). Peaks as
    :func:`_peak_array` gives them; answers with the no-slot flag count as abstained."""
    best, key = (1.0, float("-inf")), None
    for d in BARS:
        for m in LOGPROB_BARS:
            ab_r = (right[:, 1] >= d) | (right[:, 3] < m) | (right[:, 2] > 0)
            if not _kept_everywhere(~ab_r, parts, budget):
                continue
            ab_w = (wrong[:, 1] >= d) | (wrong[:, 3] < m) | (wrong[:, 2] > 0)
            k = (int(ab_w.sum()), -int(ab_r.sum()), -d, m)
            if key is None or k > key:
                best, key = (d, m), k
    return best


def relaxed_logprob_bar(wrong_lp: np.ndarray, catch: float) -> float:
    """The highest log-probability bar that catches at most ``catch`` of the wrong answers by
    their mean log-probability alone (``-inf``, off, when every bar catches more)."""
    ok = [b for b in LOGPROB_BARS if (wrong_lp < b).mean() <= catch + 1e-12] if len(wrong_lp) \
        else list(LOGPROB_BARS)
    return max(ok)


def level(right, wrong, creative, budget: float, n_abstained: int = 0,
          logprob: bool = False, parts: np.ndarray | None = None,
          relax_catch: float | None = None) -> dict:
    """The curves and bars at one creativity from (risk, dev[, no slot[, mean log-prob]])
    peaks. Answers ended for never reaching a fact slot are abstained under every bar; the bars
    are chosen with them counted against the budget. ``logprob``: the ``p_dev`` bar and the
    mean log-probability bar are chosen together (:func:`joint_bars`); otherwise the ``p_dev``
    bar is the lowest within the budget. ``parts``: a label per right answer; the budget then
    holds in every part (facts the model mostly knows beside ones it mostly does not).
    ``relax_catch`` (with ``logprob``): also the bar the knob relaxes to here, the highest that
    catches at most this share of the wrong answers by log-probability alone
    (``logprob_relaxed``; see :func:`run`)."""
    right, wrong, creative = (_peak_array(x) for x in (right, wrong, creative))
    ur, uw, uc = right[:, 2] > 0, wrong[:, 2] > 0, creative[:, 2] > 0
    m = float("-inf")
    if logprob:
        d, m = joint_bars(right, wrong, budget, parts)
        ur, uw, uc = ur | (right[:, 3] < m), uw | (wrong[:, 3] < m), uc | (creative[:, 3] < m)
    dev = curve(right[:, 1], wrong[:, 1], creative[:, 1], n_abstained=n_abstained,
                fixed_right=ur, fixed_wrong=uw, fixed_creative=uc)
    if not logprob:  # the lowest p_dev bar within the budget (of every part)
        d = min((b for b in BARS if _kept_everywhere(~(ur | (right[:, 1] >= b)), parts, budget)),
                default=1.0)
    fr, fw, fc = ur | (right[:, 1] >= d), uw | (wrong[:, 1] >= d), uc | (creative[:, 1] >= d)
    risk = curve(right[:, 0], wrong[:, 0], creative[:, 0], n_abstained=n_abstained,
                 fixed_right=fr, fixed_wrong=fw, fixed_creative=fc)
    ok = [x["bar"] for x in risk
          if _kept_everywhere(~(fr | (right[:, 0] >= x["bar"])), parts, budget)]
    r = min(ok) if ok else 1.0
    both = next(x for x in risk if x["bar"] == r)
    out = {"n_right": len(right), "n_wrong": len(wrong), "dev_bar": d, "risk_bar": r,
           "dev_curve": dev, "risk_curve": risk, "chosen": both,
           "no_slot": {"right": int((right[:, 2] > 0).sum()), "wrong": int((wrong[:, 2] > 0).sum()),
                       "creative": int((creative[:, 2] > 0).sum())},
           "creative_abstain": int((fc | (creative[:, 0] >= r)).sum())}
    if logprob:  # the log-probability curve with the p_dev bar (and no-slot rule) in place
        fixed = {f"fixed_{k}": (a[:, 1] >= d) | (a[:, 2] > 0)
                 for k, a in (("right", right), ("wrong", wrong), ("creative", creative))}
        out["logprob_bar"] = m
        out["logprob_alone_caught"] = float((wrong[:, 3] < m).mean()) if len(wrong) else 0.0
        if relax_catch is not None:
            out["logprob_relaxed"] = relaxed_logprob_bar(wrong[:, 3], relax_catch)
            out["logprob_relaxed_caught"] = float(
                (wrong[:, 3] < out["logprob_relaxed"]).mean()) if len(wrong) else 0.0
        out["logprob_curve"] = [  # abstaining below b, as booleans against a 0.5 bar
            {**curve(right[:, 3] < b, wrong[:, 3] < b, creative[:, 3] < b, bars=(0.5,),
                     n_abstained=n_abstained, **fixed)[0], "bar": b}
            for b in LOGPROB_BARS[1:]]
    if parts is not None:
        ab = fr | (right[:, 0] >= r)
        out["parts"] = {str(p): {"n_right": int((parts == p).sum()),
                                 "right_kept": float((~ab[parts == p]).mean())}
                        for p in np.unique(parts)}
    return out


def run(gen, items, creative_prompts: list[str], creativities, *, budget: float = 0.05,
        max_new_tokens: int = 24, creative_tokens: int = 40, batch: int = 16, seed: int = 0,
        overrides: dict | None = None, progress: bool = True,
        parts: list[str] | None = None, relax: float = RELAX) -> dict:
    """Decode, label, and build the curves and bars at each creativity. ``parts``: a label per
    item (e.g. "relations" / "easy"); the budget then holds in every part. With the policy's
    ``use_logprob`` on (``overrides`` or its default), the log-probability bar is chosen
    together with the ``p_dev`` bar, and ``logprob_drop`` is ``relax`` times the drop of the
    line through the last level's relaxed bar (1: the bar catches ``1 - c`` of its first-level
    share at creativity c; 0: a flat bar)."""
    from tqdm import tqdm

    from tigerdecode.policy.knob import Policy
    from tigerdecode.qa.labels import label_answer
    from tigerdecode.qa.prompts import format_prompt

    kw = {**(overrides or {}), "use_abstain": False}
    if parts is not None and len(parts) != len(items):
        raise ValueError(f"parts needs one label per item: {len(parts)} for {len(items)} items")
    out = {"budget": budget, "levels": []}
    bar = tqdm(total=len(creativities) * (len(items) + len(creative_prompts)), disable=not progress,
               desc="risk curve")
    for c in creativities:
        policy = Policy(c, **{k: v for k, v in kw.items() if k in Policy.__dataclass_fields__})
        right, wrong, creative, right_parts = [], [], [], []
        for s in range(0, len(items), batch):
            chunk = items[s:s + batch]
            res = gen.generate_text([format_prompt(it.prompt) for it in chunk], creativity=c,
                                    max_new_tokens=max_new_tokens, seed=seed + s, **kw)
            for k, (it, r) in enumerate(zip(chunk, res, strict=True)):
                ok = label_answer(it.prompt, it.answers, [r.text], True).correct
                (right if ok else wrong).append(peaks(r, policy))
                if ok and parts is not None:
                    right_parts.append(parts[s + k])
            bar.update(len(chunk))
        for s in range(0, len(creative_prompts), batch):
            res = gen.generate_text(creative_prompts[s:s + batch], creativity=c,
                                    max_new_tokens=creative_tokens, seed=seed + 10_000 + s, **kw)
            creative += [peaks(r, policy) for r in res]
            bar.update(len(res))
        catch = None  # the share of wrong answers the relaxed line's bar catches here
        if out["levels"] and policy.use_logprob and out["levels"][0]["creativity"] < 1:
            c0 = out["levels"][0]["creativity"]
            catch = max(0.0, 1 - (c - c0) / (1 - c0)) * out["levels"][0]["logprob_alone_caught"]
        out["levels"].append({"creativity": c, **level(
            right, wrong, creative, budget, logprob=policy.use_logprob,
            parts=None if parts is None else np.array(right_parts, dtype=object),
            relax_catch=catch)})
    bar.close()
    lv = out["levels"]
    total = min(x["n_right"] for x in lv)
    part = min((p["n_right"] for x in lv for p in (x.get("parts") or {}).values()),
               default=MIN_PART_RIGHT)
    if total < MIN_RIGHT or part < MIN_PART_RIGHT:  # a handful of right answers: no measurement
        out.update(abstain_at=None, abstain_rise=None, risk_at=None, risk_rise=None,
                   too_few_right=total if total < MIN_RIGHT else part,
                   too_few_in="all" if total < MIN_RIGHT else "part")
        return out
    if all("logprob_bar" in x for x in lv):
        ms = [x["logprob_bar"] for x in lv]
        out["use_logprob"] = all(np.isfinite(ms))
        if out["use_logprob"]:
            out["abstain_logprob"] = ms[0]
            if len(lv) > 1 and lv[-1]["creativity"] > lv[0]["creativity"]:
                # relax times the slope of the relaxed line through the last level's relaxed
                # bar (the lowest finite bar stands in for "off")
                end = max(lv[-1]["logprob_relaxed"], LOGPROB_BARS[1])
                out["logprob_relax"] = relax
                out["logprob_drop"] = round(relax * max(0.0, (ms[0] - end) / (
                    lv[-1]["creativity"] - lv[0]["creativity"])), 4)
    for name in ("dev", "risk"):
        at = lv[0][f"{name}_bar"]
        rise = None
        if len(lv) > 1 and lv[-1]["creativity"] > lv[0]["creativity"]:
            rise = max(0.0, (lv[-1][f"{name}_bar"] - at) /
                       (lv[-1]["creativity"] - lv[0]["creativity"]))
        key = "abstain" if name == "dev" else "risk"
        out[f"{key}_at"], out[f"{key}_rise"] = at, None if rise is None else round(rise, 4)
    return out


def chosen_bars(res: dict) -> dict | None:
    """The Policy fields :func:`run` chose (``abstain_at``, ``risk_at`` and their rises when
    several creativities were decoded), or None when it chose none (too few right answers)."""
    if res.get("abstain_at") is None or res.get("risk_at") is None:
        return None
    bars = {"abstain_at": res["abstain_at"], "risk_at": res["risk_at"]}
    for key in ("abstain_rise", "risk_rise", "use_logprob", "abstain_logprob", "logprob_drop"):
        if res.get(key) is not None:
            bars[key] = res[key]
    return bars


def table(res: dict, every: int = 4) -> str:
    """Both curves at every ``every``-th bar plus the chosen ones, per creativity."""
    lines = [f"error budget: at most {res['budget']:.0%} of the right answers abstain", ""]
    curves = [("dev", "p_dev from the first fact slot on"),
              ("risk", "p_risk at the first fact slot (with the p_dev bar above)")]
    if any("logprob_curve" in lv for lv in res["levels"]):
        curves.append(("logprob", "the answer's mean top-token log-probability (abstain below "
                                  "the bar; with the p_dev bar)"))
    for name, title in curves:
        lines += [f"**{title}**", "",
                  "| creativity | bar | answered | right kept | wrong caught | error among "
                  "answered | creative requests abstaining |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for lv in res["levels"]:
            for i, r in enumerate(lv.get(f"{name}_curve", [])):
                chosen = r["bar"] == lv[f"{name}_bar"]
                if i % every and not chosen:
                    continue
                m = "**" if chosen else ""
                lines.append(f"| {lv['creativity']:g} | {m}{r['bar']:g}{m} | {r['coverage']:.3f} "
                             f"| {r['right_kept']:.3f} | {r['wrong_caught']:.3f} | "
                             f"{r['error_among_answered']:.3f} | {r['creative_abstain']}/"
                             f"{r['n_creative']} |")
        lines.append("")
    for lv in res["levels"]:
        for name, p in (lv.get("parts") or {}).items():
            lines.append(f"creativity {lv['creativity']:g}, part {name}: {p['n_right']} right, "
                         f"{p['right_kept']:.3f} kept under the chosen bars")
    for lv in res["levels"]:
        ns = lv.get("no_slot")
        if ns and any(ns.values()):
            lines.append(f"creativity {lv['creativity']:g}: never reaching a fact slot (abstained "
                         f"at the end under every bar): {ns['right']} right, {ns['wrong']} wrong, "
                         f"{ns['creative']} creative")
    for lv in res["levels"]:
        ch = lv["chosen"]
        lp = (f", mean log-prob {lv['logprob_bar']:g}" if "logprob_bar" in lv else "")
        if "logprob_relaxed" in lv:
            lp += (f" (the knob relaxes it to {lv['logprob_relaxed']:g}: catches "
                   f"{lv['logprob_relaxed_caught']:.3f} of the wrong answers by log-probability "
                   f"alone)")
        elif "logprob_alone_caught" in lv:
            lp += (f" (catches {lv['logprob_alone_caught']:.3f} of the wrong answers by "
                   f"log-probability alone)")
        lines.append(f"creativity {lv['creativity']:g}: {lv['n_right']} right, {lv['n_wrong']} "
                     f"wrong without abstention; bars p_dev {lv['dev_bar']:g}, p_risk "
                     f"{lv['risk_bar']:g}{lp}: right kept {ch['right_kept']:.3f}, wrong caught "
                     f"{ch['wrong_caught']:.3f}, creative requests abstaining "
                     f"{lv['creative_abstain']}")
    if res.get("too_few_right") is not None:
        in_part = res.get("too_few_in") == "part"
        lines.append(f"=> no bars chosen: {res['too_few_right']} right answers "
                     f"{'in a part ' if in_part else ''}at some creativity, fewer than "
                     f"{MIN_PART_RIGHT if in_part else MIN_RIGHT}; use items this model knows "
                     f"more of")
        return "\n".join(lines)
    fmt = lambda v: "n/a" if v is None else f"{v:g}"  # noqa: E731
    lines.append(f"=> abstain_at = {fmt(res['abstain_at'])}, abstain_rise = "
                 f"{fmt(res['abstain_rise'])}, risk_at = {fmt(res['risk_at'])}, risk_rise = "
                 f"{fmt(res['risk_rise'])}" + (
                     f", use_logprob = {res['use_logprob']}" if "use_logprob" in res else "") + (
                     f", abstain_logprob = {res['abstain_logprob']:g}, logprob_drop = "
                     f"{fmt(res.get('logprob_drop'))}" if res.get("use_logprob") else "") + (
                     f" (relax {res['logprob_relax']:g})" if "logprob_relax" in res else ""))
    return "\n".join(lines)


def plot(res: dict, path) -> None:
    """Error among the answers given against coverage, per creativity and signal."""
    from tigerdecode.eval.plot import line_plot

    curves = {}
    for lv in res["levels"]:
        for name in ("dev", "risk", "logprob"):
            if f"{name}_curve" not in lv:
                continue
            curves[f"{name} c={lv['creativity']:g}"] = [
                (r["coverage"], r["error_among_answered"],
                 f"bar {r['bar']:g}" if r["bar"] == lv[f"{name}_bar"] else "")
                for r in lv[f"{name}_curve"]]
    line_plot(curves, path, title="Risk-coverage: abstaining on p_dev / p_risk / mean log-prob",
              xlabel="answered (coverage)", ylabel="error among answered")
