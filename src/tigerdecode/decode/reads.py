"""What a decode keeps of each answer it writes for the judge to read (``decode(...,
read_layers=)``), so the judge needs no pass of its own over the answer."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AnswerRead:
    """What the model computed along one written answer, position by position. Position 0 is
    the last prompt token, position k the answer's k-th token (its EOS included when it ended).
    ``states``: {layer: (P, H)} the tapped states at positions 0 … P-1; ``logp``, ``entropy``,
    ``maxprob``: (P-1,), at index k-1 the log-probability of token k under the model's own
    next-token distribution at position k-1 (before any sampling change), that distribution's
    entropy and its top probability."""

    states: dict[int, torch.Tensor]
    logp: torch.Tensor
    entropy: torch.Tensor
    maxprob: torch.Tensor

    @property
    def positions(self) -> int:
        return int(next(iter(self.states.values())).shape[0])

    def then(self, j: int, rest: AnswerRead) -> AnswerRead:
        """The answer whose first ``j`` tokens are this one's and whose later positions are
        ``rest``'s: a decode resumed after token ``j`` (its position 0 is this one's position
        ``j``: the same prefix, the same state)."""
        return AnswerRead({x: torch.cat([v[:j], rest.states[x]]) for x, v in self.states.items()},
                          torch.cat([self.logp[:j], rest.logp]),
                          torch.cat([self.entropy[:j], rest.entropy]),
                          torch.cat([self.maxprob[:j], rest.maxprob]))
