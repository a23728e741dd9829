"""Baselines (greedy, temperature, top-p, min-p, factual-nucleus, DoLa) and the ensemble."""
