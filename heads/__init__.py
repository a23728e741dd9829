"""Control heads (p_stop, p_dev) and the trained checkpoints shipped for known models."""
