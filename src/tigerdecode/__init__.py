"""tigerdecode: a creativity knob for any Hugging Face causal language model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tigerdecode")
except PackageNotFoundError:  # metadata missing (an unusual install); the code still works
    __version__ = "0.0.0+local"

from tigerdecode.model.load import load_model
from tigerdecode.qa.data import load_qa
from tigerdecode.quant import quantize_model

# The decoding API imports transformers; load it on first use so `tigerdecode --help` stays fast.
_LAZY = {"generate": "tigerdecode.api", "wrap": "tigerdecode.api",
         "ControlledGenerator": "tigerdecode.api", "Ensemble": "tigerdecode.methods.ensemble",
         "Policy": "tigerdecode.policy.knob", "Judge": "tigerdecode.judge.model",
         "ControlHeads": "tigerdecode.heads",
         "ControlledLogitsProcessor": "tigerdecode.policy.processor"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tigerdecode' has no attribute {name!r}")


__all__ = ["ControlHeads", "ControlledGenerator", "ControlledLogitsProcessor", "Ensemble", "Judge", "Policy", "__version__",
           "generate", "load_model", "load_qa", "quantize_model", "wrap"]
