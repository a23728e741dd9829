"""Shared hypothesis settings for the fuzz and property tests.

The default run keeps each surface short and deterministic (``derandomize``: the same inputs on
every machine, so CI never flakes on a new example); ``TIGERDECODE_FUZZ_EXAMPLES=500`` raises
every surface to 500 inputs for a long run (see docs/results/fuzzing.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("TIGERDECODE_FUZZ_EXAMPLES")


def fuzz(default: int = 30) -> settings:
    """``@fuzz(n)``: n examples by default, ``$TIGERDECODE_FUZZ_EXAMPLES`` when set."""
    return settings(max_examples=int(LONG) if LONG else default, derandomize=True,
                    deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
