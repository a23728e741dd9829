"""The creativity knob (:class:`Policy`), its decode-loop control and its HF logits processor."""
