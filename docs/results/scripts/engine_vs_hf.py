"""The transformers backend against the llama.cpp backend with the same engine heads
(docs/results/engines.md §3): tokens and the largest |p_dev| difference per prompt.
Needs llama-cpp-python and the export (`tigerdecode export default --format gguf --out
runs/smollm2-heads.gguf`). Run: python docs/results/scripts/engine_vs_hf.py"""
import warnings; warnings.simplefilter("ignore")
from tigerdecode.api import ControlledGenerator
from tigerdecode.model.load import load_model
m, tok = load_model("default")
hf = ControlledGenerator(m, tok, heads="heads/smollm2-135m-instruct/engine")
eng = ControlledGenerator("runs/smollm2-heads.gguf", tok, backend="llama-cpp", n_threads=2)
for p in ["What is the capital of Japan?", "Who wrote the play Romeo and Juliet?", "Write a two-line poem about the sea."]:
    for c in (0.0, 0.5):
        a = hf.generate_text([p], creativity=c, seed=0, max_new_tokens=40)[0]
        b = eng.generate_text([p], creativity=c, seed=0, max_new_tokens=40)[0]
        print(c, repr(a.text[:70]), "|", repr(b.text[:70]), a.token_ids == b.token_ids,
              max((abs(x.p_dev - y.p_dev) for x, y in zip(a.trace, b.trace)), default=0))
