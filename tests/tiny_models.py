"""Tiny random causal LMs of several architectures, built from configs, sharing a real tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER_DIR = FIXTURES / "tokenizer"

ARCHS = ("llama", "gpt2", "qwen2", "gemma")


def load_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_config(arch: str, vocab_size: int, *, layers: int = 4, hidden: int = 64):
    from transformers import GemmaConfig, GPT2Config, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    if arch == "llama":
        return LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=512, **common)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=512, **common)
    if arch == "gemma":
        return GemmaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                           max_position_embeddings=512, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=512, **common)
    raise ValueError(f"unknown fixture architecture {arch!r}; known: {ARCHS}")


def build_tiny_model(arch: str, tokenizer, *, seed: int = 0, layers: int = 4, hidden: int = 64):
    """A deterministic random model (same seed, same weights) built from a tiny config."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tokenizer), layers=layers, hidden=hidden)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_tiny_model(arch: str, tokenizer, path: Path, **kw) -> Path:
    model = build_tiny_model(arch, tokenizer, **kw)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def random_heads_and_judge(model, tokenizer, *, seed: int = 0):
    """Untrained control heads (layers 2 and 4) and a judge reading them, for a tiny model built
    here: real numbers in every trace and verdict, no training."""
    from tigerdecode.heads import ControlHeads, HeadConfig
    from tigerdecode.judge.features import HEAD_FEATURES, LOGIT_FEATURES
    from tigerdecode.judge.model import Judge, JudgeConfig, heads_digest
    from tigerdecode.model.load import fingerprint

    torch.manual_seed(seed)
    fp = fingerprint(model, tokenizer)
    heads = ControlHeads(HeadConfig(layers=[2, 4], hidden_size=64), fp)
    judge = Judge(JudgeConfig(layers=[2, 4], hidden_size=64,
                              scalar_names=list(LOGIT_FEATURES + HEAD_FEATURES),
                              heads_digest=heads_digest(heads)), fp)
    return heads.eval(), judge.eval()
