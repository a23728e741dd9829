"""What ``tigerdecode fit`` builds for a model, and how a time budget sizes it.

A :class:`Plan` holds every size (facts, open prompts, evaluation items), the decoding settings
and the layers the heads and judge read. :data:`FULL` is the recipe the default model's heads
came from; :data:`QUICK` a tiny one for tests. With a budget, :func:`plan_for_budget` scales the
number of facts (and with it the open prompts and evaluations) to the largest that fits the
minutes, from a cost model fed by a measured throughput (:class:`Throughput`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

N_MIN = 100  # facts: fewer leave too few held-out relations with both right and wrong answers
N_MAX = 2000  # facts: more costs memory and time for little (the shipped heads used 1,000-2,000)
STAGE_OVERHEAD_S = 5.0  # per stage: loading data, writing checkpoints


class FitError(RuntimeError):
    """``tigerdecode fit`` cannot run as asked; the message says why and how to fix it."""


@dataclass(frozen=True)
class Plan:
    """Sizes and settings of one fit (recorded in the work directory, so a rerun resumes it)."""

    n_qa: int  # facts from the train + validation relations, each asked in every form
    n_open: int  # open (creative) prompts
    n_eval: int  # facts of the held-out test relations for heads eval (completion form)
    n_judge_eval: int  # of those, answered end to end without and with the judge
    layers: list[int]  # stored by the data build; the judge reads them all
    candidates: list[list[int]]  # layer sets heads train tries
    qa_settings: str = "greedy,1.0:0.95"
    open_settings: str = "greedy,0.7:0.9,1.0:0.95"
    eval_settings: str = "greedy,1.0:0.95"
    qa_max_new_tokens: int = 32
    open_max_new_tokens: int = 40
    eval_max_new_tokens: int = 16
    judge_max_new_tokens: int = 16
    batch_size: int = 48
    open_batch_size: int = 50
    n_creative_eval: int = 20  # creative prompts in heads eval (p_factual) and judge eval
    max_epochs: int = 40
    why: str = ""  # how the sizes were chosen, in words
    estimates: dict = field(default_factory=dict)  # stage -> estimated seconds

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(**d)


def choose_layers(n_layers: int) -> tuple[list[int], list[list[int]]]:
    """Stored layers at 40/53/67/80 % of the depth (12, 16, 20, 24 of 30, as the default model's
    recipe) and the candidate sets heads train tries: the deeper ones alone and together."""
    if n_layers < 1:
        raise FitError(f"the model reports {n_layers} decoder layers; the heads need at least one")
    stored = sorted({min(n_layers, max(1, round(f * n_layers)))
                     for f in (0.4, 0.5333, 0.6667, 0.8)})
    tail = stored[1:] if len(stored) > 2 else stored
    return stored, [[x] for x in tail] + ([list(tail)] if len(tail) > 1 else [])


def full_plan(n_layers: int) -> Plan:
    layers, cands = choose_layers(n_layers)
    return Plan(n_qa=1000, n_open=99, n_eval=300, n_judge_eval=96, layers=layers,
                candidates=cands, why="the full recipe (no --budget-minutes)")


def quick_plan(n_layers: int) -> Plan:
    layers, cands = choose_layers(n_layers)
    return Plan(n_qa=48, n_open=12, n_eval=16, n_judge_eval=8, layers=layers, candidates=cands,
                qa_max_new_tokens=8, open_max_new_tokens=12, eval_max_new_tokens=8,
                judge_max_new_tokens=8, batch_size=16, open_batch_size=12, n_creative_eval=4,
                max_epochs=8, why="--quick: a tiny configuration for tests and a first look")


@dataclass(frozen=True)
class Throughput:
    """Measured on the model before a budgeted fit (``fit.measure``)."""

    decode_s_per_token: float  # one answer-token of a greedy data-build batch (hooks included)
    sample_s_per_token: float  # the same, sampled with top-p (a sort over the vocabulary a step)
    reencode_s_per_answer: float  # the judge's re-read of one answer
    forms_per_fact: float  # prompts per fact after the forms (3 for qa_wikidata relations)
    hidden_size: int
    seconds: float = 0.0  # what the measurement itself took

    def to_dict(self) -> dict:
        return asdict(self)

    def speed(self) -> str:
        return (f"{1 / self.decode_s_per_token:.0f} greedy / {1 / self.sample_s_per_token:.0f} "
                "sampled answer tokens/s")


def sized(base: Plan, n_qa: int, n_open_available: int) -> Plan:
    """``base`` with ``n_qa`` facts; open prompts and evaluations scale along."""
    return replace(base, n_qa=n_qa,
                   n_open=min(n_open_available, max(12, round(0.1 * n_qa))),
                   n_eval=min(300, max(24, round(0.3 * n_qa))),
                   n_judge_eval=min(96, max(16, round(0.1 * n_qa))))


def _n_settings(spec: str) -> int:
    return len([s for s in spec.split(",") if s.strip()])


def _per_token(spec: str, tp: Throughput) -> float:
    """Seconds per answer-token summed over the settings of ``spec`` (greedy is cheaper: top-p
    sorts the whole vocabulary every step, which a 262k vocabulary makes costly)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    return sum(tp.decode_s_per_token if p == "greedy" else tp.sample_s_per_token for p in parts)


SELECT_SPLITS = 3  # TrainConfig.select_splits, which the fit's heads stage keeps


def estimate(plan: Plan, tp: Throughput) -> dict[str, float]:
    """Seconds per stage (a cost model: decoding is per answer-token, the judge's data pass per
    answer, training per stored feature). Stages run in this order."""
    qa_answers = plan.n_qa * tp.forms_per_fact * _n_settings(plan.qa_settings)
    open_answers = plan.n_open * _n_settings(plan.open_settings)
    tokens = 0.7 * (qa_answers * plan.qa_max_new_tokens + open_answers * plan.open_max_new_tokens)
    width = tp.hidden_size * sum(len(s) for s in plan.candidates)
    judged = qa_answers * 2 / 3 + open_answers  # mixed answers are not judged
    est = {
        "data-qa": plan.n_qa * tp.forms_per_fact * plan.qa_max_new_tokens
        * _per_token(plan.qa_settings, tp),
        "data-open": plan.n_open * plan.open_max_new_tokens * _per_token(plan.open_settings, tp),
        # AdamW epochs over the features of every candidate (about 3 ns a feature an epoch), on
        # each of the topic splits the choice is averaged over (TrainConfig.select_splits)
        "heads": tokens * width * 3e-9 * plan.max_epochs / 2 * SELECT_SPLITS,
        # re-reading every answer, then 20 logistic regressions on (answers, 4 H) features
        "judge": judged * tp.reencode_s_per_answer
        + 20 * judged * len(plan.layers) * tp.hidden_size * 4e-8,
        "publish": 0.0,
        "eval-heads": (plan.n_eval + plan.n_creative_eval) * plan.eval_max_new_tokens
        * _per_token(plan.eval_settings, tp) + plan.n_eval * tp.reencode_s_per_answer * 2,
        # validation facts as questions and completions, controlled decoding at creativity 0
        # validation-relation facts in two forms plus as many easy validation facts
        "bars": plan.n_eval * 3 * plan.eval_max_new_tokens * tp.sample_s_per_token,
        # without and with the judge (controlled decoding is slower than a data build step,
        # a rejected answer is decoded again), plus the creative prompts
        "eval-judge": (plan.n_judge_eval * 4 + plan.n_creative_eval // 2 * 4)
        * plan.judge_max_new_tokens * tp.sample_s_per_token * 2,
        "card": 0.0,
    }
    return {k: round(v + STAGE_OVERHEAD_S, 1) for k, v in est.items()}


def plan_for_budget(budget_s: float, tp: Throughput, *, n_layers: int, pool: int,
                    n_open_available: int, spent_s: float = 0.0) -> Plan:
    """The largest plan whose estimate fits ``budget_s`` minus ``spent_s`` (loading the model
    and measuring it). A budget below the smallest plan is a ``FitError`` naming the minimum."""
    asked = budget_s
    budget_s = budget_s - spent_s
    base = full_plan(n_layers)
    top = min(N_MAX, pool)
    low = min(N_MIN, top)

    def cost(n: int) -> float:
        return sum(estimate(sized(base, n, n_open_available), tp).values())

    if cost(low) > budget_s:
        need = cost(low) + spent_s
        raise FitError(
            f"a budget of {asked / 60:g} minutes is too small to build anything useful: the "
            f"smallest fit ({low} facts) takes about {need / 60:.1f} minutes on this machine "
            f"(measured {tp.speed()}). Give --budget-minutes "
            f"{int(need / 60) + 1} or more, or --quick for a tiny trial run.")
    lo, hi = low, top  # cost(lo) fits; find the largest n that does
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= budget_s:
            lo = mid
        else:
            hi = mid - 1
    plan = sized(base, lo, n_open_available)
    total = sum(estimate(plan, tp).values())
    capped = " (the most this command uses)" if lo == top and cost(top) < budget_s else ""
    why = (f"--budget-minutes {asked / 60:g}: measured {tp.speed()}; "
           f"chose {lo} facts{capped}, {plan.n_open} open prompts, {plan.n_eval} "
           f"held-out facts to evaluate; estimated {total / 60:.1f} minutes after "
           f"{spent_s:.0f} s of loading and measuring")
    return replace(plan, why=why, estimates=estimate(plan, tp))


def resources(plan: Plan, tp: Throughput) -> dict[str, float]:
    """Bytes the plan needs: ``disk`` (fp16 states of every stored layer, per token) and
    ``memory`` (heads train holds the stored layers in fp16 and the widest candidate in fp32,
    train and validation copies)."""
    qa_answers = plan.n_qa * tp.forms_per_fact * _n_settings(plan.qa_settings)
    open_answers = plan.n_open * _n_settings(plan.open_settings)
    tokens = qa_answers * plan.qa_max_new_tokens + open_answers * plan.open_max_new_tokens
    h = tp.hidden_size
    widest = max(len(s) for s in plan.candidates)
    return {"tokens": tokens,
            "disk": tokens * len(plan.layers) * h * 2 * 1.1,
            "memory": tokens * h * (len(plan.layers) * 2 + widest * 4 * 3)}
