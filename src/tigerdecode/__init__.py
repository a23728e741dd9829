"""tigerdecode: a creativity knob for any Hugging Face causal language model."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tigerdecode")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

from tigerdecode.data import load_qa
from tigerdecode.models import load_model

__all__ = ["__version__", "load_model", "load_qa"]
