"""The risk-coverage curve: peaks read only at fact slots of factual requests, bars from the
error budget, on hand-made answers."""

import numpy as np
import pytest

from tigerdecode.eval.risk import choose_bar, curve, peak_risk
from tigerdecode.policy.knob import Policy
from tigerdecode.result import GenerationResult, TokenTrace


def _result(steps, p_factual=0.9):
    trace = [TokenTrace(token="x", token_id=0, p_slot=s, p_risk=r) for s, r in steps]
    return GenerationResult(text="x", token_ids=[0] * len(steps), trace=trace,
                            p_factual=p_factual)


def test_peak_is_read_at_fact_slots_of_factual_requests_only():
    pol = Policy(0.0)  # slot when 10 * p_slot >= 0.5
    r = _result([(0.01, 0.99), (0.2, 0.4), (0.06, 0.7), (None, 0.9)])
    assert peak_risk(r, pol) == pytest.approx(0.7)  # the 0.99 is not at a slot
    assert peak_risk(_result([(0.9, 0.8)], p_factual=0.2), pol) == 0.0  # a creative request
    assert peak_risk(_result([(0.01, 0.8)]), pol) == 0.0  # no slot at all


def test_curve_and_the_bar_within_budget():
    right = np.array([0.1, 0.2, 0.3, 0.9])  # one right answer looks risky
    wrong = np.array([0.6, 0.8, 0.95])
    creative = np.array([0.0, 0.0])
    rows = curve(right, wrong, creative, bars=(0.5, 0.7, 0.85, 0.925, 1.0))
    by = {r["bar"]: r for r in rows}
    assert by[0.5]["right_kept"] == 0.75 and by[0.5]["wrong_caught"] == 1.0
    assert by[0.5]["coverage"] == pytest.approx(3 / 7) and by[0.5]["error_among_answered"] == 0
    assert by[0.85]["right_kept"] == 0.75 and by[0.925]["right_kept"] == 1.0
    assert by[0.85]["error_among_answered"] == pytest.approx(2 / 5)
    assert all(r["creative_abstain"] == 0 for r in rows)
    assert choose_bar(rows, 0.25) == 0.5  # losing one right answer of four is within 25%
    assert choose_bar(rows, 0.05) == 0.925  # a 5% budget keeps every right answer
    assert choose_bar(curve(np.array([1.0]), wrong, creative, bars=(0.5,)), 0.0) == 1.0
