"""Write a tiny Llama (``tiny_models.build_tiny_model("llama")``) as a GGUF file with the
``gguf`` package, in llama.cpp's layout (F32 tensors, q/k rows permuted as llama.cpp's converter
does, the BPE tokenizer and chat template in the metadata), so GGUF loading is tested end to end
without a download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tiny_models import TOKENIZER_DIR, build_tiny_model


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary row order for q/k (transformers undoes it when loading)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2) \
        .reshape(w.shape)


def write_tiny_gguf(path: Path, tokenizer, *, architecture: str = "llama", seed: int = 0):
    """Write the tiny Llama to ``path``; returns the HF model it was made from.
    ``architecture`` is the name written in ``general.architecture`` (tests write an unknown
    one to check the error)."""
    import gguf

    model = build_tiny_model("llama", tokenizer, seed=seed)
    cfg = model.config
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)  # all F32
    spec = json.loads((TOKENIZER_DIR / "tokenizer.json").read_text())
    tokens = [""] * len(spec["model"]["vocab"])
    for t, i in spec["model"]["vocab"].items():
        tokens[i] = t
    special = {a["id"] for a in spec["added_tokens"] if a["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3 if i in special else 1 for i in range(len(tokens))])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    w.add_bos_token_id(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 1)
    w.add_eos_token_id(tokenizer.eos_token_id)
    w.add_pad_token_id(tokenizer.pad_token_id)
    w.add_chat_template(tokenizer.chat_template)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        for name, key in (("attn_norm", "input_layernorm"), ("attn_v", "self_attn.v_proj"),
                          ("attn_output", "self_attn.o_proj"),
                          ("ffn_norm", "post_attention_layernorm"),
                          ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                          ("ffn_down", "mlp.down_proj")):
            w.add_tensor(f"blk.{i}.{name}.weight", sd[f"{p}{key}.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], nh))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], nkv))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model
