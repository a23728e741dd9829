"""Integration on the real embedded SmolLM2-135M-Instruct."""

import json
import subprocess
import sys

import pytest

from tigerdecode.model.load import fingerprint
from tigerdecode.model.prompting import encode_prompts

pytestmark = pytest.mark.slow


def plain_generate(model, tok, prompts, max_new_tokens):
    """Greedy answers through plain HF ``generate`` (new token ids and text per prompt)."""
    inp = encode_prompts(tok, prompts)
    out = model.generate(**inp, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    rows = []
    for row in out[:, inp["input_ids"].shape[1]:].tolist():
        row = row[: row.index(tok.eos_token_id)] if tok.eos_token_id in row else row
        rows.append({"token_ids": row, "text": tok.decode(row, skip_special_tokens=True)})
    return rows


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
