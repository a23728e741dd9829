"""Bridges that let tigerdecode's heads run inside other inference engines (llama.cpp, ...)."""
