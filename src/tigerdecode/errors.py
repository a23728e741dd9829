"""Errors shared across layers (defined at the bottom so any layer may raise them)."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model could not be found, converted or loaded; the message says how to fix it."""
