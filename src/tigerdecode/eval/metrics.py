"""Metrics of the trade-off evaluation, each computed from the generated outputs.

Factual task: accuracy, error rate (answered and wrong), abstention rate, precision (right /
answered). Creative task: distinct-n (Li et al. 2016: unique n-grams / all n-grams, pooled over
every output of one setting), self-BLEU (Zhu et al. 2018, Texygen: BLEU-4 of each sample against
the other samples of the same prompt, averaged; lower = more diverse), and the degeneration rate
(outputs stuck in a repetition loop).
"""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens: the unit of every diversity metric here."""
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams over all n-grams, pooled over ``texts``; 0.0 when there are none."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: list[str], references: list[list[str]], max_n: int = 4) -> float:
    """Sentence BLEU with uniform weights, clipped counts over several references, the brevity
    penalty against the closest reference length, and add-epsilon smoothing of zero counts
    (Chen & Cherry 2014, method 1) so short texts do not collapse to 0."""
    if not hypothesis or not references:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(ngrams(hypothesis, n))
        total = sum(hyp.values())
        if total == 0:
            return 0.0
        max_ref: Counter = Counter()
        for ref in references:
            for g, c in Counter(ngrams(ref, n)).items():
                max_ref[g] = max(max_ref[g], c)
        clipped = sum(min(c, max_ref[g]) for g, c in hyp.items())
        log_p += math.log((clipped if clipped > 0 else 0.1) / total) / max_n
    h = len(hypothesis)
    r = min((abs(len(ref) - h), len(ref)) for ref in references)[1]
    bp = 1.0 if h > r else math.exp(1 - r / max(h, 1))
    return bp * math.exp(log_p)


def self_bleu(samples: list[str]) -> float:
    """Mean BLEU-4 of each sample against the others (needs at least two samples)."""
    toks = [words(s) for s in samples]
    if len(toks) < 2:
        raise ValueError("self-BLEU needs at least two samples of one prompt")
    scores = [bleu(t, toks[:i] + toks[i + 1:]) for i, t in enumerate(toks)]
    return sum(scores) / len(scores)


def is_degenerate(text: str, *, min_repeats: int = 3, max_span: int = 8,
                  dup_fraction: float = 0.5) -> bool:
    """True when the output is stuck in a loop.

    Two signs, either suffices: the text *ends* in the same span of 1..``max_span`` words
    repeated ``min_repeats`` or more times back to back ("the balcony of the balcony of the
    balcony of"), or more than ``dup_fraction`` of its 4-grams are repeats of earlier ones.
    """
    toks = words(text)
    for span in range(1, max_span + 1):
        if len(toks) < span * min_repeats:
            break
        tail = toks[-span:]
        reps = 1
        while (reps + 1) * span <= len(toks) and \
                toks[-(reps + 1) * span: -reps * span] == tail:
            reps += 1
        if reps >= min_repeats:
            return True
    grams = ngrams(toks, 4)
    if len(grams) >= 8:
        return 1 - len(set(grams)) / len(grams) > dup_fraction
    return False


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when undefined."""
    if len(x) != len(y) or len(x) < 2:
        return float("nan")

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx > 0 and vy > 0 else float("nan")


def factual_rates(outcomes: list[str]) -> dict[str, float]:
    """Rates over all answers from per-answer outcomes "right" / "wrong" / "abstain"."""
    bad = set(outcomes) - {"right", "wrong", "abstain"}
    if bad:
        raise ValueError(f"outcomes must be right/wrong/abstain, got {sorted(bad)}")
    n = len(outcomes)
    if n == 0:
        raise ValueError("no factual answers to score")
    c = Counter(outcomes)
    answered = c["right"] + c["wrong"]
    return {
        "accuracy": c["right"] / n,
        "error_rate": c["wrong"] / n,
        "abstain_rate": c["abstain"] / n,
        "precision": c["right"] / answered if answered else float("nan"),
    }
