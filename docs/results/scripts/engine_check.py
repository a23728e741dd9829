"""The llama.cpp backend against llama.cpp itself (docs/results/engines.md).

For each prompt: llama.cpp's own greedy decode of the *source* GGUF (its sampler, top_k=1) and
tigerdecode's llama.cpp backend on the *exported* GGUF with method=greedy (argmax over the
original vocabulary after the head rows are cut off), 48 tokens each; plus, step by step along
the exported file's greedy path, the largest |logit difference| between the two files over the
original vocabulary.
Run: python docs/results/scripts/engine_check.py SOURCE.gguf EXPORT.gguf"""
import sys
import warnings

import numpy as np
from llama_cpp import Llama

from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
from tigerdecode.model.prompting import encode_prompts

warnings.simplefilter("ignore")
src, exp = sys.argv[1], sys.argv[2]
PROMPTS = ["What is the capital of Japan?", "Who wrote the play Romeo and Juliet?",
           "Write a two-line poem about the sea.", "In which country is the city of Lyon?",
           "Name a famous painting by Leonardo da Vinci.", "Tell me a story about a dragon.",
           "What language is spoken in Brazil?", "Give three tips for learning to cook.",
           "Who founded the company Microsoft?", "Describe autumn in one sentence."]
N = 48
_, tok = load_model("default")
plain = Llama(model_path=src, n_ctx=512, n_threads=2, verbose=False)
other = Llama(model_path=exp, n_ctx=512, n_threads=2, verbose=False)
eng = ControlledGenerator(exp, tok, backend="llama-cpp", n_threads=2)
V = plain.n_vocab()


def logits(llm):
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


same, worst = 0, 0.0
for p in PROMPTS:
    ids = encode_prompts(tok, [p])["input_ids"][0].tolist()
    plain.reset()
    want = []
    for t in plain.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
        want.append(t)
        if t == tok.eos_token_id or len(want) == N:
            break
    got = eng.generate_text([p], method="greedy", max_new_tokens=N)[0].token_ids
    got_eos = got + ([tok.eos_token_id] if len(got) < N else [])
    same += got_eos == want
    plain.reset(); other.reset()
    plain.eval(ids); other.eval(ids)
    for t in got:
        a, b = logits(plain), logits(other)
        worst = max(worst, float(np.abs(a - b[:V]).max()))
        plain.eval([t]); other.eval([t])
    print(f"{p[:40]!r:44} same greedy tokens: {got_eos == want}  ({len(got)} tokens)")
print(f"prompts with identical greedy tokens: {same} / {len(PROMPTS)}; "
      f"max |logit difference| over the original vocabulary: {worst}")
