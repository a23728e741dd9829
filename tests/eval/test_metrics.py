"""Each metric on hand-made cases whose answer is obvious."""

import math

import pytest

from tigerdecode.eval.metrics import (
    bleu,
    distinct_n,
    factual_rates,
    is_degenerate,
    self_bleu,
    spearman,
    words,
)


def test_words_lowercases_and_splits_punctuation():
    assert words("The Cat, sat.") == ["the", "cat", ",", "sat", "."]


def test_distinct_n_pooled_over_texts():
    assert distinct_n(["a b a b"], 1) == 2 / 4
    assert distinct_n(["a b a b"], 2) == 2 / 3  # (a b), (b a), (a b)
    assert distinct_n(["a b", "a b"], 2) == 1 / 2
    assert distinct_n(["x y z", "p q r"], 2) == 1.0
    assert distinct_n([""], 2) == 0.0


def test_bleu_identical_is_one_and_disjoint_is_small():
    s = words("the quick brown fox jumps over the lazy dog")
    assert bleu(s, [s]) == pytest.approx(1.0)
    other = words("completely different words appear in this other sentence here")
    assert bleu(s, [other]) < 0.05
    # brevity penalty: a short exact prefix scores below 1
    assert bleu(s[:4], [s]) < 0.5


def test_self_bleu_identical_vs_diverse():
    same = ["a red kite flies over the hill"] * 3
    assert self_bleu(same) == pytest.approx(1.0)
    diverse = ["a red kite flies over the hill", "snow falls on quiet rooftops tonight",
               "my uncle sells fish at the harbour"]
    assert self_bleu(diverse) < 0.1
    with pytest.raises(ValueError, match="two samples"):
        self_bleu(["only one"])


@pytest.mark.parametrize("text,expected", [
    ("the balcony of the balcony of the balcony of the balcony of", True),
    ("no no no no", True),
    ("The capital of Japan is Tokyo.", False),
    ("A fox ran. A fox ran. A fox ran. A fox ran. A fox ran. Then it slept.", True),
    ("Once upon a time a robot baked bread, and the whole town came to taste it.", False),
])
def test_degeneration(text, expected):
    assert is_degenerate(text) is expected


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_factual_rates():
    r = factual_rates(["right", "wrong", "wrong", "abstain"])
    assert r == {"accuracy": 0.25, "error_rate": 0.5, "abstain_rate": 0.25,
                 "precision": pytest.approx(1 / 3)}
    assert math.isnan(factual_rates(["abstain"])["precision"])
    with pytest.raises(ValueError):
        factual_rates(["maybe"])
