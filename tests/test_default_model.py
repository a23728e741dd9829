"""Integration on the real embedded SmolLM2-135M-Instruct."""

import json
import subprocess
import sys

from tigerdecode.models import fingerprint
from tigerdecode.plain import plain_generate


def test_default_model_is_smollm2(default_model):
    model, tok = default_model
    fp = fingerprint(model, tok)
    assert (fp.architecture, fp.num_layers, fp.hidden_size, fp.vocab_size) == (
        "LlamaForCausalLM", 30, 576, 49152)
    assert tok.chat_template


def test_default_model_answers_japan(default_model):
    model, tok = default_model
    (r,) = plain_generate(model, tok, ["What is the capital of Japan?"], max_new_tokens=16)
    assert "Tokyo" in r["text"]


def test_batched_greedy_equals_single_rows(default_model):
    model, tok = default_model
    prompts = ["What is the capital of Japan?", "Name a primary colour."]
    batch = plain_generate(model, tok, prompts, max_new_tokens=12)
    single = [plain_generate(model, tok, [p], max_new_tokens=12)[0] for p in prompts]
    assert [b["token_ids"] for b in batch] == [s["token_ids"] for s in single]


def test_cli_generate_json_on_default_model():
    res = subprocess.run([sys.executable, "-m", "tigerdecode", "generate",
                          "What is the capital of France?", "--json", "--creativity", "0"],
                         capture_output=True, text=True, check=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "Paris" in out["text"]
