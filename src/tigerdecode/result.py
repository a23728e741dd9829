"""GenerationResult: what a controlled generation returns, JSON-serialisable.

Every decoding decision is recorded per token, so the CLI, the demo and the evaluation can show
*why* an answer came out as it did.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field


@dataclass
class TokenTrace:
    """One generated token and the decisions that produced it."""

    token: str
    token_id: int
    p_stop: float | None = None
    p_dev: float | None = None
    p_slot: float | None = None  # read before the token was drawn: does it commit to a fact?
    p_risk: float | None = None  # read before the token was drawn: would that fact be wrong?
    p_name: float | None = None  # 1: the top next token started a capitalised word mid-sentence
    p_spell: float | None = None  # 1: a capitalised word was open and the top token went on with it
    logprob: float | None = None  # the token's log-probability under the model's own logits
    top_logprob: float | None = None  # the same for the most likely token at this step
    temperature: float | None = None
    top_p: float | None = None
    member_weights: list[float] | None = None
    rewritten: bool = False
    retries: int = 0


@dataclass
class JudgeVerdict:
    """The whole-answer judge's decision and every candidate it considered."""

    score: float
    verdict: str  # "accept" | "rewritten" | "abstain" | "best_of_rejected"
    threshold: float | None = None
    rewrites: list[dict] = field(default_factory=list)


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    trace: list[TokenTrace] = field(default_factory=list)
    judge: JudgeVerdict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    prompt: str | None = None
    creativity: float | None = None
    abstained: bool = False
    stop_reason: str | None = None  # "eos" | "max_new_tokens" | "abstain" | "judge" |
    # "stopping_criteria"
    method: str | None = None  # "tigerdecode" or a baseline name
    p_factual: float | None = None  # the heads: does the request ask for a fact (not creative)?
    notes: list[str] = field(default_factory=list)  # e.g. why the heads are absent

    def to_dict(self) -> dict:
        return _clean(asdict(self))

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, **kw)

    @classmethod
    def from_dict(cls, d: dict) -> GenerationResult:
        d = dict(d)
        d["trace"] = [TokenTrace(**t) for t in d.get("trace", [])]
        if d.get("judge") is not None:
            d["judge"] = JudgeVerdict(**d["judge"])
        return cls(**d)


def _clean(obj):
    """Make floats JSON-safe (NaN/inf → None) and round them for readable output."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, 6)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj
