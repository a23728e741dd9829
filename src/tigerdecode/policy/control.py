"""PolicyControl: the creativity knob as the decode loop's :class:`~tigerdecode.decode.loop.
Control` (the policy's decisions; members blended in log-prob space)."""

from __future__ import annotations

from tigerdecode.decode.loop import Control, Signals
from tigerdecode.decode.sampling import StepDecision
from tigerdecode.policy.knob import Policy


class PolicyControl(Control):
    """tigerdecode's own method: ``Policy.step`` per row, retries and abstention as it sets."""

    name = "tigerdecode"

    def __init__(self, policy: Policy, n_members: int):
        self.policy, self.n_members = policy, n_members
        self.max_retries = policy.max_retries if policy.use_resample else 0
        self.abstains = policy.abstains
        self.abstain_slot = policy.abstain_slot if policy.use_slot else None
        self.abstain_latch = policy.abstain_from_slot
        self.abstain_unslotted = policy.abstain_no_slot and policy.use_slot
        self.abstain_logprob = policy.logprob_threshold if policy.use_logprob else None
        self.factual_at = policy.factual_at
        self.no_repeat_ngram = policy.no_repeat_ngram
        self.reads_names = policy.reads_names

    def decide(self, signals: Signals, batch: int, device) -> StepDecision:
        return self.policy.step(signals.p_stop, signals.p_dev, self.n_members, batch=batch,
                                device=device, p_slot=signals.p_slot, p_risk=signals.p_risk,
                                p_factual=signals.p_factual, p_name=signals.p_name,
                                p_spell=signals.p_spell, p_open=signals.p_open)

    def retry(self, d: StepDecision, attempt: int) -> StepDecision:
        return self.policy.retry(d, attempt)
