"""A base model (no chat template) asked through BASE_TEMPLATE and as raw completion, greedy,
20 new tokens: docs/results/fit.md quotes what it prints.

    python docs/results/scripts/base_prompt_format.py PATH/TO/gemma-3-270m-q4_k_m.gguf
"""
import sys

import torch

from tigerdecode.model.load import load_model
from tigerdecode.model.prompting import encode_prompts
from tigerdecode.qa.prompts import format_prompt

torch.set_num_threads(1)
m, tok = load_model(sys.argv[1])
qs = ["The capital of France is", "What is the capital of Japan?",
      "The native language of Vladimir Putin is", "Write a two-line poem about the sea."]
msgs = [q if q.startswith("Write") else format_prompt(q) for q in qs]
for raw in (False, True):
    enc = encode_prompts(tok, msgs, raw=raw)
    out = m.generate(**enc, max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id)
    print("raw completion" if raw else "BASE_TEMPLATE")
    for q, o in zip(qs, out, strict=True):
        print(f"  {q!r} -> {tok.decode(o[enc['input_ids'].shape[1]:], skip_special_tokens=True)!r}")
