"""tigerdecode: a creativity knob for any Hugging Face causal language model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tigerdecode")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

from tigerdecode.data import load_qa
from tigerdecode.models import load_model
from tigerdecode.quant import quantize_model  # noqa: E402,F401

# The decoding API imports transformers; load it on first use so `tigerdecode --help` stays fast.
_LAZY = {"generate": "tigerdecode.api", "wrap": "tigerdecode.api",
         "ControlledGenerator": "tigerdecode.api", "Ensemble": "tigerdecode.ensemble",
         "Policy": "tigerdecode.policy", "Judge": "tigerdecode.judge",
         "ControlHeads": "tigerdecode.heads"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tigerdecode' has no attribute {name!r}")


__all__ = ["ControlHeads", "ControlledGenerator", "Ensemble", "Judge", "Policy", "__version__",
           "generate", "load_model", "load_qa", "quantize_model", "wrap"]
