"""Turning a ``GenerationResult`` into what the demo shows: per-token highlights, the probability
plot's table, the judge panel with rewrite diffs, and timings. Pure functions, no Gradio state,
so they are tested on hand-built results."""

from __future__ import annotations

import difflib
import html
import math

import pandas as pd

from tigerdecode.demos.svgchart import Series, line_chart
from tigerdecode.result import GenerationResult, JudgeVerdict, TokenTrace


def _prob(x) -> float | None:
    """A probability clipped to [0, 1], or None when the heads gave none (or NaN)."""
    if x is None:
        return None
    x = float(x)
    return None if not math.isfinite(x) else min(1.0, max(0.0, x))


def _display(token: str) -> str:
    # Keep whitespace visible but readable: a newline token shows as "⏎" plus the break.
    return token.replace("\n", "⏎\n") if token.strip() == "" and "\n" in token else token


def highlights(trace: list[TokenTrace], signal: str = "p_dev") -> list[tuple[str, float | None]]:
    """(token, score) pairs for ``gr.HighlightedText``; the score is the signal in [0, 1]
    (HighlightedText colours positive numbers by intensity), None where the heads gave none."""
    if signal not in ("p_dev", "p_stop"):
        raise ValueError(f"signal must be 'p_dev' or 'p_stop', got {signal!r}")
    return [(_display(t.token), _prob(getattr(t, signal))) for t in trace]


def answer_trace(result: GenerationResult) -> list[TokenTrace]:
    """The trace of the answer's own tokens: the end-of-sequence token that stopped it (kept in
    the trace, not in ``token_ids``) is left out of the views."""
    if result.stop_reason == "eos" and len(result.trace) > len(result.token_ids):
        return result.trace[:len(result.token_ids)]
    return result.trace


def probability_table(trace: list[TokenTrace]) -> pd.DataFrame:
    """Long-format table (position, probability, signal, token) for the line plot."""
    rows = []
    for i, t in enumerate(trace):
        for signal in ("p_dev", "p_stop"):
            p = _prob(getattr(t, signal))
            if p is not None:
                rows.append({"position": i + 1, "probability": p, "signal": signal,
                             "token": t.token})
    return pd.DataFrame(rows, columns=["position", "probability", "signal", "token"])


SIGNAL_COLOURS = {"p_dev": "#d1242f", "p_stop": "#0969da"}


def probability_svg(trace: list[TokenTrace]) -> str:
    """A small plot of p_dev and p_stop along the answer (hover a point for its token); empty
    string when the heads gave no probabilities."""
    table = probability_table(trace)
    series = [Series(signal, [(float(r.position), float(r.probability),
                               f"{r.token!r} · {signal} {r.probability:.3f}")
                              for r in table[table.signal == signal].itertuples()], colour)
              for signal, colour in SIGNAL_COLOURS.items()]
    return line_chart([s for s in series if s.points], x_title="token position",
                      y_title="probability", x_range=(1, max(len(trace), 2)), y_range=(0, 1),
                      css_class="td-prob")


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def summary_markdown(result: GenerationResult) -> str:
    """One paragraph under the answer: length, stop reason, the signals' peaks, temperatures."""
    trace = result.trace
    devs = [p for p in (_prob(t.p_dev) for t in trace) if p is not None]
    temps = [t.temperature for t in trace if t.temperature is not None]
    rewritten = sum(1 for t in trace if t.rewritten)
    parts = [f"**{len(result.token_ids)} tokens**"]
    if result.stop_reason:
        parts.append(f"stopped by `{result.stop_reason}`")
    if result.creativity is not None:
        parts.append(f"creativity {result.creativity:.2f}")
    if devs:
        parts.append(f"p_dev max {max(devs):.2f} (mean {sum(devs) / len(devs):.2f})")
    if temps:
        parts.append(f"temperature {min(temps):.2f}–{max(temps):.2f}")
    if rewritten:
        parts.append(f"{rewritten} token(s) resampled or rewritten")
    if result.abstained:
        parts.append("**abstained**")
    notes = getattr(result, "notes", None) or []
    return " · ".join(parts) + "".join(f"\n\n> note: {n}" for n in notes)


def word_diff_html(before: str, after: str) -> str:
    """Word-level diff as HTML: removed words struck through in red, added words in green."""
    a, b = before.split(), after.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("delete", "replace"):
            out.append('<del style="background:#fdd">' + html.escape(" ".join(a[i1:i2]))
                       + "</del>")
        if op in ("insert", "replace"):
            out.append('<ins style="background:#dfd">' + html.escape(" ".join(b[j1:j2]))
                       + "</ins>")
        if op == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
    return " ".join(out)


def _candidate_text(c) -> str | None:
    if isinstance(c, dict):
        for key in ("text", "answer", "candidate"):
            if isinstance(c.get(key), str):
                return c[key]
    return c if isinstance(c, str) else None


def judge_html(judge: JudgeVerdict | None, final_text: str) -> str:
    """The judge panel: verdict, score against threshold, and each rewrite diffed against the
    first draft. Empty string when the result carries no verdict (no judge ran)."""
    if judge is None:
        return ""
    colour = {"accept": "#1a7f37", "rewritten": "#9a6700", "abstain": "#cf222e"}.get(
        judge.verdict, "#57606a")
    thr = "" if judge.threshold is None else f" (threshold {judge.threshold:.3f})"
    parts = [f'<div class="td-judge"><b>Judge:</b> <span style="color:{colour};font-weight:600">'
             f"{html.escape(judge.verdict)}</span> · risk score {judge.score:.3f}{thr}"]
    texts = [_candidate_text(c) for c in judge.rewrites]
    first = next((t for t in texts if t is not None), None)
    if first is not None:
        parts.append("<ol>")
        for i, (c, text) in enumerate(zip(judge.rewrites, texts, strict=True)):
            c = c if isinstance(c, dict) else {}
            head = "first draft" if i == 0 else f"rewrite {i}"
            if c.get("rewind_at") is not None:
                head += f" from token {int(c['rewind_at']) + 1}"
            if c.get("creativity") is not None:
                head += f" · creativity {float(c['creativity']):.2f}"
            if c.get("score") is not None:
                head += f" · score {float(c['score']):.3f}"
            body = html.escape(text or "") if i == 0 else word_diff_html(first, text or "")
            parts.append(f"<li><i>{html.escape(head)}</i><br>{body}</li>")
        parts.append("</ol>")
        if final_text != texts[-1]:
            parts.append(f"<p><i>final vs first draft:</i> {word_diff_html(first, final_text)}</p>")
    elif judge.rewrites:
        parts.append(f"<p>{len(judge.rewrites)} rewrite record(s) (no text to diff)</p>")
    parts.append("</div>")
    return "".join(parts)


def timings_markdown(timings: dict, n_tokens: int) -> str:
    """Timings on one line (seconds, counts, rates); tokens/s is derived from the total time
    only when the generator did not report a rate itself."""
    if not timings:
        return ""
    parts = []
    for k, v in timings.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        per = k.endswith("_per_s")
        name = k.replace("_per_s", " per s") if per else k.removesuffix("_s")
        name = name.replace("_", " ")
        if k.endswith("_s") and not per:
            parts.append(f"{name} {v:.3f} s")
        elif float(v).is_integer():
            parts.append(f"{name} {int(v)}")
        else:
            parts.append(f"{name} {v:.2f}")
    if not any("per_s" in k or k == "tokens_per_s" for k in timings):
        total = next((timings[k] for k in ("total_s", "total", "seconds")
                      if isinstance(timings.get(k), int | float)), None)
        if total and n_tokens:
            parts.append(f"tokens per s {n_tokens / total:.2f}")
    return "**Timings:** " + " · ".join(parts) if parts else ""


def matching_temperature(result: GenerationResult, fallback: float = 0.7) -> float:
    """The mean temperature tigerdecode actually sampled at (what plain sampling is given in the
    Compare tab); ``fallback`` when the trace recorded none. 0 stays 0 (greedy)."""
    temps = [t.temperature for t in result.trace if t.temperature is not None]
    return round(sum(temps) / len(temps), 3) if temps else fallback
