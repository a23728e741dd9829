"""Vendored datasets (installed as ``tigerdecode.datasets``); see README.md for sources and licences."""
