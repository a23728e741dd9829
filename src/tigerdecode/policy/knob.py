"""Policy: the creativity knob and the heads' probabilities → one decoding step's decisions.

A pure function (no model, no state): ``Policy(creativity).step(p_stop, p_dev, n_members)``
gives per-row temperature, top-p, min-p, member weights, EOS bias, and whether to resample or
abstain. Every output is monotone in ``creativity`` for fixed head outputs (a hypothesis test
checks it): more creativity never lowers the temperature, top-p or the creative members'
weight, and never raises min-p, the EOS bias, the chance of a resample or of abstaining.

The schedule: ``temperature = t_max * c`` (c = 0 is greedy); ``top_p`` from ``top_p_min`` to
``top_p_max``; member weights interpolate factual → creative. The heads act per token:

- ``p_slot`` (the next token decides a fact) cools that token toward greedy and toward the
  factual member, firmly up to ``slot_hold``, fading to nothing at c = 1;
- ``p_name`` (training-free, from the logits: the model's top next token starts a capitalised
  word inside a sentence, where names, places and titles are written) cools that token the same
  way, scaled by ``name_hold``: inside creative text the fact-slot head rarely fires, and the
  fact a poem must name is almost always such a word;
- ``p_spell`` (training-free, the same way: a capitalised word is open and the model's top next
  token goes on with it) cools the rest of a name being spelled, scaled by ``spell_hold``: a
  name sampled piece by piece comes out misspelled ("Ky" + "re" for Kyoto);
- ``p_open`` (the answer's first token) cools that token on a factual request, scaled by
  ``open_hold``: the opening decides how the answer is phrased, and a small model knows a fact
  in some phrasings and not in others;
- ``p_factual`` (read once from the prompt: the request asks for a fact, not for creative text)
  gates everything that ends an answer: the EOS bias and abstention act only on factual
  requests, so a poem is never cut short by ``p_stop`` nor answered "I don't know.";
- ``p_risk`` (read at the first fact slot before its token is drawn: the fact about to be
  written is wrong) abstains *before* the wrong token is written once it reaches ``risk_at +
  risk_rise * c``;
- ``p_dev`` abstains on a content token drawn at or after the first fact slot
  (``abstain_from_slot``; on the slot token alone without it) past ``abstain_at + abstain_rise *
  c``; an EOS bias ``eos_gain * (1 - c) * logit(p_stop)`` ends a complete answer; optional
  cooling on ``p_dev`` (``use_tighten``), undo-and-resample (``use_resample``), and abstaining
  at the end of a factual answer that never reached a fact slot (``abstain_no_slot``);
- the model's own confidence (``use_logprob``): a factual answer whose mean top-token
  log-probability (the most likely next token's, step by step) ends below ``abstain_logprob -
  logprob_drop * c`` abstains at its end (tigerdecode's loop; chosen beside the ``p_dev`` bar
  on validation facts the model mostly knows and mostly does not);
  a row never writes the same ``no_repeat_ngram``-gram twice (the loop guard of small models).

How the defaults were chosen, with the commands that measured them: ``docs/results/policy.md``
and ``docs/results/knob.md``; ``tigerdecode policy show`` prints the table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from tigerdecode.decode.sampling import StepDecision


class CreativityError(ValueError):
    """``creativity`` is not a number in [0, 1]."""


def check_creativity(c) -> float:
    if isinstance(c, bool) or not isinstance(c, int | float):
        raise CreativityError(f"creativity must be a number in [0, 1], got {c!r}")
    try:
        c = float(c)
    except OverflowError:
        raise CreativityError(f"creativity must be a number in [0, 1], got an integer of "
                              f"{len(str(c))} digits") from None
    if math.isnan(c) or not 0.0 <= c <= 1.0:
        raise CreativityError(
            f"creativity must lie in [0, 1] (0 = factual and near-greedy, 1 = free sampling), "
            f"got {c}")
    return c


def _finite(v) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


@dataclass(frozen=True)
class Policy:
    """The creativity knob. Construct with a ``creativity`` in [0, 1]; other fields tune it."""

    creativity: float = 0.5
    t_max: float = 1.0
    top_p_min: float = 0.6
    top_p_max: float = 0.95
    min_p_max: float = 0.0
    guard_until: float = 0.75
    dev_low: float = 0.5
    dev_high: float = 0.9
    top_p_floor: float = 0.3
    eos_gain: float = 2.0
    eos_bias_max: float = 8.0
    resample_at: float = 0.7
    max_retries: int = 2
    retry_temperature: float = 0.5
    abstain_at: float = 0.95
    abstain_below: float = 1.0
    abstain_rise: float = 0.05
    abstain_message: str = "I don't know."
    slot_hold: float = 0.75
    slot_gain: float = 10.0
    name_hold: float = 1.0
    # chosen on validation facts the model knows (docs/results/knob.md §11)
    spell_hold: float = 1.0
    open_hold: float = 1.0
    abstain_slot: float = 0.5
    risk_at: float = 0.99
    risk_rise: float = 0.0
    factual_at: float = 0.5
    use_eos_bias: bool = True
    use_tighten: bool = False
    use_resample: bool = False
    use_abstain: bool = True
    use_slot: bool = True
    use_risk: bool = True
    abstain_from_slot: bool = True
    abstain_no_slot: bool = False
    use_logprob: bool = True
    abstain_logprob: float = -0.85
    logprob_drop: float = 0.15
    no_repeat_ngram: int = 4

    def __post_init__(self):
        object.__setattr__(self, "creativity", check_creativity(self.creativity))
        for name in ("t_max", "eos_gain", "eos_bias_max", "retry_temperature", "abstain_rise",
                     "slot_gain", "logprob_drop"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and _finite(v) and v >= 0):
                raise ValueError(f"Policy.{name} must be a finite number >= 0, got {v!r}")
        for name in ("top_p_min", "top_p_max", "top_p_floor", "min_p_max", "dev_low", "dev_high",
                     "resample_at", "abstain_at", "abstain_below", "slot_hold", "abstain_slot",
                     "risk_at", "risk_rise", "factual_at", "name_hold", "spell_hold",
                     "open_hold"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 <= v <= 1.0):
                raise ValueError(f"Policy.{name} must lie in [0, 1], got {v!r}")
        v = self.abstain_logprob
        if isinstance(v, bool) or not (isinstance(v, int | float) and _finite(v) and v <= 0):
            raise ValueError(f"Policy.abstain_logprob is a mean log-probability: a finite number "
                             f"<= 0, got {v!r}")
        if not 0 < self.guard_until <= 1:
            raise ValueError(f"Policy.guard_until must lie in (0, 1], got {self.guard_until}")
        if self.top_p_min > self.top_p_max or self.top_p_floor > self.top_p_min:
            raise ValueError("Policy needs top_p_floor <= top_p_min <= top_p_max; got "
                             f"{self.top_p_floor}, {self.top_p_min}, {self.top_p_max}")
        if self.dev_low >= self.dev_high:
            raise ValueError(f"Policy needs dev_low < dev_high; got {self.dev_low}, "
                             f"{self.dev_high}")
        if (isinstance(self.no_repeat_ngram, bool) or not isinstance(self.no_repeat_ngram, int)
                or not 0 <= self.no_repeat_ngram <= 64):
            raise ValueError(f"Policy.no_repeat_ngram must be an int in [0, 64] (0 or 1: off), "
                             f"got {self.no_repeat_ngram!r}")
        if not isinstance(self.max_retries, int) or not 0 <= self.max_retries <= 8:
            raise ValueError(f"Policy.max_retries must be an int in [0, 8], got "
                             f"{self.max_retries!r}")

    # ---- scalar schedule (no heads) ------------------------------------------------------------

    @property
    def guard(self) -> float:
        """How strongly the heads steer at this creativity: 1 at c = 0, 0 from guard_until."""
        return max(0.0, 1.0 - self.creativity / self.guard_until)

    @property
    def slot_guard(self) -> float:
        """How firmly fact slots stay near-greedy: 1 up to ``slot_hold``, then falling linearly
        to 0 at c = 1 (full creativity samples fact slots freely too)."""
        if self.creativity <= self.slot_hold:
            return 1.0
        return max(0.0, (1.0 - self.creativity) / max(1.0 - self.slot_hold, 1e-9))

    @property
    def reads_names(self) -> bool:
        """Whether ``p_name`` / ``p_spell`` act at this creativity (``name_hold`` or
        ``spell_hold`` on, fact slots held)."""
        return self.use_slot and max(self.name_hold, self.spell_hold) > 0 and self.slot_guard > 0

    @property
    def temperature(self) -> float:
        return self.t_max * self.creativity

    @property
    def top_p(self) -> float:
        return self.top_p_min + (self.top_p_max - self.top_p_min) * self.creativity

    @property
    def min_p(self) -> float:
        return self.min_p_max * (1.0 - self.creativity)

    @property
    def resample_threshold(self) -> float:
        return self.resample_at + (1.0 - self.resample_at) * self.creativity

    @property
    def abstains(self) -> bool:
        return self.use_abstain and (self.creativity < self.abstain_below
                                     or self.creativity == 0.0)

    @property
    def abstain_threshold(self) -> float:
        """The ``p_dev`` at which a content token makes the answer abstain at this creativity."""
        return min(1.0, self.abstain_at + self.abstain_rise * self.creativity)

    @property
    def logprob_threshold(self) -> float:
        """The mean top-token log-probability below which a factual answer abstains at its end."""
        return self.abstain_logprob - self.logprob_drop * self.creativity

    @property
    def risk_threshold(self) -> float:
        """The ``p_risk`` at a fact slot from which the answer abstains at this creativity."""
        return min(1.0, self.risk_at + self.risk_rise * self.creativity)

    def member_weights(self, n: int) -> list[float]:
        """Base weights of ``n`` members ordered factual → creative (sum 1)."""
        if n < 1:
            raise ValueError(f"an ensemble needs at least one member, got {n}")
        if n == 1:
            return [1.0]
        pos = self.creativity * (n - 1)
        return [max(0.0, 1.0 - abs(pos - i)) for i in range(n)]

    # ---- per-step, per-row decisions -----------------------------------------------------------

    def step(self, p_stop: torch.Tensor | None, p_dev: torch.Tensor | None, n_members: int = 1,
             *, batch: int | None = None, device=None, p_slot: torch.Tensor | None = None,
             p_risk: torch.Tensor | None = None,
             p_factual: torch.Tensor | None = None,
             p_name: torch.Tensor | None = None,
             p_spell: torch.Tensor | None = None,
             p_open: torch.Tensor | None = None) -> StepDecision:
        """Decisions for a batch given the heads' outputs for each row's last token.

        Each signal is (B,) or None (no heads, or heads without it: the schedule alone).
        ``p_slot`` (the next token decides a fact) cools that token toward greedy and toward the
        factual member by ``1 - slot_guard * min(1, slot_gain * p_slot)``; other tokens keep the
        schedule. ``slot_gain`` > 1 acts on the head's ranking where its probabilities are small
        (fact slots inside creative text score far below those of a direct answer). ``p_name``
        (1 where the top next token starts a capitalised word inside a sentence) cools by
        ``1 - slot_guard * name_hold * p_name`` on top, and ``p_spell`` (1 where a capitalised
        word is open and the top next token goes on with it) by ``1 - slot_guard * spell_hold *
        p_spell``. ``p_open`` (1 at the answer's first token) cools a factual request's first
        token (``p_factual`` given and at least ``factual_at``) by ``1 - slot_guard * open_hold
        * p_open``: the opening decides how the answer is phrased, and a small model knows a
        fact in some phrasings and not in others.
        ``p_factual`` < ``factual_at`` (a creative request) switches off the EOS bias and
        abstention; ``p_risk`` at a fact slot (``p_slot >= abstain_slot``) at or above
        :attr:`risk_threshold` abstains before the token is drawn (``abstain_now``; the loop
        acts on it at a row's first fact slot only)."""
        ref = p_stop if p_stop is not None else p_dev
        if ref is not None:
            batch, device = ref.shape[0], ref.device
        if batch is None:
            raise ValueError("Policy.step needs head outputs or batch=")
        full = lambda v: torch.full((batch,), float(v), device=device)  # noqa: E731
        g = self.guard
        if p_dev is not None and self.use_tighten and g > 0:
            r = ((p_dev.float() - self.dev_low) / (self.dev_high - self.dev_low)).clamp(0, 1)
            cool = 1.0 - g * r  # (B,) in [0, 1]
        else:
            cool = full(1.0)
        if p_slot is not None and self.use_slot and self.slot_guard > 0:
            cool = cool * (1.0 - self.slot_guard * (self.slot_gain * p_slot.float()).clamp(0, 1))
        if p_name is not None and self.reads_names:
            cool = cool * (1.0 - self.slot_guard * self.name_hold * p_name.float().clamp(0, 1))
        if p_spell is not None and self.reads_names:
            cool = cool * (1.0 - self.slot_guard * self.spell_hold * p_spell.float().clamp(0, 1))
        if p_open is not None and p_factual is not None and self.open_hold > 0:
            asks = (p_factual.float() >= self.factual_at).float()
            cool = cool * (1.0 - self.slot_guard * self.open_hold * asks
                           * p_open.float().clamp(0, 1))
        temperature = self.temperature * cool
        top_p = self.top_p_floor + (self.top_p - self.top_p_floor) * cool
        min_p = full(self.min_p)
        base = torch.tensor(self.member_weights(n_members), device=device)
        weights = base.expand(batch, n_members).clone()  # (B, M)
        if n_members > 1:
            creative = weights[:, 1:] * cool[:, None]
            weights = torch.cat([1.0 - creative.sum(1, keepdim=True), creative], dim=1)
        # a factual request (or heads that cannot tell): what ends an answer may act
        factual = (p_factual.float() >= self.factual_at) if p_factual is not None else \
            torch.ones(batch, dtype=torch.bool, device=device)
        if p_stop is not None and self.use_eos_bias:
            z = torch.logit(p_stop.float().clamp(1e-6, 1 - 1e-6)).clamp(min=0)
            eos_bias = (self.eos_gain * (1.0 - self.creativity) * z).clamp(max=self.eos_bias_max)
            eos_bias = eos_bias * factual
        else:
            eos_bias = full(0.0)
        if p_dev is not None and self.use_resample and self.max_retries > 0:
            resample = p_dev >= self.resample_threshold
        else:
            resample = torch.zeros(batch, dtype=torch.bool, device=device)
        if p_dev is not None and self.abstains:
            abstain = (p_dev >= self.abstain_threshold) & factual
        else:
            abstain = torch.zeros(batch, dtype=torch.bool, device=device)
        if p_risk is not None and p_slot is not None and self.abstains and self.use_risk:
            at_slot = p_slot.float() >= self.abstain_slot
            abstain_now = factual & at_slot & (p_risk.float() >= self.risk_threshold)
        else:
            abstain_now = None
        return StepDecision(temperature, top_p, min_p, weights, eos_bias, resample, abstain,
                            abstain_now)

    def retry(self, decision: StepDecision, attempt: int) -> StepDecision:
        """A cooler decision for retry ``attempt`` (1-based): factual member only, temperature
        times ``retry_temperature ** attempt``, top-p at its floor."""
        w = torch.zeros_like(decision.weights)
        w[:, 0] = 1.0
        return StepDecision(decision.temperature * self.retry_temperature ** attempt,
                            torch.full_like(decision.top_p, self.top_p_floor), decision.min_p, w,
                            decision.eos_bias, decision.resample, decision.abstain,
                            decision.abstain_now)

    # ---- documentation -------------------------------------------------------------------------

    def describe(self, n_members: int = 2) -> dict:
        """The numbers this policy produces with no heads and at p_stop = p_dev = p_slot = 0.95."""
        hi = torch.tensor([0.95])
        d = self.step(hi, hi, n_members)
        s = self.step(None, None, n_members, batch=1, p_slot=hi)
        return {
            "creativity": self.creativity,
            "temperature": round(self.temperature, 4),
            "top_p": round(self.top_p, 4),
            "weights": [round(w, 4) for w in self.member_weights(n_members)],
            "temperature@p_dev=.95": round(float(d.temperature[0]), 4),
            "top_p@p_dev=.95": round(float(d.top_p[0]), 4),
            "weights@p_dev=.95": [round(float(w), 4) for w in d.weights[0]],
            "eos_bias@p_stop=.95": round(float(d.eos_bias[0]), 4),
            "temperature@p_slot=.95": round(float(s.temperature[0]), 4),
            "weights@p_slot=.95": [round(float(w), 4) for w in s.weights[0]],
            "resample_at": round(self.resample_threshold, 4) if self.use_resample else None,
            "abstains": self.abstains,
            "abstain_at": round(self.abstain_threshold, 4) if self.abstains else None,
            "risk_at": round(self.risk_threshold, 4) if self.abstains and self.use_risk
            else None,
            "logprob_at": round(self.logprob_threshold, 4) if self.abstains and self.use_logprob
            else None,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def tunable_fields() -> frozenset[str]:
    """The Policy fields a caller may set (every field but ``creativity``): what ``--set``,
    heads' ``policy`` and packed heads may name."""
    return frozenset(f.name for f in fields(Policy)) - {"creativity"}
