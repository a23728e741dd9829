"""The Gradio demo: a creativity slider, a look inside every token, the trade-off curves."""
