"""Policy: monotone in creativity (hypothesis), documented numbers, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tigerdecode.policy.knob import CreativityError, Policy

unit = st.floats(0.0, 1.0, allow_nan=False)
maybe_p = st.one_of(st.none(), unit)
FLAGS = dict(use_eos_bias=True, use_tighten=True, use_resample=True, use_abstain=True)


def _step(c, p_stop, p_dev, n=2, p_slot=None):
    t = lambda p: None if p is None else torch.tensor([p])  # noqa: E731
    return Policy(c, **FLAGS).step(t(p_stop), t(p_dev), n, batch=1, p_slot=t(p_slot))


@settings(max_examples=300, deadline=None)
@given(a=unit, b=unit, p_stop=maybe_p, p_dev=maybe_p, p_slot=maybe_p)
def test_every_decision_is_monotone_in_creativity(a, b, p_stop, p_dev, p_slot):
    lo, hi = sorted((a, b))
    x, y = _step(lo, p_stop, p_dev, p_slot=p_slot), _step(hi, p_stop, p_dev, p_slot=p_slot)
    eps = 1e-6
    assert y.temperature[0] >= x.temperature[0] - eps
    assert y.top_p[0] >= x.top_p[0] - eps
    assert y.min_p[0] <= x.min_p[0] + eps
    assert y.weights[0, 1] >= x.weights[0, 1] - eps  # the creative member's weight
    assert y.eos_bias[0] <= x.eos_bias[0] + eps
    assert int(y.resample[0]) <= int(x.resample[0])
    assert int(y.abstain[0]) <= int(x.abstain[0])


@settings(max_examples=100, deadline=None)
@given(c=unit, n=st.integers(1, 5), p_dev=maybe_p)
def test_weights_are_a_distribution_and_cumulatively_monotone(c, n, p_dev):
    d = _step(c, None, p_dev, n)
    assert torch.allclose(d.weights.sum(-1), torch.ones(1)) and (d.weights >= 0).all()
    base = Policy(c).member_weights(n)
    later = Policy(min(1.0, c + 0.1)).member_weights(n)
    for k in range(n):  # weight on the members from k on (the more creative ones) never drops
        assert sum(later[k:]) >= sum(base[k:]) - 1e-9


@settings(max_examples=100, deadline=None)
@given(c=unit, p=unit, q=unit)
def test_risk_never_loosens_sampling(c, p, q):
    lo, hi = sorted((p, q))
    x, y = _step(c, None, lo), _step(c, None, hi)
    assert y.temperature[0] <= x.temperature[0] + 1e-6 and y.top_p[0] <= x.top_p[0] + 1e-6


@settings(max_examples=150, deadline=None)
@given(c=unit, p=unit, q=unit, n=st.integers(1, 3))
def test_a_likelier_fact_slot_never_loosens_sampling(c, p, q, n):
    lo, hi = sorted((p, q))
    x, y = _step(c, None, None, n, p_slot=lo), _step(c, None, None, n, p_slot=hi)
    assert y.temperature[0] <= x.temperature[0] + 1e-6 and y.top_p[0] <= x.top_p[0] + 1e-6
    assert y.weights[0, 0] >= x.weights[0, 0] - 1e-6  # toward the factual member


@settings(max_examples=150, deadline=None)
@given(a=unit, b=unit, p=unit, gain=st.floats(1.0, 100.0))
def test_slot_gain_keeps_the_knob_monotone_and_saturates(a, b, p, gain):
    lo, hi = sorted((a, b))
    t = torch.tensor([p])
    x = Policy(lo, slot_gain=gain).step(None, None, 2, batch=1, p_slot=t)
    y = Policy(hi, slot_gain=gain).step(None, None, 2, batch=1, p_slot=t)
    assert y.temperature[0] >= x.temperature[0] - 1e-6 and y.top_p[0] >= x.top_p[0] - 1e-6
    assert y.weights[0, 0] <= x.weights[0, 0] + 1e-6
    # the gain scales p_slot before the guard; at gain * p_slot >= 1 the slot is fully held
    d = Policy(0.5, slot_gain=gain).step(None, None, 1, batch=1, p_slot=t)
    want = 0.5 * (1 - min(1.0, gain * p))
    assert float(d.temperature[0]) == pytest.approx(want, abs=1e-6)


def test_fact_slots_stay_near_greedy_until_creativity_is_close_to_1():
    for c in (0.25, 0.5, 0.75):
        d = _step(c, None, None, 2, p_slot=1.0)
        assert float(d.temperature[0]) == 0.0 and float(d.weights[0, 0]) == 1.0
        free = _step(c, None, None, 2, p_slot=0.0)
        assert float(free.temperature[0]) == pytest.approx(c)  # ordinary tokens: the schedule
    assert float(_step(0.9, None, None, 1, p_slot=1.0).temperature[0]) == pytest.approx(0.9 * 0.6)
    assert float(_step(1.0, None, None, 1, p_slot=1.0).temperature[0]) == pytest.approx(1.0)
    off = Policy(0.5, use_slot=False).step(None, None, 1, batch=1, p_slot=torch.tensor([1.0]))
    assert float(off.temperature[0]) == pytest.approx(0.5)


def test_documented_numbers():
    assert Policy(0).temperature == 0 and Policy(1).temperature == 1.0
    assert Policy(0.5).top_p == pytest.approx(0.775)
    assert Policy(0.25).member_weights(2) == [0.75, 0.25]
    d = Policy(0).describe()
    assert d["temperature@p_dev=.95"] == 0 and d["weights@p_dev=.95"] == [1.0, 0.0]
    assert d["eos_bias@p_stop=.95"] == pytest.approx(2 * math.log(0.95 / 0.05), rel=1e-3)
    assert Policy(1).describe()["eos_bias@p_stop=.95"] == 0
    # without heads the schedule alone decides
    d = Policy(0.5).step(None, None, 2, batch=3)
    assert d.temperature.tolist() == [0.5] * 3 and not d.resample.any()
    assert d.eos_bias.tolist() == [0.0] * 3


def test_retry_is_cooler_and_factual():
    p = Policy(0.6, use_resample=True)
    d = p.step(None, torch.tensor([0.99]), 2)
    r = p.retry(d, 1)
    assert r.temperature[0] < d.temperature[0] and r.weights[0].tolist() == [1.0, 0.0]


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf"), "0.5", None, True])
def test_bad_creativity(bad):
    with pytest.raises(CreativityError, match="creativity must"):
        Policy(bad)


def test_bad_fields():
    with pytest.raises(ValueError, match="top_p_floor <= top_p_min"):
        Policy(0.5, top_p_min=0.2)
    with pytest.raises(ValueError, match="max_retries"):
        Policy(0.5, max_retries=-1)
    with pytest.raises(ValueError, match="t_max"):
        Policy(0.5, t_max=float("nan"))


def test_abstain_bar_default_and_rising_option():
    # the defaults (policy risk on eight validation relations beside the easy validation facts,
    # 5% error budget in each part): p_dev 0.95 rising 0.05 per unit of creativity, p_risk
    # 0.99 flat, the answer's mean log-probability -0.85 falling 0.15 per unit (relax 0.5)
    assert Policy(0).abstain_threshold == pytest.approx(0.95)
    assert Policy(0.5).abstain_threshold == pytest.approx(0.975)
    assert Policy(0).risk_threshold == Policy(0.75).risk_threshold == pytest.approx(0.99)
    assert Policy(0).use_logprob and Policy(0).logprob_threshold == pytest.approx(-0.85)
    assert Policy(0.5).logprob_threshold == pytest.approx(-0.925)
    assert Policy(0.99).abstains and not Policy(1.0).abstains
    rising = dict(abstain_at=0.95, abstain_rise=0.05)
    assert Policy(0.5, **rising).abstain_threshold == pytest.approx(0.975)
    assert Policy(1.0, abstain_rise=0.5).abstain_threshold == 1.0  # capped


def test_abstain_bar_rises_with_creativity_and_ends_at_abstain_below():
    p = dict(use_abstain=True, abstain_at=0.8, abstain_below=0.5, abstain_rise=0.4)
    assert Policy(0, **p).abstain_threshold == pytest.approx(0.8)
    assert Policy(0.25, **p).abstain_threshold == pytest.approx(0.9)
    assert Policy(0.49, **p).abstains and not Policy(0.5, **p).abstains
    dev = torch.tensor([0.85, 0.95])
    assert Policy(0, **p).step(None, dev).abstain.tolist() == [True, True]
    assert Policy(0.25, **p).step(None, dev).abstain.tolist() == [False, True]
    assert Policy(0.5, **p).step(None, dev).abstain.tolist() == [False, False]
    # abstain_below = 0: only creativity 0 abstains, at abstain_at
    assert Policy(0, use_abstain=True, abstain_below=0.0).abstains
    assert not Policy(0.01, use_abstain=True, abstain_below=0.0).abstains


def test_integers_too_large_for_a_float_are_clear_errors():
    with pytest.raises(CreativityError, match="digits"):
        Policy(10 ** 400)
    with pytest.raises(ValueError, match="eos_gain must be a finite number"):
        Policy(0.5, eos_gain=10 ** 400)
    with pytest.raises(ValueError, match="slot_gain must be a finite number"):
        Policy(0.5, slot_gain=10 ** 400)


def _full(c, p_slot=None, p_risk=None, p_factual=None, p_stop=None, p_dev=None, **kw):
    t = lambda p: None if p is None else torch.tensor([p])  # noqa: E731
    return Policy(c, **{**FLAGS, **kw}).step(t(p_stop), t(p_dev), 1, batch=1, p_slot=t(p_slot),
                                             p_risk=t(p_risk), p_factual=t(p_factual))


@settings(max_examples=300, deadline=None)
@given(a=unit, b=unit, p_stop=maybe_p, p_dev=maybe_p, p_slot=maybe_p, p_risk=maybe_p,
       p_factual=maybe_p)
def test_every_decision_is_monotone_in_creativity_with_risk_and_request_kind(
        a, b, p_stop, p_dev, p_slot, p_risk, p_factual):
    lo, hi = sorted((a, b))
    x = _full(lo, p_slot, p_risk, p_factual, p_stop, p_dev)
    y = _full(hi, p_slot, p_risk, p_factual, p_stop, p_dev)
    assert y.temperature[0] >= x.temperature[0] - 1e-6 and y.top_p[0] >= x.top_p[0] - 1e-6
    assert y.eos_bias[0] <= x.eos_bias[0] + 1e-6
    assert int(y.abstain[0]) <= int(x.abstain[0])
    now = lambda d: 0 if d.abstain_now is None else int(d.abstain_now[0])  # noqa: E731
    assert now(y) <= now(x)


@settings(max_examples=200, deadline=None)
@given(c=unit, p_stop=unit, p_dev=unit, p_slot=unit, p_risk=unit, p_factual=st.floats(0, 0.49))
def test_a_creative_request_never_abstains_nor_gets_an_eos_bias(c, p_stop, p_dev, p_slot, p_risk,
                                                                 p_factual):
    d = _full(c, p_slot, p_risk, p_factual, p_stop, p_dev)
    assert not bool(d.abstain[0])
    assert d.abstain_now is None or not bool(d.abstain_now[0])  # None: no abstention at all
    assert float(d.eos_bias[0]) == 0.0


def test_risk_abstains_before_the_token_only_at_a_fact_slot_of_a_factual_request():
    # c = 0: bar risk_at = 0.5; a slot needs p_slot >= abstain_slot = 0.5
    p = dict(risk_at=0.5, risk_rise=0.3)
    assert Policy(0, **p).risk_threshold == pytest.approx(0.5)
    assert Policy(0.5, **p).risk_threshold == pytest.approx(0.65)
    assert bool(_full(0, p_slot=0.6, p_risk=0.6, p_factual=0.9, **p).abstain_now[0])
    assert not bool(_full(0, p_slot=0.4, p_risk=0.6, p_factual=0.9, **p).abstain_now[0])
    assert not bool(_full(0, p_slot=0.9, p_risk=0.4, p_factual=0.9, **p).abstain_now[0])
    assert not bool(_full(0, p_slot=0.9, p_risk=0.9, p_factual=0.3, **p).abstain_now[0])
    assert not bool(_full(0.5, p_slot=0.9, p_risk=0.6, p_factual=0.9, **p).abstain_now[0])
    assert _full(1.0, p_slot=0.9, p_risk=1.0, p_factual=0.9).abstain_now is None  # never at 1
    assert _full(0, p_slot=0.9, p_risk=0.9, p_factual=0.9, use_risk=False).abstain_now is None
    # heads without p_factual keep the old behaviour: the EOS bias acts
    assert float(_full(0, p_stop=0.95).eos_bias[0]) > 0
    assert float(_full(0, p_stop=0.95, p_factual=0.2).eos_bias[0]) == 0


@settings(max_examples=200, deadline=None)
@given(a=unit, b=unit, p_slot=maybe_p, p_name=st.sampled_from([None, 0.0, 1.0]),
       hold=st.floats(0, 1))
def test_a_name_is_held_like_a_fact_slot_and_stays_monotone(a, b, p_slot, p_name, hold):
    t = lambda p: None if p is None else torch.tensor([p])  # noqa: E731
    lo, hi = sorted((a, b))
    x, y = (Policy(c, name_hold=hold).step(None, None, 2, batch=1, p_slot=t(p_slot),
                                            p_name=t(p_name)) for c in (lo, hi))
    assert y.temperature[0] >= x.temperature[0] - 1e-6 and y.top_p[0] >= x.top_p[0] - 1e-6
    assert y.weights[0, 1] >= x.weights[0, 1] - 1e-6  # the creative member never loses weight
    free = Policy(lo, name_hold=hold).step(None, None, 2, batch=1, p_slot=t(p_slot))
    # held: the temperature scaled by 1 - slot_guard * hold (slot_guard 1 up to slot_hold = 0.75,
    # then falling to 0 at c = 1); a token that starts no name keeps the schedule
    scale = 1 - Policy(lo).slot_guard * hold if p_name == 1.0 else 1.0
    assert float(x.temperature[0]) == pytest.approx(float(free.temperature[0]) * scale, abs=1e-6)


def test_name_hold_is_checked():
    with pytest.raises(ValueError, match="name_hold must lie in"):
        Policy(0.5, name_hold=1.5)


def test_logprob_abstention_bar_and_its_switch():
    from tigerdecode.policy.control import PolicyControl

    p = Policy(0.5, use_logprob=True, abstain_logprob=-0.8, logprob_drop=0.4)
    assert p.logprob_threshold == pytest.approx(-1.0)
    assert PolicyControl(p, 1).abstain_logprob == pytest.approx(-1.0)
    assert p.describe()["logprob_at"] == pytest.approx(-1.0)
    assert PolicyControl(Policy(0.5, use_logprob=False), 1).abstain_logprob is None
    assert Policy(0.5, use_logprob=True, use_abstain=False).describe()["logprob_at"] is None
    for bad in (0.1, float("nan"), float("-inf"), True):
        with pytest.raises(ValueError, match="abstain_logprob"):
            Policy(0.5, abstain_logprob=bad)
    with pytest.raises(ValueError, match="logprob_drop"):
        Policy(0.5, logprob_drop=-1)


@settings(max_examples=200, deadline=None)
@given(a=unit, b=unit, p_slot=maybe_p, p_spell=st.sampled_from([None, 0.0, 1.0]),
       p_open=st.sampled_from([None, 0.0, 1.0]), p_factual=maybe_p,
       spell=st.floats(0, 1), opening=st.floats(0, 1))
def test_spelling_and_opening_holds_stay_monotone(a, b, p_slot, p_spell, p_open, p_factual,
                                                   spell, opening):
    t = lambda p: None if p is None else torch.tensor([p])  # noqa: E731
    lo, hi = sorted((a, b))
    kw = dict(batch=1, p_slot=t(p_slot), p_spell=t(p_spell), p_open=t(p_open),
              p_factual=t(p_factual))
    x, y = (Policy(c, spell_hold=spell, open_hold=opening).step(None, None, 2, **kw)
            for c in (lo, hi))
    assert y.temperature[0] >= x.temperature[0] - 1e-6 and y.top_p[0] >= x.top_p[0] - 1e-6
    assert y.weights[0, 1] >= x.weights[0, 1] - 1e-6
    free = Policy(lo).step(None, None, 2, batch=1, p_slot=t(p_slot), p_factual=t(p_factual))
    g = Policy(lo).slot_guard
    scale = (1 - g * spell if p_spell == 1.0 else 1.0) * (
        1 - g * opening if (p_open == 1.0 and p_factual is not None and p_factual >= 0.5)
        else 1.0)  # the opening is held on factual requests only
    assert float(x.temperature[0]) == pytest.approx(float(free.temperature[0]) * scale, abs=1e-6)


def test_spell_and_open_hold_are_checked():
    for name in ("spell_hold", "open_hold"):
        with pytest.raises(ValueError, match=f"{name} must lie in"):
            Policy(0.5, **{name: 1.5})
