"""Judge, then rewrite: score finished answers, rewind rejected ones and re-decode the risky
span more conservatively, or abstain.

The judge's features come from the decode that wrote each answer (``decode(...,
read_layers=)``: the states and distributions it computed anyway), so judging costs no pass
over the answers. Per rejected row: rewind to the first answer token whose risk (the heads'
``p_dev``, or ``1 - p(token)`` without heads) reaches the threshold (the riskiest token when
none does), ban the token that was there, and decode again from there with the factual member
alone at creativity ``c * (1 - a / max_rewrites)`` for attempt ``a``, so the last attempt is
greedy. The decode that wrote the answer kept its KV cache (``keep_answers``), so the rewound
prefix is a gather of cached positions, nothing recomputed. Rows are judged and rewritten
independently (the rows still rejected form each attempt's batch).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from tigerdecode.decode.loop import Control, decode
from tigerdecode.decode.output import pad_id_of, to_results
from tigerdecode.decode.sampling import NEG_INF, eos_ids_of
from tigerdecode.judge.features import rewind_cache, strip_padding
from tigerdecode.judge.model import resolve_judge
from tigerdecode.policy.control import PolicyControl
from tigerdecode.policy.knob import Policy
from tigerdecode.result import JudgeVerdict

ON_REJECT = ("abstain", "best")
MAX_REWRITES_LIMIT = 8
# chosen on validation relations (docs/results/judge.md): one greedy rewrite within 0.3 of the
# first answers' tokens kept the accuracy of two unlimited rewrites at about half the time
DEFAULT_MAX_REWRITES = 1
DEFAULT_REWRITE_BUDGET = 0.3
# also on validation relations (docs/results/scripts/rewind_points.py): of 26 rewrites from an
# answer's first 6 tokens none was accepted and right, and they are the longest rewrites (the
# batch of rewrites decodes in lockstep to its longest row); any bar from 2 to 6 left every
# verdict as it was, 4 is the middle of that range
DEFAULT_MIN_REWIND = 4
MIN_REWIND_LIMIT = 4096


def check_max_rewrites(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_REWRITES_LIMIT:
        raise ValueError(f"max_rewrites must be an integer in [0, {MAX_REWRITES_LIMIT}], got "
                         f"{n!r}; 0 judges without rewriting")
    return n


def check_rewrite_budget(b) -> float | None:
    if b is None:
        return None
    if isinstance(b, bool) or not isinstance(b, int | float) or not (
            0 <= b <= 100 or b == math.inf):
        raise ValueError(f"rewrite_budget must be a number in [0, 100] (the tokens rewrites may "
                         f"write, as a share of the first answers' tokens) or inf (no limit), "
                         f"got {b!r}")
    return float(b)


def check_min_rewind(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MIN_REWIND_LIMIT:
        raise ValueError(f"min_rewind must be an integer in [0, {MIN_REWIND_LIMIT}] (the answer "
                         f"tokens a rewrite keeps at least), got {n!r}; 0 lets a rewrite start "
                         f"at the answer's first token")
    return n


def within_budget(costs: list[int], left: float) -> list[bool]:
    """Which rewrites fit in ``left`` tokens, cheapest first (ties by row order)."""
    ok = [False] * len(costs)
    for k in sorted(range(len(costs)), key=costs.__getitem__):
        if costs[k] > left:
            break
        ok[k], left = True, left - costs[k]
    return ok


@dataclass
class JudgeSettings:
    """How a rejected answer is handled (``threshold=None``: the judge's creativity default)."""

    max_rewrites: int = DEFAULT_MAX_REWRITES
    threshold: float | None = None
    on_reject: str = "abstain"  # or "best": the best-scored candidate, marked as rejected
    abstain_message: str = "I don't know."
    # the tokens all rewrites together may write, as a share of the tokens the first decode
    # wrote (inf or None: no limit); the cheapest rewrites (shortest rewound spans) go first
    rewrite_budget: float | None = DEFAULT_REWRITE_BUDGET
    # a rewrite keeps at least this many of the answer's first tokens: a rejected answer whose
    # rewind point comes earlier ends rejected without one
    min_rewind: int = DEFAULT_MIN_REWIND

    def __post_init__(self):
        check_max_rewrites(self.max_rewrites)
        check_min_rewind(self.min_rewind)
        check_rewrite_budget(self.rewrite_budget)
        if self.rewrite_budget is None:
            self.rewrite_budget = math.inf
        if self.threshold is not None and not (isinstance(self.threshold, int | float)
                                               and 0 < self.threshold <= 1):
            raise ValueError(f"judge_threshold must be a number in (0, 1], got "
                             f"{self.threshold!r}")
        if self.on_reject not in ON_REJECT:
            raise ValueError(f"on_reject must be one of {ON_REJECT}, got {self.on_reject!r}")


class BanAtStart(Control):
    """Wraps a control so that the first step of a re-decode cannot repeat rejected tokens."""

    def __init__(self, inner: Control, banned: list[list[int]]):
        self.inner, self.banned = inner, banned
        self.policy, self.name, self.tap_layers = inner.policy, inner.name, inner.tap_layers
        self.max_retries, self.abstains = inner.max_retries, inner.abstains
        self.abstain_slot = inner.abstain_slot

    def decide(self, signals, batch, device):
        return self.inner.decide(signals, batch, device)

    def retry(self, d, attempt):
        return self.inner.retry(d, attempt)

    def scores(self, logits, d, ctx):
        s = self.inner.scores(logits, d, ctx)
        if ctx.step == 0:
            s = s.clone()  # (R, V); the inner scores may alias the model's logits
            for r, ids in enumerate(self.banned):
                s[r, ids] = NEG_INF
        return s

    def observe(self, tokens, ctx):
        self.inner.observe(tokens, ctx)


def rewind_point(risk: list[float], threshold: float) -> int:
    """The first token whose risk reaches the threshold, else the riskiest (0 if none)."""
    for j, r in enumerate(risk):
        if r >= threshold:
            return j
    return max(range(len(risk)), key=risk.__getitem__) if risk else 0


def read_layers(judge, heads) -> list[int]:
    """The layers the first decode keeps for ``judge`` (its own, and the heads' when it reads
    them)."""
    return sorted(set(judge.config.layers) | (set(heads.layers) if (
        heads is not None and judge.config.heads_digest is not None) else set()))


def rewrites_possible(settings: JudgeSettings) -> bool:
    """Whether the judge may rewrite (so the decode must keep its cache for it)."""
    return settings.max_rewrites > 0 and settings.rewrite_budget > 0


def _kv_sources(kept, rows: slice | range):
    """Per row of a decode's kept cache (``decode(keep_cache=True, keep_answers=True)``):
    ``(cache, row, mask)``, the mask (1-D) saying which of the cache's columns hold that row's
    prompt and written tokens, in order."""
    cache, _, prompt_mask = kept
    extra = cache.get_seq_length() - prompt_mask.shape[1]  # one column per step fed
    full = torch.cat([prompt_mask, prompt_mask.new_ones(prompt_mask.shape[0], extra)], dim=1)
    return [(cache, r, full[r]) for r in range(rows.start or 0, rows.stop)]


def judge_and_rewrite(gen, out, results, prompt_ids, creativity: float, max_new_tokens: int,
                      settings: JudgeSettings, judge, seed=None, policy_overrides=None):
    """Fill ``result.judge`` for every row; replace rejected answers by accepted rewrites, an
    abstention or the best candidate. ``out``: the first decode, run with ``read_layers=
    read_layers(judge, heads)`` and, where rewrites may follow (:func:`rewrites_possible`),
    ``keep_cache=True, keep_answers=True``; ``prompt_ids``: member 0's prompt token ids per
    row."""
    t0 = time.perf_counter()
    model, tok = gen.model, gen.tokenizer
    eos = eos_ids_of(tok.eos_token_id)
    pad = pad_id_of(tok, model)
    thr = settings.threshold if settings.threshold is not None else judge.threshold(creativity)
    B = len(results)
    heads = gen.heads if judge.config.heads_digest is not None else None
    layers = read_layers(judge, heads)
    if out.reads is None or any(x not in out.reads[0].states for x in layers):
        raise ValueError(f"the judge needs the decode's reads of layers {layers}: decode with "
                         "read_layers=read_layers(judge, heads)")
    if rewrites_possible(settings) and out.kept is None:
        raise ValueError("the judge rewrites into the decode's cache: decode with "
                         "keep_cache=True, keep_answers=True")
    cands = [[{"ids": r.token_ids, "trace": r.trace, "ended": r.stop_reason == "eos",
               "text": r.text, "attempt": 0, "creativity": creativity, "rewind_at": None,
               "span": r.text, "read": out.reads[i]}] for i, r in enumerate(results)]

    def judge_rows(rows):
        cs = [cands[i][-1] for i in rows]
        score, r = judge.score_reads([c["read"] for c in cs], [c["ids"] for c in cs],
                                     [c["ended"] for c in cs], heads=heads)
        for k, c in enumerate(cs):
            c.update(score=float(score[k]), risk=r.token_risk[k],
                     signals=dict(zip(r.scalar_names, r.scalars[k].tolist(), strict=True)))
        return [i for i in rows if cands[i][-1]["score"] >= thr and not results[i].abstained]

    rejected = judge_rows(list(range(B)))
    if rejected and rewrites_possible(settings):
        for c, kv in zip((cs[0] for cs in cands), _kv_sources(out.kept, out.kept_rows),
                         strict=True):
            c["kv"] = kv
    left = settings.rewrite_budget * max(1, sum(len(r.token_ids) for r in results
                                                if not r.abstained))
    over = []  # rejected rows the budget left without a rewrite
    early = []  # rejected rows whose rewind point came before min_rewind
    for attempt in range(1, settings.max_rewrites + 1):
        if not rejected:
            break
        c_a = creativity * (1 - attempt / settings.max_rewrites)
        js = [rewind_point(cands[i][-1]["risk"], thr) for i in rejected]
        # a rewrite from the answer's first tokens is a second guess at the whole answer
        rejected, js, out_ = _keep(rejected, js, [j >= settings.min_rewind for j in js])
        early += out_
        # a rewrite writes about the span it replaces
        rejected, js, out_ = _keep(rejected, js, within_budget(
            [max(1, len(cands[i][-1]["ids"]) - j) for i, j in zip(rejected, js, strict=True)],
            left))
        over += out_
        if not rejected:
            break
        prev = [cands[i][-1] for i in rejected]
        banned = []
        for i, j, c in zip(rejected, js, prev, strict=True):
            seen = {(x["ids"][j] if j < len(x["ids"]) else eos[0]) for x in cands[i]
                    if x["ids"][:j] == c["ids"][:j] and (j < len(x["ids"]) or x["ended"])}
            banned.append(sorted(seen))
        # the rewound prefix: prompt + answer[:j]; the decode that wrote it kept its cache,
        # cut here to all but its last token, which is fed again
        rows_in = [prompt_ids[i] + list(c["ids"][:j]) for i, j, c in zip(rejected, js, prev,
                                                                          strict=True)]
        cache, mask = rewind_cache(model, prev[0]["kv"][0], [c["kv"][1] for c in prev],
                                   [c["kv"][2] for c in prev], [len(x) - 1 for x in rows_in])
        W = mask.shape[1]
        ids = torch.full((len(rows_in), W + 1), pad, dtype=torch.long)
        for r, x in enumerate(rows_in):
            ids[r, W + 1 - len(x):] = torch.tensor(x)
        mask = torch.cat([mask, mask.new_ones(len(rows_in), 1)], dim=1)
        control = BanAtStart(PolicyControl(Policy(c_a, **(policy_overrides or {})), 1), banned)
        budget = max(1, max_new_tokens - min(js))
        more = attempt < settings.max_rewrites  # a later attempt rewinds into this one
        sub = decode([(model, ids, mask)], control, max_new_tokens=budget, eos_ids=eos,
                     pad_id=pad, heads=gen.heads, tokenizer=tok,
                     seed=None if seed is None else seed + 7919 * attempt,
                     prefix_cache=cache, read_layers=layers, keep_cache=more,
                     keep_answers=more,
                     # each row writes at most what fits in its answer's token limit
                     row_max_new_tokens=[max_new_tokens - j for j in js])
        new = to_results(sub, tok, None, c_a, "tigerdecode", control, [])
        kvs = _kv_sources(sub.kept, sub.kept_rows) if more else [None] * len(new)
        for i, j, c, res, rd, kv in zip(rejected, js, prev, new, sub.reads, kvs, strict=True):
            room = max_new_tokens - j
            body, trace = res.token_ids[:room], res.trace[:room]
            left -= len(body)
            for t in trace:
                t.rewritten = True
            ids_new = list(c["ids"][:j]) + body
            cands[i].append({"ids": ids_new, "trace": list(c["trace"][:j]) + trace,
                             "ended": res.stop_reason == "eos" and len(res.token_ids) <= room,
                             "text": tok.decode(ids_new, skip_special_tokens=True).strip(),
                             "attempt": attempt, "creativity": c_a, "rewind_at": j,
                             "span": tok.decode(body, skip_special_tokens=True),
                             "policy_abstained": res.abstained,
                             "read": c["read"].then(j, rd), "kv": kv})
        rejected = [i for i in judge_rows(rejected)
                    if not cands[i][-1].get("policy_abstained")]
    _finish(results, cands, rejected + over + early, thr, settings, time.perf_counter() - t0)
    for i in over:
        results[i].notes.append("the judge's rewrite budget was spent: not rewritten")
    for i in early:
        results[i].notes.append(f"the judge's rewind point came before the answer's token "
                                f"{settings.min_rewind} (min_rewind): not rewritten")
    return results


def _keep(rows: list[int], js: list[int], ok: list[bool]):
    """``(rows kept, their rewind points, rows left out)``."""
    kept = [(i, j) for i, j, y in zip(rows, js, ok, strict=True) if y]
    return [i for i, _ in kept], [j for _, j in kept], [i for i, y in zip(rows, ok,
                                                                         strict=True) if not y]


def _finish(results, cands, rejected, thr, settings, seconds):
    rej = set(rejected)
    for i, res in enumerate(results):
        cs = cands[i]
        history = [{k: c.get(k) for k in ("attempt", "creativity", "rewind_at", "span", "text",
                                          "score", "ids", "signals")} for c in cs]
        for h in history:
            h["token_ids"] = h.pop("ids")
        final = cs[-1]
        if res.abstained:
            verdict = "abstain"
        elif final.get("policy_abstained"):
            verdict = "abstain"
            res.abstained, res.text, res.stop_reason = True, settings.abstain_message, "abstain"
        elif i not in rej:
            verdict = "accept" if len(cs) == 1 else "rewritten"
        elif settings.on_reject == "abstain":
            verdict = "abstain"
            res.abstained, res.text, res.stop_reason = True, settings.abstain_message, "judge"
        else:
            verdict = "best_of_rejected"
            final = min(cs, key=lambda c: c["score"])
        if not res.abstained:
            res.text, res.token_ids, res.trace = final["text"], list(final["ids"]), final["trace"]
            if final["attempt"]:
                res.stop_reason = "eos" if final["ended"] else "max_new_tokens"
        res.judge = JudgeVerdict(score=final["score"], verdict=verdict, threshold=thr,
                                 rewrites=history)
        res.timings["judge_s"] = seconds
        res.timings["total_s"] = res.timings.get("total_s", 0.0) + seconds
        if verdict == "best_of_rejected":
            res.notes.append("every candidate was rejected by the judge; this is the best-scored")


JUDGE_OPTIONS = ("judge", "max_rewrites", "judge_threshold", "on_reject", "judge_abstain_message",
                 "rewrite_budget", "min_rewind")


def pop_judge_options(overrides: dict):
    """Take the judge's options out of ``generate_text``'s keyword arguments: ``None`` when
    ``judge`` is off, else ``(judge spec, JudgeSettings)``."""
    opts = {k: overrides.pop(k) for k in JUDGE_OPTIONS if k in overrides}
    spec = opts.pop("judge", False)
    if "max_rewrites" in opts:
        check_max_rewrites(opts["max_rewrites"])
    if spec is None or spec is False:
        if opts:
            raise ValueError(f"{sorted(opts)} only apply with judge=True")
        return None
    settings = JudgeSettings(max_rewrites=opts.get("max_rewrites", DEFAULT_MAX_REWRITES),
                             threshold=opts.get("judge_threshold"),
                             on_reject=opts.get("on_reject", "abstain"),
                             rewrite_budget=opts.get("rewrite_budget", JudgeSettings.rewrite_budget),
                             min_rewind=opts.get("min_rewind", JudgeSettings.min_rewind))
    if opts.get("judge_abstain_message") is not None:
        settings.abstain_message = str(opts["judge_abstain_message"])
    return spec, settings


def judge_of(gen, judging):
    """The judge ``judging`` asks for, resolved once per generator (cached on it)."""
    spec, _ = judging
    cached = getattr(gen, "_judge", None)
    if cached is None or cached[0] is not spec:
        gen._judge = (spec, resolve_judge(gen.model, gen.tokenizer, spec))
    return gen._judge[1]


def apply_judge(gen, out, results, members, creativity, max_new_tokens, seed, judging,
                policy_overrides):
    """Judge/rewrite ``results`` in place (``out``: their decode, with the reads
    ``read_layers(judge_of(gen, judging), gen.heads)``)."""
    _, settings = judging
    if "judge_abstain_message" not in policy_overrides and "abstain_message" in policy_overrides:
        settings.abstain_message = policy_overrides["abstain_message"]
    prompt_ids = strip_padding(members[0][1], members[0][2])
    return judge_and_rewrite(gen, out, results, prompt_ids, creativity, max_new_tokens,
                             settings, judge_of(gen, judging), seed=seed,
                             policy_overrides=policy_overrides)


def judged_tokens(results, tokenizer, pad_id: int, eos_id: int) -> torch.Tensor:
    """(B, N) new tokens after judging, as ``model.generate`` lays them out: each row's final
    answer (the abstention message's tokens when it abstained), EOS where it ended, then pad."""
    rows = []
    for r in results:
        if r.abstained:
            ids = tokenizer(r.text, add_special_tokens=False)["input_ids"] + [eos_id]
        else:
            ids = list(r.token_ids) + ([eos_id] if r.stop_reason == "eos" else [])
        rows.append(ids)
    width = max(1, max(len(x) for x in rows))
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, x in enumerate(rows):
        out[i, :len(x)] = torch.tensor(x, dtype=torch.long)
    return out
