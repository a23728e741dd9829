"""The forward-looking outputs' data: risk rows (before each fact slot of a factual answer,
labelled with the answer being wrong) and request-kind rows, on hand-made stores."""

import numpy as np
import pytest

from tigerdecode.training.forward import factual_rows, risk_report, risk_rows


def _store():
    # answer 0: question, greedy, wrong, its first token is a slot (read from the prompt state)
    # answer 1: completion, greedy, right, token 2 is its slot (read from token 1's state)
    # answer 2: mixed text (never a risk row); answer 3: question sampled at T=1, wrong
    answers = [
        {"form": "question", "setting": "greedy", "correct": False, "slot0": 1,
         "first_maxprob": 0.3, "first_entropy": 2.0, "message": "Q0?", "prompt": "Q0?"},
        {"form": "completion", "setting": "greedy", "correct": True, "slot0": 0,
         "first_maxprob": 0.9, "first_entropy": 0.1, "message": "C1", "prompt": "C1"},
        {"form": "mixed", "setting": "greedy", "correct": True, "slot0": 1,
         "first_maxprob": 0.5, "first_entropy": 1.0, "message": "M2", "prompt": "M2"},
        {"form": "question", "setting": "t1-p0.95", "correct": False, "slot0": 0,
         "first_maxprob": 0.5, "first_entropy": 1.0, "message": "Q0?", "prompt": "Q0?"},
    ]
    # token rows: (answer, pos, slot of the *next* token, maxprob, entropy of this token's draw)
    rows = [(0, 0, 1, 0.3, 2.0), (0, 1, 0, 0.4, 1.5), (0, 2, 0, 0.9, 0.2),
            (1, 0, 0, 0.9, 0.1), (1, 1, 1, 0.8, 0.3), (1, 2, 0, 0.7, 0.6),
            (2, 0, 1, 0.5, 1.0), (2, 1, 0, 0.5, 1.0),
            (3, 0, 1, 0.2, 3.0), (3, 1, 0, 0.6, 0.9)]
    t = {k: np.array([r[i] for r in rows]) for i, k in
         enumerate(("answer", "pos", "slot", "maxprob", "entropy"))}
    return t, answers


def test_risk_rows_sit_before_each_fact_slot_of_a_factual_answer():
    t, answers = _store()
    r = risk_rows(t, answers, {}, settings=("greedy",))
    # answer 0: the prompt row (its first token is a slot), then token row 0 (token 1 is a slot)
    # answer 1: token row 4 (pos 1, token 2 is a slot); mixed and sampled answers left out
    assert r["answer"].tolist() == [0, 0, 1]
    assert r["src"].tolist() == [0, 1, 1] and r["idx"].tolist() == [0, 0, 4]
    assert r["y"].tolist() == [1, 1, 0]  # wrong, wrong, right
    assert r["first"].tolist() == [True, False, True]
    # the rivals are the distribution of the token about to be drawn
    assert r["maxprob"].tolist() == pytest.approx([0.3, 0.4, 0.7])
    assert r["entropy"].tolist() == pytest.approx([2.0, 1.5, 0.6])
    every = risk_rows(t, answers, {}, settings=None)
    assert every["answer"].tolist() == [0, 0, 1, 3]  # the sampled answer's slot too


def test_risk_report_scores_the_first_slot_beside_the_rivals():
    t, answers = _store()
    r = risk_rows(t, answers, {}, settings=None)
    rep = risk_report(r, np.array([0.9, 0.8, 0.1, 0.7]))
    assert rep["first_slot"]["n"] == 3 and rep["first_slot"]["auroc"] == 1.0
    assert rep["row"]["n"] == 4 and set(rep["row"]["baselines"]) == {"1-maxprob", "entropy"}


def test_factual_rows_one_per_message_factual_forms_are_positive():
    _, answers = _store()
    answers = answers + [{"form": "open", "open": True, "setting": "greedy", "correct": None,
                          "message": "Write a poem.", "prompt": "Write a poem."}]
    r = factual_rows(answers)
    assert r["idx"].tolist() == [0, 1, 2, 4]  # answer 3 asked the same message as answer 0
    assert r["y"].tolist() == [1, 1, 0, 0]
