"""The risk-coverage curves: peaks read from the first fact slot of a factual request, bars from
the error budget, on hand-made answers."""

import numpy as np
import pytest

from tigerdecode.eval.risk import choose_bar, curve, level, peaks
from tigerdecode.policy.knob import Policy
from tigerdecode.result import GenerationResult, TokenTrace


def _result(steps, p_factual=0.9):
    """steps: (token, p_slot read before it, p_risk read before it, p_dev after it)."""
    trace = [TokenTrace(token=w, token_id=0, p_slot=s, p_risk=r, p_dev=d, top_logprob=-0.5 * i)
             for i, (w, s, r, d) in enumerate(steps)]
    return GenerationResult(text="x", token_ids=[0] * len(steps), trace=trace,
                            p_factual=p_factual)


def test_peaks_start_at_the_first_fact_slot_of_a_factual_request():
    pol = Policy(0.0)  # a fact slot: p_slot >= abstain_slot = 0.5
    steps = [(" The", 0.1, 0.99, 0.99), (" capital", 0.2, 0.9, 0.98), (" is", 0.3, 0.1, 0.2),
             (" Par", 0.8, 0.7, 0.3), ("is", 0.9, 0.2, 0.6), (".", 0.1, 0.1, 0.95)]
    # risk: read at " Par"; dev: content tokens from " Par" on (the "." is not content)
    # the fourth value: the mean top-token log-probability (-0.5 * (0 + 1 + ... + 5) / 6)
    assert peaks(_result(steps), pol) == pytest.approx((0.7, 0.6, 0.0, -1.25))
    assert peaks(_result(steps, p_factual=0.2), pol) == (0.0, 0.0, 0.0, 0.0)  # creative
    # never reaches a fact slot: kept by default, abstained at its end with abstain_no_slot
    assert peaks(_result(steps[:3]), pol) == pytest.approx((0.0, 0.0, 0.0, -0.5))
    no_slot = Policy(0.0, abstain_no_slot=True)
    assert peaks(_result(steps[:3]), no_slot) == pytest.approx((0.0, 0.0, 1.0, -0.5))
    assert peaks(_result(steps[:3], p_factual=0.2), no_slot) == (0.0, 0.0, 0.0, 0.0)


def test_curve_and_the_bar_within_budget():
    right = np.array([0.1, 0.2, 0.3, 0.9])  # one right answer looks risky
    wrong = np.array([0.6, 0.8, 0.95])
    rows = curve(right, wrong, np.array([0.0, 0.0]), bars=(0.5, 0.7, 0.85, 0.925, 1.0))
    by = {r["bar"]: r for r in rows}
    assert by[0.5]["right_kept"] == 0.75 and by[0.5]["wrong_caught"] == 1.0
    assert by[0.5]["coverage"] == pytest.approx(3 / 7) and by[0.5]["error_among_answered"] == 0
    assert by[0.85]["right_kept"] == 0.75 and by[0.925]["right_kept"] == 1.0
    assert by[0.85]["error_among_answered"] == pytest.approx(2 / 5)
    assert all(r["creative_abstain"] == 0 for r in rows)
    assert choose_bar(rows, 0.25) == 0.5  # losing one right answer of four is within 25%
    assert choose_bar(rows, 0.05) == 0.925  # a 5% budget keeps every right answer
    assert choose_bar(curve(np.array([1.0]), wrong, np.array([]), bars=(0.5,)), 0.0) == 1.0


def test_level_picks_the_dev_bar_then_a_risk_bar_within_the_same_budget():
    # (risk, dev) peaks: 20 right answers, 10 wrong; dev separates half the wrong ones
    right = [(0.2, 0.3)] * 19 + [(0.9, 0.3)]
    wrong = [(0.95, 0.97)] * 5 + [(0.95, 0.3)] * 3 + [(0.3, 0.3)] * 2
    lv = level(right, wrong, [(0.99, 0.99)], budget=0.04)  # may lose none of the 20
    assert lv["dev_bar"] == 0.325  # the lowest bar above every right answer's 0.3
    assert lv["risk_bar"] == 0.925  # catches the 3 risky wrong ones, keeps the 0.9 right one
    assert lv["chosen"]["right_kept"] == 1.0 and lv["chosen"]["wrong_caught"] == 0.8
    assert lv["creative_abstain"] == 1  # counted, so a run shows it


def test_answers_without_a_fact_slot_count_against_the_budget_under_every_bar():
    # (risk, dev, no slot): 20 right answers, one of them never reached a fact slot
    right = [(0.2, 0.3, 0.0)] * 19 + [(0.0, 0.0, 1.0)]
    wrong = [(0.2, 0.97, 0.0)] * 5 + [(0.0, 0.0, 1.0)] * 3 + [(0.2, 0.3, 0.0)] * 2
    lv = level(right, wrong, [(0.0, 0.0, 0.0)], budget=0.05)  # one right answer may go
    assert lv["no_slot"] == {"right": 1, "wrong": 3, "creative": 0}
    assert lv["dev_bar"] == 0.325  # the unslotted right answer already spent the budget
    assert lv["chosen"]["right_kept"] == 0.95 and lv["chosen"]["wrong_caught"] == 0.8
    assert all(r["right_kept"] <= 0.95 for r in lv["dev_curve"])  # abstained under every bar
    assert lv["creative_abstain"] == 0


def test_no_bars_from_a_handful_of_right_answers():
    """Three right answers against a 5% budget would choose the lowest bar there is: with
    fewer than MIN_RIGHT the table says so and no bars are returned."""
    from tigerdecode.eval import risk

    lv = risk.level([[0.2, 0.3]] * 3, [[0.9, 0.95]] * 50, [[0.1, 0.1]] * 5, 0.05)
    res = {"budget": 0.05, "levels": [{"creativity": 0.0, **lv}], "abstain_at": None,
           "abstain_rise": None, "risk_at": None, "risk_rise": None, "too_few_right": 3}
    assert "no bars chosen: 3 right answers" in risk.table(res)


def test_a_part_needs_fewer_right_answers_than_the_whole():
    """With parts, 20 right answers in all and 10 in each part are enough (17 + 30, as the
    default model's fit gave): a part of 9 is still too few, and the table says which."""
    from tigerdecode.eval import risk
    from tigerdecode.qa.data import QAItem

    def run(n_hard, n_easy):
        items = ([QAItem(prompt=f"Where is hard {i}?", answers=["Paris"]) for i in range(n_hard)]
                 + [QAItem(prompt=f"Where is easy {i}?", answers=["Paris"]) for i in range(n_easy)]
                 + [QAItem(prompt=f"Where is wrong {i}?", answers=["Rome"]) for i in range(10)])

        class Gen:
            def generate_text(self, prompts, **kw):
                tr = [TokenTrace(token=" Paris", token_id=0, p_slot=0.9, p_risk=0.1, p_dev=0.2,
                                 top_logprob=-0.3)]
                return [GenerationResult(text="Paris.", token_ids=[0], trace=tr, p_factual=0.9)
                        for _ in prompts]

        parts = ["hard"] * n_hard + ["easy"] * n_easy + ["hard"] * 10
        return risk.run(Gen(), items, [], [0.0], progress=False, parts=parts)

    assert risk.chosen_bars(run(17, 30)) is not None
    short = run(9, 30)
    assert risk.chosen_bars(short) is None and short["too_few_in"] == "part"
    assert "9 right answers in a part at some creativity, fewer than 10" in risk.table(short)
    assert run(5, 12)["too_few_in"] == "all"


def test_logprob_and_dev_bars_are_chosen_together_within_the_budget_of_every_part():
    """(risk, dev, no slot, mean log-prob) peaks. The easy part's right answers look risky to
    p_dev (0.92) but the model wrote them surely (-0.2); the hard part's wrong answers are
    unsure (-2). A p_dev bar that keeps the easy part would catch nothing: the pair chosen
    catches the unsure wrong answers by log-probability and keeps both parts whole."""
    hard_right = [(0.1, 0.5, 0.0, -0.4)] * 20
    easy_right = [(0.1, 0.92, 0.0, -0.2)] * 20
    wrong = [(0.1, 0.95, 0.0, -2.0)] * 10 + [(0.1, 0.6, 0.0, -2.0)] * 6 + \
        [(0.1, 0.3, 0.0, -0.3)] * 4
    parts = np.array(["hard"] * 20 + ["easy"] * 20, dtype=object)
    # p_dev alone, budget in every part: the bar must clear the easy answers' 0.92
    alone = level(hard_right + easy_right, wrong, [(0.0,) * 4], 0.04, parts=parts)
    assert alone["dev_bar"] == 0.925 and "logprob_bar" not in alone
    assert alone["parts"] == {"easy": {"n_right": 20, "right_kept": 1.0},
                              "hard": {"n_right": 20, "right_kept": 1.0}}
    both = level(hard_right + easy_right, wrong, [(0.0,) * 4], 0.04, logprob=True, parts=parts)
    assert both["logprob_bar"] == pytest.approx(-0.4)  # below every right answer's, above -2
    assert both["chosen"]["wrong_caught"] == pytest.approx(0.8)  # the 16 unsure wrong ones
    assert both["chosen"]["right_kept"] == 1.0
    assert both["parts"]["easy"]["right_kept"] == both["parts"]["hard"]["right_kept"] == 1.0
    chosen = next(r for r in both["logprob_curve"] if r["bar"] == both["logprob_bar"])
    assert chosen["wrong_caught"] == pytest.approx(0.8) and chosen["creative_abstain"] == 0
    # without parts the pooled budget lets p_dev lose one right answer in 40: same catch here
    pooled = level(hard_right + easy_right, wrong, [(0.0,) * 4], 0.04, logprob=True)
    assert pooled["chosen"]["wrong_caught"] >= both["chosen"]["wrong_caught"]


def test_the_knob_relaxes_the_logprob_bar_to_catch_a_shrinking_share_of_wrong_answers():
    """At the first creativity the budget chooses the log-probability bar; at creativity c the
    relaxed line's bar is the highest one catching at most (1 - c) of the share of wrong answers
    it caught there, and logprob_drop is relax times that line's slope."""
    from tigerdecode.eval import risk
    from tigerdecode.qa.data import QAItem

    # 20 right answers written surely (-0.2); 10 wrong ones spread from -2.0 to -1.1
    lps = {f"right {i}": -0.2 for i in range(20)}
    lps |= {f"wrong {i}": -2.0 + 0.1 * i for i in range(10)}
    items = [QAItem(prompt=f"Where is {k}?", answers=["Paris" if k.startswith("right") else "Rome"])
             for k in lps]

    class Gen:
        def generate_text(self, prompts, **kw):
            out = []
            for p in prompts:
                key = next((k for k in lps if f"Where is {k}?" in p), None)
                tr = [TokenTrace(token=" Paris", token_id=0, p_slot=0.9, p_risk=0.1, p_dev=0.1,
                                 top_logprob=lps.get(key, -0.1))]
                out.append(GenerationResult(text="Paris.", token_ids=[0], trace=tr,
                                            p_factual=0.9 if "Where" in p else 0.1))
            return out

    res = risk.run(Gen(), items, ["Write a poem."], [0.0, 0.5], budget=0.05, progress=False,
                   relax=1.0)
    first, half = res["levels"]
    # the budget keeps every right answer (-0.2) and catches all ten wrong ones (below -1.05)
    assert first["logprob_alone_caught"] == 1.0
    # at c = 0.5: catch at most half of them; the highest such bar is -1.5 (catches -2.0..-1.6)
    assert half["logprob_relaxed"] == pytest.approx(-1.5)
    assert half["logprob_relaxed_caught"] == pytest.approx(0.5)
    assert res["logprob_drop"] == pytest.approx(2 * (first["logprob_bar"] + 1.5))
    assert "the knob relaxes it to -1.5" in risk.table(res) and "(relax 1)" in risk.table(res)
    # relax scales the slope: half way by default, flat at 0
    half_way = risk.run(Gen(), items, ["Write a poem."], [0.0, 0.5], progress=False)
    assert half_way["logprob_drop"] == pytest.approx(res["logprob_drop"] / 2)
    flat = risk.run(Gen(), items, ["Write a poem."], [0.0, 0.5], progress=False, relax=0.0)
    assert flat["logprob_drop"] == 0.0
    # a bar that rose with creativity would abstain more the more creative: never chosen
    bars = risk.chosen_bars(res)
    assert bars["logprob_drop"] > 0
    assert Policy(0.5, **bars).logprob_threshold < Policy(0.0, **bars).logprob_threshold
