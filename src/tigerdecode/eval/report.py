"""Turning evaluation rows into the table, CSV, plot, JSON and the target checks."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from tigerdecode.eval.metrics import spearman
from tigerdecode.eval.plot import line_plot

COLUMNS = ["method", "setting", "accuracy", "error_rate", "abstain_rate", "precision",
           "distinct_1", "distinct_2", "distinct_3", "self_bleu", "degenerate_rate",
           "fact_mean_len", "creative_mean_len", "tokens_per_s"]
TIGER = ("tigerdecode", "tigerdecode+ensemble", "tigerdecode+judge", "tigerdecode+consensus")


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if not math.isfinite(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return "" if v is None else str(v)


def markdown_table(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def csv_text(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _interp(curve: list[tuple[float, float]], x: float) -> float | None:
    """Linear interpolation along a curve sorted by x; None outside its range."""
    curve = sorted(curve)
    if not curve or x < curve[0][0] or x > curve[-1][0]:
        return None
    for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (x - x0) / (x1 - x0) * (y1 - y0)
    return curve[-1][1]


def targets(rows: list[dict], method: str = "tigerdecode", fewer_errors: float = 0.30,
            keep_right: float = 0.90) -> dict:
    """Check the evaluation's targets against the rows.

    - dominance: at each baseline setting's diversity (distinct-2), the ``method`` curve,
      interpolated, has >= ``fewer_errors`` fewer wrong answers while keeping >= ``keep_right``
      of that setting's right answers; a baseline less diverse than the whole curve is compared
      with the curve's least diverse point (more diverse, so the comparison is conservative); one
      more diverse than the whole curve cannot be compared and counts as not dominated;
    - monotone: Spearman of creativity against error rate and against distinct-2 (>= 0.9);
    - judge precision at creativity 0 vs greedy (when a tigerdecode+judge row exists).
    """
    sweep = sorted((r for r in rows if r["method"] == method), key=lambda r: r["creativity"])
    err = [(r["distinct_2"], r["error_rate"]) for r in sweep]
    acc = [(r["distinct_2"], r["accuracy"]) for r in sweep]
    checks = []
    least = min(sweep, key=lambda r: r["distinct_2"]) if sweep else None
    for b in rows:
        if b["method"] in TIGER:
            continue
        e, a = _interp(err, b["distinct_2"]), _interp(acc, b["distinct_2"])
        below = e is None and least is not None and b["distinct_2"] < least["distinct_2"]
        if below:
            # Less diverse than the whole curve: its least diverse point is already more
            # diverse than the baseline, so compare there (a conservative comparison).
            e, a = least["error_rate"], least["accuracy"]
        ok = None if e is None else (e <= (1 - fewer_errors) * b["error_rate"]
                                     and a >= keep_right * b["accuracy"])
        checks.append({"baseline": b["method"], "setting": b["setting"],
                       "distinct_2": b["distinct_2"], "baseline_error": b["error_rate"],
                       "ours_error": e, "baseline_accuracy": b["accuracy"], "ours_accuracy": a,
                       "error_reduction": None if e is None or b["error_rate"] == 0
                       else 1 - e / b["error_rate"], "dominated": ok,
                       "compared_at": None if e is None else
                       f"least diverse point ({least['setting']})" if below else "interpolated"})
    cs = [r["creativity"] for r in sweep]
    out = {"method": method, "dominance": checks,
           "dominated_all": bool(checks) and all(c["dominated"] for c in checks),
           "spearman_error": spearman(cs, [r["error_rate"] for r in sweep]),
           "spearman_diversity": spearman(cs, [r["distinct_2"] for r in sweep])}
    judge0 = [r for r in rows if r["method"] == "tigerdecode+judge" and r.get("creativity") == 0]
    greedy = [r for r in rows if r["method"] == "greedy"]
    out["judge_precision_vs_greedy"] = (
        None if not (judge0 and greedy) else {"judge": judge0[0]["precision"],
                                              "greedy": greedy[0]["precision"]})
    return out


def targets_table(t: dict) -> str:
    lines = [f"Targets for `{t['method']}`:", "",
             "| baseline | setting | distinct-2 | baseline error | ours error | reduction | "
             "baseline right | ours right | dominated |", "|---|---|---|---|---|---|---|---|---|"]
    for c in t["dominance"]:
        lines.append("| " + " | ".join(_fmt(c[k]) for k in (
            "baseline", "setting", "distinct_2", "baseline_error", "ours_error",
            "error_reduction", "baseline_accuracy", "ours_accuracy")) + " | "
            + {True: "yes", False: "no", None: "outside curve"}[c["dominated"]]
            + (" (vs its least diverse point)" if str(c.get("compared_at")).startswith("least")
               else "") + " |")
    lines += ["", f"Spearman(creativity, error rate) = {_fmt(t['spearman_error'])}; "
              f"Spearman(creativity, distinct-2) = {_fmt(t['spearman_diversity'])} "
              "(target >= 0.9 each)"]
    j = t["judge_precision_vs_greedy"]
    lines.append("Judge precision at creativity 0 vs greedy: " + (
        "n/a (no tigerdecode+judge rows)" if j is None
        else f"{_fmt(j['judge'])} vs {_fmt(j['greedy'])}"))
    return "\n".join(lines)


def write_report(rows: list[dict], out: str | Path, meta: dict) -> dict:
    """Write results.json (what the demo's trade-off tab reads), .csv, .md, tradeoff.png (error
    rate against diversity) and tradeoff-right.png (right answers against diversity: the half of
    the trade-off that abstaining would hide)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # The checks for every tigerdecode variant that has a curve (two or more settings).
    by_method = {m: targets(rows, method=m) for m in TIGER
                 if sum(r["method"] == m for r in rows) >= 2}
    t = by_method.get("tigerdecode") or targets(rows)
    doc = {"rows": rows, "targets": t, "targets_by_method": by_method, "meta": meta}
    tables = "\n\n".join(targets_table(x) for x in (by_method.values() or [t]))
    for name, text in (("results.json", json.dumps(_finite(doc), indent=1)),
                       ("results.csv", csv_text(rows)),
                       ("results.md", markdown_table(rows) + "\n\n" + tables + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
    xlabel = "distinct-2 on the creative task (higher = more diverse)"
    for key, png, title, ylabel in (
            ("error_rate", "tradeoff.png", "Factual errors against creative diversity",
             "error rate on held-out QA (lower = better)"),
            ("accuracy", "tradeoff-right.png", "Right answers against creative diversity",
             "accuracy on held-out QA (abstentions count as not right)")):
        curves: dict[str, list] = {}
        for r in rows:
            label = r["setting"] if r["setting"] != "-" else ""
            curves.setdefault(r["method"], []).append((r["distinct_2"], r[key], label))
        line_plot(curves, out / png, title=title, xlabel=xlabel, ylabel=ylabel)
    return doc


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
