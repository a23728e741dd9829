"""Loading models (the embedded default, HF directories, hub ids), fingerprints, hidden-state taps and prompting."""
